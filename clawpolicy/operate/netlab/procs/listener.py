"""Dual-stack TCP/UDP listener used by netlab (run inside a network namespace).

    python3 listener.py --tcp 22,80 --udp 53,5353

* TCP: every port on 0.0.0.0 and on :: (IPV6_V6ONLY); connections are accepted
  and closed at once.
* UDP: every port on 0.0.0.0 and on ::; each datagram is echoed back to its
  sender *from the address it was sent to* (IP_PKTINFO / IPV6_PKTINFO), so a
  connected client socket accepts the reply even when the namespace owns many
  addresses on one interface.

Prints ``READY`` (flushed) once every socket is bound, then serves until stdin
is closed (the parent died or closed the pipe) or it gets SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import struct
import sys

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; Python lacks the constant


def _ports(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p.strip()]


def _open(family: int, kind: int, port: int) -> socket.socket:
    s = socket.socket(family, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(("::", port))
    else:
        s.bind(("0.0.0.0", port))
    if kind == socket.SOCK_STREAM:
        s.listen(128)
    elif family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    else:
        s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    s.setblocking(False)
    return s


def _echo(s: socket.socket) -> None:
    try:
        data, ancdata, _flags, addr = s.recvmsg(65535, socket.CMSG_SPACE(64))
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        return  # e.g. an ICMP error queued on the socket
    reply_anc = []
    for level, ctype, cdata in ancdata:
        if s.family == socket.AF_INET and level == socket.IPPROTO_IP and ctype == IP_PKTINFO:
            # struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
            _ifindex, _spec, dst = struct.unpack("i4s4s", cdata[:12])
            reply_anc.append((socket.IPPROTO_IP, IP_PKTINFO, struct.pack("i4s4s", 0, dst, b"\0" * 4)))
        elif s.family == socket.AF_INET6 and level == socket.IPPROTO_IPV6 and ctype == socket.IPV6_PKTINFO:
            # struct in6_pktinfo { in6_addr addr; int ifindex; }
            dst = cdata[:16]
            if not dst.startswith(b"\xff"):  # never reply *from* a multicast address
                reply_anc.append((socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, struct.pack("16si", dst, 0)))
    if s.family == socket.AF_INET and reply_anc and reply_anc[0][2][4] >= 224:
        reply_anc = []  # IPv4 multicast destination: let the kernel choose the source
    try:
        s.sendmsg([data], reply_anc, 0, addr)
    except OSError:
        pass


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tcp", type=_ports, default=[])
    ap.add_argument("--udp", type=_ports, default=[])
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sel = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for port in args.tcp:
            s = _open(family, socket.SOCK_STREAM, port)
            socks.append(s)
            sel.register(s, selectors.EVENT_READ, "tcp")
        for port in args.udp:
            s = _open(family, socket.SOCK_DGRAM, port)
            socks.append(s)
            sel.register(s, selectors.EVENT_READ, "udp")
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    sys.stdout.write("READY\n")
    sys.stdout.flush()

    while True:
        for key, _ in sel.select():
            if key.data == "stdin":
                if not os.read(key.fd, 4096):
                    return 0
            elif key.data == "tcp":
                try:
                    conn, _addr = key.fileobj.accept()  # type: ignore[union-attr]
                except OSError:
                    continue
                conn.close()
            else:
                _echo(key.fileobj)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
