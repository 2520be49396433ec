"""Concurrent reachability probes used by netlab (run inside a network namespace).

Reads one JSON object on stdin::

    {"uid": 0 | null, "timeout": 0.6,
     "probes": [{"protocol": "tcp"|"udp"|"icmp", "dst": "10.0.0.53", "port": 53,
                 "src": "100.64.0.7" | null, "send_only": false},
                {"protocol": "raw", "dst": "10.0.0.53", "ipproto": 253, "payload": 1}, ...]}

or ``{"listen": {"ipproto": 253, "seconds": 1.5}}``: print ``READY``, then collect the
datagrams of that IP protocol this namespace delivers (both families, raw sockets, so only
what the INPUT hook let through) and write ``[{"src": ..., "payload": n}, ...]``.

A probe request drops privileges to ``uid`` (gid = uid, no supplementary groups) when it is
given and not 0, runs every probe concurrently (one thread each) and writes a
JSON list with one ``{"ok", "outcome", "errno", "elapsed"}`` object per probe,
in input order, to stdout.

Outcomes:
  ok           TCP handshake completed / UDP echo came back / ICMP echo reply
               received / (send_only, raw) the datagram was accepted by the stack
  timeout      nothing came back within the timeout (a drop somewhere on the path)
  eperm        the local stack refused to send (EPERM: a netfilter drop on OUTPUT)
  refused      ECONNREFUSED (TCP RST or ICMP port unreachable, e.g. ``reject``)
  unreachable  EHOSTUNREACH / ENETUNREACH / EACCES-style ICMP errors
  error        anything else (see ``errno``)
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import select
import socket
import struct
import sys
import threading
import time
from typing import Any


def _family(addr: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


def _sockaddr(addr: str, port: int) -> tuple[Any, ...]:
    return (addr, port, 0, 0) if _family(addr) == socket.AF_INET6 else (addr, port)


def _classify(exc: BaseException) -> tuple[str, str | None]:
    if isinstance(exc, TimeoutError):
        return "timeout", None
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        if exc.errno == errno.EPERM:
            return "eperm", name
        if exc.errno == errno.ECONNREFUSED:
            return "refused", name
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES):
            return "unreachable", name
        if exc.errno in (errno.ETIMEDOUT, errno.EAGAIN):
            return "timeout", name
        return "error", name
    return "error", type(exc).__name__


def _recv_until(s: socket.socket, deadline: float, match: Any) -> None:
    """Receive until ``match(data)`` is true; raise TimeoutError at the deadline."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        s.settimeout(left)
        data = s.recv(65535)
        if match(data):
            return


def _tcp(p: dict[str, Any], deadline: float) -> None:
    fam = _family(p["dst"])
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        if p.get("src"):
            s.bind(_sockaddr(p["src"], 0))
        s.settimeout(max(deadline - time.monotonic(), 0.001))
        s.connect(_sockaddr(p["dst"], p["port"]))


def _udp(p: dict[str, Any], deadline: float) -> None:
    fam = _family(p["dst"])
    token = os.urandom(12)
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        if p.get("src"):
            s.bind(_sockaddr(p["src"], 0))
        if p.get("send_only"):
            s.sendto(token, _sockaddr(p["dst"], p["port"]))
            return
        s.connect(_sockaddr(p["dst"], p["port"]))
        s.send(token)
        _recv_until(s, deadline, lambda d: d == token)


def _icmp(p: dict[str, Any], deadline: float) -> None:
    fam = _family(p["dst"])
    proto = socket.IPPROTO_ICMPV6 if fam == socket.AF_INET6 else socket.IPPROTO_ICMP
    req, rep = (128, 129) if fam == socket.AF_INET6 else (8, 0)
    token = os.urandom(16)
    # The kernel fills in the identifier (the socket's "port") and the checksum.
    packet = struct.pack("!BBHHH", req, 0, 0, 0, 1) + token
    with socket.socket(fam, socket.SOCK_DGRAM, proto) as s:
        if p.get("src"):
            s.bind(_sockaddr(p["src"], 0))
        s.sendto(packet, _sockaddr(p["dst"], 0))
        if p.get("send_only"):
            return
        _recv_until(s, deadline, lambda d: len(d) >= 8 and d[0] == rep and d[8:] == token)


def _raw(p: dict[str, Any], deadline: float) -> None:
    """One IP datagram of protocol `ipproto` carrying `payload` zero bytes, from a raw socket
    (root only). Send-only: a netfilter drop on OUTPUT answers EPERM, an accept lets the
    stack take it. Short payloads are the point: a 0-2 byte payload has no port to read, so
    a ruleset that matches ports (`th dport`) cannot see the packet's port at all."""
    fam = _family(p["dst"])
    with socket.socket(fam, socket.SOCK_RAW, int(p["ipproto"])) as s:
        if p.get("src"):
            s.bind(_sockaddr(p["src"], 0))
        s.settimeout(max(deadline - time.monotonic(), 0.001))
        s.sendto(bytes(int(p.get("payload", 0))), _sockaddr(p["dst"], 0))


_RUNNERS = {"tcp": _tcp, "udp": _udp, "icmp": _icmp, "raw": _raw}


def _run_one(p: dict[str, Any], timeout: float, out: list[dict[str, Any]], i: int) -> None:
    start = time.monotonic()
    try:
        _RUNNERS[p["protocol"]](p, start + timeout)
        outcome, err = "ok", None
    except BaseException as exc:  # noqa: BLE001 - every failure is a result
        outcome, err = _classify(exc)
    out[i] = {
        "ok": outcome == "ok",
        "outcome": outcome,
        "errno": err,
        "elapsed": round(time.monotonic() - start, 4),
    }


def listen(ipproto: int, seconds: float) -> list[dict[str, Any]]:
    """Datagrams of `ipproto` delivered here within `seconds` (source, payload length)."""
    socks = [socket.socket(fam, socket.SOCK_RAW, ipproto) for fam in (socket.AF_INET, socket.AF_INET6)]
    print("READY", flush=True)
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select(socks, [], [], left)
            for s in ready:
                data, addr = s.recvfrom(65535)
                if s.family == socket.AF_INET:  # IPv4 raw sockets see the IP header too
                    data = data[(data[0] & 15) * 4:]
                got.append({"src": addr[0], "payload": len(data)})
    finally:
        for s in socks:
            s.close()
    return got


def become(uid: int | None) -> None:
    """Drop to `uid` (and gid = uid, no supplementary groups) before any probing; the
    namespace scripts start as root so that switching needs no interpreter outside /root."""
    if uid:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def main() -> int:
    req = json.load(sys.stdin)
    if "listen" in req:
        json.dump(listen(int(req["listen"]["ipproto"]), float(req["listen"]["seconds"])), sys.stdout)
        sys.stdout.write("\n")
        return 0
    become(req.get("uid"))
    timeout = float(req.get("timeout", 0.6))
    probes = req["probes"]
    results: list[dict[str, Any]] = [
        {"ok": False, "outcome": "error", "errno": "not run", "elapsed": 0.0}
    ] * len(probes)
    threads = [
        threading.Thread(target=_run_one, args=(p, timeout, results, i), daemon=True)
        for i, p in enumerate(probes)
    ]
    for t in threads:
        t.start()
    hard_deadline = time.monotonic() + timeout + 2.0
    for t in threads:
        t.join(max(hard_deadline - time.monotonic(), 0))
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
