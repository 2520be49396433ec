"""IR to a `cilium.io/v2 CiliumNetworkPolicy`: floor 2, the cilium flavour of the k8s target.

Cilium has what NetworkPolicy lacks (Cilium docs, "Layer 3 Examples", "DNS based", "Deny
Policies"): `toFQDNs` (`matchName`; `matchPattern` where `**.x` is any number of labels below
x, the IR's wildcard; `*.x` would be exactly one), `egressDeny`/`ingressDeny`, which override
allows like the IR's denies, and `enableDefaultDeny`. So each IR rule maps to one Cilium rule
per peer kind. FQDN rules only work when the pod's DNS goes through Cilium's DNS proxy: the
policy allows DNS to kube-dns with an L7 `dns` rule (`matchPattern: "*"`), as the docs require.
Deny rules cannot name domains and Cilium cannot match all of ICMP (its `icmps` needs types):
those are reported (an ICMP deny only where an allow would let ICMP through, since elsewhere
default deny holds it). A lock is not needed (Cilium learns addresses from the DNS answers).
"""

from __future__ import annotations

from typing import Any

from clawpolicy.backends.k8s_common import DNS_LABELS, DNS_NAMESPACE, DNS_REASON, DNS_RULE_ID, Context, needs_dns
from clawpolicy.ir import Action, Direction, Protocol, Rule

API_VERSION = "cilium.io/v2"


def _ports(ctx: Context, rule: Rule) -> list[dict[str, Any]] | None:
    """`toPorts` for the rule; None: every port and protocol (no toPorts); [] nothing left."""
    if not rule.ports:
        return None
    ports = []
    for p in rule.ports:
        if p.protocol is Protocol.ICMP:
            if rule.action is Action.ALLOW or _icmp_allowed_near(ctx, rule):
                ctx.report(rule, "ICMP", "Cilium's icmps field needs explicit ICMP types")
            continue
        entry: dict[str, Any] = {"protocol": p.protocol.value.upper()}
        entry["port"] = str(p.first) if p.first is not None else "0"  # "0": every port
        if p.first is not None and p.last is not None and p.last != p.first:
            entry["endPort"] = p.last
        ports.append(entry)
    return [{"ports": ports}] if ports else []


def _icmp_allowed_near(ctx: Context, deny: Rule) -> bool:
    """Whether an allow lets ICMP reach part of what an ICMP deny names. Only then is the
    dropped deny a loss: elsewhere default deny refuses ICMP all the same."""
    for allow in ctx.policy.rules:
        if allow.direction is not deny.direction or allow.action is not Action.ALLOW:
            continue
        if allow.ports and not any(p.protocol is Protocol.ICMP for p in allow.ports):
            continue
        a, d = allow.peers, deny.peers
        if a.any or d.any or (a.has_fqdns and (d.ipv4 or d.ipv6)) or any(
                n.overlaps(m) for n in a.ipv4 for m in d.ipv4) or any(
                n.overlaps(m) for n in a.ipv6 for m in d.ipv6):
            return True
    return False


def _rules(ctx: Context, rule: Rule) -> list[dict[str, Any]]:
    egress = rule.direction is Direction.EGRESS
    deny = rule.action is Action.DENY
    ports = _ports(ctx, rule)
    if ports == []:
        return []
    out: list[dict[str, Any]] = []
    peers = rule.peers
    if peers.any:
        out.append({"toEntities" if egress else "fromEntities": ["all"]})
    elif peers.ipv4 or peers.ipv6:
        out.append({"toCIDRSet" if egress else "fromCIDRSet":
                    [{"cidr": str(n)} for n in (*peers.ipv4, *peers.ipv6)]})
    if peers.has_fqdns and not peers.any:
        if deny:
            ctx.report(rule, "denies by domain name", "Cilium deny rules have no toFQDNs; "
                       "name the addresses, or leave the names out of the allow rules")
        else:
            out.append({"toFQDNs": [{"matchName": n} for n in peers.names]
                        + [{"matchPattern": f"**.{w}"} for w in peers.wildcards]})
    if ports is not None:
        for item in out:
            item["toPorts"] = ports
    return out


def manifests(ctx: Context) -> list[dict[str, Any]]:
    spec: dict[str, Any] = {"endpointSelector": {"matchLabels": dict(ctx.selector)},
                            "enableDefaultDeny": {"egress": True, "ingress": True}}
    for direction in Direction:
        for action in Action:
            key = direction.value + ("Deny" if action is Action.DENY else "")
            items = [item for r in ctx.policy.rules if r.direction is direction and r.action is action
                     for item in _rules(ctx, r)]
            if direction is Direction.EGRESS and action is Action.ALLOW and needs_dns(ctx.policy):
                items.append({"toEndpoints": [{"matchLabels": {
                                  "k8s:io.kubernetes.pod.namespace": DNS_NAMESPACE,
                                  **{f"k8s:{k}": v for k, v in DNS_LABELS.items()}}}],
                              "toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}],
                                           "rules": {"dns": [{"matchPattern": "*"}]}}]})
            if items:
                spec[key] = items
    if ctx.options.lock is not None and any(r.peers.names for r in ctx.policy.rules):
        ctx.notes.append("The lock file is not used: Cilium's toFQDNs learns each name's "
                         "addresses from the DNS answers it proxies, so nothing goes stale.")
    extra = {"clawpolicy.dev/" + DNS_RULE_ID: DNS_REASON} if needs_dns(ctx.policy) else {}
    return [{"apiVersion": API_VERSION, "kind": "CiliumNetworkPolicy",
             "metadata": ctx.metadata(ctx.policy.rules, extra), "spec": spec}]
