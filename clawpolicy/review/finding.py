"""Lint findings: the data every lint check reports and every output format reads.

Kept apart from the checks so SARIF, JSON and text rendering (and the check modules
themselves) share one model without importing each other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from clawpolicy.errors import Location, Severity
from clawpolicy.ir import Policy, Span

SEVERITY_RANK = {Severity.NOTE: 0, Severity.WARNING: 1, Severity.ERROR: 2}


@dataclass(frozen=True)
class Suppression:
    """Why a finding was accepted and where that is written (review/suppress.py); `kind` is
    SARIF's: `inSource` (a comment in the policy) or `external` (the project config)."""

    kind: Literal["inSource", "external"]
    justification: str
    location: Location | None = None


@dataclass(frozen=True)
class LintIgnore:
    """A project-wide suppression (`[[lint.ignore]]` in the config): a check, optionally
    narrowed to one rule ID and/or one policy file, and the reason a reviewer accepted it."""

    check: str
    reason: str
    rule: str | None = None
    file: Path | None = None  # resolved against the config file's directory
    location: Location | None = None  # where in the config it is written


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    message: str
    rule_id: str | None
    location: Location
    hint: str
    suppression: Suppression | None = None  # accepted by a comment or the config: shown, not counted

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


def at_or_above(findings: Iterable[Finding], threshold: Severity) -> bool:
    """Whether an unsuppressed finding reaches `threshold` (the exit status of `lint`)."""
    return any(SEVERITY_RANK[f.severity] >= SEVERITY_RANK[threshold]
               for f in findings if f.suppression is None)


def render_text(findings: Iterable[Finding]) -> str:
    """Unsuppressed findings, then one line counting the suppressed ones (JSON and SARIF list
    them with their reasons)."""
    lines = []
    suppressed = 0
    for f in findings:
        if f.suppression is not None:
            suppressed += 1
            continue
        loc = f.location
        rule = f" ({f.rule_id})" if f.rule_id else ""
        lines.append(f"{loc.file}:{loc.line}:{loc.col}: {f.severity.value}: [{f.check}] {f.message}{rule}")
        if f.hint:
            lines.append(f"  hint: {f.hint}")
    if suppressed:
        lines.append(f"{suppressed} suppressed finding{'s' if suppressed > 1 else ''} not shown "
                     "(--format json or sarif lists them with their reasons)")
    return "\n".join(lines)


def to_json(findings: Iterable[Finding]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for f in findings:
        item: dict[str, object] = {
            "check": f.check, "severity": f.severity.value, "message": f.message,
            "rule": f.rule_id, "file": f.location.file, "line": f.location.line,
            "col": f.location.col, "hint": f.hint, "suppressed": f.suppression is not None}
        if f.suppression is not None:
            item["suppression"] = {"kind": f.suppression.kind,
                                   "justification": f.suppression.justification}
        out.append(item)
    return out
