"""IR to a `networking.k8s.io/v1 NetworkPolicy`: floor 2, the vanilla flavour of the k8s target.

NetworkPolicy only allows (Kubernetes API: NetworkPolicy; "Network Policies" concept page):
a selected pod is isolated in a direction when a policy selecting it lists that direction in
`policyTypes`, and then only the union of the rules' allows passes. A rule is `to`/`from`
peers AND `ports`; an `ipBlock` is a CIDR minus `except` ranges inside it; a port is a
protocol (TCP, UDP, SCTP) with an optional `port`..`endPort`. There is no deny, no ICMP, no
name, no log. So deny-overrides-allow is compiled, not translated: the port space of each
protocol is cut where any rule's ports begin or end, and for every piece the allowed address
set is the allows covering it minus the denies covering it (`except` where a deny lies inside
an allowed range, the range dropped where a deny covers it). Pieces with the same addresses
share one rule. Rules without ports ("every protocol") stay portless when no port-specific
deny cuts into them; otherwise TCP and UDP are listed and the other protocols (ICMP) are lost,
which compile reports. An ICMP deny holds (ICMP is carved out of the every-protocol allows),
but takes the other port-less protocols with it: reported on the deny. What remains
unexpressible (names without a lock, wildcards, ICMP allows, logging, shadow mode) is reported
by rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from clawpolicy.backends.k8s_common import (
    DNS_LABELS,
    DNS_NAMESPACE,
    DNS_REASON,
    DNS_RULE_ID,
    Context,
    Net,
    addresses,
    carve,
    covers,
    dns_denies,
    expand,
    lock_note,
    needs_dns,
)
from clawpolicy.ir import Action, Direction, Protocol, Rule

API_VERSION = "networking.k8s.io/v1"
PORTED = (Protocol.TCP, Protocol.UDP)
Blocks = tuple[tuple[Net, tuple[Net, ...]], ...]


def _segments(rules: Sequence[Rule], protocol: Protocol) -> list[tuple[int, int]]:
    """1..65535 cut at every boundary of the rules' port ranges for `protocol`."""
    cuts = {1, 65536}
    for rule in rules:
        for p in rule.ports:
            if p.protocol is protocol and p.first is not None and p.last is not None:
                cuts.update((p.first, p.last + 1))
    edges = sorted(cuts)
    return [(a, b - 1) for a, b in zip(edges, edges[1:])]


def _covers(rule: Rule, protocol: Protocol, first: int, last: int) -> bool:
    if not rule.ports:
        return True
    return any(p.protocol is protocol and p.bounds[0] <= first and last <= max(p.bounds[1], 1)
               for p in rule.ports)


def _other(rule: Rule) -> bool:
    """Whether a rule reaches protocols without ports (ICMP and the rest)."""
    return not rule.ports or any(p.protocol is Protocol.ICMP for p in rule.ports)


def _peers(blocks: Blocks) -> list[dict[str, Any]]:
    out = []
    for net, excepts in blocks:
        block: dict[str, Any] = {"cidr": str(net)}
        if excepts:
            block["except"] = [str(e) for e in excepts]
        out.append({"ipBlock": block})
    return out


def _port(protocol: Protocol, first: int, last: int) -> dict[str, Any]:
    port: dict[str, Any] = {"protocol": protocol.value.upper()}
    if (first, last) != (1, 65535):
        port["port"] = first
        if last != first:
            port["endPort"] = last
    return port


