"""What suggest's proposals mean: catalog groups for the names seen, and a risk per rule.

Floor 3, beside `suggest`. A reviewer reads intent more easily than a list: when most names of
a catalog group were seen (four of GitHub's six), the proposal names the group, which brings
the service's own names and ports. And a proposal is a change to the policy like any other, so
each rule is rated by `diff`'s own rules (`review.risk.reach_risk` on what the rule makes
newly reachable beside the policy as it is): the gateway port from the LAN or cloud metadata
is high, and says so in the text, not only in a review later.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from clawpolicy.catalog import CatalogGroup, load_catalog
from clawpolicy.ir import Policy, PortRange, Protocol, Rule
from clawpolicy.netspace import merge_ports
from clawpolicy.review.reach import reach_changes
from clawpolicy.review.risk import Risk, opened, reach_risk


@dataclass(frozen=True)
class GroupPick:
    """A catalog group proposed for names seen, with the names it stands for."""

    group: str
    seen: tuple[str, ...]
    peers: frozenset[str]  # as `Peers.describe()` gives the group's entries back
    ports: tuple[PortRange, ...]


def group_ports(group: CatalogGroup) -> tuple[PortRange, ...]:
    out = []
    for text in group.ports:
        number, _, proto = text.partition("/")
        first, _, last = number.partition("-")
        out.append(PortRange(protocol=Protocol(proto), first=int(first), last=int(last or first)))
    return merge_ports(out)


def _inside(ports: Sequence[PortRange], allowed: Sequence[PortRange]) -> bool:
    return all(any(a.protocol is p.protocol and a.bounds[0] <= p.bounds[0] and p.bounds[1] <= a.bounds[1]
                   for a in allowed) for p in ports)


def pick_groups(seen: Mapping[str, Sequence[PortRange]], catalog: Mapping[str, CatalogGroup] | None = None,
                min_names: int = 2) -> list[GroupPick]:
    """Groups for the egress names `seen` (name -> ports seen): a group is picked when at
    least `min_names` and at least half of its names were seen, each only on the group's own
    ports (a group never adds a port nobody used to a name seen elsewhere). Groups that
    explain more names go first; a name counts for one group only."""
    groups = catalog if catalog is not None else load_catalog()
    candidates: list[tuple[int, str, tuple[str, ...]]] = []
    for name, group in groups.items():
        ports = group_ports(group)
        hits = tuple(n for n in group.fqdns if n in seen and _inside(seen[n], ports))
        if len(hits) >= min_names and 2 * len(hits) >= len(group.fqdns):
            candidates.append((-len(hits), name, hits))
    used: set[str] = set()
    out: list[GroupPick] = []
    for _, name, hits in sorted(candidates):
        fresh = tuple(n for n in hits if n not in used)
        group = groups[name]
        if len(fresh) < min_names or 2 * len(fresh) < len(group.fqdns):
            continue
        used.update(fresh)
        peers = frozenset([*group.fqdns, *(f"*.{w}" for w in group.wildcards),
                           *(str(ipaddress.ip_network(a)) for a in group.addresses)])
        out.append(GroupPick(name, fresh, peers, group_ports(group)))
    return out


def rate(rules: Iterable[Rule], base: Policy) -> list[tuple[Risk, str]]:
    """Each rule's risk as `diff` would rate adding it to `base` alone: the highest of the
    reach changes it makes (low when it opens nothing new)."""
    out = []
    for rule in rules:
        after = base.model_copy(update={"rules": (*base.rules, rule)})
        changes = reach_changes(base, after)
        totals = opened(changes)
        rated = [reach_risk(c, totals.get((c.direction, c.family, c.new.rule_id), 0) if c.family else 0)
                 for c in changes if c.widened]
        rated.sort(key=lambda r: -r[0].rank)
        out.append(rated[0] if rated else (Risk.LOW, "opens nothing the policy does not already allow"))
    return out
