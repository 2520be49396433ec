"""Lint: floor 3. Findings about a lowered policy, for reviewers and CI.

Each check is one small function registered in `CHECKS` (id, severity, title, help): the
table is data, shared by the text/JSON output and SARIF's rule list. Checks read the IR only;
reachability questions ("can the agent reach the metadata service?") are asked of the
evaluator, the reference semantics, rather than re-implemented here.
"""

from __future__ import annotations

import bisect
import datetime as dt
import ipaddress
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from clawpolicy.backends.registry import check_support, targets_for
from clawpolicy.errors import Location, Severity
from clawpolicy.evaluate import LOOPBACK, Flow, evaluate, peer_matches
from clawpolicy.ir import (
    Action,
    Direction,
    Peers,
    Policy,
    PortRange,
    Protocol,
    Rule,
    Span,
)
from clawpolicy.names import METADATA_ENDPOINTS, is_public_suffix
from clawpolicy.review import lockout
from clawpolicy.netspace import IPNetwork, intervals, network_interval
from clawpolicy.review.protected import (  # one list, shared with diff and suggest
    GATEWAY_PORT,
    MDNS,
    METADATA,
    TAILNET,
    protected_by,
)
from clawpolicy.review.reach import cancelled_allows

DANGEROUS_CAPS = ("net_admin", "net_raw", "sys_admin", "sys_ptrace")
CREDENTIAL_DIRS = ("~/.ssh", "~/.aws", "~/.config/gcloud", "~/.kube")
EXPIRY_WARNING_DAYS = 30
WIDE_PREFIX = {4: 8, 6: 32}  # this wide or wider counts as "a wide range"
# Addresses beyond any one network, for rules that name `any`.
PUBLIC_PROBES = ("203.0.113.9", "192.168.1.20", "10.1.2.3", "8.8.8.8", "2001:db8::1")
_MAX = 1 << 129  # above every address, for bisecting (lo, hi) pairs
SEVERITY_RANK = {Severity.NOTE: 0, Severity.WARNING: 1, Severity.ERROR: 2}


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    message: str
    rule_id: str | None
    location: Location
    hint: str

    def sort_key(self) -> tuple[str, int, int, str, str]:
        loc = self.location
        return (loc.file, loc.line, loc.col, self.check, self.rule_id or "")


@dataclass(frozen=True)
class Context:
    policy: Policy
    today: dt.date
    targets: tuple[str, ...]
    require_owner: bool
    management_ports: tuple[int, ...] = (22,)  # TCP ports an operator logs in on (lockout check)


@dataclass(frozen=True)
class Hit:
    """What a check function reports; `lint` adds the check's id and severity."""

    message: str
    rule_id: str | None
    span: Span
    hint: str = ""


@dataclass(frozen=True)
class Check:
    id: str
    severity: Severity
    title: str
    help: str
    run: Callable[[Context], Iterable[Hit]]


# ---------------------------------------------------------------------------- helpers

def _allows(rules: Iterable[Rule], direction: Direction) -> list[Rule]:
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


# ---------------------------------------------------------------------------- checks

def check_expired(ctx: Context) -> Iterator[Hit]:
    for item in (*ctx.policy.rules, *ctx.policy.syscalls, *ctx.policy.files):
        if item.expires is not None and item.expires < ctx.today:
            yield Hit(f"rule expired on {item.expires.isoformat()}", item.id, item.span,
                      "renew it with a new 'expires' date after review, or remove the rule")


def check_expiring(ctx: Context) -> Iterator[Hit]:
    horizon = ctx.today + dt.timedelta(days=EXPIRY_WARNING_DAYS)
    for item in (*ctx.policy.rules, *ctx.policy.syscalls, *ctx.policy.files):
        if item.expires is not None and ctx.today <= item.expires <= horizon:
            days = (item.expires - ctx.today).days
            yield Hit(f"rule expires on {item.expires.isoformat()} (in {days} days)", item.id,
                      item.span, "ask the owner whether it is still needed; renew or remove it")


