"""What the three Kubernetes flavours share: floor 2, used by `k8s_vanilla`, `k8s_cilium`,
`k8s_calico` and the entry point `k8s`.

A `Context` carries the policy, where it lands in the cluster (namespace, pod labels, a stable
object name) and what could not be expressed: every rule a flavour cannot enforce is reported
once (a warning; an error under --strict) and written into the object's annotations and the
README, never dropped in silence. Address arithmetic is here too: FQDN rules become addresses
only through a lock file (`compile --lock`), and NetworkPolicy's ipBlock needs allowed ranges
with the denied ones carved out as `except`.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clawpolicy.backends.base import CompileOptions, clip
from clawpolicy.backends.naming import NameClaim
from clawpolicy.errors import Diagnostic, Location, Severity
from clawpolicy.ir import Action, Direction, Policy, Protocol, Rule
from clawpolicy.kubernetes import DEFAULT_NAMESPACE
from clawpolicy.names import METADATA_ENDPOINTS
from clawpolicy.ruleids import CLUSTER_DNS_ID

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
ANNOTATION = "clawpolicy.dev/"
EVERYWHERE: tuple[Net, ...] = (ipaddress.IPv4Network("0.0.0.0/0"), ipaddress.IPv6Network("::/0"))
# The cluster DNS: CoreDNS keeps kube-dns's label in kube-system on kubeadm, GKE, EKS, AKS, k3s.
DNS_NAMESPACE = "kube-system"
DNS_LABELS = {"k8s-app": "kube-dns"}
DNS_RULE_ID = CLUSTER_DNS_ID  # reserved: no rule of the policy has it
DNS_REASON = ("FQDN rules need name resolution: egress to the cluster DNS (kube-dns/CoreDNS "
              "pods in kube-system) on 53/udp and 53/tcp")
# Where the cluster DNS pods may live: pod and service networks are private (RFC 1918, the
# shared 100.64.0.0/10 that EKS and GKE use, IPv6 ULA). Their exact range is not known here.
CLUSTER_RANGES: tuple[Net, ...] = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"))


@dataclass
class Context:
    policy: Policy
    options: CompileOptions
    flavour: str
    namespace: str
    selector: tuple[tuple[str, str], ...]
    diagnostics: list[Diagnostic] = field(default_factory=list)
    unenforced: dict[str, list[str]] = field(default_factory=dict)  # rule id -> why
    notes: list[str] = field(default_factory=list)  # README lines: what else to know
    names: list[NameClaim] = field(default_factory=list)  # derived names (naming.collisions)

    @property
    def name(self) -> str:
        return f"clawpolicy-{self.policy.name}"

    def report(self, rule: Rule, why: str, hint: str | None = None, said: bool = False) -> None:
        """A rule (or part of one) this flavour cannot enforce: said once per rule and reason
        (`said`: the registry's check already warns, from the support table)."""
        if why in self.unenforced.get(rule.id, []):
            return
        self.unenforced.setdefault(rule.id, []).append(why)
        if said:
            return
        self.diagnostics.append(Diagnostic(
            Severity.ERROR if self.options.strict else Severity.WARNING,
            f"{rule.id}: k8s ({self.flavour}) cannot enforce {why}",
            Location(rule.span.file, rule.span.line, rule.span.col), hint, code="unenforced"))

    def metadata(self, rules: Iterable[Rule], extra: dict[str, str] | None = None) -> dict[str, Any]:
        """Name, namespace and the annotations every object carries. Annotation values are
        always strings (reasons as one JSON object), dumped by PyYAML, never templated."""
        chosen = sorted({r.id: r for r in rules}.values(), key=lambda r: r.id)
        reasons = {r.id: clip(r.reason) for r in chosen}  # full texts: the docs target
        annotations = {ANNOTATION + "policy": self.policy.name,
                       ANNOTATION + "source": self.policy.source,
                       ANNOTATION + "mode": self.policy.mode.value,
                       ANNOTATION + "rule-ids": " ".join(reasons),
                       ANNOTATION + "reasons": json.dumps(reasons, sort_keys=True)}
        if self.unenforced:
            annotations[ANNOTATION + "not-enforced"] = json.dumps(self.unenforced, sort_keys=True)
        annotations.update(extra or {})
        return {"name": self.name, "namespace": self.namespace,
                "labels": {"app.kubernetes.io/managed-by": "clawpolicy"},
                "annotations": annotations}


def context(policy: Policy, options: CompileOptions) -> Context:
    """Where the policy lands: the command line's selector/namespace win over the policy's."""
    scope = policy.scope
    selector = options.k8s_selector or scope.pod_selector
    namespace = options.k8s_namespace or scope.namespace or DEFAULT_NAMESPACE
    return Context(policy, options, options.k8s_flavor, namespace, tuple(sorted(selector)))


def needs_dns(policy: Policy) -> bool:
    return any(r.direction.value == "egress" and r.peers.has_fqdns for r in policy.rules)


_METADATA = frozenset(str(ipaddress.ip_address(a)) for a, _ in METADATA_ENDPOINTS)


def dns_denies(ctx: Context) -> tuple[Rule, ...]:
    """The egress denies that may cover the cluster DNS on 53/udp or 53/tcp. The added
    cluster-dns allow must obey deny-overrides like every rule (the evaluator knows no such
    allow, so it says deny there): Calico orders it after the denies and Cilium's egressDeny
    wins over any allow, but NetworkPolicy has no deny and a pod selector cannot carry an
    ipBlock `except`, so the vanilla flavour leaves the allow out. The DNS pods' addresses are
    unknown at compile time: any deny reaching a private range (CLUSTER_RANGES) counts, but for
    networks that are only cloud metadata endpoints (`fd00:ec2::254` is inside fc00::/7), which
    are never a cluster's DNS."""
    if not needs_dns(ctx.policy):
        return ()
    lock = ctx.options.lock or {}
    out = []
    for r in ctx.policy.rules:
        if r.direction is not Direction.EGRESS or r.action is not Action.DENY:
            continue
        if r.ports and not any(p.covers(proto, 53) for p in r.ports
                               for proto in (Protocol.UDP, Protocol.TCP)):
            continue
        nets: Sequence[Net] = EVERYWHERE if r.peers.any else (
            *r.peers.ipv4, *r.peers.ipv6,
            *(ipaddress.ip_network(a) for n in r.peers.names for a in lock.get(n, ())))
        nets = [n for n in nets if n.num_addresses > 1 or str(n.network_address) not in _METADATA]
        if any(n.version == c.version and n.overlaps(c) for n in nets for c in CLUSTER_RANGES):
            out.append(r)
    return tuple(out)


def report_dns_denies(ctx: Context) -> None:
    """Say once, on each deny, that name resolution through the cluster DNS is denied with it
    (FQDN rules then only reach what the pod resolves otherwise)."""
    for r in dns_denies(ctx):
        ctx.diagnostics.append(Diagnostic(
            Severity.WARNING,
            f"{r.id}: this deny may cover the cluster DNS (kube-dns pods in {DNS_NAMESPACE}) on "
            f"53: deny overrides the added `{DNS_RULE_ID}` allow"
            + (", so k8s (vanilla) leaves that allow out" if ctx.flavour == "vanilla" else "")
            + ", and the policy's domain names may not resolve in the pod",
            Location(r.span.file, r.span.line, r.span.col),
            "narrow the deny (ports, or ranges that spare the cluster's pod and service "
            "networks) if pods must resolve names", code="cluster-dns"))


def addresses(ctx: Context, rule: Rule) -> tuple[Net, ...]:
    """The rule's peers as networks: its CIDRs, `any`, and with a lock its names' addresses.
    Names without a lock and wildcards are reported (NetworkPolicy and Calico see no names)."""
    if rule.peers.any:
        return EVERYWHERE
    nets: list[Net] = [*rule.peers.ipv4, *rule.peers.ipv6]
    lock = ctx.options.lock
    for name in rule.peers.names:
        if lock is not None and name in lock:
            nets.extend(ipaddress.ip_network(a) for a in lock[name])
        else:
            ctx.report(rule, f"domain names ({name})", said=True)
    for wildcard in rule.peers.wildcards:
        ctx.report(rule, f"wildcard names (*.{wildcard})", said=True)
    return tuple(nets)


def lock_note(ctx: Context) -> dict[str, str]:
    if ctx.options.lock is None or not any(r.peers.names for r in ctx.policy.rules):
        return {}
    return {ANNOTATION + "lock": ("domain names are the addresses of the lock file at compile "
                                  "time; they go stale when DNS changes: run `clawpolicy resolve "
                                  "--check` in CI and recompile")}


def collapse(nets: Iterable[Net]) -> list[Net]:
    v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def carve(allowed: Iterable[Net], denied: Iterable[Net]) -> tuple[tuple[Net, tuple[Net, ...]], ...]:
    """Allowed minus denied as NetworkPolicy ipBlocks (cidr, except): a denied range that covers
    an allowed one removes it, one inside it becomes an `except` (which must lie inside cidr)."""
    deny = collapse(denied)
    out = []
    for net in collapse(allowed):
        if any(net.version == d.version and net.subnet_of(d) for d in deny):  # type: ignore[arg-type]
            continue
        inside = tuple(d for d in deny if d.version == net.version and d != net
                       and d.subnet_of(net))  # type: ignore[arg-type]
        out.append((net, inside))
    return tuple(out)


def expand(blocks: Sequence[tuple[Net, Sequence[Net]]]) -> list[Net]:
    """ipBlocks as disjoint networks (for comparing two address sets)."""
    out: list[Net] = []
    for net, excepts in blocks:
        parts: list[Any] = [net]
        for ex in excepts:
            parts = [q for p in parts for q in ((p,) if not p.overlaps(ex) else
                                                tuple(p.address_exclude(ex)))]
        out.extend(parts)
    return collapse(out)


def covers(outer: Sequence[Net], inner: Sequence[Net]) -> bool:
    """Whether the union of `outer` contains every address of `inner` (both collapsed)."""
    for n in inner:
        if any(n.version == o.version and n.subnet_of(o) for o in outer):  # type: ignore[arg-type]
            continue
        within = [o for o in outer if o.version == n.version and o.subnet_of(n)]  # type: ignore[arg-type]
        inside = sum(o.num_addresses for o in within)
        if inside != n.num_addresses:
            return False
    return True
