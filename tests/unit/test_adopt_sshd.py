"""init's SSH suggestion: sshd's listening ports from a /proc tree (a fake one here), and the
TODO-marked rule the host-wide starter carries so enforcing it does not lock anyone out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clawpolicy.adopt import sshd
from clawpolicy.adopt.deployment import read_deployment
from clawpolicy.adopt.starter import check, render
from clawpolicy.evaluate import Flow, evaluate
from clawpolicy.ir import Action, Direction, Protocol
from clawpolicy.lower import load_policies

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def _row(n: int, local: str, remote: str, state: int, inode: int) -> str:
    return f"   {n}: {local} {remote} {state:02X} 00000000:00000000 00:00000000 00000000     0        0 {inode} 1\n"


def _process(proc: Path, pid: int, comm: str, inodes: list[int], tcp: str, tcp6: str = HEADER) -> None:
    root = proc / str(pid)
    (root / "fd").mkdir(parents=True)
    (root / "ns").mkdir()
    (root / "net").mkdir()
    (root / "comm").write_text(comm + "\n")
    os.symlink("net:[4026531840]", root / "ns" / "net")
    for n, inode in enumerate(inodes):
        os.symlink(f"socket:[{inode}]", root / "fd" / str(n + 3))
    (root / "net" / "tcp").write_text(tcp)
    (root / "net" / "tcp6").write_text(tcp6)
    for table in ("udp", "udp6"):
        (root / "net" / table).write_text(HEADER)


def _fake_proc(tmp_path: Path) -> Path:
    proc = tmp_path / "proc"
    table = HEADER + "".join([
        _row(0, "00000000:08AE", "00000000:0000", 0x0A, 101),  # 0.0.0.0:2222 LISTEN (sshd)
        _row(1, "0100007F:1F90", "00000000:0000", 0x0A, 102),  # 127.0.0.1:8080 LISTEN (other)
        _row(2, "0102000A:08AE", "0902000A:C350", 0x01, 103),  # 10.0.2.1:2222 <- 10.0.2.9 ESTAB
    ])
    v6 = HEADER + _row(0, "00000000000000000000000000000000:0016", "00000000000000000000000000000000:0000",
                       0x0A, 104)  # [::]:22 LISTEN (sshd)
    _process(proc, 10, "sshd", [101, 104], table, v6)
    _process(proc, 11, "sshd-session", [103], table, v6)
    _process(proc, 12, "python3", [102], table, v6)
    return proc


def test_listening_ports(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path)
    assert sshd.listening_ports(proc) == [22, 2222]
    established = [s for s in sshd.sshd_sockets(proc) if s.state == "ESTAB"]
    assert [(s.remote, s.local_port, s.pids) for s in established] == [("10.0.2.9", 2222, (11,))]


def test_no_sshd(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    _process(proc, 12, "python3", [102], HEADER + _row(0, "00000000:0016", "00000000:0000", 0x0A, 102))
    assert sshd.listening_ports(proc) == []


@pytest.mark.parametrize("ports", [[22], [22, 2222], [2200]])
def test_host_starter_suggests_the_ssh_rule(tmp_path: Path, ports: list[int]) -> None:
    text = render(read_deployment({}), name="t", user=None, config_files=[Path("openclaw.json")],
                  ssh_ports=ports)
    assert check(text, "t") == []
    assert "# TODO sshd listens on" in text and "REVIEW before enforcing" in text
    path = tmp_path / "t.claw"
    path.write_text(text)
    policy = load_policies([path]).policies[0]
    for port in ports:
        verdict = evaluate(policy, Flow(Direction.INGRESS, "192.0.2.7", Protocol.TCP, port))
        assert verdict.action is Action.ALLOW and verdict.rule_id == "ssh"
    assert evaluate(policy, Flow(Direction.INGRESS, "192.0.2.7", Protocol.TCP, 2201)).action is Action.DENY


def test_host_starter_without_sshd_says_so(tmp_path: Path) -> None:
    text = render(read_deployment({}), name="t", user=None, config_files=[Path("openclaw.json")],
                  ssh_ports=[])
    assert "# TODO no listening sshd found" in text and "id ssh" not in text


def test_user_starter_has_no_ssh_rule() -> None:
    text = render(read_deployment({}), name="t", user="openclaw", config_files=[Path("openclaw.json")],
                  ssh_ports=[22])
    assert "sshd" not in text