def check_wide_egress(ctx: Context) -> Iterator[Hit]:
    for rule in _allows(ctx.policy.rules, Direction.EGRESS):
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
    for rule in _allows(ctx.policy.rules, Direction.INGRESS):
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
    for rule in _allows(ctx.policy.rules, Direction.EGRESS):
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
    for rule in _allows(ctx.policy.rules, Direction.EGRESS):
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
    if any(_covers_port(r, p, 53) for r in _allows(policy.rules, Direction.EGRESS)
           for p in (Protocol.UDP, Protocol.TCP)):
        return
    for rule in policy.rules:
        if rule.direction is Direction.EGRESS and rule.action is Action.ALLOW and rule.peers.has_fqdns:
            yield Hit("names in this rule need DNS, but the policy allows no DNS path", rule.id,
                      rule.span, "add 'dns local', or allow egress to your resolvers on port 53")


def _interval_covered(lo: int, hi: int, cover: Sequence[tuple[int, int]]) -> bool:
    """Whether [lo, hi] lies inside the union of `cover` (sorted, disjoint intervals)."""
    i = bisect.bisect_right(cover, (lo, _MAX)) - 1
    while 0 <= i < len(cover) and cover[i][0] <= lo <= cover[i][1]:
        lo = cover[i][1] + 1
        if lo > hi:
            return True
        i += 1
    return False


def _peers_contain(outer: Peers, inner: Peers) -> bool:
    if outer.any:
        return True
    if inner.any:
        return False
    cover4, cover6 = intervals(outer.ipv4), intervals(outer.ipv6)  # sorted, once per run
    if not (all(_interval_covered(lo, hi, cover4) for lo, hi in intervals(inner.ipv4))
            and all(_interval_covered(lo, hi, cover6) for lo, hi in intervals(inner.ipv6))):
        return False
    return (all(peer_matches(outer, n) for n in inner.names)
            and all(any(w == v or w.endswith("." + v) for v in outer.wildcards) for w in inner.wildcards))


def _ports_contain(outer: Sequence[PortRange], inner: Sequence[PortRange]) -> bool:
    if not outer:
        return True
    if not inner:
        return False
    return all(any(o.protocol is i.protocol and o.bounds[0] <= i.bounds[0] and i.bounds[1] <= o.bounds[1]
                   for o in outer) for i in inner)


def check_shadowed(ctx: Context) -> Iterator[Hit]:
    rules = [r for r in ctx.policy.rules if r.action is Action.ALLOW]
    for rule in rules:
        for other in rules:
            if other is rule or other.direction is not rule.direction:
                continue
            if _peers_contain(other.peers, rule.peers) and _ports_contain(other.ports, rule.ports):
                mutual = (_peers_contain(rule.peers, other.peers)
                          and _ports_contain(rule.ports, other.ports))
                if mutual and rule.id < other.id:
                    continue  # equal rules: report only one of the pair
                yield Hit(f"everything this rule allows is already allowed by {other.id} "
                          f"(line {other.span.line})", rule.id, rule.span,
                          "remove it, or narrow the other rule")
                break


def check_cancelled_allow(ctx: Context) -> Iterator[Hit]:
    """Allows that denies cancel everywhere: decided region by region (review/reach.py), the
    evaluator's deny-overrides-allow on every address, name and port the allow names."""
    for rule, denies in cancelled_allows(ctx.policy):
        yield Hit(f"a deny cancels everything this allow names: {', '.join(denies)}", rule.id,
                  rule.span, "remove the allow, or narrow the deny if the allow is meant to work")


