"""The DNS gate's I/O loop: floor 3, thin over `policy` (decisions) and `nftset` (writes).

asyncio and dnspython, no DNS wire code of its own. Per query (`Gate.handle`):
parse (unparseable: FORMERR, or silence for what is not a query at all) -> `decide` ->
refused names are answered here and never forwarded -> forward to the upstreams in turn
(UDP, then TCP when the upstream truncates; every upstream silent or failing: SERVFAIL) ->
`plan_answer` -> one libnftables transaction -> only then the reply, its TTLs capped. A failed
transaction is SERVFAIL (fail closed: an answer whose addresses are not in the sets would
send the agent to a dropped connection, or worse, let a deny set miss an address).

No cache: every query is forwarded, so every answer refreshes the sets (a cache hit that
skipped the sets is the dnsmasq defect this gate exists for). Replies respect the client's
EDNS0 buffer size (512 bytes without EDNS); a reply that does not fit goes back empty with TC
set, and the client asks again over TCP. In flight at once: at most `max_inflight` queries
(UDP beyond that is dropped, the client retries) and `max_tcp` TCP connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from clawpolicy.dnsgate.forward import Upstream
from clawpolicy.dnsgate.logline import GateLogLine
from clawpolicy.dnsgate.nftset import SetError, SetWriter
from clawpolicy.dnsgate.policy import (
    Decision,
    GatePolicy,
    Ledger,
    Record,
    Verdict,
    cap_of,
    flush_transaction,
    nft_transaction,
    normalise,
    plan_answer,
)
from clawpolicy.dnsgate.upstreams import Address
from clawpolicy.ir import Mode, Policy

EDE_PROHIBITED = 18  # RFC 8914
UPSTREAM_PAYLOAD = 1232  # the DNS flag day 2020 size: no fragmented UDP upstream


def write_line(line: str) -> None:
    """One log line on stderr in one write: workers share the stream, and print() writes the
    text and its newline separately when stderr is unbuffered (PYTHONUNBUFFERED), so two
    workers stopping at once ran their lines together."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


@dataclass(frozen=True)
class GateOptions:
    upstreams: tuple[Address, ...]
    floor: int = 600  # seconds an admitted address stays at least (clamped to the sets' timeout)
    default_cap: int = 600  # TTL cap when the policy has no sets to read a timeout from
    upstream_timeout: float = 2.0  # per upstream, per transport
    max_inflight: int = 1024
    max_tcp: int = 256
    tcp_idle: float = 10.0


