"""The DNS gate's query handling (clawpolicy/dnsgate/server.py) against a fake upstream on
loopback, with a recording set writer: what reaches the upstream, what the client gets, what
goes into the sets, and that no input makes `handle` raise. The kernel half is
tests/kernel/test_dnsgate_kernel.py."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from clawpolicy.dnsgate.logline import parse
from clawpolicy.dnsgate.nftset import MemoryWriter
from clawpolicy.dnsgate.server import Gate, GateOptions
from clawpolicy.dnsgate.upstreams import parse_address, resolv_conf_upstreams
from clawpolicy.ir import Mode, Policy
from clawpolicy.lower import load_policies

POLICY = """policy gate {
  dns local
  allow egress to api.llm.test port 443/tcp reason "model API" id llm
  allow egress to *.chat.test port 443/tcp reason "chat" id chat
  dns resolve probe.test reason "checks" id checks
}
"""
ZONE = {
    "api.llm.test.": ["192.0.2.1"],
    "big.chat.test.": [f"198.51.100.{i}" for i in range(1, 61)],  # > 512 bytes
    "probe.test.": ["192.0.2.9"],
    "evil.test.": ["203.0.113.66"],
}


class FakeUpstream:
    """UDP and TCP on 127.0.0.1, answering A queries from ZONE with TTL 3600 and recording
    every name it is asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.port = 0

    def answer(self, wire: bytes) -> bytes:
        q = dns.message.from_wire(wire)
        name = q.question[0].name.to_text().lower()
        self.asked.append(name)
        r = dns.message.make_response(q)
        if name in ZONE:
            r.answer.append(dns.rrset.from_text_list(name, 3600, "IN", "A", ZONE[name]))
        else:
            r.set_rcode(dns.rcode.NXDOMAIN)
        return r.to_wire(max_size=65535)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        upstream = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.t = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                reply = upstream.answer(data)
                if len(reply) > 1232:
                    m = dns.message.from_wire(reply)
                    m.answer.clear()
                    m.flags |= dns.flags.TC
                    reply = m.to_wire()
                self.t.sendto(reply, addr)  # type: ignore[attr-defined]

        async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            size = int.from_bytes(await reader.readexactly(2), "big")
            reply = upstream.answer(await reader.readexactly(size))
            writer.write(len(reply).to_bytes(2, "big") + reply)
            await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(tcp, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", self.port))


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    path = tmp_path_factory.mktemp("gate") / "gate.claw"
    path.write_text(POLICY)
    loaded = load_policies([path])
    assert loaded.ok
    return loaded.policies[0]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _setup(loop: asyncio.AbstractEventLoop, policy: Policy, **kw: object) -> tuple[Gate, FakeUpstream, MemoryWriter, list[str]]:
    upstream = FakeUpstream()
    loop.run_until_complete(upstream.start())
    writer = MemoryWriter(timeout=300, fail=bool(kw.pop("fail", False)))
    lines: list[str] = []
    mode = kw.pop("mode", None)
    options = GateOptions(upstreams=(("127.0.0.1", upstream.port),), floor=60, upstream_timeout=0.5)
    gate = Gate(policy, writer, options, mode=mode, log=lines.append)  # type: ignore[arg-type]
    return gate, upstream, writer, lines


def _ask(loop: asyncio.AbstractEventLoop, gate: Gate, name: str | dns.name.Name, *, tcp: bool = False,
         edns: int = -1, rdtype: str = "A") -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=edns)
    wire = loop.run_until_complete(gate.handle(q.to_wire(), "127.0.0.1", tcp=tcp))
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert reply.id == q.id
    return reply


def test_allowed_name_fills_the_sets_before_answering(loop: asyncio.AbstractEventLoop, policy: Policy) -> None:
    gate, upstream, writer, lines = _setup(loop, policy)
    reply = _ask(loop, gate, "api.llm.test")
    assert reply.rcode() == dns.rcode.NOERROR
    assert [r.to_text() for r in reply.answer[0]] == ["192.0.2.1"]
    assert reply.answer[0].ttl == 300  # 3600 capped at the sets' timeout
    (tx,) = writer.transactions
    assert "192.0.2.1 timeout 300s expires 300s" in tx and tx.startswith("add element inet clawpolicy_gate ")
    log = parse(lines[-1])
    assert log is not None and (log.verdict, log.rcode, log.rule_ids, log.addresses) == (
        "allow", "NOERROR", ("llm",), ("192.0.2.1",))


def test_unlisted_names_never_reach_the_upstream(loop: asyncio.AbstractEventLoop, policy: Policy,
                                                  subtests: pytest.Subtests) -> None:
    gate, upstream, writer, lines = _setup(loop, policy)
    for name in ("evil.test", "secret.attacker.test", "x.api.llm.test", "chat.test", "llm.test"):
        with subtests.test(name=name):
            reply = _ask(loop, gate, name, edns=0)
            assert reply.rcode() == dns.rcode.REFUSED and not reply.answer
            (ede,) = [o for o in reply.options if isinstance(o, dns.edns.EDEOption)]
            assert ede.code == dns.edns.EDECode.PROHIBITED and "gate" in (ede.text or "")
            log = parse(lines[-1])
            assert log is not None and (log.verdict, log.name) == ("refuse", name)
    assert upstream.asked == [] and writer.transactions == []


