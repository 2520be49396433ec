"""Artifacts to disk: floor 1. Compare first, then write changed files atomically.

Compile collects every artifact of every policy and target in memory before this module is
called, so a failing compile writes nothing. Here each changed file is written to a temporary
file beside its destination and renamed over it (rename is atomic on POSIX), and files a
target no longer produces are removed from that target's own directory only. `plan` is the
shared comparison, so `--check` reports exactly what a write would change.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Output tree: <root>/<policy>/<target>/<artifact path>. Keys are those relative paths.
Outputs = Mapping[str, bytes]


@dataclass(frozen=True)
class Plan:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: tuple[str, ...]

    @property
    def stale(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def plan(root: Path, outputs: Outputs, owned_dirs: set[str]) -> Plan:
    """What writing `outputs` under `root` would change; `owned_dirs` (relative) are the
    target directories whose other files are stale leftovers."""
    added, changed, unchanged = [], [], []
    for rel, content in sorted(outputs.items()):
        path = root / rel
        if not path.exists():
            added.append(rel)
        elif path.read_bytes() != content:
            changed.append(rel)
        else:
            unchanged.append(rel)
    removed = []
    for owned in sorted(owned_dirs):
        base = root / owned
        if base.is_dir():
            for path in sorted(p for p in base.rglob("*") if p.is_file()):
                rel = path.relative_to(root).as_posix()
                if rel not in outputs:
                    removed.append(rel)
    return Plan(tuple(added), tuple(changed), tuple(removed), tuple(unchanged))


def apply(root: Path, outputs: Outputs, result: Plan) -> None:
    for rel in (*result.added, *result.changed):
        atomic_write(root / rel, outputs[rel])
    for rel in result.removed:
        (root / rel).unlink()


def atomic_write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def describe(root: Path, outputs: Outputs, result: Plan, context_lines: int = 2,
             max_lines: int = 40) -> str:
    """A human summary of a stale plan, with a short unified diff per changed file."""
    lines: list[str] = []
    for rel in result.added:
        lines.append(f"missing: {root / rel}")
    for rel in result.removed:
        lines.append(f"no longer generated: {root / rel}")
    for rel in result.changed:
        lines.append(f"differs: {root / rel}")
        old = (root / rel).read_text(encoding="utf-8", errors="replace").splitlines()
        new = outputs[rel].decode("utf-8", errors="replace").splitlines()
        diff = list(difflib.unified_diff(old, new, f"{rel} (on disk)", f"{rel} (compiled)",
                                         n=context_lines, lineterm=""))
        lines.extend("    " + d for d in diff[:max_lines])
        if len(diff) > max_lines:
            lines.append(f"    ... {len(diff) - max_lines} more diff lines")
    return "\n".join(lines)