def direction_rules(ctx: Context, direction: Direction) -> list[dict[str, Any]]:
    rules = [r for r in ctx.policy.rules if r.direction is direction]
    nets = {r.id: addresses(ctx, r) for r in rules}
    for r in rules:  # an ICMP deny holds: nothing allows ICMP where it is carved out of `other`
        if r.action is Action.ALLOW and any(p.protocol is Protocol.ICMP for p in r.ports):
            ctx.report(r, "ICMP", "NetworkPolicy has no ICMP protocol (its handling is up to "
                       "the network plugin); use --k8s-flavor calico")

    def allowed(selected: Sequence[Rule]) -> Blocks:
        return carve([n for r in selected if r.action is Action.ALLOW for n in nets[r.id]],
                     [n for r in selected if r.action is Action.DENY for n in nets[r.id]])

    other = allowed([r for r in rules if _other(r)
                     and (r.action is Action.DENY or not r.ports)])  # allow icmp is not expressible
    _report_icmp_deny_costs(ctx, rules, nets, allowed([r for r in rules if not r.ports]))
    pieces: dict[Blocks, list[tuple[Protocol, int, int]]] = {}
    other_fits = True
    for protocol in PORTED:
        for first, last in _segments(rules, protocol):
            blocks = allowed([r for r in rules if _covers(r, protocol, first, last)])
            if not covers(expand(blocks), expand(other)):
                other_fits = False
            pieces.setdefault(blocks, []).append((protocol, first, last))
    key = "to" if direction is Direction.EGRESS else "from"
    out: list[dict[str, Any]] = []
    if other and other_fits:
        out.append({key: _peers(other)})
    elif other:
        for r in rules:
            if not r.ports and r.action is Action.ALLOW:
                ctx.report(r, "protocols other than TCP and UDP (ICMP) for this every-protocol "
                           "rule", "a port-specific deny cuts into it, and NetworkPolicy can "
                           "only narrow ports per protocol; those protocols are denied")
    for blocks, ports in sorted(pieces.items(), key=lambda kv: str(_merge(kv[1]))):
        if not blocks or (other_fits and other and expand(blocks) == expand(other)):
            continue
        out.append({key: _peers(blocks), "ports": _merge(ports)})
    if direction is Direction.EGRESS and needs_dns(ctx.policy) and not dns_denies(ctx):
        out.append({"to": [{"namespaceSelector": {"matchLabels": {
                                "kubernetes.io/metadata.name": DNS_NAMESPACE}},
                            "podSelector": {"matchLabels": dict(DNS_LABELS)}}],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]})
    return out


def _report_icmp_deny_costs(ctx: Context, rules: Sequence[Rule], nets: Mapping[str, Sequence[Net]],
                            portless: Blocks) -> None:
    """NetworkPolicy cannot name ICMP apart from the other port-less protocols (SCTP aside:
    GRE, ESP, ...): where an ICMP deny cuts into an every-protocol allow, those protocols are
    denied with ICMP. The deny holds; what is lost is part of the allow, said on the deny."""
    reach = expand(portless)
    if not reach:
        return
    for r in rules:
        if r.action is Action.DENY and r.ports and any(p.protocol is Protocol.ICMP for p in r.ports):
            if not covers(expand(carve(reach, nets[r.id])), reach):
                ctx.report(r, "an ICMP-only deny: the other protocols without ports (GRE, ESP, "
                           "...) are denied with it where it cuts into an every-protocol allow",
                           "NetworkPolicy has no ICMP protocol; use --k8s-flavor calico, or "
                           "deny every protocol there")


def _merge(pieces: list[tuple[Protocol, int, int]]) -> list[dict[str, Any]]:
    """Adjacent pieces of one protocol join (all of 1..65535 is the portless entry)."""
    merged: list[tuple[Protocol, int, int]] = []
    for protocol, first, last in sorted(pieces, key=lambda p: (p[0].value, p[1])):
        if merged and merged[-1][0] is protocol and merged[-1][2] + 1 == first:
            merged[-1] = (protocol, merged[-1][1], last)
        else:
            merged.append((protocol, first, last))
    return [_port(*p) for p in merged]


def manifests(ctx: Context) -> list[dict[str, Any]]:
    spec = {"podSelector": {"matchLabels": dict(ctx.selector)},
            "policyTypes": ["Ingress", "Egress"],
            "egress": direction_rules(ctx, Direction.EGRESS),
            "ingress": direction_rules(ctx, Direction.INGRESS)}
    extra = lock_note(ctx)
    if needs_dns(ctx.policy) and not dns_denies(ctx):
        extra["clawpolicy.dev/" + DNS_RULE_ID] = DNS_REASON
    return [{"apiVersion": API_VERSION, "kind": "NetworkPolicy",
             "metadata": ctx.metadata(ctx.policy.rules, extra), "spec": spec}]
