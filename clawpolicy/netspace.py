"""Address and port arithmetic: floor 1, shared by lowering, backends and review.

The one place that merges networks and port ranges and splits overlapping rule spaces into
disjoint pieces. nftables rejects overlapping elements in concatenated interval maps (the
kernel answers EEXIST), and a verdict map must send each packet to exactly one rule, so the
backend needs, for every packet, the one rule that decides it. `partition` splits boxes
into disjoint pieces, the lowest owner winning, by sweeping one dimension at a time (the
backend gives it protocol·port boxes only: addresses are a tree of networks there, see
backends/nft_layout.py); `canonical_ranges` cuts a run of rule ranks into the nodes of a
segment tree, so address regions can share port classifiers instead of each repeating the
product of their rules' ports.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter, lt
from typing import Literal, TypeVar, overload

from clawpolicy.ir import PortRange, Protocol

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
N = TypeVar("N", ipaddress.IPv4Network, ipaddress.IPv6Network)

# IANA protocol numbers (nft's inet_proto); ICMP depends on the address family.
PROTOCOL_NUMBERS = {Protocol.TCP: 6, Protocol.UDP: 17}
ICMP_NUMBER = {4: 1, 6: 58}


def merge_networks(networks: Iterable[N]) -> tuple[N, ...]:
    """Collapse overlapping and adjacent networks; sorted and canonical.

    Sorting and sweeping on integers keeps 100,000 networks cheap; only runs of networks
    that touch go through `ipaddress.collapse_addresses` (which compares objects)."""
    spans = sorted([(int(n.network_address), n.prefixlen, n) for n in networks], key=itemgetter(0))
    if not spans:
        return ()
    bits = spans[0][2].max_prefixlen
    out: list[N] = []
    run: list[N] = []
    run_end = -2
    for lo, prefix, net in spans:
        if run and lo > run_end + 1:
            out.extend(run if len(run) == 1 else ipaddress.collapse_addresses(run))
            run = []
        run.append(net)
        hi = lo + (1 << (bits - prefix)) - 1
        run_end = hi if len(run) == 1 else max(run_end, hi)
    if run:
        out.extend(run if len(run) == 1 else ipaddress.collapse_addresses(run))
    return tuple(out)


@overload
def networks_of_keys(keys: Sequence[int], family: Literal[4]) -> tuple[ipaddress.IPv4Network, ...]: ...
@overload
def networks_of_keys(keys: Sequence[int], family: Literal[6]) -> tuple[ipaddress.IPv6Network, ...]: ...
def networks_of_keys(keys: Sequence[int], family: int) -> tuple[IPNetwork, ...]:
    """`merge_networks` of networks given as `address << 8 | prefix` integers (a list of
    100,000 literals): sorted and deduplicated as integers, a network object made only per
    result. Networks that touch or overlap (rare in such lists) merge as `merge_networks` does."""
    ordered = sorted(set(keys))
    bits = 32 if family == 4 else 128
    starts = [k >> 8 for k in ordered]
    prefixes = [k & 255 for k in ordered]
    ends = [lo + (1 << (bits - p)) for lo, p in zip(starts, prefixes)]  # one past the last
    if not all(map(lt, ends, starts[1:])):  # some touch: leave it to the general merge
        if family == 4:
            return merge_networks([ipv4_network(lo, p) for lo, p in zip(starts, prefixes)])
        return merge_networks([ipaddress.IPv6Network((lo, p)) for lo, p in zip(starts, prefixes)])
    if family == 4:
        return tuple(map(ipv4_network, starts, prefixes))
    return tuple(ipaddress.IPv6Network((lo, p)) for lo, p in zip(starts, prefixes))


def merge_ports(ports: Iterable[PortRange]) -> tuple[PortRange, ...]:
    """Merge overlapping and adjacent ranges per protocol; a whole-protocol entry absorbs the rest."""
    by_proto: dict[Protocol, list[tuple[int, int]]] = {}
    whole: set[Protocol] = set()
    for p in ports:
        if p.first is None or p.last is None:
            whole.add(p.protocol)
        else:
            by_proto.setdefault(p.protocol, []).append((p.first, p.last))
    out: list[PortRange] = []
    for proto in sorted(set(by_proto) | whole, key=lambda x: x.value):
        if proto in whole:
            out.append(PortRange(protocol=proto))
            continue
        merged: list[list[int]] = []
        for lo, hi in sorted(by_proto[proto]):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        out.extend(PortRange(protocol=proto, first=lo, last=hi) for lo, hi in merged)
    return tuple(out)


def protocol_number(protocol: Protocol, family: int) -> int:
    return ICMP_NUMBER[family] if protocol is Protocol.ICMP else PROTOCOL_NUMBERS[protocol]


# ---------------------------------------------------------------------------- partitioning

Interval = tuple[int, int]  # inclusive bounds


@dataclass(frozen=True)
class Box:
    """A product of inclusive intervals, one per dimension, owned by `owner` (lower wins)."""

    bounds: tuple[Interval, ...]
    owner: int


def partition(boxes: Sequence[Box]) -> list[Box]:
    """Split possibly overlapping boxes into disjoint ones; where boxes overlap, the one with
    the lowest owner keeps the space. Touching pieces with the same owner are merged, so one
    owner's contiguous space stays one element. Output is sorted, hence deterministic."""
    if not boxes:
        return []
    return _partition(list(boxes))


