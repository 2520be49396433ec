"""Lockout and dependency checks: floor 3, the lint checks about running a policy on a host.

A policy that fences a whole host (`applies-to host`) decides what the machine itself may
do, not only the agent: in enforce mode it can cut the operator's next SSH login, stop the
clock (NTP), the package manager and the resolver, and leave Tailscale, through which the
operator may be reaching the gateway, unable to reach its own servers. These checks ask the
evaluator (the reference semantics) whether such flows get through; each finding says what
breaks and the rule that would fix it. `lint.py` turns them into lint checks
(`HOST_CHECKS`); `apply` asks the same question about the live session (operate/apply.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from clawpolicy.errors import Severity
from clawpolicy.evaluate import Flow, evaluate
from clawpolicy.ir import Action, Direction, Policy, Protocol, Rule, Span
from clawpolicy.names import is_address
from clawpolicy.netspace import IPNetwork

TAILNET: tuple[IPNetwork, ...] = (ipaddress.ip_network("100.64.0.0/10"),
                                  ipaddress.ip_network("fd7a:115c:a1e0::/48"))
# Addresses beyond any one network, for rules that name `any` or a wide range.
PUBLIC = ("203.0.113.9", "8.8.8.8", "2001:db8::1")
NTP_SERVERS = ("pool.ntp.org", "time.cloudflare.com", "ntp.ubuntu.com", "time.google.com",
               "2.debian.pool.ntp.org")
MIRRORS = ("deb.debian.org", "security.debian.org", "archive.ubuntu.com", "security.ubuntu.com",
           "dl-cdn.alpinelinux.org", "mirrors.fedoraproject.org", "pypi.org", "registry.npmjs.org")
# What tailscaled needs (Tailscale KB 1082, "What firewall ports should I open"): HTTPS to the
# coordination server and DERP relays, STUN (3478/udp), and UDP to peers (41641 by default)
# for direct WireGuard paths (without it everything is relayed through DERP).
TAILSCALE_NEEDS = (
    ("the coordination server", Flow(Direction.EGRESS, "controlplane.tailscale.com", Protocol.TCP, 443)),
    ("DERP relays", Flow(Direction.EGRESS, "derp1.tailscale.com", Protocol.TCP, 443)),
    ("STUN", Flow(Direction.EGRESS, "derp1.tailscale.com", Protocol.UDP, 3478)),
    ("direct peer connections", Flow(Direction.EGRESS, "203.0.113.9", Protocol.UDP, 41641)),
)


@dataclass(frozen=True)
class Found:
    message: str
    rule_id: str | None
    span: Span
    hint: str


@dataclass(frozen=True)
class Spec:
    id: str
    severity: Severity
    title: str
    help: str
    run: Callable[[Policy, Sequence[int]], Iterable[Found]]


def _host(policy: Policy) -> bool:
    return policy.scope.kind == "host"


def _probes(rule: Rule) -> list[str]:
    """Addresses that stand for a rule's peers: the first, one inside and the last of each
    network (a public address for `any` or /0), and its names."""
    if rule.peers.any:
        return list(PUBLIC)
    out: list[str] = []
    nets: list[IPNetwork] = [*rule.peers.ipv4, *rule.peers.ipv6]
    for net in nets:
        if net.prefixlen == 0:
            out += [a for a in PUBLIC if ipaddress.ip_address(a).version == net.version]
            continue
        inside = net.network_address + min(1, net.num_addresses - 1)
        out += [str(net.network_address), str(inside), str(net.broadcast_address)]
    return out + list(rule.peers.names) + [f"x.{w}" for w in rule.peers.wildcards]


def reachable(policy: Policy, direction: Direction, protocol: Protocol, port: int,
              names: Iterable[str] = (), user: str | None = None, *,
              from_rules: bool = True) -> str | None:
    """A peer (one of `names`, or one a rule of `direction` names) the evaluator lets through
    on protocol/port: None when there is none. The rule-derived candidates find an operator's
    own servers (an internal NTP server, a resolver) without knowing them; without
    `from_rules`, only `names` and public addresses count."""
    candidates = list(names) + ([] if from_rules else list(PUBLIC))
    for rule in policy.rules if from_rules else ():
        if rule.direction is direction and rule.action is Action.ALLOW and (
                not rule.ports or any(p.covers(protocol, port) for p in rule.ports)):
            candidates += _probes(rule)
    for peer in dict.fromkeys(candidates):
        if is_address(peer) and ipaddress.ip_address(peer).is_loopback:
            continue
        verdict = evaluate(policy, Flow(direction, peer, protocol, port, user))
        if verdict.action is Action.ALLOW and verdict.cause == "rule":
            return peer
    return None


def _on_tailnet(rule: Rule) -> bool:
    nets: list[IPNetwork] = [*rule.peers.ipv4, *rule.peers.ipv6]
    return any(n.version == t.version and n.overlaps(t) for n in nets for t in TAILNET)


# ------------------------------------------------------------------------------ checks

def check_management(policy: Policy, ports: Sequence[int]) -> Iterator[Found]:
    if not _host(policy):
        return
    for port in ports:
        if reachable(policy, Direction.INGRESS, Protocol.TCP, port) is None:
            mode = "enforces: the next login" if policy.mode.value == "enforce" else \
                "would, once enforced: the next login"
            yield Found(f"no ingress to the management port {port}/tcp: this host-wide policy {mode} "
                        "is refused (and `clawpolicy apply` would cut a session on it)", None,
                        policy.span, f"add: allow ingress from <admin network> port {port}/tcp "
                        "reason \"SSH management\" (another port: clawpolicy lint --management-port N)")


def check_tailscale(policy: Policy, ports: Sequence[int]) -> Iterator[Found]:
    if not _host(policy):
        return
    tailnet_rule = next((r for r in policy.rules if r.direction is Direction.INGRESS
                         and r.action is Action.ALLOW and _on_tailnet(r)), None)
    if tailnet_rule is None:
        return
    missing = [f"{what} ({flow.peer} {flow.port}/{flow.protocol.value})"
               for what, flow in TAILSCALE_NEEDS if not evaluate(policy, flow).passes]
    if missing:
        yield Found("ingress comes over the tailnet, but Tailscale itself cannot reach "
                    + "; ".join(missing) + ": the tailnet (and this rule) stops working",
                    tailnet_rule.id, tailnet_rule.span,
                    "add: allow egress to tailscale, tailscale-derp-stun reason \"Tailscale control, "
                    "DERP and STUN\" and allow egress to any port 41641/udp reason \"direct "
                    "WireGuard paths\" (the names need 'dns local')")


def check_ntp(policy: Policy, ports: Sequence[int]) -> Iterator[Found]:
    if _host(policy) and reachable(policy, Direction.EGRESS, Protocol.UDP, 123, NTP_SERVERS) is None:
        yield Found("no NTP (123/udp): the host's clock drifts, and TLS certificates, TOTP and "
                    "rule expiry dates go wrong with it", None, policy.span,
                    "add: allow egress to <your NTP servers> port 123/udp reason \"time\" (or a "
                    "pool name such as 2.debian.pool.ntp.org, with 'dns local')")


def check_mirrors(policy: Policy, ports: Sequence[int]) -> Iterator[Found]:
    if not _host(policy):
        return
    # Only known mirrors and public addresses: any rule allowing 443 somewhere is no evidence
    if not any(reachable(policy, Direction.EGRESS, Protocol.TCP, port, MIRRORS, from_rules=False)
               for port in (443, 80)):
        yield Found("no public package mirror is reachable (80/443 tcp to deb.debian.org, "
                    "archive.ubuntu.com, ...): security updates stop, unless an internal mirror "
                    "serves this host", None, policy.span,
                    "add: allow egress to deb.debian.org, security.debian.org port 443/tcp, 80/tcp "
                    "reason \"package updates\" (or your distribution's or internal mirror)")


def check_resolver_upstream(policy: Policy, ports: Sequence[int]) -> Iterator[Found]:
    if not _host(policy):
        return
    user = policy.local_dns.resolver_user if policy.local_dns is not None else None
    if reachable(policy, Direction.EGRESS, Protocol.UDP, 53, user=user) is None:
        who = f"the local resolver (user {user})" if user else "the host's resolver"
        yield Found(f"no DNS upstream: {who} can reach no server on 53/udp, so no name resolves "
                    "(packages, NTP pools, the policy's own names)", None, policy.span,
                    "add: allow egress to <upstream resolver addresses> port 53/udp, 53/tcp "
                    "reason \"DNS upstream\"")


def check_names_without_dns_local(policy: Policy, ports: Sequence[int]) -> Iterator[Found]:
    if policy.local_dns is not None or policy.scope.kind == "pods":
        return
    named = [r for r in policy.rules if r.direction is Direction.EGRESS
             and r.action is Action.ALLOW and r.peers.has_fqdns]
    has_dns = any(not r.ports or any(p.covers(proto, 53) for p in r.ports
                                     for proto in (Protocol.UDP, Protocol.TCP))
                  for r in policy.rules if r.direction is Direction.EGRESS and r.action is Action.ALLOW)
    if named and has_dns:  # without any DNS path, lint's fqdn-without-dns says more
        rule = min(named, key=lambda r: (r.span.line, r.id))
        yield Found("the policy names hosts but not 'dns local': the sets fill only from the "
                    "local resolver, yet the agent may ask any allowed resolver (and carry data "
                    "out in its queries)", rule.id, rule.span,
                    "add 'dns local' and run the DNS gate (clawpolicy dns serve) or the dnsmasq target")


SPECS: tuple[Spec, ...] = (
    Spec("no-management-ingress", Severity.WARNING, "Host policy without management ingress",
         "An applies-to host policy that allows no ingress to SSH (22/tcp, or the ports given "
         "with --management-port) locks operators out once enforced. A warning, since a "
         "workstation needs no SSH; an error once management ports are declared "
         "(--management-port, or [lint] management-ports): the host is run remotely.",
         check_management),
    Spec("tailscale-egress-missing", Severity.WARNING, "Tailnet ingress without Tailscale's egress",
         "Ingress over the tailnet needs tailscaled to reach its coordination server and DERP "
         "(443/tcp), STUN (3478/udp) and peers (41641/udp).", check_tailscale),
    Spec("no-ntp", Severity.WARNING, "Host policy without NTP",
         "An applies-to host policy should allow 123/udp to time servers.", check_ntp),
    Spec("no-package-mirror", Severity.NOTE, "Host policy without package mirrors",
         "An applies-to host policy should let the package manager reach a mirror.", check_mirrors),
    Spec("no-resolver-upstream", Severity.WARNING, "Resolver without an upstream",
         "The host's resolver (with 'dns local': the resolver user's) needs 53/udp to an upstream.",
         check_resolver_upstream),
    Spec("names-without-dns-local", Severity.WARNING, "Names without 'dns local'",
         "FQDN rules without 'dns local' let the agent use any allowed resolver.",
         check_names_without_dns_local),
)
