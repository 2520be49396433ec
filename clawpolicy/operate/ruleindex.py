"""Rules by address, for replaying many flows: floor 3, beside `simulate`.

The evaluator decides a flow by scanning every rule's networks: right for one flow, but a
policy of 100,000 networks times 150,000 recorded flows is 10^10 comparisons. The index cuts
the address space once (`netspace.overlay`) into regions, each with the rules whose networks
cover it; a flow to an address is then decided by the evaluator on the policy reduced to those
rules (and the rules that name `any`), each holding only that region of its networks. Only
what cannot match is left out, so the verdict is the evaluator's own: same rule, same cause.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Sequence

from clawpolicy.evaluate import Flow, Verdict, evaluate, rule_matches
from clawpolicy.ir import Policy, Rule
from clawpolicy.netspace import Interval, network_interval, overlay


class RuleIndex:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        rules = policy.rules
        self._always = tuple(i for i, r in enumerate(rules) if r.peers.any)
        self._regions: dict[int, tuple[list[int], list[Interval], list[tuple[int, ...]]]] = {}
        for family in (4, 6):
            boxes = [((network_interval(n),), i) for i, r in enumerate(rules)
                     for n in (r.peers.ipv4 if family == 4 else r.peers.ipv6)]
            regions = overlay(boxes)
            self._regions[family] = ([b[0][0] for b, _ in regions], [b[0] for b, _ in regions],
                                     [tuple(sorted(int(x) for x in labels if isinstance(x, int)))
                                      for _, labels in regions])
        self._reduced: dict[tuple[int, int], Policy] = {}

    def _region(self, peer: str) -> tuple[int, int] | None:
        """(family, region number; -1 outside every region) of an address peer; None for a name."""
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return None
        starts, spans, _ = self._regions[address.version]
        value = int(address)
        k = bisect.bisect_right(starts, value) - 1
        return address.version, (k if k >= 0 and spans[k][1] >= value else -1)

    def reduced(self, flow: Flow) -> Policy:
        """The policy with only the rules that can match `flow` (all of them for a name), each
        with only the part of its networks around the address (the region: inside every one
        of them), so the evaluator's scan is short."""
        where = self._region(flow.peer)
        if where is None:
            return self.policy
        hit = self._reduced.get(where)
        if hit is None:
            family, k = where
            _, spans, labels = self._regions[family]
            rules = self.policy.rules
            kept: dict[int, Rule] = {i: rules[i] for i in self._always}
            if k >= 0:
                cls = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
                nets = tuple(ipaddress.summarize_address_range(cls(spans[k][0]), cls(spans[k][1])))
                for i in labels[k]:
                    peers = rules[i].peers.model_copy(update={"ipv4": nets if family == 4 else (),
                                                              "ipv6": nets if family == 6 else ()})
                    kept.setdefault(i, rules[i].model_copy(update={"peers": peers}))
            hit = self._reduced[where] = self.policy.model_copy(
                update={"rules": tuple(kept[i] for i in sorted(kept))})
        return hit

    def evaluate(self, flow: Flow) -> Verdict:
        return evaluate(self.reduced(flow), flow)

    def matching(self, flow: Flow) -> Sequence[Rule]:
        """The rules that cover `flow`, whatever the others say (`evaluate.rule_matches`)."""
        return [r for r in self.reduced(flow).rules if rule_matches(r, flow)]

    def matching_ids(self, flow: Flow) -> list[str]:
        return [r.id for r in self.matching(flow)]