def _partition(boxes: list[Box]) -> list[Box]:
    """Partition along the first dimension, recursing into the rest where boxes overlap."""
    if not boxes[0].bounds:
        return [Box((), min(b.owner for b in boxes))]
    ordered = sorted(boxes, key=lambda b: (b.bounds[0], b.owner))
    pieces: list[Box] = []
    cluster: list[Box] = []
    cluster_end = -1
    for box in ordered:  # clusters: runs of boxes that overlap (transitively) in this dimension
        if cluster and box.bounds[0][0] > cluster_end:
            pieces.extend(cluster if len(cluster) == 1 else _sweep(cluster))
            cluster = []
        cluster.append(box)
        cluster_end = box.bounds[0][1] if len(cluster) == 1 else max(cluster_end, box.bounds[0][1])
    pieces.extend(cluster if len(cluster) == 1 else _sweep(cluster))
    return _merge_adjacent(pieces)


def _sweep(cluster: list[Box]) -> list[Box]:
    """Cut overlapping boxes at every start and end in the first dimension; each segment's
    active boxes are partitioned in the remaining dimensions."""
    starts: dict[int, list[int]] = {}
    ends: dict[int, list[int]] = {}
    for i, b in enumerate(cluster):
        starts.setdefault(b.bounds[0][0], []).append(i)
        ends.setdefault(b.bounds[0][1] + 1, []).append(i)
    points = sorted(starts.keys() | ends.keys())
    active: set[int] = set()
    pieces: list[Box] = []
    for lo, nxt in zip(points, points[1:]):
        active.difference_update(ends.get(lo, ()))
        active.update(starts.get(lo, ()))
        if not active:
            continue
        rest = [Box(cluster[i].bounds[1:], cluster[i].owner) for i in sorted(active)]
        for sub in _partition(rest):
            pieces.append(Box(((lo, nxt - 1),) + sub.bounds, sub.owner))
    return pieces


def _merge_adjacent(pieces: list[Box]) -> list[Box]:
    """Join pieces that touch in the first dimension and agree on owner and all the others."""
    pieces.sort(key=lambda b: (b.bounds[1:], b.owner, b.bounds[0]))
    out: list[Box] = []
    for b in pieces:
        if out:
            last = out[-1]
            if (last.owner == b.owner and last.bounds[1:] == b.bounds[1:]
                    and last.bounds[0][1] + 1 == b.bounds[0][0]):
                out[-1] = Box(((last.bounds[0][0], b.bounds[0][1]),) + b.bounds[1:], b.owner)
                continue
        out.append(b)
    out.sort(key=lambda b: b.bounds)
    return out


def canonical_ranges(first: int, last: int, size: int) -> list[Interval]:
    """`first..last` as the fewest nodes of the segment tree over `0..size-1`, in order.

    Any run of ranks is the union of at most 2·log2(size) such nodes, and the nodes of the
    whole tree hold every rank log2(size) times, so classifiers built per node and shared
    between regions cost O(n log n) elements in all, whatever the overlaps."""
    out: list[Interval] = []

    def visit(lo: int, hi: int) -> None:
        if hi < first or last < lo:
            return
        if first <= lo and hi <= last:
            out.append((lo, hi))
            return
        mid = (lo + hi) // 2
        visit(lo, mid)
        visit(mid + 1, hi)

    visit(0, size - 1)
    return out


def _address_text(value: int, family: int) -> str:
    if family == 4:
        return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"
    return str(ipaddress.IPv6Address(value))


def interval_to_text(lo: int, hi: int, family: int) -> str:
    """An address interval as nft writes it: a CIDR where aligned, else first-last."""
    size = hi - lo + 1
    if size & (size - 1) == 0 and lo % size == 0:  # one aligned network: the common case
        bits = 32 if family == 4 else 128
        prefix = bits - (size.bit_length() - 1)
        text = _address_text(lo, family)
        return text if prefix == bits else f"{text}/{prefix}"
    cls = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
    first, last = cls(lo), cls(hi)
    nets: list[IPNetwork] = list(ipaddress.summarize_address_range(first, last))
    if len(nets) == 1:
        net = nets[0]
        return str(net.network_address) if net.num_addresses == 1 else str(net)
    return f"{first}-{last}"


