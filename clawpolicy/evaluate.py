"""Flow to verdict: floor 2, the reference semantics every backend is tested against.

The rules of DESIGN.md, written once: out-of-scope traffic and loopback pass; otherwise deny
overrides allow, whatever the order; anything not allowed is denied. Shadow mode decides the
same way but does not enforce (the kernel logs a would-deny and lets the packet through).
Names in flows match FQDN and wildcard rules; addresses match CIDR rules only, because an
FQDN rule holds only the addresses DNS put into its set at run time. A policy with FQDN rules
also keeps the agent's DNS on the local resolver (`Policy.local_dns`, rule `local-dns-only`):
DNS ports to anything but loopback are denied before the rules are consulted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from clawpolicy.ir import Action, Direction, Mode, Peers, Policy, Protocol, Refusal, Rule

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class Flow:
    """A connection attempt: egress to `peer`, or ingress from `peer`, on protocol/port."""

    direction: Direction
    peer: str  # an address or a domain name
    protocol: Protocol = Protocol.TCP
    port: int | None = None  # destination port (on the agent for ingress)
    user: str | None = None  # egress: the sending user (name or uid); None: the policy's user

    def __str__(self) -> str:
        where = "to" if self.direction is Direction.EGRESS else "from"
        port = self.protocol.value if self.port is None else f"{self.port}/{self.protocol.value}"
        who = f" as user {self.user}" if self.user else ""
        return f"{self.direction.value} {where} {self.peer} port {port}{who}"


@dataclass(frozen=True)
class Verdict:
    action: Action
    cause: str  # rule | default | loopback | out-of-scope
    rule_id: str | None = None
    enforced: bool = True  # False in shadow mode: a deny is only logged
    refusal: Refusal | None = None  # a deny's drop or reject (what enforce does; shadow logs only)

    @property
    def passes(self) -> bool:
        """Whether the packet gets through the kernel (shadow lets denied packets pass)."""
        return self.action is Action.ALLOW or not self.enforced

    def __str__(self) -> str:
        what = self.action.value if self.enforced or self.action is Action.ALLOW else "would-deny"
        by = f"rule {self.rule_id}" if self.rule_id else self.cause
        how = f", {self.refusal.value}" if self.refusal is Refusal.REJECT and self.enforced else ""
        return f"{what} ({by}{how})"


def evaluate(policy: Policy, flow: Flow, matching: Sequence[Rule] | None = None) -> Verdict:
    """`matching`: the rules of `policy` that match `flow` (`rule_matches`), when the caller
    already knows them from an index over many flows (operate/ruleindex.py); by default
    every rule is checked here. Everything else is decided here either way."""
    enforced = policy.mode is Mode.ENFORCE
    if not _in_scope(policy, flow):
        return Verdict(Action.ALLOW, "out-of-scope", enforced=enforced)
    address = _address(flow.peer)
    if address is not None and any(address in net for net in LOOPBACK if net.version == address.version):
        return Verdict(Action.ALLOW, "loopback", enforced=enforced)
    dns = policy.local_dns
    if (dns is not None and flow.direction is Direction.EGRESS and not dns.exempts(policy.scope, flow.user)
            and any(p.covers(flow.protocol, flow.port) for p in dns.ports)):
        return Verdict(Action.DENY, "rule", dns.id, enforced, policy.refusal(flow.direction))
    candidates = (matching if matching is not None
                  else [r for r in policy.rules if r.direction is flow.direction and _matches(r, flow)])
    for action in (Action.DENY, Action.ALLOW):  # deny overrides allow
        hits = sorted((r for r in candidates if r.action is action), key=lambda r: r.id)
        if hits:
            how = policy.refusal(flow.direction, hits[0]) if action is Action.DENY else None
            return Verdict(action, "rule", hits[0].id, enforced, how)
    return Verdict(Action.DENY, "default", None, enforced, policy.refusal(flow.direction))


def _in_scope(policy: Policy, flow: Flow) -> bool:
    scope = policy.scope
    if scope.kind in ("host", "pods"):  # a pod's network namespace is its own "host"
        return True
    if flow.direction is Direction.EGRESS:
        return flow.user is None or flow.user == scope.user or (
            scope.uid is not None and flow.user == str(scope.uid))
    return any(p.covers(flow.protocol, flow.port) for p in scope.agent_ports)


def _matches(rule: Rule, flow: Flow) -> bool:
    return ports_match(rule, flow) and peer_matches(rule.peers, flow.peer)


def ports_match(rule: Rule, flow: Flow) -> bool:
    """The rule's ports (none: every port) cover the flow's protocol and port."""
    return not rule.ports or any(p.covers(flow.protocol, flow.port) for p in rule.ports)


def rule_matches(rule: Rule, flow: Flow) -> bool:
    """Whether `rule` covers `flow` (direction, peers, ports), whatever the other rules say:
    `simulate` reports rules that match no recorded flow as candidates for removal."""
    return rule.direction is flow.direction and _matches(rule, flow)


def peer_matches(peers: Peers, peer: str) -> bool:
    if peers.any:
        return True
    address = _address(peer)
    if address is not None:
        nets = peers.ipv4 if address.version == 4 else peers.ipv6
        return any(address in net for net in nets)
    name = peer.lower().rstrip(".")
    return name in peers.names or any(name.endswith("." + w) for w in peers.wildcards)


def _address(peer: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(peer)
    except ValueError:
        return None


@dataclass(frozen=True)
class TestResult:
    name: str
    flow: Flow
    expected: Action
    verdict: Verdict
    where: str

    @property
    def ok(self) -> bool:
        return self.verdict.action is self.expected


def run_tests(policy: Policy) -> list[TestResult]:
    """Check the policy's own `test` blocks against the evaluator."""
    results = []
    for t in policy.tests:
        flow = Flow(t.direction, t.peer, t.protocol, t.port, t.user)
        results.append(TestResult(t.name, flow, t.verdict, evaluate(policy, flow), t.span.where()))
    return results
