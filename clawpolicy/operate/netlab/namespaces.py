"""Names, cleanup and child processes of the kernel lab: floor 3 (operate/netlab).

A lab's namespaces are named after the process that made them (`cpt<pid>x<n>a|p`), so a later
run can tell a stale namespace (its process is gone: a run killed with SIGKILL) from one that
another run still uses, and delete only the stale ones."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from clawpolicy.processes import pid_alive

NS_PREFIX = "cpt"
_NS_RE = re.compile(rf"^{NS_PREFIX}(\d+)x(\d+)[ap]$")
_lab_ids = itertools.count()


def new_names(pid: int) -> tuple[str, str]:
    """(agent namespace, peer namespace) for the next lab of process `pid`."""
    n = next(_lab_ids)
    return f"{NS_PREFIX}{pid}x{n}a", f"{NS_PREFIX}{pid}x{n}p"


def cleanup_stale_namespaces() -> list[str]:
    """Delete lab namespaces (and temp dirs) left behind by lab processes that no
    longer exist (e.g. a test run killed with SIGKILL). Returns the deleted
    namespace names. Listeners of such labs exit by themselves (stdin EOF)."""
    try:
        out = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    deleted = []
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NS_RE.match(name)
        if m and not pid_alive(int(m.group(1))):
            if subprocess.run(["ip", "netns", "del", name], capture_output=True).returncode == 0:
                deleted.append(name)
    for tmp in Path(tempfile.gettempdir()).glob(f"{NS_PREFIX}*x*a-*"):
        m = _NS_RE.match(tmp.name.split("-", 1)[0])
        if m and tmp.is_dir() and not pid_alive(int(m.group(1))):
            shutil.rmtree(tmp, ignore_errors=True)
    return deleted


def stop(proc: subprocess.Popen[bytes], what: str, errors: list[str]) -> None:
    """Terminate, then kill after 3 s; record (never raise) what went wrong."""
    try:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)
    except Exception as exc:  # noqa: BLE001 - cleanup goes on whatever happened
        errors.append(f"{what} {proc.pid}: {exc}")
