"""Reach: what two versions of a policy decide differently, as set algebra. Floor 3.

A policy's rules decide every (direction, peer, protocol, port). `reach_changes` overlays the
rules of both versions on that space (`netspace.overlay`), decides each region under each
version exactly as the evaluator would (loopback, then `dns local`, then deny over allow, the
lowest rule ID first, then default deny) and reports the regions whose verdict changed:
widened (now allowed) or narrowed (now denied), with the rules on both sides.

Addresses are intervals per family; names are compared as atoms: each name or wildcard that
either version mentions, plus "any other name" for rules that say `any`. A wildcard atom
`*.x` stands for a name below x that no rule names on its own. Scope is not folded in (a
user policy's ingress outside its agent ports is out of scope either way): scope changes are
reported on their own by `diff`.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from clawpolicy.evaluate import LOOPBACK
from clawpolicy.ir import Action, Direction, Policy, PortRange, Protocol, Rule
from clawpolicy.netspace import Interval, intervals, network_interval, overlay, segments
from clawpolicy.review.peertext import cidrs, merge_intervals, summary

PROTOCOLS = (Protocol.TCP, Protocol.UDP, Protocol.ICMP)
ALL_PORTS = (0, 65535)
ANY_NAME = "any other name"
PEERS_SHOWN = 12  # peers a summary names before it counts them
FAMILY_SPAN = {4: (0, (1 << 32) - 1), 6: (0, (1 << 128) - 1)}


@dataclass(frozen=True, order=True)
class Decider:
    """One thing that can decide a region: its precedence, verdict and rule ID."""

    rank: int  # 0 loopback, 1 dns local, 2 deny rules, 3 allow rules
    rule_id: str
    action: Action
    side: str  # "old", "new" or "both"


DEFAULT = Decider(9, "default", Action.DENY, "both")


@dataclass(frozen=True)
class ReachChange:
    """Peers whose verdict on some protocols/ports changed between the two versions."""

    direction: Direction
    widened: bool  # True: now allowed; False: now denied
    family: int | None  # 4 or 6 for address intervals; None for names
    intervals: tuple[Interval, ...]  # address intervals (family 4/6), merged and sorted
    names: tuple[str, ...]  # names, `*.x`, or ANY_NAME (family None)
    ports: tuple[tuple[Protocol, Interval], ...]
    old: Decider
    new: Decider
    # Names a wildcard in `names` leaves out: atoms of their own (a rule names them), whose
    # verdict this change does not describe (`*.example.org` added beside an allowed
    # `api.example.org` widens every other name below example.org, not that one).
    excluded: tuple[str, ...] = ()

    @functools.cached_property
    def size(self) -> int:
        """How many addresses the change holds (0 for names)."""
        return sum(hi - lo + 1 for lo, hi in self.intervals)

    def covers_name(self, name: str) -> bool:
        """Whether a flow to `name` falls in this change, by the atoms' meaning."""
        if name in self.names:
            return True
        if any(name.endswith(e[1:]) if e.startswith("*.") else name == e for e in self.excluded):
            return False
        if any(n.startswith("*.") and name.endswith(n[1:]) for n in self.names):
            return True
        return ANY_NAME in self.names

    @functools.cached_property
    def peers(self) -> tuple[str, ...]:
        """Every peer as text (a CIDR or a name); computed once: 100,000 of them are read by the
        summary, the risk and the JSON."""
        if self.family is None:
            return self.names
        return tuple(t for lo, hi in self.intervals for t in cidrs(lo, hi, self.family))

    def peers_text(self, limit: int = PEERS_SHOWN) -> str:
        """The peers for a reader, counted past `limit` (peertext.summary)."""
        return summary(self, limit)

    @property
    def ports_text(self) -> str:
        return ", ".join(_ports_text(p, r) for p, r in self.ports)

    def covers_port(self, protocol: Protocol, port: int) -> bool:
        return any(p is protocol and lo <= port <= hi for p, (lo, hi) in self.ports)

    def covers_address(self, address: str) -> bool:
        a = ipaddress.ip_address(address)
        k = bisect.bisect_right(self.intervals, (int(a), FAMILY_SPAN[6][1])) - 1
        return a.version == self.family and k >= 0 and self.intervals[k][1] >= int(a)

    def widest_prefix(self) -> int | None:
        """The shortest prefix among the changed networks (None for names)."""
        if self.family is None:
            return None
        return min(int(t.split("/")[1]) if "/" in t else (32 if self.family == 4 else 128)
                   for t in self.peers if "-" not in t)


def _port_boxes(ports: Sequence[PortRange]) -> list[tuple[Interval, Interval]]:
    if not ports:
        return [((0, len(PROTOCOLS) - 1), ALL_PORTS)]
    return [((PROTOCOLS.index(p.protocol),) * 2, p.bounds) for p in ports]


