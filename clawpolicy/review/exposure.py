"""Lint checks about exposure: what a policy lets the agent reach or be reached by.

Reachability questions ("can the agent reach the metadata service?") are asked of the
evaluator, the reference semantics, rather than re-implemented here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from clawpolicy.evaluate import LOOPBACK, Flow, evaluate
from clawpolicy.ir import Action, Direction, Peers, Policy, Protocol, Rule, Span
from clawpolicy.names import METADATA_ENDPOINTS, is_public_suffix
from clawpolicy.netspace import IPNetwork
from clawpolicy.review.finding import Context, Hit
from clawpolicy.review.protected import GATEWAY_PORT, MDNS, TAILNET

DANGEROUS_CAPS = ("net_admin", "net_raw", "sys_admin", "sys_ptrace")
CREDENTIAL_DIRS = ("~/.ssh", "~/.aws", "~/.config/gcloud", "~/.kube")
WIDE_PREFIX = {4: 8, 6: 32}  # this wide or wider counts as "a wide range"
# Addresses beyond any one network, for rules that name `any`.
PUBLIC_PROBES = ("203.0.113.9", "192.168.1.20", "10.1.2.3", "8.8.8.8", "2001:db8::1")


# ---------------------------------------------------------------------------- helpers

def allows(rules: Iterable[Rule], direction: Direction) -> list[Rule]:
    return [r for r in rules if r.direction is direction and r.action is Action.ALLOW]


def _nets(peers: Peers) -> list[IPNetwork]:
    if peers.any:
        return [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    return [*peers.ipv4, *peers.ipv6]


def _wide(net: IPNetwork) -> bool:
    return net.prefixlen <= WIDE_PREFIX[net.version]


def _covers_port(rule: Rule, protocol: Protocol, port: int) -> bool:
    return not rule.ports or any(p.covers(protocol, port) for p in rule.ports)


def _probes(net: IPNetwork) -> list[str]:
    """Addresses that stand for a network: both ends and one inside (enough to find an
    address outside an aligned sub-range, since a CIDR is one interval)."""
    if net.prefixlen == 0:
        return [a for a in PUBLIC_PROBES if ipaddress.ip_address(a).version == net.version]
    inside = net.network_address + min(1, net.num_addresses - 1)
    return [str(net.network_address), str(inside), str(net.broadcast_address)]


def _in_any(address: str, nets: Iterable[IPNetwork]) -> bool:
    a = ipaddress.ip_address(address)
    return any(a.version == n.version and a in n for n in nets)


def _first_allowed(policy: Policy, flows: Iterable[Flow]) -> tuple[Flow, str] | None:
    """The first flow the evaluator allows by a rule, with that rule's id."""
    for flow in flows:
        verdict = evaluate(policy, flow)
        if verdict.action is Action.ALLOW and verdict.rule_id is not None:
            return flow, verdict.rule_id
    return None


def _span_of(policy: Policy, rule_id: str) -> Span:
    found = policy.rule(rule_id)
    return found.span if found is not None else policy.span


def _ports_text(rule: Rule) -> str:
    return ", ".join(str(p) for p in rule.ports) or "every port"

def check_wide_egress(ctx: Context) -> Iterator[Hit]:
    for rule in allows(ctx.policy.rules, Direction.EGRESS):
        nets = _nets(rule.peers)
        everything = [n for n in nets if n.prefixlen == 0]
        portless = not rule.ports or any(p.first is None and p.protocol is not Protocol.ICMP
                                         for p in rule.ports)
        wide = [n for n in nets if _wide(n)] if portless else []
        if everything:
            what = "any" if rule.peers.any else ", ".join(str(n) for n in everything)
            yield Hit(f"egress to {what} on {_ports_text(rule)}", rule.id, rule.span,
                      "name the services (FQDNs or catalog groups) the agent needs instead")
        elif wide:
            yield Hit(f"egress to the wide range {', '.join(str(n) for n in wide)} with no port "
                      "restriction", rule.id, rule.span, "narrow the range or add a port clause")


def check_gateway_exposed(ctx: Context) -> Iterator[Hit]:
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (*LOOPBACK, *TAILNET)
    if ctx.policy.scope.kind == "pods":  # in a cluster: behind an ingress controller on the pod network
        trusted += tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12",
                                                            "192.168.0.0/16", "fc00::/7"))
    candidates: list[str] = []
    for rule in allows(ctx.policy.rules, Direction.INGRESS):
        if _covers_port(rule, Protocol.TCP, GATEWAY_PORT):
            candidates += [a for n in _nets(rule.peers) for a in _probes(n)]
    flows = (Flow(Direction.INGRESS, a, Protocol.TCP, GATEWAY_PORT)
             for a in dict.fromkeys(candidates) if not _in_any(a, trusted))
    hit = _first_allowed(ctx.policy, flows)
    if hit is not None:
        flow, rule_id = hit
        yield Hit(f"the gateway port {GATEWAY_PORT}/tcp accepts connections from {flow.peer}, "
                  "beyond loopback and the tailnet", rule_id, _span_of(ctx.policy, rule_id),
                  "allow ingress to the gateway only from 100.64.0.0/10 and fd7a:115c:a1e0::/48 "
                  "(Tailscale), or keep the gateway bound to loopback")


