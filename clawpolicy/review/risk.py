"""How risky a widened reach is: floor 3, `diff`'s rules, shared with `suggest`.

Risk follows what becomes reachable, never which edit did it (a rule's peers, a new rule, a
define, an included file, a catalog group): its size (more addresses than half a /8, IPv6 a
/32, counted over everything one rule newly opens) and its kind (the gateway port beyond
loopback and the tailnet, mDNS, cloud metadata, names under a public suffix, any name, DNS).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from clawpolicy.evaluate import LOOPBACK
from clawpolicy.ir import Direction, Protocol
from clawpolicy.names import METADATA_ENDPOINTS, is_public_suffix
from clawpolicy.review.exposure import WIDE_PREFIX
from clawpolicy.review.protected import GATEWAY_PORT, MDNS, TAILNET
from clawpolicy.review.reach import ANY_NAME, ReachChange


class Risk(str, enum.Enum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        return {"high": 2, "medium": 1, "low": 0}[self.value]


def _trusted(address_interval: tuple[int, int], family: int) -> bool:
    lo, hi = address_interval
    for net in (*LOOPBACK, *TAILNET):
        if net.version == family and int(net.network_address) <= lo and hi <= int(net.broadcast_address):
            return True
    return False


def wide_size(family: int) -> int:
    """More addresses than this is "a wide range": more than half of a /8 (IPv6: a /32).

    A size, not a prefix, so what is newly reachable counts whatever its shape: widening
    10.20.4.0/22 to 10.0.0.0/8 opens a /8 less a /22, which no single CIDR of the change
    shows as a /8, and two new /9s are as wide as one /8."""
    bits = 32 if family == 4 else 128
    return 1 << (bits - WIDE_PREFIX[family] - 1)


def _wide(size: int, family: int | None) -> bool:
    return family is not None and size > wide_size(family)


def reach_risk(c: ReachChange, total: int = 0) -> tuple[Risk, str]:
    """The risk of one reach change. `total`: the addresses the same rule newly opens in
    the same direction and family across every change (the change may be one of several
    pieces, cut where the old version decided differently); the larger of both counts."""
    if not c.widened:
        return Risk.LOW, "narrower reach"
    size = max(c.size, total)
    wide = _wide(size, c.family)
    amount = f"{size:,} addresses newly reachable" if c.family is not None else ""
    if c.direction is Direction.INGRESS:
        if c.covers_port(Protocol.TCP, GATEWAY_PORT) and c.family is not None and not all(
                _trusted(i, c.family) for i in c.intervals):
            return Risk.HIGH, f"the gateway port {GATEWAY_PORT}/tcp is reachable beyond loopback and the tailnet"
        if ANY_NAME in c.names or wide:
            return Risk.HIGH, f"ingress from a wide range ({amount})" if wide else "ingress from any name"
        return Risk.MEDIUM, "new ingress"
    if c.covers_port(Protocol.UDP, 5353) and any(c.family is not None and c.covers_address(a) for a in MDNS):
        return Risk.HIGH, "mDNS: the gateway can announce itself on the local network"
    if c.family is not None and any(c.covers_address(a) for a, _ in METADATA_ENDPOINTS):
        return Risk.HIGH, "the cloud metadata service hands out instance credentials"
    if any(n.startswith("*.") and is_public_suffix(n[2:]) for n in c.names):
        return Risk.HIGH, "egress to every name under a public suffix (names anyone can register)"
    if ANY_NAME in c.names:
        return Risk.HIGH, "egress to any name"
    if wide:
        return Risk.HIGH, f"egress to a wide range ({amount})"
    if c.covers_port(Protocol.UDP, 53) or c.covers_port(Protocol.TCP, 53):
        return Risk.MEDIUM, "DNS can carry data out: check it goes to your resolvers only"
    return Risk.MEDIUM, "new egress"


def opened(changes: Sequence[ReachChange]) -> dict[tuple[Direction, int, str], int]:
    """Addresses each rule newly opens, per direction and family (the union of its pieces)."""
    spans: dict[tuple[Direction, int, str], list[tuple[int, int]]] = {}
    for c in changes:
        if c.widened and c.family is not None:
            spans.setdefault((c.direction, c.family, c.new.rule_id), []).extend(c.intervals)
    totals: dict[tuple[Direction, int, str], int] = {}
    for key, intervals in spans.items():
        total, end = 0, -1
        for lo, hi in sorted(intervals):
            if hi > end:
                total += hi - max(lo, end + 1) + 1
                end = hi
        totals[key] = total
    return totals