def _deciders(policy: Policy, side: str) -> list[tuple[Rule | None, Decider]]:
    out: list[tuple[Rule | None, Decider]] = []
    for rule in policy.rules:
        rank = 2 if rule.action is Action.DENY else 3
        out.append((rule, Decider(rank, rule.id, rule.action, side)))
    return out


def _decide(labels: Iterable[object], side: str) -> Decider:
    mine = [d for d in labels if isinstance(d, Decider) and d.side in (side, "both")]
    return min(mine, default=DEFAULT)


_Entry = tuple[Decider, tuple[tuple[Interval, Interval], ...]]  # a decider and its protocol·port boxes


def _address_segments(old: Policy, new: Policy, direction: Direction,
                      family: int) -> tuple[list[_Entry], list[tuple[Interval, frozenset[int]]]]:
    """The address space of one direction and family cut into segments, each labelled with
    the entries (deciders of both versions, by index) whose networks cover it. Addresses
    first, protocol·port per distinct label set after (`_changed_ports`): 100,000 networks
    of one rule are one sort and one sweep, not 100,000 boxes per port."""
    whole = FAMILY_SPAN[family]
    entries: list[_Entry] = []
    base: set[int] = set()
    by_interval: dict[Interval, list[int]] = {}

    def add(decider: Decider, ports: Sequence[PortRange], intervals: Iterable[Interval], everywhere: bool) -> None:
        k = len(entries)
        entries.append((decider, tuple(_port_boxes(ports))))
        if everywhere:
            base.add(k)
            return
        for interval in intervals:
            if interval == whole:
                base.add(k)
            else:
                by_interval.setdefault(interval, []).append(k)

    for policy, side in ((old, "old"), (new, "new")):
        for rule, decider in _deciders(policy, side):
            assert rule is not None
            if rule.direction is direction:
                add(decider, rule.ports, intervals(rule.peers.ipv4 if family == 4 else rule.peers.ipv6),
                    rule.peers.any)
        if direction is Direction.EGRESS and policy.local_dns is not None:
            add(Decider(1, policy.local_dns.id, Action.DENY, side), policy.local_dns.ports, (), True)
    add(Decider(0, "loopback", Action.ALLOW, "both"), (),
        (network_interval(n) for n in LOOPBACK if n.version == family), False)
    interned: dict[tuple[int, ...], frozenset[int]] = {}
    items = []
    for interval, ks in by_interval.items():
        key = tuple(ks)
        labels = interned.get(key)
        if labels is None:
            labels = interned[key] = frozenset(ks)
        items.append((interval, labels))
    return entries, segments(items, frozenset(base), whole)


_Piece = tuple[Protocol, Interval, Decider, Decider]


def _changed_ports(entries: Sequence[_Entry], labels: frozenset[int]) -> list[_Piece]:
    """Where on protocol·port the entries `labels` decide differently in the two versions:
    (protocol, ports, old decider, new decider), as the evaluator decides (`_decide`)."""
    boxes = [(box, k) for k in labels for box in entries[k][1]]
    out: list[_Piece] = []
    for bounds, ks in overlay(boxes):
        deciders = [entries[k][0] for k in ks if isinstance(k, int)]
        before, after = _decide(deciders, "old"), _decide(deciders, "new")
        if (before.action is Action.ALLOW) != (after.action is Action.ALLOW):
            out += [(protocol, ports, _plain(before), _plain(after))
                    for protocol, ports in _port_pieces(bounds[0], bounds[1])]
    return out


def _name_atoms(policies: Iterable[Policy], direction: Direction) -> list[tuple[str, bool]]:
    """(name, is_wildcard) for every name either version mentions, plus ANY_NAME."""
    atoms: set[tuple[str, bool]] = {(ANY_NAME, False)}
    for policy in policies:
        for rule in policy.rules:
            if rule.direction is direction:
                atoms.update((n, False) for n in rule.peers.names)
                atoms.update((w, True) for w in rule.peers.wildcards)
    return sorted(atoms)


def _rule_covers_atom(rule: Rule, name: str, wildcard: bool) -> bool:
    peers = rule.peers
    if peers.any:
        return True
    if name == ANY_NAME:
        return False
    if wildcard:
        return any(name == w or name.endswith("." + w) for w in peers.wildcards)
    return name in peers.names or any(name.endswith("." + w) for w in peers.wildcards)


def _name_regions(old: Policy, new: Policy, direction: Direction, name: str,
                  wildcard: bool) -> list[tuple[tuple[Interval, ...], frozenset[object]]]:
    boxes: list[tuple[tuple[Interval, ...], object]] = []
    for policy, side in ((old, "old"), (new, "new")):
        for rule, decider in _deciders(policy, side):
            assert rule is not None
            if rule.direction is direction and _rule_covers_atom(rule, name, wildcard):
                boxes += [(box, decider) for box in _port_boxes(rule.ports)]
        if direction is Direction.EGRESS and policy.local_dns is not None:
            decider = Decider(1, policy.local_dns.id, Action.DENY, side)
            boxes += [(box, decider) for box in _port_boxes(policy.local_dns.ports)]
    return overlay(boxes)


