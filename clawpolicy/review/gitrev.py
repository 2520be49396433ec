"""A policy as of a git revision: floor 3's helper for `clawpolicy diff --git REV`.

The revision's tree is exported (`git archive`) into a temporary directory, so includes
resolve as they did at that revision, and both versions are read relative to the same
directory, so source names (and the artifacts that quote them) line up across versions.
"""

from __future__ import annotations

import contextlib
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path


class GitError(Exception):
    pass


def _git(*args: str, cwd: Path | None = None) -> str:
    try:
        r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise GitError("git is not installed") from exc
    if r.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {r.stderr.strip() or 'failed'}")
    return r.stdout


def repo_root() -> Path:
    return Path(_git("rev-parse", "--show-toplevel").strip())


def prefix() -> str:
    """The working directory's path inside the repository ("" at the root)."""
    return _git("rev-parse", "--show-prefix").strip()


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """The revision's tree in a temporary directory; yields the directory that corresponds to
    the current working directory."""
    _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    root = repo_root()
    with tempfile.TemporaryDirectory(prefix="clawpolicy-diff-") as tmp:
        archive = Path(tmp) / "rev.tar"
        _git("archive", "--format=tar", "-o", str(archive), rev, cwd=root)
        tree = Path(tmp) / "tree"
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter=_inside_tree)
        yield tree / prefix()


def _inside_tree(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile's "data" filter, but a member it refuses (a symlink to an absolute path or out
    of the tree, a device) is left out instead of failing the whole diff: no policy may
    include through such a link anyway, and a repository may well commit one."""
    try:
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError:
        return None


def policy_files(rev: str) -> list[str]:
    """`*.claw` files tracked at `rev` or now, under the working directory."""
    now = _git("ls-files", "--", "*.claw").split("\n")
    then = _git("ls-tree", "-r", "--name-only", rev, "--", ".").split("\n")
    return sorted({f for f in (*now, *then) if f.endswith(".claw")})


def changed_files(rev: str, paths: Sequence[str] = ()) -> set[str]:
    """Files (relative to the working directory) that differ between `rev` and the work tree."""
    out = _git("diff", "--name-only", "--relative", rev, "--", *(paths or ["."]))
    return {line for line in out.split("\n") if line}
