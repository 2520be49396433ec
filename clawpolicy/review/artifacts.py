"""The generated artifacts two versions of a policy produce, and their textual diff. Floor 3.

A reviewer reads the semantic diff first; this is the second section, for those who want to
see the nftables, seccomp or AppArmor text that changes.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from clawpolicy.backends.base import display_path
from clawpolicy.ir import Policy
from clawpolicy.markdown import md_text


@dataclass(frozen=True)
class ArtifactChange:
    path: str  # as under generated/: "<policy>/<target>/<file>"
    status: str  # added, removed, changed
    added: int  # lines (0 for binary files)
    removed: int
    diff: str  # unified diff; a one-line note for binary files

    def stat(self) -> str:
        return f"+{self.added} −{self.removed}" if self.diff and not self.binary else self.status

    @property
    def binary(self) -> bool:
        return self.diff.startswith("binary")


def _text(data: bytes) -> list[str] | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text.splitlines(keepends=True)


def _renamed(data: bytes | None, spellings: Mapping[str, str]) -> bytes | None:
    """`data` with each spelling of an input's name (as given, and Markdown-escaped in the
    docs target) written as the new input's name as given: the same on both sides, so the
    names alone never make a difference."""
    if data is None or not spellings:
        return data
    for old, new in spellings.items():
        for spelling in sorted({md_text(old), old}, key=len, reverse=True):
            if spelling != new:
                data = data.replace(spelling.encode("utf-8"), new.encode("utf-8"))
    return data


def input_names(given: Sequence[str], old: Sequence[Policy], new: Sequence[Policy]) -> dict[str, str]:
    """`diff OLD NEW`: each spelling of the old input's name an artifact may carry, mapped to
    the new input's. Artifacts name their source as lowering recorded it (relative to the
    working directory) or, outside it, by file name alone (`display_path`), so the names as
    given on the command line are not enough: `diff /tmp/a/old.claw /tmp/b/new.claw` differed
    in every comment and source column. A name without '.' or '/' is left alone: replacing
    `a` with `b` everywhere in the text would make differences, not hide them."""
    pairs = {given[0]: given[1]}
    if old and new:
        pairs[old[0].source] = new[0].source
        pairs[display_path(old[0].source)] = display_path(new[0].source)
    return {a: b for a, b in pairs.items() if a != b and ("." in a or "/" in a)}


def artifact_changes(old: Mapping[str, bytes], new: Mapping[str, bytes],
                     prefix: str = "generated/", renames: Mapping[str, str] | None = None) -> list[ArtifactChange]:
    """Every artifact whose bytes differ, sorted by path. `renames`: old input path -> new
    one (`diff old.claw new.claw`): artifacts embed their source's name, and a difference
    that only comes from the two files' names is no change."""
    out: list[ArtifactChange] = []
    for path in sorted(old.keys() | new.keys()):
        before = _renamed(old.get(path), renames or {})
        after = _renamed(new.get(path), {n: n for n in (renames or {}).values()})
        if before == after:
            continue
        status = "added" if before is None else "removed" if after is None else "changed"
        a, b = _text(before or b""), _text(after or b"")
        if a is None or b is None:
            note = (f"binary: {len(before or b'')} → {len(after or b'')} bytes")
            out.append(ArtifactChange(prefix + path, status, 0, 0, note))
            continue
        lines = list(difflib.unified_diff(a, b, f"a/{prefix}{path}", f"b/{prefix}{path}", n=2))
        added = sum(1 for x in lines[2:] if x.startswith("+"))
        removed = sum(1 for x in lines[2:] if x.startswith("-"))
        text = "".join(x if x.endswith("\n") else x + "\n" for x in lines)
        out.append(ArtifactChange(prefix + path, status, added, removed, text))
    return out
