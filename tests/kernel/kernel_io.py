"""Two things several kernel tests do: write a policy's seccomp artifacts to a directory (for
`seccomp_child.py` to install), and collect what the kernel logs while a block runs."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from clawpolicy.backends.base import CompileOptions
from clawpolicy.backends.seccomp import BACKEND
from clawpolicy.ir import Policy


def write_seccomp(policy: Policy, where: Path, options: CompileOptions = CompileOptions()) -> Path:
    """The seccomp target's artifacts (profile.json, the .bpf files) under `where`."""
    result = BACKEND.compile(policy, options)
    assert result.artifacts, result.diagnostics
    where.mkdir(parents=True, exist_ok=True)
    for artifact in result.artifacts:
        (where / artifact.path).write_bytes(artifact.content)
    return where


@contextlib.contextmanager
def kmsg() -> Iterator[list[str]]:
    """Lines written to the kernel ring buffer inside the block (collected at its end, after a
    short wait for records the kernel writes asynchronously, e.g. audit)."""
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    os.lseek(fd, 0, os.SEEK_END)
    lines: list[str] = []
    try:
        yield lines
        time.sleep(0.2)
        while True:
            try:
                lines.append(os.read(fd, 8192).decode("utf-8", "replace").rstrip("\n"))
            except BlockingIOError:
                break
            except BrokenPipeError:  # the buffer wrapped past our position: keep reading
                continue
    finally:
        os.close(fd)
