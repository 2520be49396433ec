"""procnet (parsing /proc) and observe (judging sockets) without root: tables as text, this
test process's own sockets, synthetic sockets for the judgements."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from clawpolicy.adopt import procnet
from clawpolicy.adopt.observe import judge, render_text
from clawpolicy.adopt.procnet import Socket, decode_address, parse_table
from clawpolicy.lower import load_policies

LE = sys.byteorder == "little"


def test_decode_address(subtests: pytest.FixtureRequest) -> None:
    cases = {  # little-endian /proc text -> address
        "0100007F": "127.0.0.1", "00000000": "0.0.0.0", "0102A8C0": "192.168.2.1",
        "00000000000000000000000001000000": "::1",
        "B80D0120000000000000000001000000": "2001:db8::1",
        "0000000000000000FFFF00000100007F": "127.0.0.1",  # IPv4-mapped
    }
    if not LE:
        pytest.skip("the cases are written for a little-endian kernel")
    for text, address in cases.items():
        with subtests.test(msg=text):  # type: ignore[attr-defined]
            assert decode_address(text) == address


def test_parse_table() -> None:
    if not LE:
        pytest.skip("little-endian sample")
    text = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
            "   0: 00000000:4965 00000000:0000 0A 00000000:00000000 00:00000000 00000000  4242        0 111 1 0\n"
            "   1: 0100007F:9C40 0A0A0A0A:01BB 01 00000000:00000000 00:00000000 00000000  4242        0 222 1 0\n")
    rows = list(parse_table(text, "tcp", "net:[1]"))
    assert [(r.local, r.local_port, r.remote, r.remote_port, r.state, r.uid, r.inode) for r in rows] == [
        ("0.0.0.0", 18789, "0.0.0.0", 0, "LISTEN", 4242, 111),
        ("127.0.0.1", 40000, "10.10.10.10", 443, "ESTAB", 4242, 222)]
    udp = list(parse_table(text.replace(" 0A ", " 07 "), "udp", "net:[1]"))
    assert [r.state for r in udp] == ["UNCONN", "ESTAB"]


def test_own_sockets() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        selection = procnet.by_pid(os.getpid(), children=False)
        found = [s for s in procnet.sockets_of(selection) if s.local_port == port]
        assert [(s.protocol, s.local, s.state, s.pids) for s in found] == [
            ("tcp", "127.0.0.1", "LISTEN", (os.getpid(),))]
    assert os.getpid() in procnet.by_user(str(os.geteuid())).pids
    with pytest.raises(procnet.ProcError):
        procnet.by_pid(2**22 + 12345)


def test_service_cgroup_paths(tmp_path: Path) -> None:
    unit = tmp_path / "unified" / "system.slice" / "openclaw.service"
    (unit / "child").mkdir(parents=True)
    (unit / "cgroup.procs").write_text("10\n12\n")
    (unit / "child" / "cgroup.procs").write_text("11\n")
    if Path("/run/systemd/system").is_dir():
        pytest.skip("systemd runs here: it answers for the unit instead")
    assert procnet.service_cgroup("openclaw", root=tmp_path) == unit
    assert procnet.by_service("openclaw.service", root=tmp_path).pids == [10, 11, 12]
    with pytest.raises(procnet.ProcError, match="no cgroup for unit"):
        procnet.service_cgroup("other", root=tmp_path)


POLICY = """
policy p {
  mode enforce
  applies-to user 4242
  allow egress to api.example.com port 443/tcp reason "api" id api
  allow egress to 10.0.0.0/8 port 8080/tcp reason "tools" id tools
  allow ingress from 100.64.0.0/10 port 18789/tcp reason "tailnet" id gw
}
"""


def _sock(local: str, lport: int, remote: str, rport: int, state: str, proto: str = "tcp",
          uid: int = 4242) -> Socket:
    return Socket(proto, local, lport, remote, rport, state, uid, 1, "net:[1]", (7,))


def test_judgements(tmp_path: Path, subtests: pytest.FixtureRequest) -> None:
    path = tmp_path / "p.claw"
    path.write_text(POLICY)
    policy = load_policies([path]).policies[0]
    sockets = [
        _sock("0.0.0.0", 18789, "0.0.0.0", 0, "LISTEN"),
        _sock("192.0.2.1", 18789, "100.100.1.2", 50000, "ESTAB"),  # accepted: ingress
        _sock("192.0.2.1", 18789, "192.168.1.9", 50001, "ESTAB"),
        _sock("192.0.2.1", 40000, "10.1.2.3", 8080, "ESTAB"),
        _sock("192.0.2.1", 40001, "203.0.113.5", 443, "ESTAB"),  # a locked name
        _sock("192.0.2.1", 40002, "203.0.113.6", 443, "ESTAB"),  # maybe an FQDN set's
        _sock("::", 5353, "::", 0, "UNCONN", "udp"),
    ]
    findings = judge(policy, sockets, {"203.0.113.5": ["api.example.com"]})
    expect = [("listen", "deny", None), ("ingress", "allow", "gw"), ("ingress", "deny", None),
              ("egress", "allow", "tools"), ("egress", "allow", "api"), ("egress", "deny", None),
              ("listen", "allow", None)]
    for f, (kind, action, rule) in zip(findings, expect, strict=True):
        with subtests.test(msg=str(f.socket)):  # type: ignore[attr-defined]
            assert (f.kind, f.verdict.action.value, f.verdict.rule_id) == (kind, action, rule)
    assert findings[4].via_name == "api.example.com"
    assert "FQDN rule (api)" in findings[5].notes[0]
    assert findings[6].flags == ("exposed", "mdns") and findings[6].verdict.cause == "out-of-scope"
    text = render_text(policy, "pid 7", findings, unreadable=[9])
    assert "[EXPOSED] [MDNS]" in text and "egress to 203.0.113.5 (as api.example.com)" in text
    assert "3 denied, 2 listening beyond loopback, 1 mDNS" in text and "pid(s) 9" in text
