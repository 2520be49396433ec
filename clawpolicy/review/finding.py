"""Lint findings: the data every lint check reports and every output format reads.

Kept apart from the checks so SARIF, JSON and text rendering (and the check modules
themselves) share one model without importing each other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from clawpolicy.errors import Location, Severity
from clawpolicy.ir import Policy, Span

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
