"""The `dns serve --workers` supervisor's decisions, with workers that are plain functions in
forked processes (the kernel test in tests/kernel/test_dnsgate_kernel.py runs real gates)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clawpolicy.dnsgate.workers import CRASHED

REPO = Path(__file__).resolve().parents[2]

SUPERVISE = """\
import os, signal, sys, time
from clawpolicy.dnsgate.workers import Supervisor

def log(text):
    with open(sys.argv[1], "a") as f:
        f.write(f"{text} {os.getpid()}\\n")

def work():
BODY
sys.exit(Supervisor(int(sys.argv[2]), work, restarts=3, window=60).run())
"""

SERVE = """\
    log("start")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGHUP, lambda *_: log("hup"))
    while not stop:
        time.sleep(0.01)
    log("stop")
    return 0
"""


class Run:
    """A supervisor of `count` workers running `body` (a function body; `log(x)` appends
    "x PID" to a file), in a process of its own."""

    def __init__(self, tmp: Path, body: str, count: int = 2) -> None:
        self.log = tmp / "log"
        script = tmp / "supervise.py"
        script.write_text(SUPERVISE.replace("BODY\n", body))
        self.proc = subprocess.Popen([sys.executable, str(script), str(self.log), str(count)],
                                     cwd=REPO, stderr=subprocess.PIPE, text=True)

    def pids(self, word: str, count: int) -> list[str]:
        """The pids of the first `count` lines starting with `word`, waiting for them."""
        deadline = time.monotonic() + 20
        while True:
            text = self.log.read_text() if self.log.exists() else ""
            pids = [x.split()[1] for x in text.splitlines() if x.startswith(word)]
            if len(pids) >= count:
                return pids
            assert time.monotonic() < deadline, text
            time.sleep(0.02)

    def end(self) -> tuple[int, str]:
        status = self.proc.wait(timeout=20)
        return status, self.proc.stderr.read() if self.proc.stderr else ""


def test_signals_reach_every_worker_and_a_clean_stop_is_status_0(tmp_path: Path) -> None:
    run = Run(tmp_path, SERVE)
    run.pids("start", 2)
    run.proc.send_signal(signal.SIGHUP)
    run.pids("hup", 2)
    run.proc.terminate()
    assert run.end()[0] == 0
    assert len(run.pids("stop", 2)) == 2


def test_a_killed_worker_is_replaced_and_named(tmp_path: Path) -> None:
    run = Run(tmp_path, SERVE)
    victim = run.pids("start", 2)[0]
    os.kill(int(victim), signal.SIGKILL)
    assert run.pids("start", 3)[2] != victim
    run.proc.terminate()
    status, err = run.end()
    assert status == 0
    assert f"worker pid={victim} killed by SIGKILL: started another (1 of 3 restarts in 60 s)" in err
    assert len(run.pids("stop", 2)) == 2  # the survivor and the new one; nothing left behind


def test_an_unexpected_error_is_restarted_until_the_budget_is_spent(tmp_path: Path) -> None:
    """A worker that raises (its traceback, then status 70) is restarted; after 3 restarts
    within the window the gate gives up with status 1 rather than spin."""
    run = Run(tmp_path, '    log("start")\n    raise RuntimeError("boom")\n', count=1)
    status, err = run.end()
    assert status == 1
    assert len(run.pids("start", 4)) == 4
    assert err.count("RuntimeError: boom") == 4
    assert f"exited with status {CRASHED}: 3 restarts in 60 s, giving up" in err


def test_a_start_up_error_stops_the_gate_with_its_status(tmp_path: Path) -> None:
    """Status 1 from a worker (address taken, unknown user, sets not loaded) is its own
    verdict: another worker would fail the same way, so everything stops, nothing restarts."""
    run = Run(tmp_path, '    log("start")\n    return 1\n')
    status, err = run.end()
    assert status == 1
    assert "exited with status 1: stopping the gate" in err
    assert "started another" not in err


class _Writes:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_log_lines_are_one_write_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers share stderr; print() writes a line and its newline apart when stderr is
    unbuffered, and two workers stopping at once ran their lines together (seen in the
    kernel test). Every line is one write, newline included."""
    from clawpolicy.dnsgate import server, workers

    stream = _Writes()
    monkeypatch.setattr(sys, "stderr", stream)
    server.write_line("clawpolicy-dns: stopped policy=p")
    workers._log("worker pid=1 killed by SIGKILL")
    assert stream.calls == ["clawpolicy-dns: stopped policy=p\n",
                            "clawpolicy-dns: worker pid=1 killed by SIGKILL\n"]
