"""netspace: merging networks and ports, address intervals as nft text, and `partition`,
checked against brute force over small grids."""

from __future__ import annotations

import ipaddress
import itertools
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clawpolicy.ir import PortRange, Protocol
from clawpolicy.netspace import (
    Box,
    interval_to_text,
    ipv4_network,
    merge_networks,
    merge_ports,
    network_interval,
    partition,
    protocol_number,
)

TCP, UDP, ICMP = Protocol.TCP, Protocol.UDP, Protocol.ICMP


def pr(protocol: Protocol, first: int | None = None, last: int | None = None) -> PortRange:
    return PortRange(protocol=protocol, first=first, last=last if last is not None else first)


def test_merge_ports(subtests: pytest.Subtests) -> None:
    cases = [
        ("empty", [], []),
        ("overlap", [pr(TCP, 53), pr(TCP, 52, 54)], [pr(TCP, 52, 54)]),
        ("adjacent", [pr(TCP, 1, 10), pr(TCP, 11, 20)], [pr(TCP, 1, 20)]),
        ("gap kept", [pr(TCP, 1, 10), pr(TCP, 12, 20)], [pr(TCP, 1, 10), pr(TCP, 12, 20)]),
        ("contained", [pr(TCP, 1, 100), pr(TCP, 5, 6)], [pr(TCP, 1, 100)]),
        ("unsorted input", [pr(TCP, 80), pr(TCP, 22)], [pr(TCP, 22), pr(TCP, 80)]),
        ("protocols apart", [pr(UDP, 53), pr(TCP, 53)], [pr(TCP, 53), pr(UDP, 53)]),
        ("whole protocol absorbs", [pr(UDP, 53), pr(UDP)], [pr(UDP)]),
        ("icmp", [pr(ICMP), pr(TCP, 22), pr(ICMP)], [pr(ICMP), pr(TCP, 22)]),
        ("duplicates", [pr(TCP, 443), pr(TCP, 443)], [pr(TCP, 443)]),
    ]
    for name, given_ports, expected in cases:
        with subtests.test(name):
            assert merge_ports(given_ports) == tuple(expected)


def test_merge_networks(subtests: pytest.Subtests) -> None:
    v4, v6 = ipaddress.IPv4Network, ipaddress.IPv6Network
    cases: list[tuple[str, list[Any], list[Any]]] = [
        ("halves", [v4("10.0.0.0/25"), v4("10.0.0.128/25")], [v4("10.0.0.0/24")]),
        ("contained", [v4("10.0.0.0/8"), v4("10.1.2.3/32")], [v4("10.0.0.0/8")]),
        ("not aligned", [v4("10.0.0.128/25"), v4("10.0.1.0/25")],
         [v4("10.0.0.128/25"), v4("10.0.1.0/25")]),
        ("sorted", [v4("192.0.2.1/32"), v4("10.0.0.0/8")], [v4("10.0.0.0/8"), v4("192.0.2.1/32")]),
        ("ipv6", [v6("2001:db8::/33"), v6("2001:db8:8000::/33")], [v6("2001:db8::/32")]),
        ("empty", [], []),
    ]
    for name, nets, expected in cases:
        with subtests.test(name):
            assert merge_networks(nets) == tuple(expected)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(24, 32)), max_size=25), st.booleans())
def test_merge_networks_is_collapse_addresses(items: list[tuple[int, int]], ipv6: bool) -> None:
    """The integer sweep agrees with the stdlib on random, often touching, networks."""
    nets: list[Any] = []
    for octet, prefix in items:
        value = ((10 << 24) | (octet << 2)) & ~((1 << (32 - prefix)) - 1)
        nets.append(ipaddress.IPv6Network(((0x20010DB8 << 96) | value, prefix + 96)) if ipv6
                    else ipaddress.IPv4Network((value, prefix)))
    assert merge_networks(nets) == tuple(ipaddress.collapse_addresses(nets))


def test_ipv4_network_is_the_stdlib_network(subtests: pytest.Subtests) -> None:
    for value, prefix in ((0, 0), (10 << 24, 8), ((192 << 24) | (2 << 8) | 4, 31),
                          ((192 << 24) | (2 << 8) | 7, 32), (2**32 - 1, 32)):
        with subtests.test(f"{value}/{prefix}"):
            fast, slow = ipv4_network(value, prefix), ipaddress.IPv4Network((value, prefix))
            assert isinstance(fast, ipaddress.IPv4Network)
            assert (fast, hash(fast), str(fast), repr(fast)) == (slow, hash(slow), str(slow), repr(slow))
            assert (fast.broadcast_address, fast.num_addresses) == (slow.broadcast_address, slow.num_addresses)
            assert pickle.loads(pickle.dumps(fast)) == slow
            if prefix >= 24:
                assert list(fast.hosts()) == list(slow.hosts())


