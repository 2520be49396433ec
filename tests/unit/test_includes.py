"""Includes and the files named on the command line as hostile input (includes.py, sources.py):
bounded to the policy tree, regular files under a size cap, never quoted unless they are
policies, and no recursion limit or exponential expansion reachable from policy text."""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from clawpolicy import includes
from clawpolicy.cli import main
from clawpolicy.errors import Diagnostic, Location, Severity, render
from clawpolicy.lower import LoadResult, load_policies
from clawpolicy.sources import MAX_POLICY_BYTES

TODAY = dt.date(2026, 11, 1)
SECRET = "hunter2-do-not-print"
POLICY = 'policy p {\n  applies-to host\n  allow egress to @x port 443/tcp reason "r"\n}\n'


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """tmp/repo is the policy tree; tmp/outside holds files a policy must not read."""
    (tmp_path / "repo").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.env").write_text(f"TOKEN={SECRET}\n")
    (tmp_path / "outside" / "defs.claw").write_text("define x = 192.0.2.1\n")
    monkeypatch.chdir(tmp_path / "repo")
    monkeypatch.setenv("CLAWPOLICY_TEST_SECRET", SECRET)
    yield tmp_path / "repo"


def _load(repo: Path, include: str, root: Path | None = None) -> tuple[LoadResult, str]:
    (repo / "main.claw").write_text(f'include "{include}"\n' + POLICY)
    result = load_policies([Path("main.claw")], today=TODAY, include_root=root)
    return result, render(result.diagnostics, result.sources)


def test_includes_stay_in_the_policy_tree(tree: Path, subtests: pytest.Subtests) -> None:
    outside = tree.parent / "outside"
    (tree / "link-out.claw").symlink_to(outside / "defs.claw")
    (tree / "sub").mkdir()
    (tree / "sub" / "dirlink").symlink_to(outside)
    cases = {
        "absolute path to /proc": "/proc/self/environ",
        "absolute path to a policy outside": str(outside / "defs.claw"),
        "dot-dot": "../outside/defs.claw",
        "dot-dot past the root": "sub/../../outside/secret.env",
        "symlinked file": "link-out.claw",
        "symlinked directory": "sub/dirlink/defs.claw",
        "device": "/dev/zero",
    }
    for name, include in cases.items():
        with subtests.test(msg=name):
            result, shown = _load(tree, include)
            assert not result.ok
            assert any(d.code == "include" and "outside the policy tree" in d.message
                       for d in result.diagnostics), shown
            assert SECRET not in shown


def test_include_root_widens_the_tree(tree: Path) -> None:
    result, shown = _load(tree, "../outside/defs.claw", root=tree.parent)
    assert result.ok, shown
    assert main(["compile", "main.claw", "-t", "docs", "-o", "out",
                 "--include-root", str(tree.parent)]) == 0


