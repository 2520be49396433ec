"""Pinning automatic rule IDs: floor 3 (it lowers the file to learn them), behind
`clawpolicy fmt --add-ids`.

An automatic ID survives edits of a rule's ports, reason, owner and peers, but not every edit
(ruleids.WHAT_CHANGES_AN_ID). Before dashboards and alerts are built on IDs, an operator pins
them: each rule declaration of the file without an `id` gets `id <its current ID>` appended
(a split rule's base ID: its parts stay `.1`, `.2`), then the file is formatted (comments
kept). The policy means the same afterwards, with the same IDs (tested on every example).
"""

from __future__ import annotations

from pathlib import Path

from clawpolicy import ir
from clawpolicy.errors import PolicyError, Severity
from clawpolicy.fmt import format_text
from clawpolicy.lower import load_policies


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _offset(starts: list[int], line: int, col: int) -> int:
    return starts[line - 1] + col - 1


def unpinned(policy: ir.Policy, file: Path) -> list[tuple[ir.Span, str]]:
    """The declarations of `file` in `policy` without an explicit `id`, each once, in source
    order, with the ID to write (a split rule's base ID)."""
    wanted = file.resolve()
    found: dict[tuple[int, int], tuple[ir.Span, str]] = {}
    items: list[ir.Documented] = [*policy.rules, *policy.files, *policy.syscalls, *policy.resolve]
    for item in items:
        s = item.span
        if not item.id_pinned and (s.line, s.col) not in found and Path(s.file).resolve() == wanted:
            found[(s.line, s.col)] = (s, item.id.split(".")[0])
    return [found[k] for k in sorted(found)]


def add_ids(path: Path, text: str, label: str, include_root: Path | None = None) -> str:
    """`text` (the content of `path`) with every automatic rule ID written as an explicit `id`,
    formatted. Raises PolicyError when the file does not compile (nothing to pin)."""
    result = load_policies([path], include_root=include_root)
    errors = [d for d in result.diagnostics if d.severity is Severity.ERROR]
    if errors:
        raise PolicyError(errors)
    starts = _line_starts(text)
    inserts: dict[int, str] = {}
    for policy in result.policies:
        for s, rule_id in unpinned(policy, path):
            inserts[_offset(starts, s.end_line, s.end_col)] = f" id {rule_id}"
    for at in sorted(inserts, reverse=True):
        text = text[:at] + inserts[at] + text[at:]
    return format_text(text, label)