def test_interval_to_text(subtests: pytest.Subtests) -> None:
    def iv(net: str) -> tuple[int, int]:
        return network_interval(ipaddress.ip_network(net))

    cases = [
        ("host", (*iv("192.0.2.1/32"), 4), "192.0.2.1"),
        ("cidr", (*iv("10.0.0.0/8"), 4), "10.0.0.0/8"),
        ("range", (int(ipaddress.IPv4Address("10.0.0.1")), int(ipaddress.IPv4Address("10.0.0.6")), 4),
         "10.0.0.1-10.0.0.6"),
        ("everything v4", (0, 2**32 - 1, 4), "0.0.0.0/0"),
        ("host v6", (*iv("::1/128"), 6), "::1"),
        ("cidr v6", (*iv("fd7a:115c:a1e0::/48"), 6), "fd7a:115c:a1e0::/48"),
        ("range v6", (1, 3, 6), "::1-::3"),
    ]
    for name, (lo, hi, family), expected in cases:
        with subtests.test(name):
            assert interval_to_text(lo, hi, family) == expected


def test_protocol_numbers() -> None:
    assert [protocol_number(TCP, 4), protocol_number(UDP, 6)] == [6, 17]
    assert [protocol_number(ICMP, 4), protocol_number(ICMP, 6)] == [1, 58]


def test_partition_examples(subtests: pytest.Subtests) -> None:
    cases = [
        ("empty", [], []),
        ("one", [Box(((1, 5),), 0)], [Box(((1, 5),), 0)]),
        ("lower owner wins the overlap", [Box(((1, 5),), 1), Box(((3, 8),), 0)],
         [Box(((1, 2),), 1), Box(((3, 8),), 0)]),
        ("same owner merges", [Box(((1, 5),), 0), Box(((6, 8),), 0)], [Box(((1, 8),), 0)]),
        ("hole punched", [Box(((0, 9), (0, 9)), 1), Box(((3, 4), (3, 4)), 0)],
         [Box(((0, 2), (0, 9)), 1), Box(((3, 4), (0, 2)), 1), Box(((3, 4), (3, 4)), 0),
          Box(((3, 4), (5, 9)), 1), Box(((5, 9), (0, 9)), 1)]),
    ]
    for name, boxes, expected in cases:
        with subtests.test(name):
            assert partition(boxes) == expected


# ---------------------------------------------------------------- partition, by brute force

SIDE = 6  # coordinates 0..5 in every dimension: small enough to enumerate every point


@st.composite
def boxes(draw: st.DrawFn) -> list[Box]:
    dims = draw(st.integers(1, 3))
    interval = st.tuples(st.integers(0, SIDE - 1), st.integers(0, SIDE - 1)).map(
        lambda t: (min(t), max(t)))
    return draw(st.lists(st.builds(
        Box, st.tuples(*[interval] * dims), st.integers(0, 4)), max_size=7))


def _covers(box: Box, point: tuple[int, ...]) -> bool:
    return all(lo <= x <= hi for (lo, hi), x in zip(box.bounds, point, strict=True))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(boxes())
def test_partition_properties(given_boxes: list[Box]) -> None:
    out = partition(given_boxes)
    assert out == sorted(out, key=lambda b: b.bounds)  # deterministic order
    if not given_boxes:
        assert out == []
        return
    dims = len(given_boxes[0].bounds)
    for box in out:
        assert len(box.bounds) == dims and all(lo <= hi for lo, hi in box.bounds)
    for point in itertools.product(range(SIDE), repeat=dims):
        owners = [b.owner for b in given_boxes if _covers(b, point)]
        pieces = [b for b in out if _covers(b, point)]
        if owners:
            assert len(pieces) == 1, (point, pieces)  # covered exactly once: pairwise disjoint
            assert pieces[0].owner == min(owners), point
        else:
            assert pieces == [], point  # nothing outside the inputs


def test_overlay_labels_every_point_with_the_boxes_that_cover_it() -> None:
    """Checked point by point against brute force on a small grid."""
    import random

    from clawpolicy.netspace import overlay

    rng = random.Random(7)
    for _ in range(50):
        boxes = []
        for label in range(rng.randint(1, 6)):
            a, b = sorted(rng.randint(0, 15) for _ in range(2))
            c, d = sorted(rng.randint(0, 7) for _ in range(2))
            boxes.append((((a, b), (c, d)), label))
        regions = overlay(boxes)
        for x in range(16):
            for y in range(8):
                want = {lab for ((a, b), (c, d)), lab in boxes if a <= x <= b and c <= y <= d}
                got = [labels for ((a, b), (c, d)), labels in regions if a <= x <= b and c <= y <= d]
                assert got == ([want] if want else [])


@given(st.integers(1, 300).flatmap(lambda size: st.tuples(
    st.just(size), st.integers(0, size - 1), st.integers(0, size - 1))))
def test_canonical_ranges_cover_a_run_with_few_nodes(args: tuple[int, int, int]) -> None:
    """Any run of ranks is the disjoint, ordered union of at most 2·log2(size) tree nodes, and
    every node is one the segment tree over 0..size-1 really has (so nodes are shared)."""
    from clawpolicy.netspace import canonical_ranges

    size, a, b = args
    first, last = min(a, b), max(a, b)
    nodes = canonical_ranges(first, last, size)
    assert [r for lo, hi in nodes for r in range(lo, hi + 1)] == list(range(first, last + 1))
    assert len(nodes) <= 2 * max(size - 1, 1).bit_length()

    def tree(lo: int, hi: int) -> set[tuple[int, int]]:
        if lo == hi:
            return {(lo, hi)}
        mid = (lo + hi) // 2
        return {(lo, hi)} | tree(lo, mid) | tree(mid + 1, hi)

    assert set(nodes) <= tree(0, size - 1)
