#!/usr/bin/env python3
"""How fast the DNS gate answers (`python benchmarks/dnsgate_bench.py`): a Markdown table, no
assertions.

In a network namespace of its own (re-executed under `unshare -n`, so nothing touches the
host's network or firewall; needs root): an upstream dnsmasq on 127.0.0.2 authoritative for
the benchmark names, a ruleset whose FQDN sets the gate fills (every answer is a real
libnftables transaction), and the gate on 127.0.0.1. The client sends the same queries to the
upstream directly and through the gate: latency with one query in flight (p50, p99; the
difference is what the gate adds), then throughput with `--concurrency` queries in flight.
The client is Python too and shares the machine's cores with both servers: the q/s figure is
a lower bound of the gate's own.

    sudo python benchmarks/dnsgate_bench.py
    sudo python benchmarks/dnsgate_bench.py --queries 20000 --concurrency 64
"""

from __future__ import annotations

import argparse
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.message

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
POLICY = """policy bench {
  dns local
  allow egress to api.bench.test, *.cdn.bench.test port 443/tcp reason "bench"
}
"""
NAMES = ["api.bench.test", *(f"n{i}.cdn.bench.test" for i in range(50))]
REFUSED = ["unlisted.bench.test"]


def _queries(names: list[str], n: int) -> list[bytes]:
    return [dns.message.make_query(names[i % len(names)], "A", id=i % 65536).to_wire() for i in range(n)]


def latency(server: tuple[str, int], wires: list[bytes]) -> list[float]:
    """One query in flight: seconds per answered query."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.connect(server)
    out = []
    for w in wires:
        t = time.perf_counter()
        s.send(w)
        try:
            s.recv(4096)
        except TimeoutError:
            continue
        out.append(time.perf_counter() - t)
    s.close()
    return out


def throughput(server: tuple[str, int], wires: list[bytes], concurrency: int,
               clients: int = 4) -> tuple[float, int]:
    """`concurrency` queries kept in flight over `clients` sockets (several source ports, as
    many resolving processes have; SO_REUSEPORT spreads them over gate workers):
    (answers per second, lost)."""
    socks = []
    for _ in range(max(clients, 1)):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(server)
        s.setblocking(False)
        socks.append(s)
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    sent = received = 0
    start = time.perf_counter()
    while sent < min(concurrency, len(wires)):
        socks[sent % len(socks)].send(wires[sent])
        sent += 1
    while received < len(wires):
        events = sel.select(timeout=1)
        if not events:
            break
        for key, _ in events:
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            while True:
                try:
                    sock.recv(4096)
                except BlockingIOError:
                    break
                received += 1
                if sent < len(wires):
                    sock.send(wires[sent])
                    sent += 1
    elapsed = time.perf_counter() - start
    for s in socks:
        s.close()
    return received / elapsed, len(wires) - received


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def inside(args: argparse.Namespace) -> int:
    from clawpolicy.backends.base import CompileOptions
    from clawpolicy.backends.nftables import render
    from clawpolicy.lower import load_policies

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", "127.0.0.2/8", "dev", "lo"], check=False)
    tmp = Path(tempfile.mkdtemp(prefix="dnsgate-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        (tmp / "bench.claw").write_text(POLICY)
        policy = load_policies([tmp / "bench.claw"]).policies[0]
        (tmp / "ruleset.nft").write_text(render(policy, CompileOptions()))
        subprocess.run(["nft", "-f", str(tmp / "ruleset.nft")], check=True)
        records = [f"--host-record={n},198.18.{i // 250}.{i % 250 + 1}" for i, n in enumerate(NAMES)]
        procs.append(subprocess.Popen(
            ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
             "--listen-address=127.0.0.2", "--local=/test/", "--local-ttl=60", "--pid-file=",
             "--user=root", "--cache-size=0", *records], stderr=subprocess.DEVNULL))
        gate_log = open(tmp / "gate.log", "w")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "clawpolicy.cli", "dns", "serve", str(tmp / "bench.claw"),
             "--listen", "127.0.0.1:53", "--upstream", "127.0.0.2", "--workers", str(args.workers)],
            stderr=gate_log, cwd=REPO))
        deadline = time.monotonic() + 20
        while "serving policy=" not in (tmp / "gate.log").read_text():
            if time.monotonic() > deadline or procs[-1].poll() is not None:
                print((tmp / "gate.log").read_text(), file=sys.stderr)
                return 1
            time.sleep(0.05)
        time.sleep(0.3)
        rows = []
        lat_wires = _queries(NAMES, args.latency_queries)
        for label, server in (("upstream directly", ("127.0.0.2", 53)), ("through the gate", ("127.0.0.1", 53))):
            latency(server, lat_wires[:200])  # warm up
            lat = latency(server, lat_wires)
            qps, lost = throughput(server, _queries(NAMES, args.queries), args.concurrency, args.clients)
            rows.append((label, qps, lost, pct(lat, 50), pct(lat, 99), statistics.fmean(lat) * 1000))
        qps, lost = throughput(("127.0.0.1", 53), _queries(REFUSED, args.queries), args.concurrency, args.clients)
        lat = latency(("127.0.0.1", 53), _queries(REFUSED, args.latency_queries))
        rows.append(("gate, refused names", qps, lost, pct(lat, 50), pct(lat, 99), statistics.fmean(lat) * 1000))
        elements = subprocess.run(["nft", "list", "table", "inet", "clawpolicy_bench"],
                                  capture_output=True, text=True).stdout.count("expires")
        print(f"\nDNS gate ({args.workers} worker(s)), {args.queries} queries at {args.concurrency} "
              f"in flight over {args.clients} client sockets (q/s), "
              f"{args.latency_queries} one at a time (latency); {os.cpu_count()} CPUs; "
              f"{elements} set elements written\n")
        print("| path | q/s | lost | p50 ms | p99 ms | mean ms |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, q, lost_, p50, p99, mean in rows:
            print(f"| {label} | {q:,.0f} | {lost_} | {p50:.3f} | {p99:.3f} | {mean:.3f} |")
        direct, gated = rows[0], rows[1]
        print(f"\nadded by the gate: p50 {gated[3] - direct[3]:.3f} ms, p99 {gated[4] - direct[4]:.3f} ms")
        return 0
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=5)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=10000)
    ap.add_argument("--latency-queries", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1, help="gate processes (dns serve --workers)")
    ap.add_argument("--clients", type=int, default=4, help="client sockets for the q/s run")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside:
        return inside(args)
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("unshare", "nft", "dnsmasq", "ip")):
        print("dnsgate bench: needs root, unshare, ip, nft and dnsmasq; skipped", file=sys.stderr)
        return 0
    return subprocess.run(["unshare", "--net", sys.executable, __file__, "--inside", *sys.argv[1:]]).returncode


if __name__ == "__main__":
    sys.exit(main())
