"""How a reach change reads: floor 3, beside `reach`. CIDR lists and summaries of address
intervals, counted on integers where the list would be long: the 900,000 CIDRs between
100,000 networks are written out only for the JSON (`PeerList`), never for a summary."""

from __future__ import annotations

import functools
import ipaddress
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, overload

from clawpolicy.netspace import Interval, interval_to_text, network_interval


class ReachChange(Protocol):
    """What the text needs of a `reach.ReachChange` (a protocol, so this module stays below
    reach.py, which uses it)."""

    @property
    def family(self) -> int | None: ...

    @property
    def intervals(self) -> tuple[Interval, ...]: ...

    @property
    def names(self) -> tuple[str, ...]: ...

    @property
    def excluded(self) -> tuple[str, ...]: ...

    @property
    def size(self) -> int: ...

    @property
    def peers(self) -> tuple[str, ...]: ...


def summary(change: ReachChange, limit: int) -> str:
    """The peers for a reader: a CIDR list, or `NET except GAPS` when that is shorter
    (0.0.0.0/0 minus the tailnet is two items, not thirteen); past `limit` items, a count
    (`0.0.0.0/0 except 100,000 networks`): the full list is `peers`, in the JSON. Counted
    on integers, so the 900,000 CIDRs between 100,000 networks are never written out."""
    if change.family is None:
        names = capped(change.names, limit, "names")
        return f"{names} (except {capped(change.excluded, limit, 'names')})" if change.excluded else names
    family = change.family
    count = sum(cidr_count(lo, hi) for lo, hi in change.intervals)
    if count <= 3:
        return ", ".join(change.peers)
    lo, hi = change.intervals[0][0], change.intervals[-1][1]
    bits = 32 if family == 4 else 128
    size = 1 << max(1, (hi - lo).bit_length())
    while lo // size != hi // size:
        size <<= 1
    size = min(size, 1 << bits)
    outer_lo = lo - lo % size
    outer = (outer_lo, outer_lo + size - 1)
    holes = merge_intervals(gaps(outer, change.intervals))
    gap_count = sum(cidr_count(g_lo, g_hi) for g_lo, g_hi in holes)
    if gap_count + 1 >= count:
        if count > limit:
            first = cidrs(*change.intervals[0], family)[0]
            last = cidrs(*change.intervals[-1], family)[-1]
            return f"{count:,} networks from {first} to {last} ({change.size:,} addresses)"
        return ", ".join(change.peers)
    shown = list(itertools.islice((t for g_lo, g_hi in holes for t in cidrs(g_lo, g_hi, family)),
                                  limit if gap_count > limit else gap_count))
    if gap_count <= limit:
        listed = ", ".join(shown)
    elif limit <= 0:
        listed = f"{gap_count:,} networks"
    else:
        listed = f"{', '.join(shown)} and {gap_count - limit:,} more networks"
    return f"{cidrs(*outer, family)[0]} except {listed}"


class PeerList(Sequence[str]):
    """A change's peers (and the names it leaves out, as `not NAME`), written out when first
    read: the JSON lists them all, the text and Markdown summaries only count them, and
    `0.0.0.0/0 except 100,000 networks` is 900,000 CIDRs."""

    def __init__(self, change: ReachChange) -> None:
        self._change = change

    @functools.cached_property
    def _items(self) -> tuple[str, ...]:
        return self._change.peers + tuple(f"not {e}" for e in self._change.excluded)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        c = self._change
        return bool(c.intervals or c.names or c.excluded)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...

    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        return self._items[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __eq__(self, other: object) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, (PeerList, tuple)) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"PeerList({len(self)} peers)"


def merge_intervals(members: Iterable[Interval]) -> tuple[Interval, ...]:
    merged: list[list[int]] = []
    for lo, hi in sorted(members):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return tuple((lo, hi) for lo, hi in merged)


def gaps(outer: Interval, inside: Sequence[Interval]) -> Iterator[Interval]:
    cursor = outer[0]
    for lo, hi in inside:
        if lo > cursor:
            yield cursor, lo - 1
        cursor = hi + 1
    if cursor <= outer[1]:
        yield cursor, outer[1]


def capped(items: Sequence[str], limit: int, noun: str) -> str:
    if len(items) <= limit:
        return ", ".join(items)
    return f"{len(items):,} {noun}" if limit <= 0 else (
        f"{', '.join(items[:limit])} and {len(items) - limit:,} more {noun}")


def cidr_count(lo: int, hi: int) -> int:
    """How many CIDRs `_cidrs(lo, hi)` gives (the fewest aligned blocks), without them:
    split at the highest bit where lo and hi differ; each side takes one block per set bit."""
    size = hi - lo + 1
    if size & (size - 1) == 0 and lo % size == 0:
        return 1
    half = 1 << ((lo ^ hi).bit_length() - 1)
    mid = hi - hi % half
    return (mid - lo).bit_count() + (hi + 1 - mid).bit_count()


def cidrs(lo: int, hi: int, family: int) -> list[str]:
    size = hi - lo + 1
    if size & (size - 1) == 0 and lo % size == 0:  # one aligned network: the common case
        return [interval_to_text(lo, hi, family)]
    cls = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
    nets = ipaddress.summarize_address_range(cls(lo), cls(hi))
    return [interval_to_text(*network_interval(n), family) for n in nets]