def _peers_overlap(a: Peers, b: Peers) -> bool:
    if a.any or b.any:
        return True
    if (any(n.overlaps(m) for n in a.ipv4 for m in b.ipv4)
            or any(n.overlaps(m) for n in a.ipv6 for m in b.ipv6)):
        return True
    if (a.ipv4 or a.ipv6) and b.has_fqdns or (b.ipv4 or b.ipv6) and a.has_fqdns:
        return True  # an FQDN set may hold any address at run time
    if any(peer_matches(b, n) for n in a.names) or any(peer_matches(a, n) for n in b.names):
        return True
    return any(v == w or v.endswith("." + w) or w.endswith("." + v)
               for v in a.wildcards for w in b.wildcards)


def _ports_overlap(a: Sequence[PortRange], b: Sequence[PortRange]) -> bool:
    if not a or not b:
        return True
    return any(p.protocol is q.protocol and p.bounds[0] <= q.bounds[1] and q.bounds[0] <= p.bounds[1]
               for p in a for q in b)


def check_redundant_deny(ctx: Context) -> Iterator[Hit]:
    for rule in ctx.policy.rules:
        if rule.action is not Action.DENY or protected_by(rule):
            continue  # an explicit deny of a dangerous destination is defence in depth
        if not any(_peers_overlap(rule.peers, a.peers) and _ports_overlap(rule.ports, a.ports)
                   for a in _allows(ctx.policy.rules, rule.direction)):
            yield Hit("no allow rule overlaps this deny, so default deny already refuses what it "
                      "names", rule.id, rule.span,
                      "keep it only as documentation of intent; it changes no decision")


def _support(ctx: Context, code: str) -> Iterator[Hit]:
    for d in check_support(ctx.policy, targets_for(ctx.policy, ctx.targets)[0]):
        if d.code == code and d.location is not None:
            rule_id, _, message = d.message.partition(": ")
            loc = d.location
            yield Hit(message, rule_id, Span(file=loc.file, line=loc.line, col=loc.col,
                                             end_line=loc.line, end_col=loc.col), d.hint or "")


def check_unenforced(ctx: Context) -> Iterator[Hit]:
    return _support(ctx, "unenforced")  # partial support is compile's (verbose) note, not lint's


def check_owner(ctx: Context) -> Iterator[Hit]:
    if not ctx.require_owner:
        return
    for item in (*ctx.policy.rules, *ctx.policy.syscalls, *ctx.policy.files):
        if item.owner is None:
            yield Hit("rule has no owner", item.id, item.span,
                      "add owner \"team@example.com\": someone must answer for it")


def _host_check(spec: lockout.Spec) -> Check:
    """A lockout/dependency check (review/lockout.py) as a lint check."""
    def run(ctx: Context) -> Iterator[Hit]:
        for f in spec.run(ctx.policy, ctx.management_ports):
            yield Hit(f.message, f.rule_id, f.span, f.hint)
    return Check(spec.id, spec.severity, spec.title, spec.help, run)


HOST_CHECKS: tuple[Check, ...] = tuple(_host_check(spec) for spec in lockout.SPECS)

