"""Flow universes for kernel tests: which remote hosts and ports to build in the lab, and
which flows to probe, derived from a policy so every rule boundary gets exercised."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netlab import Probe

from clawpolicy.evaluate import Flow
from clawpolicy.ir import Direction, Policy, Protocol

AGENT_ADDRESSES = ("198.51.100.1", "fd00:a9e::1")
OUTSIDE = ("203.0.113.9", "192.168.1.20", "2001:db8:ffff::9")
BASE_TCP = (22, 80, 443, 8080, 18789)
BASE_UDP = (53, 443, 5353)


@dataclass(frozen=True)
class Case:
    probe: Probe
    flow: Flow


def _samples(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    """Both sides of a network's two edges: first−1, first, last, last+1 (the ones that exist
    in the family), so a rule widened or shifted by even one address moves a probe's verdict
    (10.1.2.0/24 written as 10.1.1.0/23 changes the verdict of 10.1.1.255)."""
    top = (1 << net.max_prefixlen) - 1
    first, last = int(net.network_address), int(net.broadcast_address)
    values = {v for v in (first - 1, first, last, last + 1) if 0 <= v <= top}
    cls = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
    return [str(cls(v)) for v in sorted(values)]


def _port_samples(first: int, last: int) -> set[int]:
    """Both sides of both edges of a port range, and its middle: widening 8000-8100 to
    7999-8100 (or to 8000-8101) changes the verdict of one of them."""
    return {p for p in (first - 1, first, first + (last - first) // 2, last, last + 1) if 1 <= p <= 65535}


CLASS_E = ipaddress.ip_network("240.0.0.0/4")


def _assignable(addr: str) -> bool:
    """Whether the lab can put `addr` on the peer and expect replies from it. Not class E:
    UDP probes to 255.255.255.254 (the edge of 0.0.0.0/0) time out even in shadow mode,
    where the ruleset drops nothing, so the kernel, not the policy, decides those."""
    ip = ipaddress.ip_address(addr)
    return not (ip.is_multicast or ip.is_loopback or ip.is_unspecified or ip in CLASS_E
                or addr in AGENT_ADDRESSES or ip in ipaddress.ip_network("fe80::/10"))


def universe(policy: Policy, uids: tuple[int, ...] = (0,)) -> tuple[list[str], list[int], list[int], list[Case]]:
    remotes: set[str] = set(OUTSIDE)
    tcp: set[int] = set(BASE_TCP)
    udp: set[int] = set(BASE_UDP)
    for rule in policy.rules:
        for net in (*rule.peers.ipv4, *rule.peers.ipv6):
            remotes.update(_samples(net))
        for p in rule.ports:
            if p.first is not None and p.last is not None:
                target = tcp if p.protocol is Protocol.TCP else udp
                target.update(_port_samples(p.first, p.last))
    peers = sorted((a for a in remotes if _assignable(a)), key=lambda a: (":" in a, a))
    cases: list[Case] = []
    egress_targets = peers + [a for a in sorted(remotes) if ipaddress.ip_address(a).is_multicast]
    for uid in uids:
        user = None if policy.scope.kind == "host" else (
            str(policy.scope.uid) if uid == policy.scope.uid else str(uid))
        for addr in egress_targets:
            multicast = ipaddress.ip_address(addr).is_multicast
            for proto, ports in ((Protocol.TCP, tcp), (Protocol.UDP, udp)):
                if multicast and proto is Protocol.TCP:
                    continue
                for port in sorted(ports):
                    cases.append(Case(Probe("egress", addr, proto.value, port, uid=uid),
                                      Flow(Direction.EGRESS, addr, proto, port, user)))
            if not multicast:
                cases.append(Case(Probe("egress", addr, "icmp", None, uid=uid),
                                  Flow(Direction.EGRESS, addr, Protocol.ICMP, None, user)))
    for addr in peers:
        local = AGENT_ADDRESSES[0] if ":" not in addr else AGENT_ADDRESSES[1]
        for port in sorted(tcp):
            cases.append(Case(Probe("ingress", addr, "tcp", port, local=local),
                              Flow(Direction.INGRESS, addr, Protocol.TCP, port)))
        for port in sorted(udp):
            cases.append(Case(Probe("ingress", addr, "udp", port, local=local),
                              Flow(Direction.INGRESS, addr, Protocol.UDP, port)))
    return peers, sorted(tcp), sorted(udp), cases
