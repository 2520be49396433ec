"""Asking the upstreams: floor 3, the gate's only outgoing DNS (asyncio + dnspython).

UDP goes through a few long-lived sockets per upstream, each connected to it (so the kernel
drops datagrams from anyone else), with replies matched to their query by ID and question
(`Message.is_response`). dnspython's `asyncquery.udp` would open an asyncio endpoint per
query, which measured as most of the gate's time per answer. Spoofing: the ID is random per
query (secrets) among the IDs not in flight, and the source port is one of `SOCKETS` random
ephemeral ports; the upstream is expected on a trusted path (the host's or the site's
resolver), as for any stub resolver. A truncated reply is asked again over TCP
(`asyncquery.tcp`, rare). Anything else (timeout, refusal, garbage) is None to the caller,
which tries the next upstream and finally answers SERVFAIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message

from clawpolicy.dnsgate.upstreams import Address

SOCKETS = 4  # per upstream


class _Endpoint(asyncio.DatagramProtocol):
    """One connected UDP socket to one upstream, with the queries in flight on it."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, tuple[dns.message.Message, asyncio.Future[dns.message.Message]]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        entry = self.pending.get(int.from_bytes(data[:2], "big"))
        if entry is None:
            return
        query, future = entry
        try:
            reply = dns.message.from_wire(data)
        except Exception:  # noqa: BLE001 - a broken reply is no reply: the query times out
            return
        if query.is_response(reply) and not future.done():
            future.set_result(reply)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable: fail them all now
        for _, future in self.pending.values():
            if not future.done():
                future.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class Upstream:
    def __init__(self, address: Address) -> None:
        self.address = address
        self._endpoints: list[_Endpoint] = []

    async def _endpoint(self) -> _Endpoint:
        live = [e for e in self._endpoints if e.transport is not None]
        if len(live) < SOCKETS:
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_datagram_endpoint(_Endpoint, remote_addr=self.address)
            live.append(protocol)
        self._endpoints = live
        return live[secrets.randbelow(len(live))]

    async def ask(self, query: dns.message.Message, timeout: float) -> dns.message.Message | None:
        try:
            endpoint = await self._endpoint()
            reply = await self._udp(endpoint, query, timeout)
            if reply.flags & dns.flags.TC:
                host, port = self.address
                reply = await dns.asyncquery.tcp(query, host, timeout=timeout, port=port)
        except (TimeoutError, dns.exception.DNSException, OSError, EOFError, ValueError):
            return None
        return reply

    async def _udp(self, endpoint: _Endpoint, query: dns.message.Message,
                   timeout: float) -> dns.message.Message:
        qid = secrets.randbelow(65536)
        while qid in endpoint.pending:
            qid = secrets.randbelow(65536)
        query.id = qid
        future: asyncio.Future[dns.message.Message] = asyncio.get_running_loop().create_future()
        endpoint.pending[qid] = (query, future)
        try:
            if endpoint.transport is None:
                raise OSError("upstream socket closed")
            endpoint.transport.sendto(query.to_wire())
            return await asyncio.wait_for(future, timeout)
        finally:
            endpoint.pending.pop(qid, None)

    def close(self) -> None:
        for e in self._endpoints:
            if e.transport is not None:
                with contextlib.suppress(Exception):
                    e.transport.close()
        self._endpoints = []
