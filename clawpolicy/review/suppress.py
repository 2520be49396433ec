"""Lint suppressions: floor 3, accepted findings marked, never dropped.

Two ways to accept a finding, each with a reason a reviewer reads:
- in the policy file, a comment on the rule's line or directly above it (other comment lines
  may sit between): `# clawpolicy: ignore[check-id, other-id] why this is acceptable`;
- in the project config: `[[lint.ignore]]` with `check`, optionally `rule` and `file`, and
  `reason` (config.py reads it).
A suppressed finding keeps its place in JSON (`suppressed: true`) and in SARIF (a
`suppressions` entry, kind `inSource` or `external`, with the justification: SARIF 2.1.0
§3.27.23, §3.35); text output hides it and counts it. A comment that names no known check or
gives no reason is an error, so a typo never silently accepts nothing (or everything).
Comments are found with the same token rule as the formatter: a `#` inside a "string" is text.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from clawpolicy.errors import Diagnostic, Location, Severity, closest
from clawpolicy.review.finding import Finding, LintIgnore, Suppression

# A "string" (skipped) or a comment; the second group is the comment.
_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|(#[^\n]*)')
_MARK = re.compile(r"#\s*clawpolicy\s*:")
_DIRECTIVE = re.compile(r"#\s*clawpolicy\s*:\s*ignore\s*\[([^\]]*)\]\s*(.*)$")
SYNTAX = "# clawpolicy: ignore[check-id] reason"


@dataclass(frozen=True)
class Inline:
    """One suppression comment: the checks it accepts, on which line, and why."""

    checks: frozenset[str]
    target_line: int  # the line whose findings it accepts
    suppression: Suppression


def inline_suppressions(file: str, text: str, known: Iterable[str]
                        ) -> tuple[list[Inline], list[Diagnostic]]:
    """Every `# clawpolicy: ignore[...]` comment of one policy file, and the errors in them."""
    known = set(known)
    lines = text.split("\n")
    starts = [0]
    for text_line in lines:
        starts.append(starts[-1] + len(text_line) + 1)
    out: list[Inline] = []
    errors: list[Diagnostic] = []
    line_no = 0
    for m in _TOKEN.finditer(text):
        comment = m.group(1)
        if comment is None or not _MARK.match(comment):
            continue
        while starts[line_no + 1] <= m.start():
            line_no += 1
        line, col = line_no + 1, m.start() - starts[line_no] + 1
        where = Location(file, line, col, col + len(comment))
        parsed = _DIRECTIVE.match(comment)
        if parsed is None:
            errors.append(Diagnostic(Severity.ERROR, "malformed clawpolicy comment", where,
                                     f"write {SYNTAX}", code="suppression"))
            continue
        checks = [c.strip() for c in parsed.group(1).split(",")]
        unknown = [c for c in checks if c not in known]
        reason = parsed.group(2).strip()
        if unknown:
            near = closest(unknown[0], known)
            errors.append(Diagnostic(Severity.ERROR, f"unknown lint check {unknown[0]!r} in an "
                                     "ignore comment", where,
                                     f"did you mean {near!r}?" if near else
                                     f"known checks: {', '.join(sorted(known))}", code="suppression"))
            continue
        if not reason:
            errors.append(Diagnostic(Severity.ERROR, "an ignore comment needs a reason", where,
                                     f"write {SYNTAX}: say why the finding is acceptable",
                                     code="suppression"))
            continue
        own_line = not lines[line_no][:col - 1].strip()
        target = _next_statement(lines, line_no) if own_line else line
        out.append(Inline(frozenset(checks), target, Suppression("inSource", reason, where)))
    return out, errors


def _next_statement(lines: Sequence[str], index: int) -> int:
    """The 1-based line a whole-line comment at `index` (0-based) stands above: the next line
    that is not a comment (0 when a blank line or the end comes first)."""
    for i in range(index + 1, len(lines)):
        stripped = lines[i].strip()
        if not stripped:
            return 0
        if not stripped.startswith("#"):
            return i + 1
    return 0


def apply(findings: Sequence[Finding], inline: dict[str, list[Inline]],
          ignores: Sequence[LintIgnore]) -> list[Finding]:
    """`findings` with `suppression` set where a comment (first) or the config accepts them.
    `inline`: file (as the findings name it) -> its comments."""
    out = []
    for f in findings:
        found = next((i.suppression for i in inline.get(f.location.file, ())
                      if f.check in i.checks and i.target_line == f.location.line), None)
        if found is None:
            found = next((Suppression("external", ig.reason, ig.location) for ig in ignores
                          if _matches(ig, f)), None)
        out.append(dataclasses.replace(f, suppression=found) if found is not None else f)
    return out


def _matches(ignore: LintIgnore, finding: Finding) -> bool:
    if ignore.check != finding.check:
        return False
    if ignore.rule is not None and ignore.rule != finding.rule_id:
        return False
    return ignore.file is None or Path(finding.location.file).resolve() == ignore.file
