"""Artifacts to disk: floor 1. Compare first, then write changed files atomically.

Compile collects every artifact of every policy and target in memory before this module is
called, so a failing compile writes nothing. Here each changed file is written to a temporary
file beside its destination and renamed over it (rename is atomic on POSIX). `plan` is the
shared comparison, so `--check` reports exactly what a write would change.

The output tree is hostile ground: `ln -s /some/dir out/p/docs` must not make compile write
into, or delete from, /some/dir. So below the output root every directory is opened relative
to its parent's file descriptor with O_NOFOLLOW (no path is re-resolved between check and
use), a symlink or a file where a directory must be is an `OutputError` found by `plan`
before anything is written, and a symlink where a file goes is replaced, never followed.

Files are removed only when compile wrote them: each target directory holds a manifest
(`.clawpolicy-manifest`, the files compile wrote there, sorted), and a file is stale when the
previous manifest lists it and this compile does not produce it. A file someone else put into
a target directory is left alone.
"""

from __future__ import annotations

import difflib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

# Output tree: <root>/<policy>/<target>/<artifact path>. Keys are those relative paths.
Outputs = Mapping[str, bytes]
MANIFEST = ".clawpolicy-manifest"
_MANIFEST_HEAD = b"# Files clawpolicy compile wrote in this directory; it removes only these.\n"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class OutputError(Exception):
    """The output tree cannot be written safely (a symlink or a file in the way)."""


