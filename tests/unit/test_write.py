"""write.py and `compile -o` against a hostile output tree: no write or delete through a
symlink, nothing deleted that compile did not write, clear errors (exit 1, nothing written)
where a file stands in for a directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clawpolicy.cli import main
from clawpolicy.write import MANIFEST, OutputError, apply, plan

GOOD = 'policy demo {\n  applies-to host\n  allow egress to 192.0.2.10 port 443/tcp reason "r"\n}\n'
COMPILE = ["compile", "demo.claw", "-t", "docs", "-t", "nftables", "-o", "out"]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo.claw").write_text(GOOD)
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "README.md").write_text("keep me\n")
    (tmp_path / "victim" / "ruleset.nft").write_text("keep me too\n")
    (tmp_path / "victim" / "other").write_text("mine\n")
    yield tmp_path


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def test_symlinks_in_the_output_tree_are_never_followed(workdir: Path, subtests: pytest.Subtests,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    victim = workdir / "victim"
    before = _snapshot(victim)
    layouts = {  # what to put in the way -> (path relative to out, link target)
        "target directory": ("demo/docs", victim),
        "policy directory": ("demo", victim),
        "relative link out": ("demo/nftables", Path("../../victim")),
    }
    for name, (rel, target) in layouts.items():
        with subtests.test(msg=name):
            assert main(COMPILE) == 0
            link = workdir / "out" / rel
            for p in sorted(link.rglob("*"), reverse=True):
                p.unlink() if p.is_file() else p.rmdir()
            link.rmdir()
            link.symlink_to(target)
            for extra in ([], ["--check"]):
                capsys.readouterr()
                assert main([*COMPILE, *extra]) == 1
                err = capsys.readouterr().err
                assert "symlink" in err and "Traceback" not in err
                assert _snapshot(victim) == before
            link.unlink()


def test_a_symlinked_artifact_is_replaced_not_followed(workdir: Path) -> None:
    assert main(COMPILE) == 0
    artifact = workdir / "out/demo/nftables/ruleset.nft"
    artifact.unlink()
    artifact.symlink_to(workdir / "victim" / "ruleset.nft")
    assert main(COMPILE) == 0
    assert not artifact.is_symlink() and "192.0.2.10" in artifact.read_text()
    assert (workdir / "victim" / "ruleset.nft").read_text() == "keep me too\n"


def test_only_files_compile_wrote_are_removed(workdir: Path) -> None:
    assert main(COMPILE) == 0
    target = workdir / "out/demo/nftables"
    (target / "notes.txt").write_text("a human's file\n")
    (target / MANIFEST).write_text((target / MANIFEST).read_text() + "old.nft\n../../../victim/other\n")
    (target / "old.nft").write_text("written by an earlier compile\n")
    assert main(COMPILE) == 0
    assert not (target / "old.nft").exists()  # listed in the manifest: stale, removed
    assert (target / "notes.txt").read_text() == "a human's file\n"  # never written: kept
    assert (workdir / "victim" / "other").exists()  # a path escaping the directory: ignored
    assert "old.nft" not in (target / MANIFEST).read_text()


def test_files_where_directories_must_be(workdir: Path, subtests: pytest.Subtests,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    cases = {"-o is a file": "out", "policy directory is a file": "out/demo",
             "target directory is a file": "out/demo/docs"}
    for name, blocker in cases.items():
        with subtests.test(msg=name):
            path = workdir / blocker
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("in the way\n")
            capsys.readouterr()
            assert main(COMPILE) == 1
            err = capsys.readouterr().err
            assert "Traceback" not in err and "nothing was written" in err
            assert path.read_text() == "in the way\n"
            assert not (workdir / "out" / "demo" / "nftables").exists()
            path.unlink()
    with subtests.test(msg="a directory where an artifact goes"):
        (workdir / "out/demo/nftables/ruleset.nft").mkdir(parents=True)
        assert main(COMPILE) == 1
        assert "is a directory" in capsys.readouterr().err
        assert not (workdir / "out/demo/docs").exists()


def test_plan_refuses_unsafe_paths(tmp_path: Path) -> None:
    with pytest.raises(OutputError):
        plan(tmp_path, {"p/t/../../../escape": b"x"}, set())
    outputs = {"p/t/a.txt": b"a"}
    apply(tmp_path, outputs, plan(tmp_path, outputs, {"p/t"}))
    assert (tmp_path / "p/t/a.txt").read_bytes() == b"a"
    assert (tmp_path / "p/t" / MANIFEST).read_text().splitlines()[1:] == ["a.txt"]
    assert not plan(tmp_path, outputs, {"p/t"}).stale
