"""`clawpolicy observe` on real sockets: a stand-in agent under a test uid in a lab
namespace listens (0.0.0.0, 127.0.0.1, [::]), binds udp 5353 and connects to listeners in the
peer namespace; observe (run here, in the host namespace, reading /proc) must see them as the
agent's namespace sees them and judge each with the evaluator. Root only."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netlab import Lab

from clawpolicy.cli import main

pytestmark = pytest.mark.root

HERE = Path(__file__).resolve().parent
UID = 4242  # nobody else's: --user must find the workload's processes only
ALLOWED, DENIED, DENIED6 = "198.51.100.10", "198.51.100.11", "2001:db8::10"
POLICY = f"""
policy observe-lab {{
  mode shadow
  applies-to user {UID}
  allow egress to {ALLOWED} port 443/tcp
    reason "the one API the agent may call" id peer-api
  deny egress to 224.0.0.251, ff02::fb port 5353/udp
    reason "no mDNS" id no-mdns
}}
"""
SPEC = {"listen_tcp": [["0.0.0.0", 18789], ["127.0.0.1", 18790], ["::", 18791]],
        "bind_udp": [["0.0.0.0", 5353]],
        "connect_tcp": [[ALLOWED, 443], [DENIED, 8080], [DENIED6, 443]]}


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, int, Path]]:
    with Lab(peer_addresses=[ALLOWED, DENIED, DENIED6], tcp_ports=(443, 8080),
             udp_ports=(53,)) as lab:
        ready = Path(lab.write_file("ready", ""))
        ready.chmod(0o666)
        ready.write_text("")
        argv = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", sys.executable,
                str(HERE / "observe_workload.py"), str(ready), json.dumps(SPEC)]
        proc = lab.spawn(lab.agent_ns, argv, ready=lambda: ready.read_text() == "ready")
        policy = tmp_path_factory.mktemp("observe") / "lab.claw"
        policy.write_text(POLICY)
        yield lab, proc.pid, policy


def _observe(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["observe", *args])
    return code, capsys.readouterr().out


def _by_endpoint(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for s in report["sockets"]:
        key = f"{s['protocol']} {s['local']}:{s['local_port']}"
        if s["state"] not in ("LISTEN", "UNCONN"):
            key = f"{s['protocol']} -> {s['remote']}:{s['remote_port']}"
        out[key] = s
    return out


def _check(report: dict[str, Any], subtests: pytest.FixtureRequest) -> None:
    sockets = _by_endpoint(report)
    expect = {  # endpoint -> (kind, action, rule, flags)
        "tcp 0.0.0.0:18789": ("listen", "deny", None, ["exposed"]),
        "tcp 127.0.0.1:18790": ("listen", "allow", None, []),
        "tcp :::18791": ("listen", "deny", None, ["exposed"]),
        # a user policy governs ingress on the agent ports only: 5353 is out of its scope
        "udp 0.0.0.0:5353": ("listen", "allow", None, ["exposed", "mdns"]),
        f"tcp -> {ALLOWED}:443": ("egress", "allow", "peer-api", []),
        f"tcp -> {DENIED}:8080": ("egress", "deny", None, []),
        f"tcp -> {DENIED6}:443": ("egress", "deny", None, []),
    }
    assert sorted(sockets) == sorted(expect), report
    for key, (kind, action, rule, flags) in expect.items():
        with subtests.test(msg=key):  # type: ignore[attr-defined]
            s = sockets[key]
            assert (s["kind"], s["verdict"]["action"], s["verdict"]["rule"], s["flags"]) == (
                kind, action, rule, flags), s
            assert s["uid"] == UID and s["verdict"]["enforced"] is False  # shadow mode
    assert any("no-mdns" in note for note in sockets["udp 0.0.0.0:5353"]["notes"])
    assert sockets["udp 0.0.0.0:5353"]["verdict"]["cause"] == "out-of-scope"
    assert sockets["tcp 127.0.0.1:18790"]["verdict"]["cause"] == "loopback"
    assert report["summary"] == {"sockets": 7, "denied": 4, "exposed": 3, "mdns": 1}


def test_observe_pid(agent: tuple[Lab, int, Path], capsys: pytest.CaptureFixture[str],
                     subtests: pytest.FixtureRequest) -> None:
    _, pid, policy = agent
    code, out = _observe(capsys, str(policy), "--pid", str(pid), "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["selection"].startswith(f"pid {pid}")
    _check(report, subtests)


def test_observe_user_text(agent: tuple[Lab, int, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, pid, policy = agent
    code, out = _observe(capsys, str(policy), "--user", str(UID))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"policy observe-lab (shadow), user {UID}")
    row = next(line for line in lines if "0.0.0.0:18789" in line)
    assert "[EXPOSED]" in row and "would-deny (default)" in row
    row = next(line for line in lines if f"{ALLOWED}:443" in line)
    assert "allow (rule peer-api)" in row and f"{pid}/" in row
    assert "[MDNS]" in next(line for line in lines if "0.0.0.0:5353" in line)
    assert lines[-1] == "4 would be denied, 3 listening beyond loopback, 1 mDNS"


def test_observe_watch_json_count(agent: tuple[Lab, int, Path],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    _, pid, policy = agent
    code, out = _observe(capsys, str(policy), "--pid", str(pid), "--format", "json",
                         "--watch", "1", "--count", "2")
    assert code == 0
    decoder, reports, rest = json.JSONDecoder(), [], out.strip()
    while rest:
        report, end = decoder.raw_decode(rest)
        reports.append(report)
        rest = rest[end:].strip()
    assert len(reports) == 2 and reports[0]["sockets"] == reports[1]["sockets"]


@contextlib.contextmanager
def _cgroup(pid: int) -> Iterator[Path]:
    """A cgroup v2 directory holding `pid` (moved back to the root cgroup afterwards)."""
    root = Path("/sys/fs/cgroup/unified")
    if not (root / "cgroup.procs").exists():
        root = Path("/sys/fs/cgroup")
    if not (root / "cgroup.procs").exists() or not os.access(root, os.W_OK):
        pytest.skip("no writable cgroup v2 hierarchy")
    group = root / "system.slice" / f"clawpolicy-observe-{os.getpid()}.service"
    made_slice = not group.parent.exists()
    group.mkdir(parents=True)
    try:
        (group / "cgroup.procs").write_text(str(pid))
        yield root
    finally:
        with contextlib.suppress(OSError):
            (root / "cgroup.procs").write_text(str(pid))
        group.rmdir()
        if made_slice:
            group.parent.rmdir()


def test_observe_cgroup_and_service(agent: tuple[Lab, int, Path], capsys: pytest.CaptureFixture[str],
                                    subtests: pytest.FixtureRequest) -> None:
    from clawpolicy.adopt import procnet

    _, pid, policy = agent
    with _cgroup(pid) as root:
        unit = f"clawpolicy-observe-{os.getpid()}"
        path = root / "system.slice" / f"{unit}.service"
        code, out = _observe(capsys, str(policy), "--cgroup", str(path), "--format", "json")
        assert code == 0
        _check(json.loads(out), subtests)
        selection = procnet.by_service(unit, root=root)
        assert selection.pids == [pid]
        assert len(procnet.sockets_of(selection)) == 7


def test_observe_errors(agent: tuple[Lab, int, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, _, policy = agent
    assert main(["observe", str(policy), "--pid", "999999999"]) == 1
    assert "no process 999999999" in capsys.readouterr().err
    assert main(["observe", str(policy), "--user", "no-such-user-xyz"]) == 1
    assert main(["observe", str(policy), "--service", "no-such-unit-xyz"]) == 1
    assert "no cgroup for unit no-such-unit-xyz.service" in capsys.readouterr().err
