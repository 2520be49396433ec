"""Where sshd listens, and the sessions it serves, from /proc: floor 3 (adopt), beside procnet.

`init` writes the SSH ingress rule it can infer for a host-wide starter (a policy that fences
the host must let operators back in), and `apply` checks the sessions sshd holds against the
policy it is about to load. sshd is found by its process name (`comm`: `sshd`, and OpenSSH
9.8's per-session `sshd-session`), its sockets through procnet (the /proc/PID/fd links).
"""

from __future__ import annotations

from pathlib import Path

from clawpolicy.adopt.procnet import PROC, Selection, Socket, all_pids, sockets_of

SSHD_COMMS = ("sshd", "sshd-session")


def sshd_pids(proc: Path = PROC) -> list[int]:
    out = []
    for pid in all_pids(proc):
        try:
            comm = (proc / str(pid) / "comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if comm in SSHD_COMMS:
            out.append(pid)
    return out


def sshd_sockets(proc: Path = PROC) -> list[Socket]:
    """Every TCP socket sshd's processes hold (listening and established)."""
    pids = sshd_pids(proc)
    if not pids:
        return []
    return [s for s in sockets_of(Selection("sshd", pids), proc) if s.protocol == "tcp"]


def listening_ports(proc: Path = PROC) -> list[int]:
    """The TCP ports sshd listens on, sorted (empty: no sshd, or not ours to read)."""
    return sorted({s.local_port for s in sshd_sockets(proc) if s.state == "LISTEN"})