def test_a_dot_inside_a_label_is_not_a_subdomain(loop: asyncio.AbstractEventLoop, policy: Policy) -> None:
    """Labels `x.chat` + `test` print as `x\\.chat.test`: a child of test, not of chat.test."""
    gate, upstream, writer, lines = _setup(loop, policy)
    for labels in ([b"x.chat", b"test", b""], [b"api.llm", b"test", b""], [b"api", b"llm.test", b""]):
        assert _ask(loop, gate, dns.name.Name(labels)).rcode() == dns.rcode.REFUSED
    assert upstream.asked == []
    inner = dns.name.Name([b"odd.label", b"chat", b"test", b""])  # really below chat.test
    assert _ask(loop, gate, inner).rcode() == dns.rcode.NXDOMAIN and len(upstream.asked) == 1


def test_shadow_forwards_and_logs_would_refuse(loop: asyncio.AbstractEventLoop, policy: Policy) -> None:
    gate, upstream, writer, lines = _setup(loop, policy, mode=Mode.SHADOW)
    reply = _ask(loop, gate, "evil.test")
    assert [r.to_text() for r in reply.answer[0]] == ["203.0.113.66"]
    assert upstream.asked == ["evil.test."] and writer.transactions == []
    assert gate.stats["would-refuse"] == 1
    assert "verdict=would-refuse" in lines[-1]


def test_resolve_only_names_fill_no_set(loop: asyncio.AbstractEventLoop, policy: Policy) -> None:
    gate, upstream, writer, _ = _setup(loop, policy)
    assert [r.to_text() for r in _ask(loop, gate, "probe.test").answer[0]] == ["192.0.2.9"]
    assert writer.transactions == []


def test_truncation_then_tcp(loop: asyncio.AbstractEventLoop, policy: Policy) -> None:
    gate, upstream, writer, _ = _setup(loop, policy)
    udp = _ask(loop, gate, "big.chat.test")  # no EDNS: 512 bytes
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = _ask(loop, gate, "big.chat.test", tcp=True)
    assert len(tcp.answer[0]) == 60 and not tcp.flags & dns.flags.TC
    big = _ask(loop, gate, "big.chat.test", edns=0)  # EDNS0 1232 bytes: fits
    assert len(big.answer[0]) == 60
    assert all("198.51.100.60 timeout" in tx for tx in writer.transactions)


def test_upstream_failures_are_servfail(loop: asyncio.AbstractEventLoop, policy: Policy) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind(("127.0.0.1", 0))
    writer = MemoryWriter()
    lines: list[str] = []
    gate = Gate(policy, writer, GateOptions(upstreams=(silent.getsockname(),), upstream_timeout=0.2),
                log=lines.append)
    assert _ask(loop, gate, "api.llm.test").rcode() == dns.rcode.SERVFAIL
    assert "note=no-upstream-answer" in lines[-1] and writer.transactions == []
    silent.close()


def test_failed_set_update_is_servfail(loop: asyncio.AbstractEventLoop, policy: Policy) -> None:
    gate, upstream, writer, lines = _setup(loop, policy, fail=True)
    reply = _ask(loop, gate, "api.llm.test")
    assert reply.rcode() == dns.rcode.SERVFAIL and not reply.answer  # fail closed
    assert "set-update-failed" in lines[-1]


