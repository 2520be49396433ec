"""processes.pid_alive: the one liveness check apply's pending loads and the lab's stale
namespaces rely on."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from clawpolicy.processes import pid_alive


def test_pid_alive(subtests: Any) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names no process now (pids are not reused this soon)
    cases = {
        "this process": (os.getpid(), True),
        "init (another user's process in general)": (1, True),
        "a reaped child": (child.pid, False),
        "zero (a process group, never one process)": (0, False),
        "negative (a process group)": (-1, False),
    }
    for name, (pid, expected) in cases.items():
        with subtests.test(name):
            assert pid_alive(pid) is expected