def test_a_git_work_tree_is_the_policy_repository(tree: Path, subtests: pytest.Subtests,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside git, the bound is the work tree (a `.git` directory, or a worktree's `.git` file),
    so `policies/agent.claw` may include `../common/defs.claw`; nothing above it is reachable."""
    for name, make_git in {"repository": lambda d: (d / ".git").mkdir(),
                           "worktree": lambda d: (d / ".git").write_text("gitdir: /elsewhere\n")}.items():
        with subtests.test(msg=name):
            repo = tree / name
            (repo / "policies").mkdir(parents=True)
            (repo / "common").mkdir()
            make_git(repo)
            (repo / "common" / "defs.claw").write_text("define x = 192.0.2.1\n")
            assert includes.policy_tree(repo / "policies" / "main.claw") == repo.resolve()
            monkeypatch.chdir(repo / "policies")
            result, shown = _load(repo / "policies", "../common/defs.claw")
            assert result.ok, shown
            result, shown = _load(repo / "policies", "../../../outside/defs.claw")
            assert not result.ok
            assert any("outside the policy tree" in d.message for d in result.diagnostics), shown


def test_files_that_are_not_policies_are_never_quoted(tree: Path, subtests: pytest.Subtests) -> None:
    files: dict[str, bytes] = {
        "env-like": f"PATH=/bin\nTOKEN={SECRET}\n".encode(),
        "shadow-like": f"root:$6${SECRET}:19000:0:99999:7:::\n".encode(),
        "word policy then =": f"policy={SECRET}\n".encode(),
        "NUL bytes": f"policy p {{ }}\x00{SECRET}".encode(),
        "not UTF-8": b"\xff\xfe" + SECRET.encode("utf-16-le"),
        "binary": bytes(range(256)) + SECRET.encode(),
    }
    for n, (name, content) in enumerate(files.items()):
        (tree / f"f{n}.txt").write_bytes(content)
        with subtests.test(msg=f"include: {name}"):
            result, shown = _load(tree, f"f{n}.txt")
            assert not result.ok and SECRET not in shown
            assert any(d.code == "io" and "cannot use" in d.message for d in result.diagnostics), shown
        with subtests.test(msg=f"command line: {name}"):
            result = load_policies([tree / f"f{n}.txt"], today=TODAY)
            shown = render(result.diagnostics, result.sources)
            assert not result.ok and SECRET not in shown and not result.sources


def test_render_never_reads_a_non_policy_from_disk(tree: Path) -> None:
    """A diagnostic pointing into a file whose text was not handed over: render reads it only
    if it is a policy."""
    secret = tree / "secret.env"
    secret.write_text(f"TOKEN={SECRET}\n")
    policy = tree / "ok.claw"
    policy.write_text("# fine\npolicy p {\n}\n")
    shown = render([Diagnostic(Severity.ERROR, "m", Location(str(secret), 1, 1, 3))])
    assert SECRET not in shown and shown.startswith(f"{secret}:1:1: error: m")
    shown = render([Diagnostic(Severity.ERROR, "m", Location(str(policy), 2, 1, 7))])
    assert "policy p {" in shown


def test_special_files_neither_hang_nor_fill_memory(tree: Path, subtests: pytest.Subtests) -> None:
    os.mkfifo(tree / "fifo.claw")
    (tree / "zero.claw").symlink_to("/dev/zero")  # resolves outside the tree as well
    (tree / "adir.claw").mkdir()
    cases = {"FIFO": ("fifo.claw", "a FIFO"), "directory": ("adir.claw", "directory")}
    for name, (include, words) in cases.items():
        with subtests.test(msg=f"include: {name}"):
            result, shown = _load(tree, include)
            assert not result.ok and words in shown, shown
    for name, path in {"FIFO": tree / "fifo.claw", "/dev/zero": Path("/dev/zero"),
                       "/dev/urandom": Path("/dev/urandom"), "directory": tree / "adir.claw"}.items():
        with subtests.test(msg=f"command line: {name}"):
            done: list[LoadResult] = []
            worker = threading.Thread(target=lambda p=path, out=done: out.append(
                load_policies([p], today=TODAY)), daemon=True)
            worker.start()
            worker.join(timeout=30)  # a hang is a failure, never a stuck suite
            assert done, f"reading {path} hung"
            assert not done[0].ok and [d.code for d in done[0].diagnostics] == ["io"]


def test_symlink_loops(tree: Path) -> None:
    (tree / "l1.claw").symlink_to("l2.claw")
    (tree / "l2.claw").symlink_to("l1.claw")
    result, shown = _load(tree, "l1.claw")
    assert not result.ok and "symbolic links" in shown, shown
    result = load_policies([tree / "l1.claw"], today=TODAY)
    assert not result.ok and [d.code for d in result.diagnostics] == ["io"]


def test_size_cap(tree: Path) -> None:
    big = tree / "big.claw"
    with big.open("w") as fh:
        fh.write("# padding\n" * (MAX_POLICY_BYTES // 10 + 1))
    result, shown = _load(tree, "big.claw")
    assert not result.ok and "too large" in shown
    result = load_policies([big], today=TODAY)
    assert not result.ok and "too large" in render(result.diagnostics, result.sources)


def test_deep_include_chains_and_many_files(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(1500):  # deeper than Python's recursion limit
        (tree / f"c{n}.claw").write_text(f'include "c{n + 1}.claw"\n' if n < 1499 else "define x = 192.0.2.9\n")
    result, shown = _load(tree, "c0.claw")
    assert result.ok, shown
    assert [str(n) for n in result.policies[0].rules[0].peers.ipv4] == ["192.0.2.9/32"]
    (tree / "c1499.claw").write_text('include "c0.claw"\n')  # now a 1,500-file cycle
    result, shown = _load(tree, "c0.claw")
    assert any(d.code == "include-cycle" for d in result.diagnostics), shown
    monkeypatch.setattr(includes, "MAX_FILES", 100)
    (tree / "c1499.claw").write_text("define x = 192.0.2.9\n")
    result, shown = _load(tree, "c0.claw")
    assert not result.ok and "too many files" in shown


def test_define_chains_and_expansion(tree: Path, subtests: pytest.Subtests) -> None:
    with subtests.test(msg="3,000 chained defines"):
        defs = "".join(f"define d{n} = @d{n + 1}\n" for n in range(3000)) + "define d3000 = 192.0.2.7\n"
        (tree / "defs.claw").write_text(defs + "define x = @d0\n")
        result, shown = _load(tree, "defs.claw")
        assert result.ok, shown
        assert [str(n) for n in result.policies[0].rules[0].peers.ipv4] == ["192.0.2.7/32"]
    with subtests.test(msg="a long cycle"):
        defs = "".join(f"define d{n} = @d{(n + 1) % 800}\n" for n in range(800))
        (tree / "defs.claw").write_text(defs + "define x = @d0\n")
        result, shown = _load(tree, "defs.claw")
        assert not result.ok and any(d.code == "define-cycle" for d in result.diagnostics), shown
    with subtests.test(msg="doubling at every level (2^60 atoms if expanded naively)"):
        defs = "".join(f"define d{n} = @d{n + 1}, @d{n + 1}, 192.0.2.{n % 200 + 1}\n" for n in range(60))
        (tree / "defs.claw").write_text(defs + "define d60 = 198.51.100.1\ndefine x = @d0\n")
        result, shown = _load(tree, "defs.claw")
        assert result.ok, shown
        assert len(result.policies[0].rules[0].peers.ipv4) >= 2


def test_cli_reports_without_traceback(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tree / "main.claw").write_text('include "/proc/self/environ"\n' + POLICY)
    assert main(["compile", "main.claw", "-o", "out"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and SECRET not in err and "nothing was written" in err
    assert not (tree / "out").exists()
    assert main(["compile", "/dev/zero", "-o", "out"]) == 1
    err = capsys.readouterr().err
    assert "a device, not a regular file" in err and not (tree / "out").exists()


def test_fmt_reads_named_files_the_same_way(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tree / "secret.env").write_text(f"TOKEN={SECRET}\n")
    os.mkfifo(tree / "fifo.claw")
    assert main(["fmt", "--check", "/dev/zero", "secret.env", "fifo.claw"]) == 1
    err = capsys.readouterr().err
    assert SECRET not in err and "Traceback" not in err
    assert "a device" in err and "a FIFO" in err and "does not look like a policy" in err