def _ports_text(protocol: Protocol, ports: Interval) -> str:
    if ports == ALL_PORTS:
        return str(PortRange(protocol=protocol))
    return str(PortRange(protocol=protocol, first=max(ports[0], 1), last=ports[1]))


def _port_pieces(proto_span: Interval, ports: Interval) -> Iterator[tuple[Protocol, Interval]]:
    for index in range(proto_span[0], proto_span[1] + 1):
        protocol = PROTOCOLS[index]
        yield protocol, (ALL_PORTS if protocol is Protocol.ICMP else ports)


def reach_changes(old: Policy, new: Policy) -> list[ReachChange]:
    """Every peer/port set whose verdict differs between `old` and `new`, sorted."""
    grouped: dict[tuple[Direction, bool, Protocol, Interval, Decider, Decider, str],
                  list[tuple[int, int] | str]] = {}
    for direction in Direction:
        for family in (4, 6):
            entries, cut = _address_segments(old, new, direction, family)
            pieces: dict[frozenset[int], list[_Piece]] = {}  # label sets repeat: decided once each
            for interval, ks in cut:
                changed = pieces.get(ks)
                if changed is None:
                    changed = pieces[ks] = _changed_ports(entries, ks)
                for protocol, ports, before, after in changed:
                    key = (direction, after.action is Action.ALLOW, protocol, ports, before, after, f"ipv{family}")
                    grouped.setdefault(key, []).append(interval)
        for name, wildcard in _name_atoms((old, new), direction):
            for bounds, labels in _name_regions(old, new, direction, name, wildcard):
                before, after = _decide(labels, "old"), _decide(labels, "new")
                if (before.action is Action.ALLOW) == (after.action is Action.ALLOW):
                    continue
                for protocol, ports in _port_pieces(bounds[0], bounds[1]):
                    key = (direction, after.action is Action.ALLOW, protocol, ports,
                           _plain(before), _plain(after), "name")
                    grouped.setdefault(key, []).append(f"*.{name}" if wildcard else name)
    atoms = {d: _name_atoms((old, new), d) for d in Direction}
    changes: dict[tuple[object, ...], ReachChange] = {}
    for (direction, widened, protocol, ports, before, after, kind), members in grouped.items():
        fam = None if kind == "name" else (4 if kind == "ipv4" else 6)
        intervals = merge_intervals(m for m in members if isinstance(m, tuple))
        names = tuple(sorted({m for m in members if isinstance(m, str)}))
        merged_key = (direction, widened, fam, intervals, names, before, after)
        prev = changes.get(merged_key)
        merged_ports = (*(prev.ports if prev else ()), (protocol, ports))
        changes[merged_key] = ReachChange(direction, widened, fam, intervals, names,
                                          tuple(sorted(merged_ports, key=_port_key)), before, after,
                                          _excluded(names, atoms[direction]))
    return sorted(changes.values(), key=_sort_key)


def _excluded(names: Sequence[str], atoms: Sequence[tuple[str, bool]]) -> tuple[str, ...]:
    """Atoms below a wildcard of `names` that are not themselves in `names`: the wildcard
    atom stands for the other names below it, so a reader must see these left out."""
    below = [n[2:] for n in names if n.startswith("*.")]
    out = {f"*.{a}" if wild else a for a, wild in atoms if a != ANY_NAME
           and any(a.endswith("." + w) for w in below)}
    return tuple(sorted(out - set(names)))


def _plain(decider: Decider) -> Decider:
    return Decider(decider.rank, decider.rule_id, decider.action, "both")


def _port_key(p: tuple[Protocol, Interval]) -> tuple[int, Interval]:
    return PROTOCOLS.index(p[0]), p[1]


def _sort_key(c: ReachChange) -> tuple[object, ...]:
    return (c.direction.value, not c.widened, c.new.rule_id, c.old.rule_id, c.family or 0,
            c.intervals, c.names, [_port_key(p) for p in c.ports])


