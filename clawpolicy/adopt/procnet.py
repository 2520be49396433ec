"""Live sockets of a set of processes, from /proc: floor 2 (reads the kernel, nothing else).

What ``ss -tunap`` shows, as data: a process's sockets are the ``socket:[INODE]`` links in
/proc/PID/fd; their addresses and states are in the socket tables /proc/PID/net/{tcp,tcp6,udp,
udp6} (proc(5)). Those tables belong to a network namespace, so they are read once per
namespace, through a process inside it: an agent in a container or another netns is seen as
it sees itself. Processes are chosen by pid (with its descendants: OpenClaw's tools run as
children), by user (effective uid), or by cgroup (a systemd unit's, or any cgroup v2 path).
Reading other users' /proc/PID/fd needs root (or the same user); unreadable processes are
counted, not silently skipped.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# include/net/tcp_states.h; a UDP socket is "ESTABLISHED" when connected, "CLOSE" when not.
TCP_STATES = {1: "ESTAB", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
              6: "TIME-WAIT", 7: "CLOSE", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN",
              11: "CLOSING", 12: "NEW-SYN-RECV"}
TABLES = (("tcp", 4), ("tcp6", 6), ("udp", 4), ("udp6", 6))


class ProcError(Exception):
    """The processes to observe cannot be found (no such pid, user, unit or cgroup)."""


@dataclass(frozen=True)
class Socket:
    protocol: str  # tcp | udp
    local: str  # an address (IPv4-mapped IPv6 addresses shown as IPv4)
    local_port: int
    remote: str
    remote_port: int
    state: str  # TCP_STATES names; UDP: "UNCONN" or "ESTAB"
    uid: int
    inode: int
    netns: str  # e.g. "net:[4026531840]"
    pids: tuple[int, ...] = ()

    @property
    def listening(self) -> bool:
        return self.state in ("LISTEN", "UNCONN")

    def sort_key(self) -> tuple[str, int, str, int, str, int, str]:
        return (self.protocol, ipaddress.ip_address(self.local).version, self.local,
                self.local_port, self.remote, self.remote_port, self.state)


@dataclass
class Selection:
    """The processes chosen, and what could not be read."""

    description: str
    pids: list[int]
    unreadable: list[int] = field(default_factory=list)


def decode_address(text: str) -> str:
    """A /proc/net address field (hex, in the kernel's byte order per 32-bit word)."""
    raw = bytes.fromhex(text)
    words = [raw[i:i + 4] for i in range(0, len(raw), 4)]
    if sys.byteorder == "little":
        words = [w[::-1] for w in words]
    address = ipaddress.ip_address(b"".join(words))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def parse_table(text: str, protocol: str, netns: str) -> Iterator[Socket]:
    """Rows of one /proc/net/{tcp,udp}[6] table (the header line is skipped)."""
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 10:
            continue
        local, remote = cols[1].split(":"), cols[2].split(":")
        state = int(cols[3], 16)
        name = ("ESTAB" if state == 1 else "UNCONN") if protocol == "udp" else TCP_STATES.get(
            state, f"STATE-{state}")
        yield Socket(protocol, decode_address(local[0]), int(local[1], 16),
                     decode_address(remote[0]), int(remote[1], 16), name, int(cols[7]),
                     int(cols[9]), netns)


def socket_inodes(pid: int, proc: Path = PROC) -> set[int]:
    """Inodes of the sockets `pid` holds open (PermissionError when not ours to read)."""
    out = set()
    for fd in (proc / str(pid) / "fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def sockets_of(selection: Selection, proc: Path = PROC) -> list[Socket]:
    """Every TCP/UDP socket the selected processes hold, each with the pids that hold it."""
    holders: dict[int, list[int]] = {}
    namespaces: dict[str, int] = {}
    for pid in selection.pids:
        try:
            inodes = socket_inodes(pid, proc)
            netns = os.readlink(proc / str(pid) / "ns" / "net")
        except PermissionError:
            selection.unreadable.append(pid)
            continue
        except (FileNotFoundError, ProcessLookupError):  # exited meanwhile
            continue
        for inode in inodes:
            holders.setdefault(inode, []).append(pid)
        namespaces.setdefault(netns, pid)
    found: dict[tuple[str, int], Socket] = {}
    for netns, pid in sorted(namespaces.items()):
        for table, _ in TABLES:
            try:
                text = (proc / str(pid) / "net" / table).read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            for sock in parse_table(text, table.rstrip("6"), netns):
                if sock.inode in holders:
                    found[(netns, sock.inode)] = Socket(**{
                        **sock.__dict__, "pids": tuple(sorted(set(holders[sock.inode])))})
    return sorted(found.values(), key=Socket.sort_key)


# ---------------------------------------------------------------------- choosing processes

def all_pids(proc: Path = PROC) -> list[int]:
    return sorted(int(p.name) for p in proc.iterdir() if p.name.isdigit())


def _status(pid: int, proc: Path) -> dict[str, str]:
    try:
        text = (proc / str(pid) / "status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def by_pid(pid: int, children: bool = True, proc: Path = PROC) -> Selection:
    if not (proc / str(pid)).is_dir():
        raise ProcError(f"no process {pid}")
    chosen = {pid}
    if children:
        parents = {p: _status(p, proc).get("PPid", "0").strip() for p in all_pids(proc)}
        grew = True
        while grew:
            new = {p for p, pp in parents.items() if pp.isdigit() and int(pp) in chosen} - chosen
            chosen |= new
            grew = bool(new)
    what = f"pid {pid}" + (f" and {len(chosen) - 1} descendant(s)" if len(chosen) > 1 else "")
    return Selection(what, sorted(chosen))


def user_uid(user: str) -> int:
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ProcError(f"no user {user!r}") from None


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def by_user(user: str, proc: Path = PROC) -> Selection:
    uid = user_uid(user)
    pids = [p for p in all_pids(proc)
            if (ids := _status(p, proc).get("Uid", "").split()) and len(ids) > 1
            and int(ids[1]) == uid]
    return Selection(f"user {user} (uid {uid}, {len(pids)} processes)", pids)


def by_cgroup(path: Path, what: str | None = None) -> Selection:
    """Every process in a cgroup v2 directory and the cgroups below it."""
    if not (path / "cgroup.procs").is_file():
        raise ProcError(f"{path} is not a cgroup (no cgroup.procs)")
    pids: set[int] = set()
    for procs in sorted(path.rglob("cgroup.procs")):
        try:
            pids |= {int(x) for x in procs.read_text().split()}
        except OSError:
            continue
    return Selection(f"{what or 'cgroup ' + str(path)} ({len(pids)} processes)", sorted(pids))


def service_cgroup(unit: str, root: Path = CGROUP_ROOT) -> Path:
    """The cgroup of a systemd unit: systemd's own answer when it runs, else where systemd puts
    system services (system.slice/UNIT) under the cgroup v2 root."""
    name = unit if "." in unit else f"{unit}.service"
    if shutil.which("systemctl") and Path("/run/systemd/system").is_dir():
        r = subprocess.run(["systemctl", "show", "-p", "ControlGroup", "--value", name],
                           capture_output=True, text=True, check=False)
        group = r.stdout.strip()
        if r.returncode == 0 and group:
            return root / group.lstrip("/")
    for candidate in (root / "system.slice" / name, root / "unified" / "system.slice" / name,
                      root / "systemd" / "system.slice" / name):  # cgroup v2, hybrid, v1
        if candidate.is_dir():
            return candidate
    raise ProcError(f"no cgroup for unit {name} (systemd is not running here, and "
                    f"{root / 'system.slice' / name} does not exist)")


def by_service(unit: str, root: Path = CGROUP_ROOT) -> Selection:
    return by_cgroup(service_cgroup(unit, root), f"unit {unit}")


def iter_listeners(sockets: Iterable[Socket]) -> set[tuple[str, str, str, int]]:
    """(netns, protocol, local address, port) of every listening socket, to tell accepted
    connections (ingress) from outgoing ones."""
    return {(s.netns, s.protocol, s.local, s.local_port) for s in sockets if s.state == "LISTEN"}
