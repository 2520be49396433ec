"""The generated artifacts two versions of a policy produce, and their textual diff. Floor 3.

A reviewer reads the semantic diff first; this is the second section, for those who want to
see the nftables, seccomp or AppArmor text that changes.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass


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


def artifact_changes(old: Mapping[str, bytes], new: Mapping[str, bytes],
                     prefix: str = "generated/") -> list[ArtifactChange]:
    """Every artifact whose bytes differ, sorted by path."""
    out: list[ArtifactChange] = []
    for path in sorted(old.keys() | new.keys()):
        before, after = old.get(path), new.get(path)
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