def cancelled_allows(policy: Policy) -> list[tuple[Rule, tuple[str, ...]]]:
    """Allow rules that deny rules (and `dns local`) cancel entirely, each with the IDs of
    the denies that do: decided region by region as `reach_changes` decides, so the answer
    is the evaluator's (deny overrides allow) on every address, name and port the rule names.
    Loopback is left out: there the allow is moot, not cancelled."""
    out: list[tuple[Rule, tuple[str, ...]]] = []
    for rule in policy.rules:
        if rule.action is not Action.ALLOW:
            continue
        denies = [(r, d) for r, d in _deciders(policy, "both")
                  if r is not None and r.direction is rule.direction and d.action is not Action.ALLOW]
        local = (Decider(1, policy.local_dns.id, Action.DENY, "both")
                 if rule.direction is Direction.EGRESS and policy.local_dns is not None else None)
        if not denies and local is None:
            continue
        cancelling = _cancelled_by(rule, denies, local, policy)
        if cancelling is not None:
            out.append((rule, cancelling))
    return out


def _ports_meet(a: Sequence[PortRange], b: Sequence[PortRange]) -> bool:
    return not a or not b or any(p.protocol is q.protocol and p.bounds[0] <= q.bounds[1]
                                 and q.bounds[0] <= p.bounds[1] for p in a for q in b)


def _plainly_alive(rule: Rule, denies: Sequence[Rule], local: bool) -> bool:
    """A cheap first answer, ports and names aside: some address of the rule lies outside
    every deny that shares a port with it (a sweep over merged intervals, so 100,000
    networks cost a sort, not an overlay)."""
    if local:
        return False
    for family in (4, 6):
        own = [FAMILY_SPAN[family]] if rule.peers.any else intervals(
            rule.peers.ipv4 if family == 4 else rule.peers.ipv6)
        if not own:
            continue
        spans: list[Interval] = []
        for d in denies:
            if d.peers.any:
                spans.append(FAMILY_SPAN[family])
            else:
                spans.extend(intervals(d.peers.ipv4 if family == 4 else d.peers.ipv6))
        cover = merge_intervals(spans)
        j = 0
        for lo, hi in own:  # sorted
            while j < len(cover) and cover[j][1] < lo:
                j += 1
            if j == len(cover) or cover[j][0] > lo or cover[j][1] < hi:
                return True  # not inside one merged deny interval (merged ones do not touch)
    return False


def _cancelled_by(rule: Rule, denies: Sequence[tuple[Rule | None, Decider]], local: Decider | None,
                  policy: Policy) -> tuple[str, ...] | None:
    mine = Decider(3, rule.id, Action.ALLOW, "both")
    denies = [(r, d) for r, d in denies if r is not None and _ports_meet(rule.ports, r.ports)]
    if local is not None and policy.local_dns is not None and not _ports_meet(rule.ports, policy.local_dns.ports):
        local = None
    if not denies and local is None:
        return None
    if _plainly_alive(rule, [r for r, _ in denies if r is not None], local is not None):
        return None
    used: set[str] = set()
    regions: list[tuple[tuple[Interval, ...], frozenset[object]]] = []
    for family in (4, 6):
        whole = FAMILY_SPAN[family]
        own = [whole] if rule.peers.any else [
            network_interval(n) for n in (rule.peers.ipv4 if family == 4 else rule.peers.ipv6)]
        if not own:
            continue
        boxes: list[tuple[tuple[Interval, ...], object]] = [
            ((net, proto, ports), mine) for net in own for proto, ports in _port_boxes(rule.ports)]
        for other, decider in denies:
            assert other is not None
            nets = [whole] if other.peers.any else [
                network_interval(n) for n in (other.peers.ipv4 if family == 4 else other.peers.ipv6)]
            boxes += [((net, proto, ports), decider) for net in nets for proto, ports in _port_boxes(other.ports)]
        if local is not None and policy.local_dns is not None:
            boxes += [((whole, proto, ports), local) for proto, ports in _port_boxes(policy.local_dns.ports)]
        loopback = Decider(0, "loopback", Action.ALLOW, "both")
        boxes += [((network_interval(n), (0, len(PROTOCOLS) - 1), ALL_PORTS), loopback)
                  for n in LOOPBACK if n.version == family]
        regions += [(bounds, labels) for bounds, labels in overlay(boxes) if mine in labels]
    atoms = [(n, False) for n in rule.peers.names] + [(w, True) for w in rule.peers.wildcards]
    if rule.peers.any:
        atoms.append((ANY_NAME, False))
    for name, wildcard in atoms:
        boxes = [(box, mine) for box in _port_boxes(rule.ports)]
        for other, decider in denies:
            assert other is not None
            if _rule_covers_atom(other, name, wildcard):
                boxes += [(box, decider) for box in _port_boxes(other.ports)]
        if local is not None and policy.local_dns is not None:
            boxes += [(box, local) for box in _port_boxes(policy.local_dns.ports)]
        regions += [(bounds, labels) for bounds, labels in overlay(boxes) if mine in labels]
    for _, labels in regions:
        winner = _decide(labels, "both")
        if winner == mine:
            return None  # somewhere this rule decides: alive
        if winner.action is not Action.ALLOW:
            used.add(winner.rule_id)
    return tuple(sorted(used)) if used else None