class Gate:
    """The decision loop of one policy. `handle` never raises for any input."""

    def __init__(self, policy: Policy, writer: SetWriter, options: GateOptions, *,
                 mode: Mode | None = None, log: Callable[[str], None] | None = None) -> None:
        self.writer = writer
        self.options = options
        self.mode = mode
        self.log = log or write_line
        self.ledger = Ledger()
        self.upstreams = [Upstream(a) for a in options.upstreams]
        self.stats: Counter[str] = Counter()
        self.gate = GatePolicy(policy, mode)
        self.cap = self._cap(self.gate)

    def _cap(self, gate: GatePolicy) -> int:
        """The sets' timeout, read from the kernel: SetError when a set is missing."""
        timeouts = self.writer.timeouts(gate.table, [name for _, name in gate.set_names])
        return cap_of({k: v for k, v in timeouts.items() if v > 0}, self.options.default_cap)

    def reload(self, policy: Policy) -> list[str]:
        """Switch to `policy` (SIGHUP). Sets the old policy wrote and the new one does not are
        flushed at once. Returns problems to log (a missing set: answers SERVFAIL until the
        new ruleset is loaded)."""
        problems = []
        new = GatePolicy(policy, self.mode)
        old_sets = {name for _, name in self.gate.set_names}
        new_sets = {name for _, name in new.set_names}
        gone = sorted(old_sets - new_sets)
        try:
            self.cap = self._cap(new)
        except SetError as exc:
            problems.append(f"{exc}: load the new ruleset; answers needing it fail until then")
        try:
            if new.table == self.gate.table:
                self.writer.apply(flush_transaction(new.table, gone))
        except SetError as exc:
            problems.append(f"could not flush the sets of removed names: {exc}")
        self.gate = new
        self.ledger.forget(new_sets)
        return problems

    # ------------------------------------------------------------------ one query
    async def handle(self, wire: bytes, client: str, *, tcp: bool) -> bytes | None:
        try:
            return await self._handle(wire, client, tcp)
        except Exception as exc:  # noqa: BLE001 - a bug must cost one answer, not the gate
            self.stats["internal-error"] += 1
            self.log(f"clawpolicy-dns: internal error ({type(exc).__name__}: {exc}) client={client}")
            return _error_reply(wire, dns.rcode.SERVFAIL)

    async def _handle(self, wire: bytes, client: str, tcp: bool) -> bytes | None:
        if len(wire) < 12 or wire[2] & 0x80:  # no header, or a response: never answer those
            return None
        try:
            query = dns.message.from_wire(wire)
        except dns.message.BadEDNS:
            return _error_reply(wire, dns.rcode.BADVERS)
        except Exception:  # noqa: BLE001 - dnspython raises many kinds for malformed input
            self.stats["formerr"] += 1
            return _error_reply(wire, dns.rcode.FORMERR)
        if query.opcode() != dns.opcode.QUERY:
            return self._reply(query, dns.rcode.NOTIMP, tcp)
        if len(query.question) != 1:
            return self._reply(query, dns.rcode.FORMERR, tcp)
        question = query.question[0]
        qname = question.name.to_text(omit_final_dot=True)
        qtype = dns.rdatatype.to_text(question.rdtype)
        gate = self.gate
        decision = gate.decide(qname)
        if (question.rdclass != dns.rdataclass.IN
                or question.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR)):
            decision = Decision(decision.name, Verdict.REFUSE, decision.rule_ids)
        self.stats[decision.verdict.value] += 1
        line = GateLogLine(gate.name, decision.verdict.value, normalise(qname) or ".", qtype, "",
                           decision.rule_ids, client)
        if not decision.verdict.forwards:
            reply = self._refusal(query, gate.name)
            self.log(_with(line, rcode="REFUSED"))
            return self._wire(reply, query, tcp)
        upstream = await self._forward(question, query)
        if upstream is None:
            self.log(_with(line, rcode="SERVFAIL", note="no-upstream-answer"))
            return self._reply(query, dns.rcode.SERVFAIL, tcp)
        if self.gate is not gate:  # reloaded while the upstream answered: decide again, so a
            gate = self.gate  # name just removed never refills the sets its reload flushed
            decision = gate.decide(qname)
            if not decision.verdict.forwards:
                self.log(_with(line, rcode="REFUSED", note="reloaded-meanwhile"))
                return self._wire(self._refusal(query, gate.name), query, tcp)
        plan = plan_answer(gate, decision, _records(upstream), cap=self.cap, floor=self.options.floor)
        now = time.monotonic()
        elements = self.ledger.extend(plan.elements, now)
        try:
            self.writer.apply(nft_transaction(gate.table, elements))
        except SetError as exc:
            self.stats["set-failure"] += 1
            self.log(_with(line, rcode="SERVFAIL", note=f"set-update-failed:{exc}"[:200]))
            return self._reply(query, dns.rcode.SERVFAIL, tcp)
        self.ledger.commit(elements, now)
        reply = _as_reply(upstream, query, plan.ttl_cap)
        self.log(_with(line, rcode=dns.rcode.to_text(upstream.rcode()), elements=len(elements),
                       addresses=plan.addresses))
        return self._wire(reply, query, tcp)

    async def _forward(self, question: dns.rrset.RRset, query: dns.message.Message) -> dns.message.Message | None:
        """The first upstream's reply, over UDP then TCP when truncated; None if none answers."""
        ask = dns.message.make_query(question.name, question.rdtype, question.rdclass,
                                     use_edns=0, payload=UPSTREAM_PAYLOAD,
                                     want_dnssec=bool(query.ednsflags & dns.flags.DO))
        ask.flags = (ask.flags & ~dns.flags.RD) | (query.flags & (dns.flags.RD | dns.flags.CD))
        for upstream in self.upstreams:
            reply = await upstream.ask(ask, self.options.upstream_timeout)
            if reply is None or reply.rcode() in (dns.rcode.SERVFAIL, dns.rcode.REFUSED,
                                                  dns.rcode.NOTIMP):
                continue  # try the next one, as stub resolvers do
            return reply
        return None

    def _refusal(self, query: dns.message.Message, policy: str) -> dns.message.Message:
        reply = dns.message.make_response(query, recursion_available=True,
                                          our_payload=UPSTREAM_PAYLOAD)
        reply.set_rcode(dns.rcode.REFUSED)
        if query.edns >= 0:
            reply.use_edns(0, payload=UPSTREAM_PAYLOAD, options=[dns.edns.EDEOption(
                dns.edns.EDECode.PROHIBITED, f"clawpolicy: not in policy {policy}")])
        return reply

    def _reply(self, query: dns.message.Message, rcode: dns.rcode.Rcode, tcp: bool) -> bytes:
        reply = dns.message.make_response(query, recursion_available=True,
                                          our_payload=UPSTREAM_PAYLOAD)
        reply.set_rcode(rcode)
        return self._wire(reply, query, tcp)

    def _wire(self, reply: dns.message.Message, query: dns.message.Message, tcp: bool) -> bytes:
        """The reply within what the client can take: 65535 over TCP, its EDNS0 buffer size
        (at least 512) over UDP, else empty with TC set (it retries over TCP)."""
        limit = 65535 if tcp else (max(query.payload, 512) if query.edns >= 0 else 512)
        try:
            return reply.to_wire(max_size=limit)
        except dns.exception.TooBig:
            short = dns.message.make_response(query, recursion_available=True,
                                              our_payload=UPSTREAM_PAYLOAD)
            short.set_rcode(reply.rcode())
            short.flags |= dns.flags.TC
            return short.to_wire(max_size=limit)