@dataclass(frozen=True)
class Plan:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: tuple[str, ...]
    contents: Mapping[str, bytes] = field(default_factory=dict, compare=False)  # all to write
    previous: Mapping[str, bytes | None] = field(default_factory=dict, compare=False)  # changed

    @property
    def stale(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def manifest(owned: str, outputs: Outputs) -> bytes:
    """The manifest of one target directory: the files compile writes there."""
    prefix = owned + "/"
    names = sorted(rel[len(prefix):] for rel in outputs if rel.startswith(prefix))
    return _MANIFEST_HEAD + b"".join(n.encode("utf-8") + b"\n" for n in names)


def plan(root: Path, outputs: Outputs, owned_dirs: set[str]) -> Plan:
    """What writing `outputs` under `root` would change; `owned_dirs` (relative) are the
    target directories whose previously written files may be stale. Raises OutputError when
    the tree is unsafe to write (nothing has been written then)."""
    if root.exists() and not root.is_dir():
        raise OutputError(f"{root} is not a directory; -o names the directory to write into")
    contents = dict(outputs)
    for owned in owned_dirs:
        # A target that writes nothing gets no directory, unless an earlier compile wrote there.
        if any(rel.startswith(owned + "/") for rel in outputs) or _read(root, f"{owned}/{MANIFEST}")[0]:
            contents[f"{owned}/{MANIFEST}"] = manifest(owned, outputs)
    added, changed, unchanged = [], [], []
    previous: dict[str, bytes | None] = {}
    for rel, content in sorted(contents.items()):
        exists, old = _read(root, rel)
        if not exists:
            added.append(rel)
        elif old != content:
            changed.append(rel)
            previous[rel] = old
        else:
            unchanged.append(rel)
    removed = []
    for owned in sorted(owned_dirs):
        for name in _listed(root, owned):
            rel = f"{owned}/{name}"
            if rel not in contents and _is_plain_file(root, rel):
                removed.append(rel)
    return Plan(tuple(added), tuple(changed), tuple(removed), tuple(unchanged), contents, previous)


def apply(root: Path, outputs: Outputs, result: Plan) -> None:
    """Write what `result` (from `plan`) says; `outputs` is kept for callers' symmetry."""
    contents = result.contents or outputs
    root.mkdir(parents=True, exist_ok=True)
    for rel in (*result.added, *result.changed):
        with _parent(root, rel, create=True) as (fd, name):
            _write_at(fd, name, contents[rel])
    for rel in result.removed:
        with _parent(root, rel) as (fd, name):
            if fd is not None:
                os.unlink(name, dir_fd=fd)


def _parts(rel: str) -> list[str]:
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or any(p in ("..", ".") for p in parts):
        raise OutputError(f"unsafe output path {rel!r}")
    return list(parts)


@contextmanager
def _parent(root: Path, rel: str, create: bool = False) -> Iterator[tuple[int | None, str]]:
    """The directory fd holding `rel` (None when it does not exist) and the file's name,
    every directory below `root` opened without following symlinks."""
    *dirs, name = _parts(rel)
    fds: list[int] = []
    try:
        try:
            fds.append(os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        except FileNotFoundError:
            yield None, name
            return
        except NotADirectoryError:
            raise OutputError(f"{root} is not a directory; -o names the directory to write into") from None
        except OSError as exc:
            raise OutputError(f"{root} cannot be opened: {exc.strerror or exc}") from None
        for i, part in enumerate(dirs):
            where = root.joinpath(*dirs[:i + 1])
            try:
                fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
            except FileNotFoundError:
                if not create:
                    yield None, name
                    return
                os.mkdir(part, 0o755, dir_fd=fds[-1])
                fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise OutputError(_in_the_way(where)) from None
                raise
        yield fds[-1], name
    finally:
        for fd in reversed(fds):
            os.close(fd)


def _in_the_way(path: Path) -> str:
    what = "a symlink" if path.is_symlink() else "a file"
    return (f"{path} is {what}, where compile needs a directory; compile never writes through "
            "symlinks or over files: move it away, or choose another -o")


def _read(root: Path, rel: str) -> tuple[bool, bytes | None]:
    """(exists, content); content None for a symlink, which is replaced, never followed."""
    with _parent(root, rel) as (fd, name):
        if fd is None:
            return False, None
        try:
            file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                              dir_fd=fd)
        except FileNotFoundError:
            return False, None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return True, None
            if exc.errno == errno.EISDIR:
                raise OutputError(f"{root / rel} is a directory, where compile writes a file") from None
            raise
        try:
            info = os.fstat(file_fd)
            if not stat.S_ISREG(info.st_mode):
                what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
                raise OutputError(f"{root / rel} is {what}, where compile writes a file")
            with os.fdopen(file_fd, "rb", closefd=False) as fh:
                return True, fh.read()
        finally:
            os.close(file_fd)


def _is_plain_file(root: Path, rel: str) -> bool:
    """A regular file (not a symlink) reached without following symlinks."""
    try:
        with _parent(root, rel) as (fd, name):
            if fd is None:
                return False
            return stat.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
    except (OSError, OutputError):
        return False


def _listed(root: Path, owned: str) -> list[str]:
    """The names the previous manifest of `owned` lists (only safe relative paths)."""
    try:
        exists, data = _read(root, f"{owned}/{MANIFEST}")
    except (OSError, OutputError):
        return []
    if not exists or data is None:
        return []
    names = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        if not line or line.startswith("#") or any(ord(c) < 32 for c in line):
            continue
        try:
            _parts(line)
        except OutputError:
            continue
        if PurePosixPath(line).name != MANIFEST:
            names.append(line)
    return names


def _write_at(dir_fd: int | None, name: str, content: bytes) -> None:
    assert dir_fd is not None  # created by _parent(create=True)
    tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                 dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fchmod(fh.fileno(), 0o644)  # not the umask's choice: artifacts are world-readable
            os.fsync(fh.fileno())
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise


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
    contents = result.contents or outputs
    lines: list[str] = []
    for rel in result.added:
        lines.append(f"missing: {root / rel}")
    for rel in result.removed:
        lines.append(f"no longer generated: {root / rel}")
    for rel in result.changed:
        before = result.previous.get(rel)
        if before is None:
            lines.append(f"differs: {root / rel} (a symlink on disk; compile replaces it with a file)")
            continue
        lines.append(f"differs: {root / rel}")
        old = before.decode("utf-8", errors="replace").splitlines()
        new = contents[rel].decode("utf-8", errors="replace").splitlines()
        diff = list(difflib.unified_diff(old, new, f"{rel} (on disk)", f"{rel} (compiled)",
                                         n=context_lines, lineterm=""))
        lines.extend("    " + d for d in diff[:max_lines])
        if len(diff) > max_lines:
            lines.append(f"    ... {len(diff) - max_lines} more diff lines")
    return "\n".join(lines)
