"""Dropping root after the sockets are bound: floor 3, host I/O (`dns serve --user`).

The gate needs exactly one capability after binding: CAP_NET_ADMIN (capabilities(7): "modify
... firewall"; nfnetlink checks it for every nf_tables batch). Binding port 53 needs
CAP_NET_BIND_SERVICE, but only once, before this runs. Under systemd the unit does the same
with `User=` and `AmbientCapabilities=` (backends/dnsgate.py); `--user` is for running it by
hand or from another supervisor.

Order (capabilities(7), "Effect of user ID changes on capabilities"; prctl(2)): drop every
other capability from the bounding set (needs CAP_SETPCAP, so first), keep the permitted set
across setuid (PR_SET_KEEPCAPS), drop supplementary groups, then gid, then uid, then set the
effective and permitted sets to CAP_NET_ADMIN alone, and forbid regaining privileges
(PR_SET_NO_NEW_PRIVS). There is no wrapper in the standard library; glibc exports capset(2)
and prctl(2), called through ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd

CAP_NET_ADMIN = 12
CAP_LAST_CAP_FALLBACK = 40
PR_CAPBSET_DROP = 24
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class PrivilegeError(RuntimeError):
    pass


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"{what}: {os.strerror(err)}")


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return CAP_LAST_CAP_FALLBACK


def drop_to(user: str, keep: tuple[int, ...] = (CAP_NET_ADMIN,)) -> None:
    """Become `user` (its primary group, no supplementary groups) with only `keep`."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(f"unknown user {user!r}") from None
    libc = _libc()
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                           ctypes.c_ulong]
    for cap in range(_last_cap() + 1):
        if cap not in keep:
            _check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"dropping capability {cap}")
    _check(libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "PR_SET_KEEPCAPS")
    os.setgroups([])
    os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
    os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)
    _capset(libc, keep)
    _check(libc.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0), "PR_SET_KEEPCAPS")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")


def _capset(libc: ctypes.CDLL, keep: tuple[int, ...]) -> None:
    """Effective and permitted sets = exactly `keep` (inheritable empty), in one capset(2)."""
    mask = [0, 0]
    for cap in keep:
        mask[cap // 32] |= 1 << (cap % 32)
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)(*(_Data(m, m, 0) for m in mask))
    _check(libc.capset(ctypes.byref(header), data), "capset")


PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


def narrow(keep: tuple[int, ...] = (CAP_NET_ADMIN,)) -> None:
    """Without `--user` (e.g. systemd's DynamicUser with ambient capabilities): keep only
    `keep` once the sockets are bound, so CAP_NET_BIND_SERVICE is gone. Root is left alone
    (a root gate is the operator's choice; `--user` is the way down from it)."""
    if os.geteuid() == 0:
        return
    libc = _libc()
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                           ctypes.c_ulong]
    _check(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clearing ambient capabilities")
    _capset(libc, keep)


def effective_capabilities(pid: int | str = "self") -> int:
    """CapEff of a process, from /proc (for the log line at start-up and the tests)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0
