"""Known-dangerous destinations: floor 3, the one list `lint`, `diff` and `suggest` share.

Cloud metadata services hand out credentials, mDNS announces the gateway on the local
network, and the gateway port reached from the LAN exposes the agent's control plane. An
explicit `deny` of one of them is documentation and defence in depth even where default deny
already refuses it: lint must not call it redundant, and diff reports its removal.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from clawpolicy.evaluate import Flow, rule_matches
from clawpolicy.ir import Action, Direction, Protocol, Rule
from clawpolicy.names import METADATA_ENDPOINTS
from clawpolicy.netspace import interval_to_text, network_interval

GATEWAY_PORT = 18789
TAILNET = (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("fd7a:115c:a1e0::/48"))
MDNS = ("224.0.0.251", "ff02::fb")
MDNS_PORT = 5353
METADATA = METADATA_ENDPOINTS[0][0]
# The local network a gateway must not be reachable from (RFC 1918, RFC 4193, link-local).
LAN = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                "169.254.0.0/16", "fc00::/7", "fe80::/10"))


def _address_flows() -> Iterator[tuple[str, Flow]]:
    for address, what in METADATA_ENDPOINTS:
        yield f"cloud metadata {address} ({what})", Flow(Direction.EGRESS, address, Protocol.TCP, 80)
    for address in MDNS:
        yield f"mDNS {address} port {MDNS_PORT}/udp", Flow(Direction.EGRESS, address, Protocol.UDP, MDNS_PORT)


def protected_by(rule: Rule) -> list[tuple[str, Flow]]:
    """What a deny rule protects, each with one flow the rule decides (for the evaluator).

    The gateway from the LAN is probed at the first LAN address the rule names (the rule
    may name one subnet only), so a deny of `192.168.1.0/24 port 18789/tcp` counts."""
    if rule.action is Action.ALLOW:
        return []
    found = [(what, flow) for what, flow in _address_flows() if rule_matches(rule, flow)]
    if rule.direction is Direction.INGRESS and (
            not rule.ports or any(p.covers(Protocol.TCP, GATEWAY_PORT) for p in rule.ports)):
        for lan in LAN:
            probe = _lan_probe(rule, lan)
            if probe is not None:
                found.append((f"the gateway port {GATEWAY_PORT}/tcp from the LAN ({lan})",
                              Flow(Direction.INGRESS, probe, Protocol.TCP, GATEWAY_PORT)))
    return found


def _lan_probe(rule: Rule, lan: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str | None:
    """An address of `lan` the rule names (the second of the first network inside it)."""
    if rule.peers.any:
        return str(lan.network_address + 1)
    nets = rule.peers.ipv4 if lan.version == 4 else rule.peers.ipv6
    lan_lo, lan_hi = network_interval(lan)
    for net in nets:
        lo, hi = network_interval(net)
        if lo <= lan_hi and lan_lo <= hi:
            first, last = max(lo, lan_lo), min(hi, lan_hi)
            return interval_to_text(min(first + 1, last), min(first + 1, last), lan.version)
    return None
