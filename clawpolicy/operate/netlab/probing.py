"""Probing the lab: floor 3 (operate/netlab). A Probe becomes a request for procs/probe.py in the
namespace it must start from (egress: the agent side, as the probe's uid; ingress: the peer
side, bound to the chosen peer address); the requests of one (namespace, uid) run in one
process, all processes at once, so a few hundred probes cost about one timeout."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clawpolicy.operate.netlab.model import PROBE, LabError, Probe, ProbeResult, ip_version, is_multicast


@dataclass(frozen=True)
class Sides:
    """What a probe is checked against: the lab's namespaces, addresses and listening ports."""

    agent_ns: str
    peer_ns: str
    agent_addresses: tuple[str, ...]
    peer_addresses: tuple[str, ...]
    tcp_ports: tuple[int, ...]
    udp_ports: tuple[int, ...]


def to_request(sides: Sides, p: Probe) -> tuple[str, int, dict[str, Any]]:
    """(namespace, uid, request for probe.py); ValueError for a probe the lab cannot run
    faithfully (a port without a listener would look like a block)."""
    if p.protocol not in ("tcp", "udp", "icmp"):
        raise ValueError(f"{p}: unknown protocol")
    if p.protocol == "icmp":
        if p.port is not None:
            raise ValueError(f"{p}: icmp probes take no port")
    elif p.port is None or not 0 < p.port < 65536:
        raise ValueError(f"{p}: {p.protocol} probes need a port")
    fam = ip_version(p.remote)
    if p.port is not None and not (p.direction == "egress" and is_multicast(p.remote)):
        ports = sides.tcp_ports if p.protocol == "tcp" else sides.udp_ports
        if p.port not in ports:
            # Without a listener the flow would be refused, which looks like a block.
            raise ValueError(f"{p}: no {p.protocol} listener on port {p.port} (lab ports: {ports})")
    if p.direction == "egress":
        if p.local is not None:
            raise ValueError(f"{p}: local is for ingress probes")
        send_only = is_multicast(p.remote)
        if send_only and p.protocol == "tcp":
            raise ValueError(f"{p}: tcp to a multicast address")
        return sides.agent_ns, p.uid, {"protocol": p.protocol, "dst": p.remote, "port": p.port,
                                       "src": None, "send_only": send_only}
    if p.direction == "ingress":
        if p.uid != 0:
            raise ValueError(f"{p}: uid is for egress probes")
        if p.remote not in sides.peer_addresses:
            raise ValueError(f"{p}: ingress source {p.remote} is not a peer address")
        local = p.local
        if local is None:
            local = next((a for a in sides.agent_addresses if ip_version(a) == fam), None)
            if local is None:
                raise ValueError(f"{p}: no IPv{fam} agent address")
        if ip_version(local) != fam:
            raise ValueError(f"{p}: address family mismatch")
        if is_multicast(local):
            raise ValueError(f"{p}: ingress to multicast is not supported")
        return sides.peer_ns, 0, {"protocol": p.protocol, "dst": local, "port": p.port,
                                  "src": p.remote, "send_only": False}
    raise ValueError(f"{p}: unknown direction")


def run_probes(sides: Sides, python: str, probes: Sequence[Probe], timeout: float) -> list[ProbeResult]:
    """One ProbeResult per probe, in order; LabError when a probe process hangs or fails."""
    groups: dict[tuple[str, int], list[tuple[int, dict[str, Any]]]] = {}
    for i, p in enumerate(probes):
        ns, uid, req = to_request(sides, p)
        groups.setdefault((ns, uid), []).append((i, req))
    procs = []
    for (ns, uid), items in groups.items():
        payload = json.dumps({"uid": uid, "timeout": timeout, "probes": [r for _, r in items]})
        with tempfile.TemporaryFile("w+") as f:  # stdin from a file: no pipe juggling
            f.write(payload)
            f.seek(0)
            proc = subprocess.Popen(["ip", "netns", "exec", ns, python, str(PROBE)], stdin=f,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append((proc, items, ns, uid))
    out: list[ProbeResult | None] = [None] * len(probes)
    failures = []
    for proc, items, ns, uid in procs:
        try:
            stdout, stderr = proc.communicate(timeout=timeout + 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            failures.append(f"[{ns} uid={uid}] probe process hung: {stderr.strip()}")
            continue
        if proc.returncode != 0:
            failures.append(f"[{ns} uid={uid}] probe process failed ({proc.returncode}): {stderr.strip()}")
            continue
        for (i, _), r in zip(items, json.loads(stdout), strict=True):
            out[i] = ProbeResult(probes[i], r["ok"], r["outcome"], r["errno"], r["elapsed"])
    if failures:
        raise LabError("; ".join(failures))
    return [r for r in out if r is not None]
