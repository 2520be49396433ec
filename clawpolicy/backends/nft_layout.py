"""Address rules to nft lookups: floor 2, the nftables backend's packet path for CIDR rules.

For one direction, action and family, the rules (sorted by ID: the lowest ID decides, as in
`evaluate`) become one address-only lookup whose regions jump to small chains: a verdict
map, or a set and one rule when every region leads to the same chain; one key field, so the
kernel keeps an interval lookup in an rbtree (logarithmic in its elements) and one of exact
addresses in a hash (constant). `LookupKind` says which.

Networks are CIDRs, so any two are nested or apart: they form a tree. Each tree node whose
own rules (the rules naming exactly that network) decide something gets a *delta* chain:
- a port map (`meta l4proto . th dport vmap`) with the pieces of protocol·port space where
  one of its own rules wins (lowest ID over its rules and its ancestors'), and, inside its
  own ports, `return` where an ancestor's rule wins;
- a protocol map (`meta l4proto vmap`) for whole-protocol entries (`icmp`, `any/udp`),
  reached only by packets whose port cannot be read (a readable one matched the port map).
A region's chain jumps to the deltas of its network and then of each enclosing one, nearest
first (the first delta that claims a packet holds its lowest-ID rule), and last to the first
rule without ports, if any: such a rule is matched on the address alone, so a packet with no
port to read (IP protocol 253, a 1-byte payload, a short ICMP message) meets every deny that
covers it. The chain graph stays 3-4 jumps deep however deep networks nest (the kernel
refuses more than 16 levels, gotos included). A rule without ports whose ID sorts before some
of its ancestors' rules cuts those off: its chain then consults the ancestors' rules below
it through segment-tree nodes of their rank list (`netspace.canonical_ranges`), each a full
classifier of a few rules, shared. Chains are shared by every network with the same own rules
under the same ancestors (300 /32s of one rule inside a /8 share one), so elements grow with
the networks plus the port ranges, not with their product.

Naming of the rules' own chains stays in nftables.py (`rule_chain`); the chains made here
are the map's stem and a counter, never user text.
"""

from __future__ import annotations

import bisect
import functools
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter, lt, ne
from typing import Any

from clawpolicy.ir import PortRange, Rule
from clawpolicy.netspace import Box, canonical_ranges, interval_to_text, network_intervals, partition, protocol_number

PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp"}
FULL = {4: (0, (1 << 32) - 1), 6: (0, (1 << 128) - 1)}
PARENT = -1  # a piece of a node's port map that its parent's chain decides


def proto_text(number: int) -> str:
    return PROTO_NAMES.get(number, str(number))


def range_text(bounds: tuple[int, int]) -> str:
    lo, hi = bounds
    return str(lo) if lo == hi else f"{lo}-{hi}"


def port_keys(ports: Sequence[PortRange], family: int) -> tuple[list[str], list[str]]:
    """`proto . port` keys of the ranged entries, and the protocols of the whole-protocol ones
    (these must match without reading a port: ICMP and short packets have none to read)."""
    ranged = [f"{proto_text(protocol_number(p.protocol, family))} . {range_text(p.bounds)}"
              for p in ports if p.first is not None]
    whole = [proto_text(protocol_number(p.protocol, family)) for p in ports if p.first is None]
    return ranged, whole


@dataclass
class Chain:
    name: str
    comment: str
    statements: list[str]


@dataclass(frozen=True)
class LookupKind:
    """How the policy chain consults one layout, chosen per layout: a verdict map when its
    regions lead to several chains, else a plain set and one `@set jump chain` rule (the
    chain's name is not repeated per element: 100,000 elements, 100,000 names less); an
    interval set (rbtree) when a region is a range, else a hash of exact addresses, which
    nft loads several times faster (no interval pairs to build and check, and the hash is
    sized up front: `size`) and looks up in constant time (nft wiki, "Sets": set types are
    chosen by the kernel from the flags and the size)."""

    suffix: str  # names the object: `<direction>_<action>_<suffix>_v<family>`
    verdicts: bool
    interval: bool

    def declaration(self, name: str, addr_type: str) -> str:
        """The object with no elements, as a reload declares it before deleting it (the
        kernel refuses to declare an existing name with other flags: one name per kind)."""
        verdict = " : verdict" if self.verdicts else ""
        flags = " flags interval;" if self.interval else ""
        return f"{self.keyword} {name} {{ type {addr_type}{verdict};{flags} }}"

    @property
    def keyword(self) -> str:
        return "map" if self.verdicts else "set"


# every kind a ruleset can define; `addr` first: the name of the one kind earlier versions had
LOOKUP_KINDS = (LookupKind("addr", True, True), LookupKind("host", True, False),
                LookupKind("addrset", False, True), LookupKind("hostset", False, False))


