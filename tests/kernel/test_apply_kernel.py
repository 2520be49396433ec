"""`clawpolicy apply` and `status` in network namespaces only (apply --netns; never the
machine's own ruleset): load and confirm, roll back on timeout to exactly the previous table
(`nft -j list table` before and after, handles aside), refuse to cut a live SSH-like session
(a TCP connection to port 22 inside the namespace) naming the rule, and leave the old table
when the load fails or the wait is interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netlab import Lab

from clawpolicy.operate.apply import Nft, comparable

pytestmark = pytest.mark.root
PEER, OTHER = "192.0.2.50", "192.0.2.60"
AGENT = "192.0.2.1"


def _policy(tmp_path: Path, name: str, body: str, header: str = "applies-to host") -> Path:
    path = tmp_path / f"{name}.claw"
    path.write_text(f"policy {name} {{\n  {header}\n{body}\n}}\n")
    return path


SSH_OK = f'  allow ingress from {PEER} port 22/tcp reason "admin" id admin-ssh'


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SSH_CONNECTION"}
    env.update(extra)
    return env


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clawpolicy.cli", *args], capture_output=True, text=True,
                          env=env or _env(), timeout=120)


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "clawpolicy.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env or _env())


def _table(lab: Lab, table: str) -> list[object] | None:
    nft = Nft(lab.agent_ns)
    return comparable(nft.table_json(table)) if nft.table_text(table) is not None else None


@pytest.fixture
def lab() -> Iterator[Lab]:
    # no lab listener on 22: the tests hold their own SSH-like connections there
    with Lab(peer_addresses=[PEER, OTHER], agent_addresses=[AGENT, "2001:db8::1"],
             tcp_ports=(80, 443)) as lab_:
        yield lab_


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "apply never reached its confirmation window"
        time.sleep(0.05)


def test_load_then_confirm(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    v1 = _policy(tmp_path, "host", SSH_OK + '\n  allow egress to 192.0.2.60 port 443/tcp reason "v1"')
    first = _cli("apply", str(v1), "--netns", lab.agent_ns, "--state-dir", str(state),
                 "--confirm-within", "0")
    assert first.returncode == 0, first.stderr
    assert "kept (no confirmation window)" in first.stderr
    v2 = _policy(tmp_path, "host", SSH_OK + '\n  allow egress to 192.0.2.60 port 80/tcp reason "v2"')
    proc = _start("apply", str(v2), "--netns", lab.agent_ns, "--state-dir", str(state),
                  "--confirm-within", "60")
    _wait_for(state / "clawpolicy_host.pending", proc)
    confirm = _cli("apply", "--confirm", "--state-dir", str(state))
    assert confirm.returncode == 0 and "confirmed table inet clawpolicy_host" in confirm.stdout
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "confirmed: kept" in err and not (state / "clawpolicy_host.pending").exists()
    status = _cli("status", "--netns", lab.agent_ns, "--format", "json")
    import json

    (table,) = json.loads(status.stdout)
    assert (table["policy"], table["mode"], table["table"]) == ("host", "enforce", "clawpolicy_host")
    assert len(table["sha256"]) == 16
    chains = {c["chain"] for c in table["counters"]}
    assert {"egress_default", "ingress_default"} <= chains and any(c.startswith("rule_") for c in chains)
    text = _cli("status", "--netns", lab.agent_ns)
    assert "policy host, enforce mode, source sha256" in text.stdout
    # real denials and passes, then the counters as node_exporter's textfile collector reads them
    from netlab import Probe
    from prometheus_client.parser import text_string_to_metric_families

    results = lab.probe_results([Probe("egress", OTHER, "tcp", 443), Probe("egress", OTHER, "tcp", 80)],
                                timeout=0.5)
    assert [r.ok for r in results] == [False, True]
    prom = _cli("status", "--netns", lab.agent_ns, "--format", "prometheus")
    families = {f.name: f for f in text_string_to_metric_families(prom.stdout)}
    packets = {(s.labels["rule"], s.labels["kind"]): s.value for s in families["clawpolicy_rule_packets"].samples}
    assert packets[("default-egress", "deny")] >= 1
    assert [v for (rule, kind), v in packets.items() if kind == "allow" and rule != "default-ingress"] != []
    (info,) = families["clawpolicy_policy_info"].samples
    assert info.labels["policy"] == "host" and info.labels["sha256"] == table["sha256"]
    log = (state / "log").read_text()
    assert "saved the loaded table" in log and "confirmed: kept" in log
    assert _cli("apply", "--confirm", "--state-dir", str(state)).returncode == 1  # nothing waits


@pytest.mark.parametrize("previous", [True, False], ids=["over-a-table", "first-load"])
def test_rolls_back_without_confirmation(lab: Lab, tmp_path: Path, previous: bool) -> None:
    state = tmp_path / "state"
    if previous:
        v1 = _policy(tmp_path, "host", SSH_OK + '\n  deny egress to 192.0.2.60 port 443/tcp reason "v1" reject')
        assert _cli("apply", str(v1), "--netns", lab.agent_ns, "--state-dir", str(state),
                    "--confirm-within", "0").returncode == 0
        lab.probe_results([])  # nothing; the counters stay as loaded
    before = _table(lab, "clawpolicy_host")
    assert (before is not None) is previous
    v2 = _policy(tmp_path, "host", SSH_OK + '\n  allow egress to any reason "v2"', "applies-to host\n  mode shadow")
    result = _cli("apply", str(v2), "--netns", lab.agent_ns, "--state-dir", str(state),
                  "--confirm-within", "2")
    assert result.returncode == 1
    assert "not confirmed within 2 s: rolling back" in result.stderr
    assert _table(lab, "clawpolicy_host") == before


def test_interrupted_wait_rolls_back(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    v1 = _policy(tmp_path, "host", SSH_OK + '\n  allow egress to 192.0.2.60 port 443/tcp reason "v1"')
    assert _cli("apply", str(v1), "--netns", lab.agent_ns, "--state-dir", str(state),
                "--confirm-within", "0").returncode == 0
    before = _table(lab, "clawpolicy_host")
    v2 = _policy(tmp_path, "host", SSH_OK + '\n  allow egress to any reason "v2"')
    proc = _start("apply", str(v2), "--netns", lab.agent_ns, "--state-dir", str(state),
                  "--confirm-within", "120")
    _wait_for(state / "clawpolicy_host.pending", proc)
    assert _table(lab, "clawpolicy_host") != before  # v2 is loaded while it waits
    proc.send_signal(signal.SIGHUP)  # a lost SSH connection does not end the wait ...
    time.sleep(0.3)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)  # ... a stop rolls back at once
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "stopped (SIGTERM): rolling back" in err
    assert _table(lab, "clawpolicy_host") == before


def test_failed_load_leaves_the_old_table(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    v1 = _policy(tmp_path, "host", SSH_OK)
    assert _cli("apply", str(v1), "--netns", lab.agent_ns, "--state-dir", str(state),
                "--confirm-within", "0").returncode == 0
    before = _table(lab, "clawpolicy_host")
    # compiles, but the kernel refuses it: no such user on this machine
    bad = _policy(tmp_path, "host", '  allow egress to 192.0.2.60 port 443/tcp reason "x"',
                  "applies-to user clawpolicy-no-such-user")
    result = _cli("apply", str(bad), "--netns", lab.agent_ns, "--state-dir", str(state))
    assert result.returncode == 1 and "nft -c -f failed" in result.stderr
    assert _table(lab, "clawpolicy_host") == before
    assert not (state / "clawpolicy_host.pending").exists()


def _hold_ssh(lab: Lab) -> None:
    """A TCP connection from the peer to port 22 in the agent namespace, held open by both
    ends (a server that accepts and keeps the connection, a client that keeps it)."""
    listening = Path(lab.write_file("sshd-ready", ""))
    connected = Path(lab.write_file("ssh-ready", ""))
    listening.unlink()
    connected.unlink()
    server = ("import socket, time\n"
              "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
              f"s.bind(('{AGENT}', 22)); s.listen(); open('{listening}', 'w').close()\n"
              "held = [s.accept() for _ in range(1)]\ntime.sleep(300)\n")
    client = ("import socket, time\n"
              f"s = socket.create_connection(('{AGENT}', 22))\n"
              f"open('{connected}', 'w').close()\ntime.sleep(300)\n")
    lab.spawn(lab.agent_ns, [sys.executable, "-c", server], ready=listening.exists)
    lab.spawn(lab.peer_ns, [sys.executable, "-c", client], ready=connected.exists)


@pytest.mark.parametrize("body, rule", [
    ('  allow ingress from 10.0.0.0/8 port 22/tcp reason "admin LAN only"', "the default ingress deny"),
    (SSH_OK + f'\n  deny ingress from {PEER} reason "this client is banned" id banned', "rule banned"),
    ('  allow ingress from any port 22/tcp reason "ssh"\n  deny ingress from 192.0.2.0/24 port 22/tcp '
     'reason "not from the lab net" id no-lab', "rule no-lab"),
])
def test_refuses_to_cut_a_live_session(lab: Lab, tmp_path: Path, body: str, rule: str) -> None:
    _hold_ssh(lab)
    state = tmp_path / "state"
    policy = _policy(tmp_path, "host", body)
    result = _cli("apply", str(policy), "--netns", lab.agent_ns, "--state-dir", str(state))
    assert result.returncode == 1, result.stderr
    assert f"{rule}" in result.stderr and f"would refuse SSH from {PEER} to port 22/tcp" in result.stderr
    assert "/proc/net/tcp" in result.stderr and "nothing loaded" in result.stderr
    assert _table(lab, "clawpolicy_host") is None
    shadow = _cli("apply", str(policy), "--netns", lab.agent_ns, "--state-dir", str(state),
                  "--mode", "shadow", "--confirm-within", "0")
    assert shadow.returncode == 0, shadow.stderr  # shadow mode refuses nothing
    forced = _cli("apply", str(policy), "--netns", lab.agent_ns, "--state-dir", str(state), "--force",
                  "--confirm-within", "0")
    assert forced.returncode == 0, forced.stderr


def test_allowed_session_and_ssh_connection(lab: Lab, tmp_path: Path) -> None:
    _hold_ssh(lab)
    state = tmp_path / "state"
    policy = _policy(tmp_path, "host", SSH_OK)
    ok = _cli("apply", str(policy), "--netns", lab.agent_ns, "--state-dir", str(state), "--confirm-within", "0")
    assert ok.returncode == 0, ok.stderr
    # the session apply runs in, from SSH_CONNECTION (client, client port, server, server port)
    remote = _cli("apply", str(policy), "--netns", lab.agent_ns, "--state-dir", str(state),
                  "--confirm-within", "0", env=_env(SSH_CONNECTION=f"203.0.113.7 50022 {AGENT} 2222"))
    assert remote.returncode == 1
    assert "would refuse SSH from 203.0.113.7 to port 2222/tcp (found in SSH_CONNECTION)" in remote.stderr