MALFORMED = [  # wire, expected rcode (None: no reply at all)
    (b"", None),
    (b"\x12\x34", None),  # shorter than a header
    (b"\x12\x34\x81\x80" + b"\x00" * 8, None),  # a response: never answered (no reflection loops)
    (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07", dns.rcode.FORMERR),  # cut question
    (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x3f" * 40, dns.rcode.FORMERR),
    (b"\x12\x34\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00" + b"\x00\x00\x01\x00\x01" * 2,
     dns.rcode.FORMERR),  # two questions
    (b"\x12\x34\x11\x00\x00\x00\x00\x00\x00\x00\x00\x00", dns.rcode.NOTIMP),  # opcode 2 (status)
    (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
     dns.rcode.FORMERR),  # a compression pointer loop
]


def test_malformed_queries(loop: asyncio.AbstractEventLoop, policy: Policy, subtests: pytest.Subtests) -> None:
    gate, upstream, writer, _ = _setup(loop, policy)
    for wire, rcode in MALFORMED:
        with subtests.test(wire=wire[:16].hex()):
            reply = loop.run_until_complete(gate.handle(wire, "127.0.0.1", tcp=False))
            if rcode is None:
                assert reply is None
                continue
            assert reply is not None
            msg = dns.message.from_wire(reply)
            assert (msg.id, msg.rcode()) == (0x1234, rcode) and msg.flags & dns.flags.QR
    assert upstream.asked == []


def test_zone_transfer_and_other_classes_refused(loop: asyncio.AbstractEventLoop, policy: Policy) -> None:
    gate, upstream, _, _ = _setup(loop, policy)
    assert _ask(loop, gate, "api.llm.test", rdtype="AXFR", tcp=True).rcode() == dns.rcode.REFUSED
    q = dns.message.make_query("api.llm.test", "A", rdclass="CH")
    reply = loop.run_until_complete(gate.handle(q.to_wire(), "c", tcp=False))
    assert reply is not None and dns.message.from_wire(reply).rcode() == dns.rcode.REFUSED
    assert upstream.asked == []


def test_reload_flushes_sets_of_removed_names(loop: asyncio.AbstractEventLoop, policy: Policy,
                                              tmp_path: Path) -> None:
    gate, upstream, writer, _ = _setup(loop, policy)
    _ask(loop, gate, "api.llm.test")
    old = {name for _, name in gate.gate.set_names}
    path = tmp_path / "gate.claw"
    path.write_text(POLICY.replace("  allow egress to *.chat.test", "  allow egress to other.test, *.chat.test"))
    (new,) = load_policies([path]).policies
    assert gate.reload(new) == []
    flushed = writer.transactions[-1]
    gone = old - {name for _, name in gate.gate.set_names}
    assert gone and all(f"flush set inet clawpolicy_gate {s}" in flushed for s in gone)
    assert _ask(loop, gate, "other.test").rcode() == dns.rcode.NXDOMAIN  # now forwarded
    assert upstream.asked[-1] == "other.test."


def test_addresses_and_resolv_conf(tmp_path: Path, subtests: pytest.Subtests) -> None:
    for text, want in [("127.0.0.1", ("127.0.0.1", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)),
                       ("::1", ("::1", 53)), ("[::1]:5300", ("::1", 5300))]:
        with subtests.test(text=text):
            assert parse_address(text) == want
    for bad in ("example.com", "1.2.3.4:0", "1.2.3.4:x"):
        with subtests.test(bad=bad), pytest.raises(ValueError):
            parse_address(bad)
    conf = tmp_path / "resolv.conf"
    conf.write_text("# x\nnameserver 127.0.0.1\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\n"
                    "search example\nnameserver 10.0.0.53\n")
    assert resolv_conf_upstreams(conf, [("127.0.0.1", 53)]) == (("10.0.0.53", 53), ("fe80::1", 53))


def test_reload_during_a_lookup_decides_again(loop: asyncio.AbstractEventLoop, policy: Policy,
                                              tmp_path: Path) -> None:
    """An answer that arrives after a reload removed its name fills no set and is refused."""
    gate, upstream, writer, lines = _setup(loop, policy)
    path = tmp_path / "gate.claw"
    path.write_text(POLICY.replace('  allow egress to api.llm.test port 443/tcp reason "model API" id llm\n', ""))
    (new,) = load_policies([path]).policies
    forward = gate._forward

    async def slow_forward(question: dns.rrset.RRset, query: dns.message.Message) -> dns.message.Message | None:
        reply = await forward(question, query)
        gate.reload(new)  # SIGHUP lands while the upstream was answering
        return reply

    gate._forward = slow_forward  # type: ignore[method-assign]
    assert _ask(loop, gate, "api.llm.test").rcode() == dns.rcode.REFUSED
    assert not any("192.0.2.1" in tx for tx in writer.transactions)
    assert "note=reloaded-meanwhile" in lines[-1]


def test_serve_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], subtests: pytest.Subtests) -> None:
    """`dns serve` refuses bad arguments before it binds anything (exit 2), and a file with
    several policies without --policy (exit 1)."""
    from clawpolicy.cli import main

    path = tmp_path / "gate.claw"
    path.write_text(POLICY)
    empty = tmp_path / "resolv.conf"
    empty.write_text("nameserver 127.0.0.1\n")  # only the gate itself
    for args, code, message in [
        (["--listen", "example.com"], 2, "does not appear to be an IPv4 or IPv6 address"),
        (["--upstream", "10.0.0.1:99999"], 2, "out of range"),
        (["--resolv-conf", str(empty)], 2, "no upstream"),
        (["--upstream", "127.0.0.1:1", "--workers", "2", "--min-ttl", "5"], 2, "--min-ttl needs --workers 1"),
    ]:
        with subtests.test(args=args):
            assert main(["dns", "serve", str(path), *args]) == code
            assert message in capsys.readouterr().err
    two = tmp_path / "two.claw"
    two.write_text(POLICY + POLICY.replace("policy gate", "policy other"))
    assert main(["dns", "serve", str(two), "--upstream", "127.0.0.1:1"]) == 1
    assert "defines gate, other: name one with --policy" in capsys.readouterr().err
