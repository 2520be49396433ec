"""A two-namespace network lab that shows what an nftables ruleset does in the kernel: floor 3,
used by `clawpolicy test --kernel` (operate/kerneltest.py), the kernel tests and the packet
benchmark. One import for its users; the parts:

- `model`: errors, probes, DNS questions and answers, the scripts run inside the namespaces;
- `namespaces`: lab namespace names, stale-namespace cleanup, stopping child processes;
- `lab`: the `Lab` context manager (setup, teardown, commands and daemons in a namespace);
- `nftload`: loading a ruleset (with extra users/groups) and reading counters and sets back;
- `probing`: probes -> requests for `procs/probe.py`, run concurrently;
- `procs/`: the listener, probe and DNS query scripts (stdlib and dnspython only).

Plain library: no pytest import.
"""

from __future__ import annotations

from clawpolicy.operate.netlab.lab import Lab
from clawpolicy.operate.netlab.model import (
    DEFAULT_AGENT_ADDRESSES,
    DEFAULT_TCP_PORTS,
    DEFAULT_UDP_PORTS,
    DNSQUERY,
    LISTENER,
    PROBE,
    Daemon,
    DnsAnswer,
    DnsQuery,
    LabError,
    NftError,
    Probe,
    ProbeResult,
    format_results,
)
from clawpolicy.operate.netlab.namespaces import cleanup_stale_namespaces

__all__ = [
    "DEFAULT_AGENT_ADDRESSES", "DEFAULT_TCP_PORTS", "DEFAULT_UDP_PORTS", "DNSQUERY", "LISTENER",
    "PROBE", "Daemon", "DnsAnswer", "DnsQuery", "Lab", "LabError", "NftError", "Probe",
    "ProbeResult", "cleanup_stale_namespaces", "format_results",
]
