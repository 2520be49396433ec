"""Golden files: every example and target against generated/, and edge cases against
tests/golden/expected/. Discovered by file name, one subtest per (policy, target).

A mismatch prints a unified diff. Regenerate only on purpose (`make golden`), then read the
diff in review: these files are the compiler's reviewed output, not a snapshot to accept.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from regenerate import regenerate

from clawpolicy.backends.registry import DEFAULT_TARGETS
from clawpolicy.compiler import compile_paths
from clawpolicy.write import MANIFEST, apply, plan

REPO = Path(__file__).resolve().parents[2]
CASES = sorted((REPO / "tests/golden/cases").glob("*.claw"))


def _is_text(content: bytes) -> bool:
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:16]


def _compare(outputs: dict[str, bytes], root: Path, subtests: pytest.FixtureRequest,
             policies: Iterable[str]) -> None:
    """Every compiled file against its golden, and every golden <policy>/<target> directory
    of the compiled `policies` against the output: a target that writes nothing fails."""
    groups: dict[str, list[str]] = {}
    for policy in policies:
        for expected in sorted((root / policy).iterdir()) if (root / policy).is_dir() else ():
            groups[f"{policy}/{expected.name}"] = []
    for rel in outputs:
        policy, target, _ = rel.split("/", 2)
        groups.setdefault(f"{policy}/{target}", []).append(rel)
    assert groups, f"nothing compiled and nothing expected under {root}"
    for group, rels in sorted(groups.items()):
        with subtests.test(msg=group):  # type: ignore[attr-defined]
            assert rels, f"{root / group} is expected, but the compiler wrote nothing for it"
            on_disk = sorted(p.relative_to(root).as_posix() for p in (root / group).rglob("*")
                             if p.is_file() and p.name != MANIFEST) if (root / group).is_dir() else []
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
    _compare(result.outputs, in_repo / "generated", subtests, [p.name for p in result.policies])


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_case(case: Path, in_repo: Path, subtests: pytest.FixtureRequest) -> None:
    result = compile_paths([case.relative_to(in_repo)], DEFAULT_TARGETS)
    assert result.ok, result.diagnostics
    expected = in_repo / "tests/golden/expected"
    if regenerate():
        apply(expected, result.outputs, plan(expected, result.outputs, result.owned_dirs))
    _compare(result.outputs, expected, subtests, [p.name for p in result.policies])


def test_regenerate_switch(subtests: pytest.FixtureRequest) -> None:
    """Only CLAWPOLICY_REGENERATE=1 rewrites goldens, and never under CI."""
    from regenerate import requested

    cases = {  # environment -> regenerate? (None: refused)
        "unset": ({}, False), "0": ({"CLAWPOLICY_REGENERATE": "0"}, False),
        "empty": ({"CLAWPOLICY_REGENERATE": ""}, False), "yes": ({"CLAWPOLICY_REGENERATE": "yes"}, False),
        "1": ({"CLAWPOLICY_REGENERATE": "1"}, True),
        "1 with CI=false": ({"CLAWPOLICY_REGENERATE": "1", "CI": "false"}, True),
        "1 under CI=true": ({"CLAWPOLICY_REGENERATE": "1", "CI": "true"}, None),
        "1 under CI=1": ({"CLAWPOLICY_REGENERATE": "1", "CI": "1"}, None),
        "0 under CI": ({"CLAWPOLICY_REGENERATE": "0", "CI": "true"}, False),
    }
    for name, (env, expected) in cases.items():
        with subtests.test(msg=name):  # type: ignore[attr-defined]
            if expected is None:
                with pytest.raises(RuntimeError, match="refused when CI is set"):
                    requested(env)
            else:
                assert requested(env) is expected


def test_missing_target_output_fails(tmp_path: Path) -> None:
    """A golden <policy>/<target> directory the compiler wrote nothing for is a failure (a
    target that silently writes nothing would otherwise pass)."""
    (tmp_path / "p/docs").mkdir(parents=True)
    (tmp_path / "p/docs/README.md").write_bytes(b"x\n")
    (tmp_path / "p/nftables").mkdir()
    (tmp_path / "p/nftables/ruleset.nft").write_bytes(b"y\n")

    class Recorder:
        def __init__(self) -> None:
            self.failures: list[str] = []

        def test(self, msg: str) -> Any:
            recorder = self

            class Ctx:
                def __enter__(self) -> None:
                    return None

                def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
                    if exc is not None:
                        recorder.failures.append(msg)
                    return True

            return Ctx()

    rec = Recorder()
    _compare({"p/docs/README.md": b"x\n"}, tmp_path, rec, ["p"])  # type: ignore[arg-type]
    assert rec.failures == ["p/nftables"]
    rec = Recorder()
    _compare({"p/docs/README.md": b"x\n", "p/nftables/ruleset.nft": b"y\n"}, tmp_path, rec, ["p"])  # type: ignore[arg-type]
    assert rec.failures == []
