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

from clawpolicy.printable import shown


class ExitCode(enum.IntEnum):
    """Process exit statuses, the contract with deploy pipelines."""

    OK = 0
    POLICY_ERROR = 1  # policy, validation or --check failures
    USAGE = 2  # wrong command line


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True, slots=True)  # one per peer word: 100,000 in a big list
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
    """Render diagnostics compiler-style; `sources` maps file names to text for the caret line.

    Errors come first and are never cut (a wall of warnings must not hide why a compile
    failed); warnings and notes fill what is left of `limit`, then "... and k more"."""
    errors = [d for d in diagnostics if d.severity is Severity.ERROR]
    rest = [d for d in diagnostics if d.severity is not Severity.ERROR]
    shown = rest[:max(0, limit - len(errors))]
    out = [_render_one(diag, sources or {}) for diag in (*errors, *shown)]
    hidden = len(rest) - len(shown)
    if hidden > 0:
        out.append(f"... and {hidden} more warning{'s' if hidden > 1 else ''} or notes")
    return "\n".join(out)


def _render_one(diag: Diagnostic, sources: dict[str, str]) -> str:
    loc = diag.location
    head = f"{diag.severity.value}: {printable(diag.message)}"
    lines = []
    if loc is None:
        lines.append(f"clawpolicy: {head}")
    elif loc.line <= 0:
        lines.append(f"{printable(loc.file)}: {head}")
    else:
        lines.append(f"{printable(loc.file)}:{loc.line}:{loc.col}: {head}")
        text = sources.get(loc.file)
        if text is None:
            text = _policy_text(loc.file)
        if text is not None:
            src_lines = text.split("\n")  # lark counts only \n as a line break
            if 0 < loc.line <= len(src_lines):
                lines.extend(_caret(src_lines[loc.line - 1], loc))
    if diag.hint:
        lines.append(f"  hint: {printable(diag.hint)}")
    return "\n".join(lines)


def _caret(line: str, loc: Location) -> list[str]:
    """The source line, escaped, and a caret under the span: columns count characters of the
    raw line, so the caret is placed by the width of the escaped text before it."""
    line = line.removesuffix("\r")  # a CRLF file's line end is not part of the line
    same_line = loc.end_line in (0, loc.line)
    start = max(0, loc.col - 1)
    end = loc.end_col - 1 if same_line and loc.end_col > loc.col else start + 1
    before = _source_text(line[:start])
    marked = _source_text(line[start:end]) or " "
    width = max(1, len(marked))
    return [f"  {loc.line:>4} | {_source_text(line)}",
            "       | " + " " * len(before) + "^" * width]


def _source_text(text: str) -> str:
    return printable(text.replace("\t", " "))


def _policy_text(file: str) -> str | None:
    """A file's text for the caret line, only when it is a policy file (never quote others)."""
    from clawpolicy.sources import SourceError, read_policy  # same floor; imported lazily

    try:
        return read_policy(Path(file))
    except (OSError, SourceError, ValueError):
        return None


def printable(text: str) -> str:
    """`text` safe to print on a terminal: one escaper for every writer (`printable.shown`:
    control, bidi and other hidden characters as visible \\xNN / \\uNNNN escapes)."""
    return shown(text)


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The best 'did you mean' candidate, or None when nothing is close."""
    import difflib

    matches = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return matches[0] if matches else None