def _as_reply(upstream: dns.message.Message, query: dns.message.Message, cap: int) -> dns.message.Message:
    """The upstream's message, turned into the client's reply in place (cheaper than copying
    it into a new one): the client's ID and RD/CD, QR and RA set, AA/AD kept, TTLs capped,
    EDNS0 only if the client used it."""
    rcode = upstream.rcode()  # kept in the flags (and EDNS flags): set again below
    upstream.id = query.id
    upstream.flags = (dns.flags.QR | dns.flags.RA | (upstream.flags & (dns.flags.AA | dns.flags.AD))
                      | (query.flags & (dns.flags.RD | dns.flags.CD)))
    for section in (upstream.answer, upstream.authority, upstream.additional):
        for rrset in section:
            rrset.ttl = min(rrset.ttl, cap)
    if query.edns >= 0:
        upstream.use_edns(0, ednsflags=query.ednsflags & dns.flags.DO, payload=UPSTREAM_PAYLOAD)
    else:
        upstream.use_edns(False)
    upstream.set_rcode(rcode)
    return upstream


def _with(line: GateLogLine, *, rcode: str, note: str = "", elements: int = 0,
          addresses: Sequence[str] = ()) -> str:
    return GateLogLine(line.policy, line.verdict, line.name, line.qtype, rcode, line.rule_ids,
                       line.client, tuple(addresses), elements, note).render()