CHECKS: tuple[Check, ...] = (
    Check("expired", Severity.ERROR, "Expired rule",
          "The rule's 'expires' date has passed: renew it after review, or remove it.", check_expired),
    Check("expiring", Severity.WARNING, "Rule expires soon",
          f"The rule expires within {EXPIRY_WARNING_DAYS} days.", check_expiring),
    Check("wide-egress", Severity.WARNING, "Egress to everything or a wide range",
          "Egress to 0.0.0.0/0, ::/0 or any, or to a /8 (IPv6 /32) or wider without ports, "
          "defeats an allowlist.", check_wide_egress),
    Check("gateway-exposed", Severity.ERROR, "Gateway reachable beyond loopback/tailnet",
          f"Ingress to the OpenClaw gateway port {GATEWAY_PORT} from outside loopback and the "
          "Tailscale ranges exposes the agent's control plane.", check_gateway_exposed),
    Check("mdns-allowed", Severity.WARNING, "mDNS allowed",
          "udp 5353 to 224.0.0.251/ff02::fb lets the gateway announce itself on the LAN.", check_mdns),
    Check("dns-any-resolver", Severity.WARNING, "DNS to any resolver",
          "DNS allowed to any or a wide range is an exfiltration channel.", check_dns_any_resolver),
    Check("metadata-reachable", Severity.ERROR, "Cloud metadata reachable",
          f"{METADATA}, fd00:ec2::254 and other metadata endpoints hand out credentials; the "
          "agent must not reach them.", check_metadata),
    Check("public-suffix-wildcard", Severity.ERROR, "Wildcard over a public suffix",
          "*.com, *.co.uk or *.github.io (any Public Suffix List entry) match names anyone can "
          "register.", check_public_suffix_wildcard),
    Check("dangerous-capability", Severity.WARNING, "Dangerous capability kept",
          f"{', '.join(DANGEROUS_CAPS)} give raw network or system control.",
          check_dangerous_capabilities),
    Check("credentials-not-denied", Severity.NOTE, "Credential directories not denied",
          f"A policy that confines the process should deny {', '.join(CREDENTIAL_DIRS)}.",
          check_credentials),
    Check("fqdn-without-dns", Severity.WARNING, "FQDN rule without a DNS path",
          "Names need DNS: add 'dns local' or an allow rule to port 53.", check_fqdn_without_dns),
    Check("shadowed", Severity.NOTE, "Allow rule shadowed",
          "Another allow rule of the same direction already allows everything this one does.",
          check_shadowed),
    Check("cancelled-allow", Severity.WARNING, "Allow rule cancelled by a deny",
          "Deny overrides allow: deny rules (or 'dns local') refuse everything this allow names, "
          "so it never lets anything through.", check_cancelled_allow),
    Check("redundant-deny", Severity.NOTE, "Deny rule never matches",
          "No allow rule overlaps the deny, so default deny already covers it.",
          check_redundant_deny),
    Check("unenforced", Severity.WARNING, "Not enforced by the selected targets",
          "No selected enforcing target enforces this part of the policy.", check_unenforced),
    Check("missing-owner", Severity.WARNING, "Rule without owner",
          "Org setting (--require-owner): every rule names an owner.", check_owner),
    *HOST_CHECKS,
)


def lint(policy: Policy, *, today: dt.date, targets: Sequence[str],
         require_owner: bool = False, management_ports: Sequence[int] = (22,)) -> list[Finding]:
    """Run every check on `policy`; findings sorted by position, then check id.
    `management_ports`: the TCP ports operators log in on (the lockout check)."""
    ctx = Context(policy, today, tuple(targets), require_owner, tuple(management_ports))
    out = [Finding(check.id, check.severity, hit.message, hit.rule_id,
                   Location(hit.span.file, hit.span.line, hit.span.col), hit.hint)
           for check in CHECKS for hit in check.run(ctx)]
    return sorted(out, key=Finding.sort_key)


def at_or_above(findings: Iterable[Finding], threshold: Severity) -> bool:
    return any(SEVERITY_RANK[f.severity] >= SEVERITY_RANK[threshold] for f in findings)


def render_text(findings: Iterable[Finding]) -> str:
    lines = []
    for f in findings:
        loc = f.location
        rule = f" ({f.rule_id})" if f.rule_id else ""
        lines.append(f"{loc.file}:{loc.line}:{loc.col}: {f.severity.value}: [{f.check}] {f.message}{rule}")
        if f.hint:
            lines.append(f"  hint: {f.hint}")
    return "\n".join(lines)


def to_json(findings: Iterable[Finding]) -> list[dict[str, object]]:
    return [{"check": f.check, "severity": f.severity.value, "message": f.message, "rule": f.rule_id,
             "file": f.location.file, "line": f.location.line, "col": f.location.col, "hint": f.hint}
            for f in findings]
