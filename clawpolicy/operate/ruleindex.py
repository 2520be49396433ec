"""Rules by address, for replaying many flows: floor 3, beside `simulate`.

The evaluator decides a flow by scanning every rule's networks: right for one flow, but a
policy of 100,000 networks times 150,000 recorded flows is 10^10 comparisons. The index cuts
the address space once (`netspace.segments`, over integer intervals) into regions, each with
the rules whose networks cover all of it; a flow to an address finds its region by bisection,
keeps the region's rules (and the rules that name `any`) whose direction and ports fit, and
hands them to the evaluator as the matching rules (`evaluate(..., matching=)`), which decides
everything else (scope, loopback, `dns local`, deny over allow) as for any flow. Flows to
names go to the evaluator whole (it never scans networks for a name).
"""

from __future__ import annotations

import bisect
import ipaddress
import socket
from collections.abc import Hashable, Sequence

from clawpolicy.evaluate import Flow, Verdict, evaluate, ports_match, rule_matches
from clawpolicy.ir import Policy, Rule
from clawpolicy.netspace import intervals, segments


def address_value(peer: str) -> tuple[int, int] | None:
    """(family, integer) of an address as the evaluator reads it (`ipaddress`); None for a
    name. Canonical IPv4 text, nearly every flow, takes the C path."""
    try:
        packed = socket.inet_pton(socket.AF_INET, peer)
        if socket.inet_ntop(socket.AF_INET, packed) == peer:
            return 4, int.from_bytes(packed, "big")
    except (OSError, ValueError):  # not dotted-quad; a NUL or a lone surrogate (ValueError)
        pass
    try:  # canonical IPv6 text (what flowfile writes) likewise; inet_ntop's text is text
        packed = socket.inet_pton(socket.AF_INET6, peer)  # ipaddress reads as the same address
        if socket.inet_ntop(socket.AF_INET6, packed) == peer:
            return 6, int.from_bytes(packed, "big")
    except (OSError, ValueError):
        pass
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return None
    return address.version, int(address)


class RuleIndex:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        rules = policy.rules
        self._always = tuple(i for i, r in enumerate(rules) if r.peers.any)
        self._regions: dict[int, tuple[list[int], list[int], list[tuple[Rule, ...]]]] = {}
        for family in (4, 6):
            items = [(span, frozenset((i,))) for i, r in enumerate(rules) if not r.peers.any
                     for span in intervals(r.peers.ipv4 if family == 4 else r.peers.ipv6)]
            found: dict[frozenset[int], tuple[Rule, ...]] = {}
            starts, ends, kept = [], [], []
            for (lo, hi), labels in segments(items):
                rule_set = found.get(labels)
                if rule_set is None:  # in policy order, as the evaluator scans them
                    rule_set = found[labels] = tuple(rules[i] for i in sorted(labels | set(self._always)))
                starts.append(lo)
                ends.append(hi)
                kept.append(rule_set)
            self._regions[family] = (starts, ends, kept)
        self._anywhere = tuple(rules[i] for i in self._always)

    def _rules_at(self, where: tuple[int, int]) -> tuple[Rule, ...]:
        starts, ends, kept = self._regions[where[0]]
        value = where[1]
        k = bisect.bisect_right(starts, value) - 1
        return kept[k] if k >= 0 and ends[k] >= value else self._anywhere

    def _candidates(self, flow: Flow) -> Sequence[Rule] | None:
        """The rules whose peers hold the flow's address (None for a name)."""
        where = address_value(flow.peer)
        return None if where is None else self._rules_at(where)

    def kind(self, peer: str) -> Hashable:
        """What the evaluator reads of an address: the rules whose peers hold it (one shared
        object per set of rules) and whether it is loopback. Two addresses of one kind get
        the same verdict and match the same rules for any protocol, port and user, so
        `simulate` decides each kind once, not each of 100,000 addresses. A name is its own
        kind (the evaluator matches names by text)."""
        where = address_value(peer)
        if where is None:
            return peer
        family, value = where
        loopback = value >> 24 == 127 if family == 4 else value == 1
        return id(self._rules_at(where)), loopback

    def matching(self, flow: Flow) -> Sequence[Rule]:
        """The rules that cover `flow`, whatever the others say (`evaluate.rule_matches`)."""
        rules = self._candidates(flow)
        if rules is None:
            return [r for r in self.policy.rules if rule_matches(r, flow)]
        return [r for r in rules if r.direction is flow.direction and ports_match(r, flow)]

    def evaluate(self, flow: Flow) -> Verdict:
        return evaluate(self.policy, flow, self.matching(flow))

    def matching_ids(self, flow: Flow) -> list[str]:
        return [r.id for r in self.matching(flow)]