def check_mdns(ctx: Context) -> Iterator[Hit]:
    hit = _first_allowed(ctx.policy, (Flow(Direction.EGRESS, a, Protocol.UDP, 5353) for a in MDNS))
    if hit is not None:
        flow, rule_id = hit
        yield Hit(f"mDNS is allowed (udp 5353 to {flow.peer}): the gateway can announce itself "
                  "on the local network", rule_id, _span_of(ctx.policy, rule_id),
                  "add: deny egress to 224.0.0.251, ff02::fb port 5353/udp reason \"no mDNS\"")


def check_dns_any_resolver(ctx: Context) -> Iterator[Hit]:
    for rule in allows(ctx.policy.rules, Direction.EGRESS):
        for proto in (Protocol.UDP, Protocol.TCP):
            if not _covers_port(rule, proto, 53):
                continue
            probes = [a for n in _nets(rule.peers) if _wide(n) for a in _probes(n)]
            flows = (Flow(Direction.EGRESS, a, proto, 53) for a in probes)
            hit = _first_allowed(ctx.policy, flows)
            if hit is not None and hit[1] == rule.id:
                yield Hit(f"DNS (53/{proto.value}) is allowed to any resolver (e.g. {hit[0].peer}): "
                          "DNS can carry data out", rule.id, rule.span,
                          "allow DNS only to your resolvers' addresses, or use 'dns local'")
                break


def check_metadata(ctx: Context) -> Iterator[Hit]:
    """One finding per allowing rule, naming every metadata endpoint it lets through."""
    reached: dict[str, list[str]] = {}
    for address, what in METADATA_ENDPOINTS:
        hit = _first_allowed(ctx.policy, [Flow(Direction.EGRESS, address, Protocol.TCP, 80)])
        if hit is not None:
            reached.setdefault(hit[1], []).append(f"{address} ({what})")
    every = ", ".join(a for a, _ in METADATA_ENDPOINTS)
    for rule_id, shown in reached.items():
        yield Hit(f"cloud metadata reachable on 80/tcp (credentials): {'; '.join(shown)}", rule_id,
                  _span_of(ctx.policy, rule_id),
                  f"add: deny egress to {every} reason \"no cloud metadata\"")


def check_public_suffix_wildcard(ctx: Context) -> Iterator[Hit]:
    for rule in allows(ctx.policy.rules, Direction.EGRESS):
        public = [f"*.{w}" for w in rule.peers.wildcards if is_public_suffix(w)]
        if public:
            yield Hit(f"{', '.join(public)} allows every name under a public suffix: names anyone "
                      "can register", rule.id, rule.span,
                      "name the organisation's own domain, e.g. *.slack.com, not *.com")


def check_dangerous_capabilities(ctx: Context) -> Iterator[Hit]:
    caps = ctx.policy.capabilities
    if caps is None:
        return
    if caps.drop_all:
        kept = [c for c in DANGEROUS_CAPS if c in caps.keep]
        how = "kept"
    else:
        kept = [c for c in DANGEROUS_CAPS if c not in caps.drop]
        how = "not dropped"
    if kept:
        yield Hit(f"dangerous capabilities {how}: {', '.join(kept)}", "capabilities", caps.span,
                  "use 'capabilities drop all keep ...' without them, or say why in 'reason'")


def check_netlink_any(ctx: Context) -> Iterator[Hit]:
    """`netlink` (or `netlink raw|dgram`) opens every netlink protocol: audit, sock_diag,
    netfilter and xfrm as well as the route protocol an agent needs for its interfaces."""
    sockets = ctx.policy.sockets
    if sockets is None:
        return
    for kind in sockets.allow:
        if kind.family == "netlink" and kind.protocol is None:
            yield Hit(f"'{kind}' allows every netlink protocol", "sockets", sockets.span,
                      "name the protocols the agent needs, e.g. 'netlink route' (interface "
                      "addresses: Node's os.networkInterfaces)")


def check_credentials(ctx: Context) -> Iterator[Hit]:
    policy = ctx.policy
    if not policy.files and policy.capabilities is None:
        return
    denied = [p for f in policy.files if f.action is Action.DENY for p in f.paths]
    missing = [d for d in CREDENTIAL_DIRS
               if not any(d == p or d.startswith(p.rstrip("/") + "/") for p in denied)]
    if missing:
        span = next((f.span for f in policy.files if f.action is Action.DENY),
                    policy.capabilities.span if policy.capabilities else policy.span)
        yield Hit(f"credential directories not denied: {', '.join(missing)}", None, span,
                  f"add: files deny {', '.join(missing)} reason \"credential stores\"")


def check_fqdn_without_dns(ctx: Context) -> Iterator[Hit]:
    policy = ctx.policy
    if policy.local_dns is not None or policy.scope.kind == "pods":  # k8s adds the cluster DNS
        return
    if any(_covers_port(r, p, 53) for r in allows(policy.rules, Direction.EGRESS)
           for p in (Protocol.UDP, Protocol.TCP)):
        return
    for rule in policy.rules:
        if rule.direction is Direction.EGRESS and rule.action is Action.ALLOW and rule.peers.has_fqdns:
            yield Hit("names in this rule need DNS, but the policy allows no DNS path", rule.id,
                      rule.span, "add 'dns local', or allow egress to your resolvers on port 53")