class IPv4Net(ipaddress.IPv4Network):
    """An IPv4Network built by `ipv4_network` from integers lowering already checked.

    The stdlib constructor re-parses and re-checks, and gives every /32 its own `hosts`
    closure: 430 bytes and ~2 µs per network, against 190 bytes here, which is most of a
    100,000-address policy's IR (issue 14). Equal, hashed, ordered and printed like any
    IPv4Network (it is one); `hosts()` answers as the stdlib's /31 and /32 do."""

    __slots__ = ()

    def hosts(self) -> Iterator[ipaddress.IPv4Address]:
        if self.prefixlen >= 31:  # the stdlib's per-instance special cases
            return iter(self)
        return super().hosts()

    def __repr__(self) -> str:
        return f"IPv4Network({str(self)!r})"


_MASK4 = [ipaddress.IPv4Network._make_netmask(p)[0] for p in range(33)]  # type: ignore[attr-defined]


def ipv4_network(value: int, prefix: int) -> ipaddress.IPv4Network:
    """`IPv4Network((value, prefix))` for a network the caller has checked: 0 <= value <
    2**32, 0 <= prefix <= 32, no host bits set."""
    address = object.__new__(ipaddress.IPv4Address)
    address._ip = value  # type: ignore[attr-defined]
    net = object.__new__(IPv4Net)
    net.network_address = address
    net.netmask = _MASK4[prefix]
    net._prefixlen = prefix  # type: ignore[attr-defined]
    return net


def network_interval(net: IPNetwork) -> Interval:
    """First and last address as integers (no intermediate address objects)."""
    lo = int(net.network_address)
    return lo, lo + (1 << (net.max_prefixlen - net.prefixlen)) - 1


Labels = frozenset[object]


def overlay(boxes: Sequence[tuple[tuple[Interval, ...], object]]) -> list[tuple[tuple[Interval, ...], Labels]]:
    """Cut labelled boxes into disjoint regions, each with the set of labels that cover it.

    Where `partition` keeps one winner per piece (what a verdict map needs), `overlay` keeps
    them all, so a caller can decide each region under two policies at once (`diff`). Space
    no box covers is left out. Touching regions with equal labels are merged; sorted."""
    if not boxes:
        return []
    # Equal boxes become one box with all their labels (two versions of a policy share most
    # of their networks), and equal label sets one object: fewer, cheaper items to sweep.
    by_bounds: dict[tuple[Interval, ...], list[object]] = {}
    for b, label in boxes:
        by_bounds.setdefault(b, []).append(label)
    interned: dict[frozenset[object], Labels] = {}
    items = []
    for b, labels in by_bounds.items():
        key = frozenset(labels)
        items.append((b, interned.setdefault(key, key)))
    return _overlay(items)


def _overlay(items: list[tuple[tuple[Interval, ...], Labels]]) -> list[tuple[tuple[Interval, ...], Labels]]:
    if not items[0][0]:
        return [((), frozenset().union(*(labels for _, labels in items)))]
    starts: dict[int, list[int]] = {}
    ends: dict[int, list[int]] = {}
    for i, (b, _) in enumerate(items):
        starts.setdefault(b[0][0], []).append(i)
        ends.setdefault(b[0][1] + 1, []).append(i)
    cuts = sorted(starts.keys() | ends.keys())
    active: set[int] = set()
    out: list[tuple[tuple[Interval, ...], Labels]] = []
    # Segments whose active boxes agree in the other dimensions (100,000 networks of one rule)
    # share the sub-overlay: computed once per distinct set, not once per segment.
    done: dict[frozenset[tuple[tuple[Interval, ...], Labels]], list[tuple[tuple[Interval, ...], Labels]]] = {}
    for lo, nxt in zip(cuts, cuts[1:]):
        active.difference_update(ends.get(lo, ()))
        active.update(starts.get(lo, ()))
        if len(active) == 1:  # the common case: one box here, nothing to cut
            (only,) = active
            out.append((((lo, nxt - 1),) + items[only][0][1:], items[only][1]))
        elif active:
            key = frozenset((items[i][0][1:], items[i][1]) for i in active)
            sub = done.get(key)
            if sub is None:
                sub = done[key] = _overlay(sorted(key, key=lambda r: (r[0], sorted(map(repr, r[1])))))
            out.extend((((lo, nxt - 1),) + r, labels) for r, labels in sub)
    rank = {labels: i for i, labels in enumerate(sorted({labels for _, labels in out},
                                                         key=lambda ls: sorted(map(repr, ls))))}
    out.sort(key=lambda r: (r[0][1:], rank[r[1]], r[0][0]))
    merged: list[tuple[tuple[Interval, ...], Labels]] = []
    for bounds, labels in out:
        if merged:
            last_bounds, last_labels = merged[-1]
            if (last_labels == labels and last_bounds[1:] == bounds[1:]
                    and last_bounds[0][1] + 1 == bounds[0][0]):
                merged[-1] = (((last_bounds[0][0], bounds[0][1]),) + bounds[1:], labels)
                continue
        merged.append((bounds, labels))
    merged.sort(key=lambda r: r[0])
    return merged


