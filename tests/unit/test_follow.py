"""`explain --follow` (operate/follow.py): one JSON line per denial, from stdin or a followed
file (appended to, then rotated). Lines come from tests/data/logs/captured-kmsg.txt, captured
from real denials (an nftables ruleset in a lab namespace, a child under the shadow seccomp
filter: tests/kernel/test_log_capture.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from clawpolicy.lower import load_policies
from clawpolicy.operate import follow
from clawpolicy.operate.explain import Processes

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests/data/logs"
LINES = (DATA / "captured-kmsg.txt").read_text().splitlines(keepends=True)
POLICY = str(DATA / "logdemo.claw")


def _policies() -> list[object]:
    loaded = load_policies([DATA / "logdemo.claw"])
    assert loaded.ok
    return list(loaded.policies)


def test_events_from_real_denials() -> None:
    """The seccomp record is the captured child's (comm `python`): named as the profile's
    process it is attributed; otherwise it is another program's and carries no rule."""
    events = list(follow.events(["not a log line\n", *LINES], _policies(),  # type: ignore[arg-type]
                                Processes(comms=("python",))))
    assert [(e["layer"], e["verdict"], e["rule"]) for e in events] == [
        ("nftables", "deny", "default-egress"), ("nftables", "deny", "no-exfil-host"),
        ("nftables", "would-deny", "no-exfil-host"), ("nftables", "would-deny", "default-egress"),
        ("seccomp", "LOG", events[4]["rule"])]
    assert all(e["policy"] == "logdemo" for e in events[:4])
    assert "logdemo.claw:" in events[1]["where"] and events[1]["reason"]
    assert (events[1]["dst"], events[1]["dport"]) == ("198.51.100.66", 443)
    seccomp = events[4]
    assert (seccomp["pid"], seccomp["comm"]) == (7147, "python") and seccomp["exe"].endswith("python3.11")
    assert seccomp["policy"] == "logdemo"
    other = list(follow.events(LINES, _policies()))[4]  # type: ignore[arg-type]
    assert "rule" not in other and "policy" not in other and "not the profile's process" in other["note"]


def test_unreadable_lines_are_reported_not_guessed() -> None:
    bad = LINES[0].replace("DPT=53", "DPT=99999")
    long = "x" * (follow.MAX_LINE + 1)
    events = list(follow.events([bad, long], _policies()))  # type: ignore[arg-type]
    assert [sorted(e) for e in events] == [["unreadable"], ["unreadable"]]


def _read_events(proc: subprocess.Popen[str], n: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    assert proc.stdout is not None
    timer = threading.Timer(60, proc.kill)
    timer.start()
    try:
        while len(out) < n:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            out.append(json.loads(line))
    finally:
        timer.cancel()
    return out


def test_follow_stdin() -> None:
    proc = subprocess.run([sys.executable, "-m", "clawpolicy.cli", "explain", "--follow", "-p", POLICY],
                          input="".join(LINES), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(x) for x in proc.stdout.splitlines()]
    assert len(events) == 5 and {e["layer"] for e in events} == {"nftables", "seccomp"}


def _wait_until_open(pid: int, path: Path) -> None:
    import os

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fds = Path(f"/proc/{pid}/fd")
        try:
            if any(os.readlink(fd) == str(path) for fd in fds.iterdir()):
                return
        except (FileNotFoundError, PermissionError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{path} never opened")


def test_follow_a_file_through_rotation(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text(LINES[0])  # already there: not reported (followed from the end)
    proc = subprocess.Popen([sys.executable, "-m", "clawpolicy.cli", "explain", "--follow", "-p", POLICY,
                             str(log)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_open(proc.pid, log)  # it follows from the end: wait until it has the file
        time.sleep(0.5)  # (opened, then seeks: give the seek a moment; appends before it are lost)
        with log.open("a") as fh:
            fh.write(LINES[1])
            fh.write(LINES[2][:40])  # half a line: nothing until it ends
            fh.flush()
            time.sleep(0.5)
            fh.write(LINES[2][40:])
        first = _read_events(proc, 2)
        assert [e["rule"] for e in first] == ["no-exfil-host", "no-exfil-host"]
        rotated = tmp_path / "kern.log.1"
        log.rename(rotated)
        log.write_text(LINES[4])  # the new file is read from its start
        (seccomp,) = _read_events(proc, 1)
        assert seccomp["layer"] == "seccomp"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
