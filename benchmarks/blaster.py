#!/usr/bin/env python3
"""A UDP sendmmsg blaster for benchmarks/packet_bench.py: run inside a lab namespace as root.

Every packet is a new flow: IPv4/UDP packets are built by hand (a raw IPPROTO_RAW socket,
which implies IP_HDRINCL) with a different source port each, so conntrack sees a new
connection and the whole output-hook ruleset runs for every packet. The kernel fills in the IP
checksum; the UDP checksum is 0 (none, allowed for IPv4). Packets are sent in batches with
sendmmsg(2) through ctypes (Python's socket module has no sendmmsg), so the interpreter's cost
is per batch, not per packet.

    blaster.py SRC DST[,DST...] PORT COUNT [--batch 256] [--rounds 3]

Prints one JSON line: nanoseconds per packet for each round (wall time of the sendmmsg calls
over packets accepted by the kernel) and how many sends failed (EPERM: the ruleset dropped it).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import socket
import struct
import sys
import time


class IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(IOVec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", MsgHdr), ("msg_len", ctypes.c_uint)]


class SockaddrIn(ctypes.Structure):
    _fields_ = [("sin_family", ctypes.c_ushort), ("sin_port", ctypes.c_uint16),
                ("sin_addr", ctypes.c_uint8 * 4), ("sin_zero", ctypes.c_uint8 * 8)]


def packet(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, socket.IPPROTO_UDP, 0, src, dst)
    return ip + udp


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("port", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--sport-base", type=int, default=1024)
    args = ap.parse_args()
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(MMsgHdr), ctypes.c_uint, ctypes.c_int]
    libc.sendmmsg.restype = ctypes.c_int

    src = socket.inet_aton(args.src)
    dsts = [socket.inet_aton(d) for d in args.dst.split(",")]
    n = args.count
    if n > len(dsts) * (65536 - args.sport_base):
        print("too many packets for distinct flows", file=sys.stderr)
        return 2
    # Build every packet up front: flows (dst, sport) all distinct.
    bufs = []
    names = (SockaddrIn * len(dsts))()
    for k, d in enumerate(dsts):
        names[k].sin_family = socket.AF_INET
        names[k].sin_addr[:] = list(d)
    iovs = (IOVec * n)()
    msgs = (MMsgHdr * n)()
    span = 65536 - args.sport_base
    for i in range(n):
        k, sport = divmod(i, span)
        b = ctypes.create_string_buffer(packet(src, dsts[k], args.sport_base + sport, args.port, b"clawbench"))
        bufs.append(b)
        iovs[i].iov_base = ctypes.addressof(b)
        iovs[i].iov_len = len(b.raw) - 1
        msgs[i].msg_hdr.msg_name = ctypes.addressof(names[k])
        msgs[i].msg_hdr.msg_namelen = ctypes.sizeof(SockaddrIn)
        msgs[i].msg_hdr.msg_iov = ctypes.pointer(iovs[i])
        msgs[i].msg_hdr.msg_iovlen = 1

    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    fd = sock.fileno()
    base = ctypes.addressof(msgs)
    size = ctypes.sizeof(MMsgHdr)
    sent = failed = 0
    t0 = time.perf_counter_ns()
    i = 0
    while i < n:
        want = min(args.batch, n - i)
        r = libc.sendmmsg(fd, ctypes.cast(base + i * size, ctypes.POINTER(MMsgHdr)), want, 0)
        if r < 0:  # the first message of the batch failed (dropped by the ruleset): skip it
            failed += 1
            i += 1
            continue
        sent += r
        i += r
    took = time.perf_counter_ns() - t0
    print(json.dumps({"packets": n, "sent": sent, "failed": failed, "ns": took, "ns_per_packet": took / n}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
