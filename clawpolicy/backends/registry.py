"""The table of targets, and the one check of what a policy asks against what targets enforce.

Adding a target means: its module, its templates, and one line in `BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from clawpolicy.backends import apparmor, dnsmasq, docs, nftables, seccomp
from clawpolicy.backends.base import Backend, Feature, Level
from clawpolicy.errors import Diagnostic, Location, Severity
from clawpolicy.ir import Action, Direction, Mode, Policy, Span

BACKENDS: dict[str, Backend] = {
    "nftables": nftables.BACKEND,
    "dnsmasq": dnsmasq.BACKEND,
    "seccomp": seccomp.BACKEND,
    "apparmor": apparmor.BACKEND,
    "docs": docs.BACKEND,
}
DEFAULT_TARGETS: tuple[str, ...] = tuple(BACKENDS)


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


def check_support(policy: Policy, targets: Sequence[str], strict: bool = False) -> list[Diagnostic]:
    """Say which rules the selected targets cannot enforce (warnings; errors when strict).

    A rule is reported when no selected enforcing target enforces it fully; partial support is
    a note naming how the target approximates it."""
    enforcing = [BACKENDS[t] for t in targets if BACKENDS[t].enforces]
    out: list[Diagnostic] = []
    reported: set[tuple[Feature, str]] = set()
    for feature, rule_id, span in features_used(policy):
        if (feature, rule_id) in reported:
            continue
        reported.add((feature, rule_id))
        levels = {b.name: b.support.get(feature) for b in enforcing}
        if any(s is not None and s.level is Level.YES for s in levels.values()):
            continue
        loc = Location(span.file, span.line, span.col)
        partial = [(n, s) for n, s in levels.items() if s is not None and s.level is Level.PARTIAL]
        if partial:
            name, s = partial[0]
            out.append(Diagnostic(Severity.NOTE, f"{rule_id}: {feature.value} enforced only partly "
                                  f"by {name}: {s.how}", loc, code="partial-support"))
            continue
        why = "; ".join(f"{n}: {s.how}" for n, s in levels.items() if s is not None) or "no target selected"
        out.append(Diagnostic(Severity.ERROR if strict else Severity.WARNING,
                              f"{rule_id}: no selected target enforces {feature.value}",
                              loc, f"{why}. Select a target that enforces it, or drop the rule",
                              code="unenforced"))
    return out