def _records(reply: dns.message.Message) -> list[Record]:
    out = []
    for rrset in reply.answer:
        owner = normalise(rrset.name.to_text())
        kind = dns.rdatatype.to_text(rrset.rdtype)
        for rdata in rrset:
            value = normalise(rdata.to_text()) if kind == "CNAME" else rdata.to_text()
            out.append(Record(owner, kind, rrset.ttl, value))
    return out


def _error_reply(wire: bytes, rcode: dns.rcode.Rcode) -> bytes | None:
    """A bare reply (header only) for a query too broken to parse: its ID, QR, the rcode."""
    if len(wire) < 12 or wire[2] & 0x80:
        return None
    reply = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
    reply.flags = dns.flags.QR
    reply.set_opcode(dns.opcode.from_flags(int.from_bytes(wire[2:4], "big")))
    reply.set_rcode(rcode)
    return reply.to_wire()


# ---------------------------------------------------------------------- transports


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.transport: asyncio.DatagramTransport | None = None
        self.inflight = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.inflight >= self.gate.options.max_inflight:
            self.gate.stats["dropped-busy"] += 1
            return
        self.inflight += 1
        task = asyncio.ensure_future(self._serve(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = await self.gate.handle(data, addr[0], tcp=False)
            if reply is not None and self.transport is not None and not self.transport.is_closing():
                self.transport.sendto(reply, addr)
        finally:
            self.inflight -= 1


class _Tcp:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.connections = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = peer[0] if isinstance(peer, tuple) else "-"
        if self.connections >= self.gate.options.max_tcp:
            writer.close()
            return
        self.connections += 1
        try:
            while True:
                size = int.from_bytes(await asyncio.wait_for(
                    reader.readexactly(2), self.gate.options.tcp_idle), "big")
                data = await asyncio.wait_for(reader.readexactly(size), self.gate.options.tcp_idle)
                reply = await self.gate.handle(data, client, tcp=True)
                if reply is None:
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def open_listeners(gate: Gate, listen: Sequence[Address], *,
                         reuse_port: bool = False) -> list[Callable[[], None]]:
    """Bind UDP and TCP on every address (before privileges are dropped); returns closers.
    `reuse_port`: several worker processes share the addresses (SO_REUSEPORT; the kernel
    spreads clients over them). Off for one process, so a second gate cannot bind by mistake."""
    loop = asyncio.get_running_loop()
    closers: list[Callable[[], None]] = []
    tcp = _Tcp(gate)
    for host, port in listen:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(gate), local_addr=(host, port), reuse_port=reuse_port or None)
        closers.append(transport.close)
        server = await asyncio.start_server(tcp, host, port, reuse_address=True,
                                            reuse_port=reuse_port or None)
        closers.append(server.close)
    return closers


async def serve(gate: Gate, listen: Sequence[Address], *, reload: Callable[[], Policy | None],
                after_bind: Callable[[], None] = lambda: None,
                ready: Callable[[], None] = lambda: None, reuse_port: bool = False) -> None:
    """Run until SIGTERM/SIGINT; SIGHUP calls `reload` (None: keep the current policy).
    With several workers, their supervisor passes each signal on (dnsgate/workers.py)."""
    loop = asyncio.get_running_loop()
    closers = await open_listeners(gate, listen, reuse_port=reuse_port)
    after_bind()
    stop = asyncio.Event()

    def on_stop() -> None:
        stop.set()

    def on_hup() -> None:
        policy = reload()
        if policy is None:
            gate.log("clawpolicy-dns: reload failed: keeping the current policy")
            return
        for problem in gate.reload(policy):
            gate.log(f"clawpolicy-dns: reload: {problem}")
        gate.log(f"clawpolicy-dns: reloaded policy={policy.name} mode={gate.gate.mode.value}")

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop)
    ready()
    await stop.wait()
    for close in closers:
        close()
    for upstream in gate.upstreams:
        upstream.close()
    summary = " ".join(f"{k}={v}" for k, v in sorted(gate.stats.items()))
    gate.log(f"clawpolicy-dns: stopped policy={gate.gate.name} {summary}".rstrip())