@dataclass
class Layout:
    """One address lookup's regions and the chains they jump to."""

    family: int
    regions: list[tuple[int, int, str]]  # disjoint, ascending: first, last address, chain
    chains: list[Chain] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # the rules in the map, for its comment

    @functools.cached_property
    def kind(self) -> LookupKind:
        firsts, lasts = map(itemgetter(0), self.regions), map(itemgetter(1), self.regions)
        verdicts = len(set(map(itemgetter(2), self.regions))) > 1
        interval = any(map(ne, firsts, lasts))
        return next(k for k in LOOKUP_KINDS if (k.verdicts, k.interval) == (verdicts, interval))

    @property
    def target(self) -> str:
        """The chain of a set's elements (a map's elements name their own)."""
        return self.regions[0][2]

    @property
    def elements(self) -> list[str]:
        """The elements' text: `address : jump chain` in a map, the address in a set."""
        kind = self.kind
        if kind.verdicts and not kind.interval and self.family == 4:  # hosts: no call per address
            hosts = _hosts_text(list(map(itemgetter(0), self.regions)))
            return [f"{host} : jump {target}" for host, (_, _, target) in zip(hosts, self.regions)]
        if kind.verdicts:
            return [f"{interval_to_text(lo, hi, self.family)} : jump {target}"
                    for lo, hi, target in self.regions]
        if not kind.interval and self.family == 4:
            return _hosts_text(list(map(itemgetter(0), self.regions)))
        return [interval_to_text(lo, hi, self.family) for lo, hi, _ in self.regions]


def _hosts_text(values: list[int]) -> list[str]:
    """IPv4 hosts as dotted quads, the common large case (100,000 /32s) without a call per
    address through `interval_to_text` (inet_ntoa: a third faster than formatting)."""
    ntoa, pack = socket.inet_ntoa, _U32.pack
    return [ntoa(pack(v)) for v in values]


_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class _Ctx:
    """What decides inside a tree node: the ranks in play (ascending, all with ports, below
    `stop`), the first port-less rule, and the chain (or rule chain) that decides."""

    ranks: tuple[int, ...]
    stop: int | None
    target: str
    statements: tuple[str, ...]  # the chain's: `jump` to deltas, nearest network first

def _networks(rules: Sequence[Rule], family: int) -> list[tuple[int, int, tuple[int, ...]]]:
    """Every network of `rules` once, with the ranks naming it, enclosing networks first:
    sorted by first address, then by size, so a sweep with a stack sees the tree in order."""
    # Not `netspace.intervals`, which keeps its answers for the run (review reads them again).
    nets = [[FULL[family]] if rule.peers.any else sorted(network_intervals(
        rule.peers.ipv4 if family == 4 else rule.peers.ipv6)) for rule in rules]
    owners: dict[tuple[int, int], list[int]] = {}
    for rank, spans in enumerate(nets):
        for interval in spans:
            owners.setdefault(interval, []).append(rank)
    by_start = sorted((lo, -hi, tuple(own)) for (lo, hi), own in owners.items())
    return [(lo, -neg_hi, own) for lo, neg_hi, own in by_start]


