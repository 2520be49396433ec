"""Reading untrusted input files safely: floor 1, used by `includes` (policy files, includes),
`errors` (the source line under a diagnostic) and `lockfile`.

A policy names files (`include "..."`), and a path given on the command line may be anything.
So every read here opens with O_NONBLOCK (a FIFO cannot hang the open), checks with fstat that
the file is a regular file (not /dev/zero, /dev/urandom, a FIFO, a socket or a directory),
and reads at most a fixed number of bytes: a 12 GB read of /dev/zero or a blocked FIFO is
impossible by construction. /proc files report size 0 but are regular: the byte cap holds
for them too.

A file that is not a policy is never quoted: error messages and caret lines would otherwise
print its first line (`include "/proc/self/environ"` printed the environment, secrets
included). `read_policy` accepts only UTF-8 text without NUL that starts like a policy (after
blank lines and comments, `policy`, `include` or `define`, or nothing at all), and callers quote
source lines only from text it returned.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

MAX_POLICY_BYTES = 8 * 1024 * 1024  # 8 MiB: a 100,000-CIDR policy is ~2.5 MB
_STARTS_LIKE_POLICY = re.compile(
    r"\A\ufeff?(?:[ \t\r\n\f]+|#[^\n]*)*(?:\Z|(?:policy|include|define)(?=[ \t\r\n\f#\"]))")


class SourceError(Exception):
    """A file cannot be used as a policy file; the message never quotes its content."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def read_capped(path: Path, limit: int = MAX_POLICY_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. Raises SourceError (never
    quoting content) for anything else, and FileNotFoundError when nothing is there."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise SourceError("is a directory, not a file") from None
    except OSError as exc:
        raise SourceError(f"cannot be opened: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SourceError(f"is {_kind(info.st_mode)}, not a regular file",
                              "only regular files are read (no devices, FIFOs or sockets)")
        if info.st_size > limit:
            raise SourceError(f"is too large ({info.st_size} bytes; at most {limit})")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:  # st_size can lie (/proc) or grow: count what is really read
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise SourceError(f"is too large (more than {limit} bytes)")
        return b"".join(chunks)
    except BlockingIOError:  # pragma: no cover - a regular file never blocks
        raise SourceError("cannot be read without blocking") from None
    except OSError as exc:
        raise SourceError(f"cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_policy(path: Path) -> str:
    """The text of a policy file, or SourceError saying (without quoting it) why it is not one."""
    data = read_capped(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError("is not UTF-8 text, so it is not a policy file") from None
    if "\x00" in text or not looks_like_policy(text):
        raise SourceError("does not look like a policy file, so it is not shown",
                          "a policy file starts (after comments) with 'policy', 'include' or "
                          "'define'")
    return text


def looks_like_policy(text: str) -> bool:
    return bool(_STARTS_LIKE_POLICY.match(text))


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"