L = TypeVar("L")


def segments(items: Iterable[tuple[Interval, frozenset[L]]], base: frozenset[L] = frozenset(),
             span: Interval | None = None) -> list[tuple[Interval, frozenset[L]]]:
    """One dimension of `overlay`, for many intervals: disjoint segments, each with the union
    of the labels of the intervals covering it, plus `base` (labels that cover everything:
    `any` rules, `dns local`); with `span`, the gaps between intervals too (labelled `base`).

    Intervals that touch no other (100,000 networks of one rule, most of them alone) pass
    straight through; only runs of overlapping ones are swept. Equal label sets come out as
    one object, so a caller can cache per set. Sorted; adjacent segments are not merged."""
    ordered = sorted(items, key=lambda item: item[0])
    interned: dict[frozenset[L], frozenset[L]] = {}
    with_base: dict[frozenset[L], frozenset[L]] = {}

    def labelled(labels: frozenset[L]) -> frozenset[L]:
        hit = with_base.get(labels)
        if hit is None:
            union = labels | base
            hit = with_base[labels] = interned.setdefault(union, union)
        return hit

    out: list[tuple[Interval, frozenset[L]]] = []
    cursor = span[0] if span is not None else None
    i, count = 0, len(ordered)
    while i < count:
        (lo, hi), labels = ordered[i]
        j, end = i + 1, hi
        while j < count and ordered[j][0][0] <= end:
            end = max(end, ordered[j][0][1])
            j += 1
        if cursor is not None and lo > cursor and base:
            out.append(((cursor, lo - 1), base))
        if j == i + 1:
            out.append(((lo, hi), labelled(labels)))
        else:
            out.extend(_sweep_labels(ordered[i:j], base, interned))
        cursor = end + 1 if cursor is not None else None
        i = j
    if span is not None and cursor is not None and cursor <= span[1] and base:
        out.append(((cursor, span[1]), base))
    return out


def _sweep_labels(run: list[tuple[Interval, frozenset[L]]], base: frozenset[L],
                  interned: dict[frozenset[L], frozenset[L]]) -> Iterator[tuple[Interval, frozenset[L]]]:
    """Segments of a run of overlapping intervals: cut at every start and end."""
    events: dict[int, list[tuple[int, frozenset[L]]]] = {}
    for (lo, hi), labels in run:
        events.setdefault(lo, []).append((1, labels))
        events.setdefault(hi + 1, []).append((-1, labels))
    counts: dict[L, int] = {}
    points = sorted(events)
    for here, nxt in zip(points, points[1:]):
        for delta, labels in events[here]:
            for label in labels:
                left = counts.get(label, 0) + delta
                if left:
                    counts[label] = left
                else:
                    del counts[label]
        if counts:
            key = frozenset(counts) | base
            yield (here, nxt - 1), interned.setdefault(key, key)


_INTERVALS: dict[int, tuple[Sequence[IPNetwork], tuple[Interval, ...]]] = {}
_INTERVALS_KEPT = 64  # tuples remembered: a run's policies (old and new), not a server's history


_IP_AND_PREFIX = attrgetter("network_address._ip", "_prefixlen")


def network_intervals(networks: Sequence[IPNetwork]) -> list[Interval]:
    """`network_interval` of each network; for IPv4 read from the attributes `ipv4_network`
    sets (the public `int()` and `prefixlen` are a Python call each, 100,000 times)."""
    if networks and all(type(n) is IPv4Net for n in networks):
        return [(lo, lo + (1 << (32 - prefix)) - 1) for lo, prefix in map(_IP_AND_PREFIX, networks)]
    return list(map(network_interval, networks))


def intervals(networks: Sequence[IPNetwork]) -> tuple[Interval, ...]:
    """`network_interval` of each network of an IR tuple, sorted, remembered for the run
    (by identity; the tuple is kept, so its id stays its own): diff, lint and simulate read
    the same 100,000 networks several times, each reading paid 200,000 address objects."""
    hit = _INTERVALS.get(id(networks))
    if hit is not None and hit[0] is networks:
        return hit[1]
    out = tuple(sorted(network_intervals(networks)))
    if len(_INTERVALS) >= _INTERVALS_KEPT:
        _INTERVALS.pop(next(iter(_INTERVALS)))
    _INTERVALS[id(networks)] = (networks, out)
    return out
