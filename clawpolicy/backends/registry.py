"""The table of targets, and the one check of what a policy asks against what targets enforce.

Adding a target means: its module, its templates, one line in `TARGET_MODULES` (and in
the type-checked table below it), and its support table in `support_tables` (which the
support check reads without importing the target).

The table maps target names to module paths, imported when a target is first looked up:
importing every backend (jinja2, YAML, the seccomp baseline, ...) cost a `compile -t
nftables` about 65 ms of start-up for targets it never builds (issue 14). mypy still checks
every module against `Backend` through `_checked`, which exists for the type checker only.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING

from clawpolicy.backends import support_tables
from clawpolicy.backends.base import Backend, CompileOptions, Feature, Level, Support
from clawpolicy.errors import Diagnostic, Location, Severity
from clawpolicy.ir import Action, Direction, Mode, Policy, Rule, Span

# target name -> the module whose BACKEND builds it, in the default (and help) order
TARGET_MODULES: dict[str, str] = {
    "nftables": "clawpolicy.backends.nftables",
    "dnsmasq": "clawpolicy.backends.dnsmasq",
    "dnsgate": "clawpolicy.backends.dnsgate",
    "seccomp": "clawpolicy.backends.seccomp",
    "apparmor": "clawpolicy.backends.apparmor",
    "k8s": "clawpolicy.backends.k8s",
    "systemd": "clawpolicy.backends.systemd",
    "docs": "clawpolicy.backends.docs",
}

if TYPE_CHECKING:  # the static table: mypy checks each module's BACKEND against the Protocol
    from clawpolicy.backends import apparmor, dnsgate, dnsmasq, docs, k8s, nftables, seccomp, systemd

    def _checked() -> dict[str, Backend]:  # a function: its body is checked after the cycle
        return {
            "nftables": nftables.BACKEND, "dnsmasq": dnsmasq.BACKEND, "dnsgate": dnsgate.BACKEND,
            "seccomp": seccomp.BACKEND, "apparmor": apparmor.BACKEND, "k8s": k8s.BACKEND,
            "systemd": systemd.BACKEND, "docs": docs.BACKEND,
        }


class BackendTable(MutableMapping[str, Backend]):
    """Target name -> Backend, each module imported on first lookup. Keys (and their order)
    come from the names alone, so listing targets (`--target` choices, defaults) imports
    nothing. Assignable, so a test can add a stand-in target."""

    def __init__(self, modules: Mapping[str, str]) -> None:
        self._modules = dict(modules)
        self._loaded: dict[str, Backend] = {}

    def __getitem__(self, name: str) -> Backend:
        backend = self._loaded.get(name)
        if backend is None:
            backend = importlib.import_module(self._modules[name]).BACKEND
            self._loaded[name] = backend
        return backend

    def __setitem__(self, name: str, backend: Backend) -> None:
        self._modules.setdefault(name, "")
        self._loaded[name] = backend

    def __delitem__(self, name: str) -> None:
        del self._modules[name]
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __contains__(self, name: object) -> bool:
        return name in self._modules


BACKENDS = BackendTable(TARGET_MODULES)
DEFAULT_TARGETS: tuple[str, ...] = tuple(TARGET_MODULES)  # narrowed per policy by `targets_for`
NODE_NETWORK_TARGETS = ("nftables", "dnsmasq", "dnsgate")


def targets_for(policy: Policy, targets: Sequence[str], options: CompileOptions | None = None,
                explicit: bool = False) -> tuple[list[str], list[Diagnostic]]:
    """The targets that make sense for this policy. By default k8s is built only for pods
    (or with --k8s-selector), and nftables/dnsmasq not for pods: the cluster carries the
    network policy. Asked for explicitly, k8s without pods to select is an error, and the
    node targets compile a pods policy as for a host (a pod's own network namespace)."""
    options = options or CompileOptions()
    pods = policy.scope.kind == "pods" or bool(options.k8s_selector)
    loc = Location(policy.source, policy.span.line, policy.span.col)
    chosen: list[str] = []
    out: list[Diagnostic] = []
    for target in targets:
        if target == "systemd" and (not explicit or policy.scope.kind == "pods"):
            continue  # only when asked: not every agent runs as a systemd unit
        if target == "k8s" and not pods:
            if explicit:
                out.append(Diagnostic(
                    Severity.ERROR, f"{policy.name}: --target k8s needs pods to select, but the "
                    f"policy applies to {policy.scope.kind}", loc,
                    "write 'applies-to pods app=openclaw in namespace NAME' in the policy, or "
                    "pass --k8s-selector app=openclaw [--k8s-namespace NAME]", code="k8s"))
            continue
        if target in NODE_NETWORK_TARGETS and policy.scope.kind == "pods":
            if not explicit:
                continue
            out.append(Diagnostic(Severity.NOTE, f"{policy.name}: {target} compiles a pods policy "
                                  "as for a host; load it in the pod's network namespace", loc,
                                  code="scope"))
        chosen.append(target)
    return chosen, out


def support_of(backend: Backend, options: CompileOptions | None) -> Mapping[Feature, Support]:
    """A backend's support table; the k8s target's depends on its flavour and the lock."""
    if backend.name == "k8s" and options is not None:
        return support_tables.k8s_support_for(options)
    return backend.support


def declared(name: str, options: CompileOptions | None) -> tuple[bool, Mapping[Feature, Support]]:
    """(enforces, support table) of a target without importing its module: from
    `support_tables` for the built-in targets, from the backend itself for a stand-in."""
    if name not in support_tables.TARGETS:
        return BACKENDS[name].enforces, BACKENDS[name].support
    enforces, table = support_tables.TARGETS[name]
    if name == "k8s" and options is not None:
        return enforces, support_tables.k8s_support_for(options)
    return enforces, table


def features_used(policy: Policy) -> Iterator[tuple[Feature, str, Span]]:
    """Every (feature, rule id, span) the policy relies on, in a stable order."""
    for rule in policy.rules:
        if rule.peers.any or rule.peers.ipv4 or rule.peers.ipv6:
            yield Feature.CIDR_PORT, rule.id, rule.span
        if rule.peers.names:
            yield Feature.FQDN, rule.id, rule.span
        if rule.peers.wildcards:
            yield Feature.WILDCARD, rule.id, rule.span
        if rule.action is Action.DENY:
            yield Feature.EXPLICIT_DENY, rule.id, rule.span
        if rule.direction is Direction.INGRESS:
            yield Feature.INGRESS, rule.id, rule.span
    if policy.scope.kind == "user":
        yield Feature.USER_SCOPE, "applies-to", policy.span
    if policy.capabilities is not None:
        yield Feature.CAPABILITIES, "capabilities", policy.capabilities.span
    if policy.sockets is not None:
        yield Feature.SOCKETS, "sockets", policy.sockets.span
    for s in policy.syscalls:
        yield Feature.SYSCALLS, s.id, s.span
    for f in policy.files:
        yield Feature.FILES, f.id, f.span
    if policy.mode is Mode.SHADOW:
        yield Feature.LOG_ONLY, "mode", policy.span


def check_support(policy: Policy, targets: Sequence[str], strict: bool = False,
                  options: CompileOptions | None = None, explicit: bool = False) -> list[Diagnostic]:
    """Say which rules the selected targets cannot enforce (warnings; errors when strict).

    A rule is reported when no selected enforcing target enforces it fully; partial support is
    a note naming how the target approximates it. `explicit`: the user named the targets, so a
    rule another (unselected) target enforces is a division of labour, not a gap: a note with
    code "enforced-elsewhere" (the CLI sums these up in one line), never an error. The
    unselected targets are judged from `support_tables`, without importing them."""
    enforcing = [BACKENDS[t] for t in targets if BACKENDS[t].enforces]
    others: list[str] | None = None  # the unselected targets that apply: listed only if asked

    def unselected() -> list[str]:
        nonlocal others
        if others is None:
            others = [n for n in targets_for(policy, list(BACKENDS), options, explicit=True)[0]
                      if n not in targets] if explicit else []
        return others

    out: list[Diagnostic] = []
    reported: set[tuple[Feature, str]] = set()
    for feature, rule_id, span in features_used(policy):
        if (feature, rule_id) in reported:
            continue
        reported.add((feature, rule_id))
        levels = {b.name: support_of(b, options).get(feature) for b in enforcing}
        if any(s is not None and s.level is Level.YES for s in levels.values()):
            continue
        loc = Location(span.file, span.line, span.col)
        partial = [(n, s) for n, s in levels.items() if s is not None and s.level is Level.PARTIAL]
        if partial:
            name, s = partial[0]
            out.append(Diagnostic(Severity.NOTE, f"{rule_id}: {feature.value} enforced only partly "
                                  f"by {name}: {s.how}", loc, code="partial-support"))
            continue
        cover = _covering_allow(policy, rule_id, feature, enforcing, options)
        if cover is not None:
            out.append(Diagnostic(Severity.NOTE, f"{rule_id}: {feature.value} not enforced by "
                                  f"{cover[1]}, which lets all of it through by {cover[0]} "
                                  "(every address on the same ports)", loc, code="covered"))
            continue
        elsewhere = [n for n in unselected() if (table := declared(n, options))[0]
                     and (sup := table[1].get(feature)) is not None and sup.level is not Level.NO]
        if elsewhere:
            out.append(Diagnostic(Severity.NOTE, f"{rule_id}: {feature.value} enforced only by "
                                  f"other targets ({', '.join(elsewhere)})", loc,
                                  code="enforced-elsewhere"))
            continue
        why = "; ".join(f"{n}: {s.how}" for n, s in levels.items() if s is not None) or "no target selected"
        out.append(Diagnostic(Severity.ERROR if strict else Severity.WARNING,
                              f"{rule_id}: no selected target enforces {feature.value}",
                              loc, f"{why}. Select a target that enforces it, or drop the rule",
                              code="unenforced"))
    return out


NAME_FEATURES = (Feature.FQDN, Feature.WILDCARD)


def _covering_allow(policy: Policy, rule_id: str, feature: Feature, enforcing: Sequence[Backend],
                    options: CompileOptions | None) -> tuple[str, str] | None:
    """For an allow rule whose names a target cannot match: another allow rule of the same
    direction to every address (`any`, or 0.0.0.0/0 with ::/0) on at least its ports, which
    that target enforces fully. Then dropping the names loses nothing: every flow the rule
    allows is allowed by the wider rule, and the denies refuse the same flows either way.
    Returns (covering rule id, target)."""
    rule = policy.rule(rule_id) if feature in NAME_FEATURES else None
    if rule is None or not isinstance(rule, Rule) or rule.action is not Action.ALLOW:
        return None
    for other in policy.rules:
        everywhere = other.peers.any or (
            any(n.prefixlen == 0 for n in other.peers.ipv4)
            and any(n.prefixlen == 0 for n in other.peers.ipv6))
        if (other.id == rule.id or other.action is not Action.ALLOW or not everywhere
                or other.direction is not rule.direction or not _ports_within(rule, other)):
            continue
        used = {f for f, rid, _ in features_used(policy) if rid == other.id}
        for backend in enforcing:
            table = support_of(backend, options)
            if all((sup := table.get(f)) is not None and sup.level is Level.YES for f in used):
                return other.id, backend.name
    return None


def _ports_within(inner: Rule, outer: Rule) -> bool:
    if not outer.ports:
        return True
    return bool(inner.ports) and all(
        any(o.protocol is i.protocol and o.bounds[0] <= i.bounds[0] and i.bounds[1] <= o.bounds[1]
            for o in outer.ports) for i in inner.ports)
