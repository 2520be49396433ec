"""IR to a `projectcalico.org/v3` NetworkPolicy: floor 2, the calico flavour of the k8s target.

Calico rules are ordered and the first Allow or Deny decides (Calico docs, "NetworkPolicy"
resource, "Rule"); `Log` records and goes on. So deny-overrides-allow is the order: every deny
rule (a Log rule, then the Deny), then every allow. Unmatched traffic falls through to later
policies of the tier; when none matches, the tier's end drops it, so our policy gets a low
`order` (denies first) and still composes with other allows like NetworkPolicy. Calico knows
ICMP (`ICMP` for IPv4, `ICMPv6`), so rules are split per IP family and protocol. Domain names
are Calico Enterprise only: without a lock they are reported. Shadow mode is
`StagedNetworkPolicy` (Calico's preview: flow logs show what it would do, nothing enforced).
"""

from __future__ import annotations

from typing import Any

from clawpolicy.backends.k8s_common import (
    DNS_LABELS,
    DNS_NAMESPACE,
    DNS_REASON,
    DNS_RULE_ID,
    Context,
    Net,
    addresses,
    lock_note,
    needs_dns,
)
from clawpolicy.backends.naming import NameClaim, rule_owner
from clawpolicy.ir import Action, Direction, Mode, PortRange, Protocol, Rule

API_VERSION = "projectcalico.org/v3"
ORDER = 10  # before the default 1000 of Kubernetes NetworkPolicies in the same tier
ICMP_NAME = {4: "ICMP", 6: "ICMPv6"}


def _port_list(ports: list[PortRange]) -> list[int | str]:
    return [p.first if p.first == p.last else f"{p.first}:{p.last}" for p in ports
            if p.first is not None and p.last is not None]


def _rules(ctx: Context, rule: Rule) -> list[dict[str, Any]]:
    nets = addresses(ctx, rule)
    if not nets:
        return []
    egress = rule.direction is Direction.EGRESS
    everywhere = rule.peers.any
    families: dict[int, list[Net]] = {}
    for n in nets:
        families.setdefault(n.version, []).append(n)
    # (protocol, ports) groups: None = every protocol; a protocol with an unbounded range has no ports
    groups: list[tuple[Protocol | None, list[PortRange]]] = []
    if not rule.ports:
        groups.append((None, []))
    for proto in Protocol:
        chosen = [p for p in rule.ports if p.protocol is proto]
        if chosen:
            groups.append((proto, [] if any(p.first is None for p in chosen) else chosen))
    out = []
    for version, family in sorted(families.items()):
        for protocol, ports in groups:
            item: dict[str, Any] = {"action": "Deny" if rule.action is Action.DENY else "Allow",
                                    "metadata": {"annotations": {"clawpolicy.dev/rule-id": rule.id}},
                                    "ipVersion": version}
            peer: dict[str, Any] = {} if everywhere else {"nets": [str(n) for n in family]}
            local: dict[str, Any] = {}
            if protocol is Protocol.ICMP:
                item["protocol"] = ICMP_NAME[version]
            elif protocol is not None:
                item["protocol"] = protocol.value.upper()
                if ports:
                    local["ports"] = _port_list(ports)
            if egress:
                peer.update(local)
                item["destination"] = peer
            else:
                item["source"] = peer
                if local:
                    item["destination"] = local
            if rule.action is Action.DENY:
                out.append({**item, "action": "Log"})
            out.append(item)
    return out


def manifests(ctx: Context) -> list[dict[str, Any]]:
    selector = " && ".join(f"{k} == '{v}'" for k, v in ctx.selector)  # values: label syntax, no quotes
    spec: dict[str, Any] = {"selector": selector or "all()", "order": ORDER, "types": ["Ingress", "Egress"]}
    for rule in ctx.policy.rules:  # rule-id annotations lead a flow log back to one rule
        ctx.names.append(NameClaim(f"Calico rule-id annotation in {ctx.name}", rule.id, rule_owner(rule.id)))
    if needs_dns(ctx.policy):
        ctx.names.append(NameClaim(f"Calico rule-id annotation in {ctx.name}", DNS_RULE_ID, "the cluster DNS rule"))
    for direction in Direction:
        items = [item for action in (Action.DENY, Action.ALLOW) for r in ctx.policy.rules
                 if r.direction is direction and r.action is action for item in _rules(ctx, r)]
        if direction is Direction.EGRESS and needs_dns(ctx.policy):
            items += [{"action": "Allow", "protocol": proto,
                       "metadata": {"annotations": {"clawpolicy.dev/rule-id": DNS_RULE_ID}},
                       "destination": {
                           "namespaceSelector": f"projectcalico.org/name == '{DNS_NAMESPACE}'",
                           "selector": " && ".join(f"{k} == '{v}'" for k, v in DNS_LABELS.items()),
                           "ports": [53]}} for proto in ("UDP", "TCP")]
        spec[direction.value] = items
    kind = "StagedNetworkPolicy" if ctx.policy.mode is Mode.SHADOW else "NetworkPolicy"
    if kind == "StagedNetworkPolicy":
        spec["stagedAction"] = "Set"
    extra = lock_note(ctx)
    if needs_dns(ctx.policy):
        extra["clawpolicy.dev/" + DNS_RULE_ID] = DNS_REASON
    return [{"apiVersion": API_VERSION, "kind": kind,
             "metadata": ctx.metadata(ctx.policy.rules, extra), "spec": spec}]
