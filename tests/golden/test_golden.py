"""Golden files: every example and target against generated/, and edge cases against
tests/golden/expected/. Discovered by file name, one subtest per (policy, target).

A mismatch prints a unified diff. Regenerate only on purpose (`make golden`), then read the
diff in review: these files are the compiler's reviewed output, not a snapshot to accept.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from pathlib import Path

import pytest

from clawpolicy.backends.registry import DEFAULT_TARGETS
from clawpolicy.compiler import compile_paths
from clawpolicy.write import apply, plan

REPO = Path(__file__).resolve().parents[2]
CASES = sorted((REPO / "tests/golden/cases").glob("*.claw"))
REGENERATE = os.environ.get("CLAWPOLICY_REGENERATE") == "1"


def _is_text(content: bytes) -> bool:
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:16]


def _compare(outputs: dict[str, bytes], root: Path, subtests: pytest.FixtureRequest) -> None:
    groups: dict[str, list[str]] = {}
    for rel in outputs:
        policy, target, _ = rel.split("/", 2)
        groups.setdefault(f"{policy}/{target}", []).append(rel)
    for group, rels in sorted(groups.items()):
        with subtests.test(msg=group):  # type: ignore[attr-defined]
            on_disk = sorted(p.relative_to(root).as_posix() for p in (root / group).rglob("*")
                             if p.is_file()) if (root / group).is_dir() else []
            assert on_disk == sorted(rels), f"files differ in {root / group}"
            for rel in sorted(rels):
                golden = (root / rel).read_bytes()
                if not (_is_text(golden) and _is_text(outputs[rel])):  # e.g. seccomp .bpf
                    assert golden == outputs[rel], (
                        f"golden binary {rel} differs (sha256 {_digest(golden)} golden, "
                        f"{_digest(outputs[rel])} compiled); review, then `make golden`")
                    continue
                old = golden.decode("utf-8").splitlines()
                new = outputs[rel].decode("utf-8").splitlines()
                diff = "\n".join(difflib.unified_diff(old, new, f"{rel} (golden)",
                                                      f"{rel} (compiled)", lineterm=""))
                assert not diff, f"golden file differs; review, then `make golden`:\n{diff}"


def test_examples_match_generated(in_repo: Path, subtests: pytest.FixtureRequest) -> None:
    examples = sorted(Path("examples").glob("*.claw"))
    assert examples, "no examples found"
    result = compile_paths(examples, DEFAULT_TARGETS)
    assert result.ok, result.diagnostics
    _compare(result.outputs, in_repo / "generated", subtests)


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_case(case: Path, in_repo: Path, subtests: pytest.FixtureRequest) -> None:
    result = compile_paths([case.relative_to(in_repo)], DEFAULT_TARGETS)
    assert result.ok, result.diagnostics
    expected = in_repo / "tests/golden/expected"
    if REGENERATE:
        apply(expected, result.outputs, plan(expected, result.outputs, result.owned_dirs))
    _compare(result.outputs, expected, subtests)