class _Emitter:
    def __init__(self, rules: Sequence[Rule], family: int, stem: str,
                 rule_chain: Callable[[Rule], str], comment: Callable[[str], str]) -> None:
        self.rules, self.family, self.stem = rules, family, stem
        self.rule_chain, self.comment = rule_chain, comment
        self.chains: dict[str, Chain] = {}
        self.contexts: dict[tuple[object, ...], _Ctx] = {}
        self.segments: dict[tuple[object, ...], str] = {}

    def _new_chain(self, what: str, statements: list[str]) -> str:
        name = f"{self.stem}_c{len(self.chains)}"
        self.chains[name] = Chain(name, self.comment(what), statements)
        return name

    def _boxes(self, ranks: Sequence[int]) -> list[Box]:
        return [Box(((n, n), p.bounds), r) for r in ranks for p in self.rules[r].ports
                for n in [protocol_number(p.protocol, self.family)]]

    def _whole(self, ranks: Sequence[int]) -> dict[int, int]:
        """protocol -> the lowest rank with a whole-protocol entry for it."""
        out: dict[int, int] = {}
        for r in sorted(ranks):
            for p in self.rules[r].ports:
                if p.first is None:
                    out.setdefault(protocol_number(p.protocol, self.family), r)
        return out

    def _maps(self, pieces: list[Box], whole: dict[int, int]) -> list[str]:
        """The port map and the protocol map of a chain (either may be absent)."""
        def verdict(owner: int) -> str:
            return "return" if owner == PARENT else f"jump {self.rule_chain(self.rules[owner])}"
        out = []
        # an ancestor's piece needs an entry only where the protocol map would catch it
        ranged = [b for b in pieces if b.owner != PARENT or b.bounds[0][0] in whole]
        # a protocol whose every port goes to its whole-protocol rule: the protocol map decides
        simple = {n for n, r in whole.items() if all(b.owner == r for b in ranged if b.bounds[0][0] == n)}
        ranged = [b for b in ranged if b.bounds[0][0] not in simple]
        if ranged:
            elements = ", ".join(f"{proto_text(b.bounds[0][0])} . {range_text(b.bounds[1])} : "
                                 f"{verdict(b.owner)}" for b in ranged)
            out.append(f"meta l4proto . th dport vmap {{ {elements} }}")
        if whole:
            elements = ", ".join(f"{proto_text(n)} : {verdict(r)}" for n, r in sorted(whole.items()))
            out.append(f"meta l4proto vmap {{ {elements} }}")
        return out

    def _ids(self, ranks: Sequence[int]) -> str:
        return ", ".join(self.rules[r].id for r in ranks)

    def segment(self, parent: _Ctx, lo: int, hi: int) -> str:
        """A full classifier of the parent's ranks[lo..hi] (segment-tree node)."""
        key = (parent.target, lo, hi)
        if key not in self.segments:
            ranks = parent.ranks[lo:hi + 1]
            pieces = partition(self._boxes(ranks))
            self.segments[key] = self._new_chain(f"ports of {self._ids(ranks)}",
                                                 self._maps(pieces, self._whole(ranks)))
        return self.segments[key]

    def context(self, parent: _Ctx | None, own: tuple[int, ...]) -> _Ctx:
        key = (parent.target if parent else None, own)
        if key not in self.contexts:
            self.contexts[key] = self._context(parent, own)
        return self.contexts[key]

    def _context(self, parent: _Ctx | None, own: tuple[int, ...]) -> _Ctx:
        own_stop = next((r for r in own if not self.rules[r].ports), None)
        parent_stop = parent.stop if parent else None
        stop = min((s for s in (own_stop, parent_stop) if s is not None), default=None)
        live = tuple(r for r in own if self.rules[r].ports and (stop is None or r < stop))
        if parent is not None and not live and stop == parent_stop:
            return parent  # nothing here decides anything the parent does not
        inherited = tuple(r for r in (parent.ranks if parent else ()) if stop is None or r < stop)
        ranks = tuple(sorted((*inherited, *live)))
        statements: list[str] = []
        if live:
            delta = self._delta(live, inherited, ranks)
            if delta is not None:
                statements.append(f"jump {delta}")
        if parent is not None and inherited == parent.ranks and parent.stop in (None, stop):
            statements += parent.statements  # the ancestors' deltas, nearest first (and stop)
            if stop is not None and parent.stop is None:
                statements.append(f"jump {self.rule_chain(self.rules[stop])}")
        else:
            if inherited:  # a port-less rule here cuts the ancestors' rules after it off
                assert parent is not None
                statements.append(f"jump {self._prefix(parent, len(inherited))}")
            if stop is not None:
                statements.append(f"jump {self.rule_chain(self.rules[stop])}")
        if len(statements) == 1:
            return _Ctx(ranks, stop, statements[0].removeprefix("jump "), tuple(statements))
        what = f"first of {self._ids(ranks)}" + (f"; else {self.rules[stop].id}" if stop is not None else "")
        return _Ctx(ranks, stop, self._new_chain(what, statements), tuple(statements))

    def _delta(self, live: tuple[int, ...], inherited: tuple[int, ...], ranks: tuple[int, ...]) -> str | None:
        """The chain of the pieces of protocol·port space where one of `live` (a node's own
        rules) wins over the node's and its ancestors' rules; where an ancestor wins inside
        the own rules' space, `return` (the next delta decides), as the protocol map must not
        catch a packet whose readable port an ancestor's rule decides."""
        own_boxes = self._boxes(live)
        near = _clip(self._boxes(inherited), own_boxes)
        pieces = _merge([Box(b.bounds, b.owner if b.owner in live else PARENT)
                         for b in partition(own_boxes + near)])
        whole = {n: r for n, r in self._whole(ranks).items() if r in live}
        maps = self._maps(pieces, whole)
        if not maps:
            return None
        return self._new_chain(f"ports of {self._ids(live)}", maps)

    def _prefix(self, parent: _Ctx, count: int) -> str:
        """A chain deciding the parent's first `count` ranks (lowest IDs first): the fewest
        segment-tree nodes of the parent's rank list, each a full classifier, shared."""
        nodes = canonical_ranges(0, count - 1, len(parent.ranks))
        if len(nodes) == 1:
            return self.segment(parent, *nodes[0])
        key = (parent.target, "prefix", count)
        if key not in self.segments:
            self.segments[key] = self._new_chain(
                f"ports of {self._ids(parent.ranks[:count])}",
                [f"jump {self.segment(parent, *n)}" for n in nodes])
        return self.segments[key]


