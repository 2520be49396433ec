"""Fuzzing the DNS gate's query handler: random bytes and mutated real queries (bit flips, cuts,
splices, wrong counts) never make `Gate.handle` raise, and every reply it sends parses and
carries the query's ID with QR set. The upstream is canned (no sockets), the set writer
records. Derandomized, so a CI failure reproduces locally."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import dns.flags
import dns.message
import dns.rrset
from hostile import budget
from hypothesis import given
from hypothesis import strategies as st

from clawpolicy.dnsgate.nftset import MemoryWriter
from clawpolicy.dnsgate.server import Gate, GateOptions
from clawpolicy.ir import Policy
from clawpolicy.lower import load_policies

FUZZ = budget(400)  # CLAWPOLICY_FUZZ_EXAMPLES=N: N random inputs per target instead
POLICY = """policy fuzz {
  allow egress to api.llm.test, *.chat.test port 443/tcp reason "x"
  deny egress to *.bad.test reason "y"
}
"""


def _policy() -> Policy:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.claw"
        path.write_text(POLICY)
        return load_policies([path]).policies[0]


class CannedGate(Gate):
    """The upstream answers every question with a CNAME chain and addresses (some hostile:
    records for other owners, a loop), without a network."""

    async def _forward(self, question: dns.rrset.RRset, query: dns.message.Message) -> dns.message.Message | None:
        ask = dns.message.make_query(question.name, question.rdtype, question.rdclass)
        reply = dns.message.make_response(ask)
        name = question.name.to_text()
        reply.answer.append(dns.rrset.from_text(name, 30, "IN", "CNAME", "x.bad.test."))
        reply.answer.append(dns.rrset.from_text("x.bad.test.", 30, "IN", "A", "192.0.2.1"))
        reply.answer.append(dns.rrset.from_text("elsewhere.test.", 99999, "IN", "AAAA", "2001:db8::1"))
        return reply


GATE = CannedGate(_policy(), MemoryWriter(), GateOptions(upstreams=()), log=lambda _line: None)
LOOP = asyncio.new_event_loop()
SEEDS = [dns.message.make_query(n, t, use_edns=e).to_wire()
         for n, t, e in [("api.llm.test", "A", -1), ("a.chat.test", "AAAA", 0), ("x.bad.test", "TXT", 0),
                         ("evil.test", "A", -1), ("a" * 63 + ".chat.test", "ANY", 0)]]


def _check(wire: bytes, tcp: bool) -> None:
    reply = LOOP.run_until_complete(GATE.handle(wire, "fuzz", tcp=tcp))
    assert GATE.stats["internal-error"] == 0  # handled, not caught by the last-resort net
    if reply is None:
        assert len(wire) < 12 or wire[2] & 0x80
        return
    assert len(reply) <= (65535 if tcp else max(512, len(reply)))
    msg = dns.message.from_wire(reply)
    assert msg.id == int.from_bytes(wire[:2], "big") and msg.flags & dns.flags.QR


@FUZZ
@given(st.binary(max_size=600), st.booleans())
def test_random_bytes(wire: bytes, tcp: bool) -> None:
    _check(wire, tcp)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "count", "splice"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[pos:pos + draw(st.integers(1, 20))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "count" and len(data) >= 12:
            i = draw(st.sampled_from([4, 6, 8, 10]))
            data[i:i + 2] = draw(st.integers(0, 65535)).to_bytes(2, "big")
        elif op == "splice":
            data += draw(st.sampled_from(SEEDS))[draw(st.integers(0, 30)):]
    return bytes(data)


@FUZZ
@given(mutated(), st.booleans())
def test_mutated_queries(wire: bytes, tcp: bool) -> None:
    _check(wire, tcp)
