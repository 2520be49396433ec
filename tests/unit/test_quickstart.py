"""The README's quick start runs as written (issue 18): every line of its command block, in a
copy of the repository laid out as a fresh clone (the committed files, a git history with
`origin/main`, the suite's own virtualenv as `.venv`), exits 0 and leaves the committed files
as they were (output goes to `out/`, which git ignores). Lines that start with `sudo` run as
root inside a network namespace this test creates (the host's ruleset is never touched)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LEAD = "Then, in the same checkout"
ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e.x", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@e.x", "NO_COLOR": "1"}


def quick_start() -> list[str]:
    """The command lines of the block after LEAD (README's second quick-start block)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(re.escape(LEAD) + r".*?```sh\n(.*?)```", readme, re.S)
    assert block, f"README has no ```sh block after {LEAD!r}"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_quick_start_names_no_placeholder() -> None:
    """Every file a line reads exists in the repository or is made by an earlier line."""
    lines = quick_start()
    assert len(lines) >= 15
    made: set[str] = set()
    for line in lines:
        command = line.split("  #")[0]
        for word in re.findall(r"[\w./*~-]+\.(?:claw|jsonl|json|log|xml|nft)\b", command):
            assert word.startswith(("examples/", "tests/", "out/")), f"{word}: a placeholder? {line!r}"
        for path in re.findall(r"(?<![\w/.-])((?:examples|tests|out)/[\w./*-]+)", command):
            if path.startswith("out/") and (f"> {path}" in command or f"-o {path}" in command
                                            or "--junit" in command):
                made.add(path)
                continue
            if path.endswith("/") or "*" in path:
                continue
            assert (REPO / path).exists() or path in made or any(
                path.startswith(m.rstrip("/") + "/") for m in made if m.endswith("/")) or path.startswith(
                "out/"), f"{path} in {line!r} neither exists nor is made before"
        assert not re.match(r"sudo (?!\.venv/bin/|nft )", line), f"sudo loses the venv: {line}"


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Path:
    """The committed files of the work tree (as git lists them, as they are on disk), a
    git history with origin/main, and the suite's virtualenv as .venv."""
    clone = tmp_path / "clawpolicy"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    venv = Path(sys.prefix)
    if not (venv / "bin" / "clawpolicy").exists():
        pytest.skip(f"the suite does not run from a virtualenv with the clawpolicy script ({venv})")
    (clone / ".venv").symlink_to(venv, target_is_directory=True)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "clone"],
                 ["update-ref", "refs/remotes/origin/main", "HEAD"]):
        subprocess.run(["git", *args], cwd=clone, check=True, capture_output=True, env=ENV)
    return clone


def _status(clone: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True,
                          check=True, env=ENV).stdout


def _run(clone: Path, line: str, exports: list[str], *,
         netns: str | None = None) -> subprocess.CompletedProcess[str]:
    """One line in bash, after the block's earlier `export` lines (as one shell would have)."""
    script = "\n".join(["set -o pipefail", *exports, line, ""])
    argv = ["bash", "-c", script]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    return subprocess.run(argv, cwd=clone, capture_output=True, text=True, env=ENV, timeout=600)


def test_the_quick_start_runs_as_written(fresh_clone: Path, subtests: pytest.Subtests) -> None:
    root_lines = os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("nft") is not None
    netns = f"clawpolicy-quickstart-{os.getpid()}"
    if root_lines:
        subprocess.run(["ip", "netns", "add", netns], check=True)
    exports: list[str] = []
    try:
        for line in quick_start():
            with subtests.test(line=line.split("  #")[0].strip()):
                if line.startswith("sudo "):
                    if not root_lines:
                        pytest.skip("a root line: needs root, ip and nft (runs in a namespace)")
                    r = _run(fresh_clone, line.removeprefix("sudo "), exports, netns=netns)
                else:
                    r = _run(fresh_clone, line, exports)
                assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
                assert "Traceback" not in r.stderr
                if line.startswith("export "):
                    exports.append(line)
    finally:
        if root_lines:
            subprocess.run(["ip", "netns", "del", netns], check=False)
    assert _status(fresh_clone) == ""  # nothing committed was rewritten; out/ is ignored
    assert (fresh_clone / "out" / "openclaw-workstation" / "nftables" / "ruleset.nft").is_file()