def _clip(boxes: list[Box], within: list[Box]) -> list[Box]:
    """`boxes` cut to the protocol·port space of `within` (the parts outside need no entry)."""
    spans: dict[int, list[tuple[int, int]]] = {}
    for b in within:
        spans.setdefault(b.bounds[0][0], []).append(b.bounds[1])
    merged: dict[int, list[tuple[int, int]]] = {}
    for proto, items in spans.items():
        out: list[tuple[int, int]] = []
        for lo, hi in sorted(items):
            if out and lo <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        merged[proto] = out
    starts = {proto: [lo for lo, _ in items] for proto, items in merged.items()}
    clipped = []
    for b in boxes:
        proto, (lo, hi) = b.bounds[0][0], b.bounds[1]
        own = merged.get(proto, [])
        i = max(bisect.bisect_right(starts.get(proto, []), lo) - 1, 0)
        while i < len(own) and own[i][0] <= hi:
            a, z = max(lo, own[i][0]), min(hi, own[i][1])
            if a <= z:
                clipped.append(Box(((proto, proto), (a, z)), b.owner))
            i += 1
    return clipped


def _merge(pieces: list[Box]) -> list[Box]:
    """Join touching pieces of one protocol with the same owner (PARENT pieces merge often)."""
    out: list[Box] = []
    for b in sorted(pieces, key=lambda b: b.bounds):
        if out and out[-1].owner == b.owner and out[-1].bounds[0] == b.bounds[0] \
                and out[-1].bounds[1][1] + 1 == b.bounds[1][0]:
            out[-1] = Box((b.bounds[0], (out[-1].bounds[1][0], b.bounds[1][1])), b.owner)
        else:
            out.append(b)
    return out


def address_layout(rules: Sequence[Rule], family: int, stem: str,
                   rule_chain: Callable[[Rule], str], comment: Callable[[str], str]) -> Layout | None:
    """The address map of `rules` (sorted by ID) in one family, or None if none has an
    address there. `stem` names the chains made here (e.g. `egress_allow_v4`)."""
    rules = [r for r in rules if r.peers.any or (r.peers.ipv4 if family == 4 else r.peers.ipv6)]
    if not rules:
        return None
    emitter = _Emitter(rules, family, stem, rule_chain, comment)
    regions: list[tuple[int, int, str]] = []

    def add(lo: int, hi: int, target: str) -> None:
        if regions and regions[-1][1] + 1 == lo and regions[-1][2] == target:
            regions[-1] = (regions[-1][0], hi, target)
        else:
            regions.append((lo, hi, target))

    # A sweep over the networks, enclosing ones first; the stack holds the networks around
    # the current address: [last address, context, first address not yet emitted].
    stack: list[list[Any]] = []

    def close() -> None:
        hi, ctx, cursor = stack.pop()
        if cursor <= hi:
            add(cursor, hi, ctx.target)
        if stack:
            stack[-1][2] = hi + 1

    if len(rules) == 1:  # one rule (100,000 addresses): no owners to gather
        spans = sorted(network_intervals(rules[0].peers.ipv4 if family == 4 else rules[0].peers.ipv6)
                       if not rules[0].peers.any else [FULL[family]])
        if all(map(lt, map(itemgetter(1), spans), map(itemgetter(0), spans[1:]))):  # apart
            only = emitter.context(None, (0,)).target
            for lo, hi in spans:
                add(lo, hi, only)
            return Layout(family, regions, [emitter.chains[k] for k in sorted(emitter.chains)],
                          [rules[0].id])
    networks = _networks(rules, family)
    if all(map(lt, map(itemgetter(1), networks), map(itemgetter(0), networks[1:]))):  # none nested
        targets: dict[tuple[int, ...], str] = {}  # no stack needed; one loop over 100,000
        for lo, hi, own in networks:
            target = targets.get(own)
            if target is None:
                target = targets[own] = emitter.context(None, own).target
            if regions and regions[-1][1] + 1 == lo and regions[-1][2] == target:
                regions[-1] = (regions[-1][0], hi, target)
            else:
                regions.append((lo, hi, target))
        networks = []
    for lo, hi, own in networks:
        while stack and stack[-1][0] < lo:
            close()
        parent = stack[-1] if stack else None
        if parent is not None and parent[2] < lo:
            add(parent[2], lo - 1, parent[1].target)
        stack.append([hi, emitter.context(parent[1] if parent else None, own), lo])
    while stack:
        close()
    return Layout(family, regions, [emitter.chains[k] for k in sorted(emitter.chains)],
                  sorted(r.id for r in rules))
