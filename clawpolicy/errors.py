"""Positioned diagnostics: floor 1 of the pipeline, shared by every stage.

Every stage reports problems as `Diagnostic`s that carry a source span, so the CLI can
render them the way compilers do (``file:line:col: error: message``, the source line, a
caret and a hint). Stages collect diagnostics and raise one `PolicyError` at the end, so a
user sees all problems of a file in one run, not one per run.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class ExitCode(enum.IntEnum):
    """Process exit statuses, the contract with deploy pipelines."""

    OK = 0
    POLICY_ERROR = 1  # policy, validation or --check failures
    USAGE = 2  # wrong command line


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True)
class Location:
    """Where a diagnostic points: 1-based line and column, and where the construct ends."""

    file: str
    line: int = 0
    col: int = 0
    end_col: int = 0
    end_line: int = 0  # 0: same line as `line`


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    message: str
    location: Location | None = None
    hint: str | None = None
    code: str = ""  # short machine-readable category, e.g. "syntax", "unknown-name"


@dataclass
class Diagnostics:
    """An ordered collector; stages append and check `has_errors` before going on."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(self, message: str, location: Location | None = None, hint: str | None = None,
              code: str = "") -> None:
        self.items.append(Diagnostic(Severity.ERROR, message, location, hint, code))

    def warning(self, message: str, location: Location | None = None, hint: str | None = None,
                code: str = "") -> None:
        self.items.append(Diagnostic(Severity.WARNING, message, location, hint, code))

    def extend(self, other: Iterable[Diagnostic]) -> None:
        self.items.extend(other)

    @property
    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.items)

    def raise_if_errors(self) -> None:
        if self.has_errors:
            raise PolicyError(self.items)


class PolicyError(Exception):
    """The policy cannot be compiled; carries every diagnostic collected so far."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        first = next((d for d in self.diagnostics if d.severity is Severity.ERROR), None)
        super().__init__(first.message if first else "policy error")


MAX_RENDERED_ERRORS = 20


def render(diagnostics: Sequence[Diagnostic], sources: dict[str, str] | None = None,
           limit: int = MAX_RENDERED_ERRORS) -> str:
    """Render diagnostics compiler-style; `sources` maps file names to text for the caret line."""
    out: list[str] = []
    shown = list(diagnostics)[:limit]
    for diag in shown:
        out.append(_render_one(diag, sources or {}))
    hidden = len(diagnostics) - len(shown)
    if hidden > 0:
        out.append(f"... and {hidden} more")
    return "\n".join(out)


def _render_one(diag: Diagnostic, sources: dict[str, str]) -> str:
    loc = diag.location
    head = f"{diag.severity.value}: {diag.message}"
    lines = []
    if loc is None:
        lines.append(f"clawpolicy: {head}")
    elif loc.line <= 0:
        lines.append(f"{loc.file}: {head}")
    else:
        lines.append(f"{loc.file}:{loc.line}:{loc.col}: {head}")
        text = sources.get(loc.file)
        if text is None:
            try:
                text = Path(loc.file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                text = None
        if text is not None:
            src_lines = text.split("\n")  # lark counts only \n as a line break
            if 0 < loc.line <= len(src_lines):
                src = src_lines[loc.line - 1].replace("\t", " ")
                same_line = loc.end_line in (0, loc.line)
                width = max(1, loc.end_col - loc.col) if same_line and loc.end_col > loc.col else 1
                lines.append(f"  {loc.line:>4} | {src}")
                lines.append("       | " + " " * max(0, loc.col - 1) + "^" * width)
    if diag.hint:
        lines.append(f"  hint: {diag.hint}")
    return "\n".join(lines)


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The best 'did you mean' candidate, or None when nothing is close."""
    import difflib

    matches = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return matches[0] if matches else None
