"""What the kernel lab speaks: floor 3 (operate/netlab). Its errors, the probes and DNS questions a
test asks, the answers it gets back, the scripts it runs inside its namespaces and the address
helpers the other lab modules share. Plain data: nothing here touches the kernel."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PROCS = Path(__file__).resolve().parent / "procs"
LISTENER = PROCS / "listener.py"
PROBE = PROCS / "probe.py"
DNSQUERY = PROCS / "dnsquery.py"

DEFAULT_AGENT_ADDRESSES: tuple[str, ...] = ("192.0.2.1", "2001:db8::1")
DEFAULT_TCP_PORTS: tuple[int, ...] = (22, 53, 80, 443, 5353, 8080, 18789)
DEFAULT_UDP_PORTS: tuple[int, ...] = (53, 443, 5353, 41641)


class LabError(RuntimeError):
    """The lab could not be set up or a command inside it failed."""


class NftError(LabError):
    """``nft`` rejected a ruleset (the message carries nft's stderr)."""


@dataclass(frozen=True)
class Probe:
    direction: Literal["egress", "ingress"]
    # egress: destination address in the peer ns; ingress: SOURCE address in the peer ns
    remote: str
    protocol: Literal["tcp", "udp", "icmp"]
    port: int | None = None  # destination port (None for icmp)
    uid: int = 0  # egress only: uid (and gid) the agent-side client runs as
    # ingress only: destination address in the agent ns
    # (default: the first agent address of the same family)
    local: str | None = None

    def __str__(self) -> str:
        arrow = "->" if self.direction == "egress" else "<-"
        port = f":{self.port}" if self.port is not None else ""
        who = f" uid={self.uid}" if self.uid else ""
        local = f" local={self.local}" if self.local else ""
        return f"{self.direction} {self.protocol} {arrow} {self.remote}{port}{who}{local}"


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    ok: bool  # the flow got through
    outcome: str  # ok | timeout | eperm | refused | unreachable | error
    errno: str | None  # e.g. "EPERM", "ECONNREFUSED"
    elapsed: float  # seconds


@dataclass(frozen=True)
class Daemon:
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Stop it now (the lab stops it anyway when it closes)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=5)


@dataclass(frozen=True)
class DnsQuery:
    server: str
    name: str
    type: Literal["A", "AAAA"] = "A"
    tcp: bool = False


@dataclass(frozen=True)
class DnsAnswer:
    query: DnsQuery
    outcome: str  # ok | timeout | eperm | error
    rcode: str | None  # NOERROR, NXDOMAIN, ... (None without a reply)
    addresses: tuple[str, ...]
    ttl: int | None

    @property
    def ok(self) -> bool:
        """A reply came back (whatever its rcode)."""
        return self.outcome == "ok"


def ip_version(addr: str) -> int:
    return ipaddress.ip_address(addr).version


def is_multicast(addr: str) -> bool:
    return ipaddress.ip_address(addr).is_multicast


def host_prefix(addr: str) -> str:
    return f"{addr}/32" if ip_version(addr) == 4 else f"{addr}/128"


def format_results(results: Sequence[ProbeResult]) -> str:
    """Human-readable table, handy in assertion messages."""
    return "\n".join(
        f"  {'PASS' if r.ok else 'drop'}  {r.probe}  [{r.outcome}"
        f"{' ' + r.errno if r.errno else ''} {r.elapsed:.3f}s]"
        for r in results
    )
