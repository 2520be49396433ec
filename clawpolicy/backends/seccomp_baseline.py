"""The seccomp target's baseline: floor 2, read only by `backends/seccomp.py`.

The tables below (syscalls, capabilities, socket families), and the argument filters built
from them (clone, personality, socket/socketpair) as profile entries.

BASELINE is the syscall allowlist a Node.js agent (OpenClaw) runs under, before the policy's
`syscalls allow|deny` rules edit it. It starts from the unconditional allowlist of Docker's
default profile (moby/profiles seccomp/default.json v0.2.3, the copy in
shared/schemas/moby/) and differs where an agent and our two native architectures call for it:

- native x86_64 and aarch64 only: the 32-bit names (`*32`, `*64` variants, `*_time64`,
  `_llseek`, `mmap2`, ...) and the multiplexers `socketcall` and `ipc` are not listed. A
  32-bit call fails the filter's architecture check (DESIGN.md: socketcall hides the
  address family behind a pointer; x32 + socketcall rules made libseccomp fail open);
- `socket`/`socketpair` are never unconditional: their family and type arguments follow
  the policy's `sockets` statement (Docker allows every family but AF_ALG and AF_VSOCK and
  relies on capabilities for raw and packet sockets). Without a `sockets` statement the
  baseline families are unix, inet, inet6 and netlink (SOCKET_BASELINE);
- `ptrace`, `process_vm_readv/writev` (Docker: allowed on kernels >= 4.8) and `adjtimex`,
  `clock_adjtime` (Docker: allowed, the kernel checks CAP_SYS_TIME only when setting) move
  into CAPABILITY_SYSCALLS: allowed only when the policy keeps the capability;
- left out: `modify_ldt`, `get_thread_area`/`set_thread_area` (16/32-bit segment
  tricks a 64-bit agent never needs; modify_ldt has a CVE history), `epoll_ctl_old`/
  `epoll_wait_old` (never implemented), `riscv_hwprobe` (another architecture);
- `clone` without CAP_SYS_ADMIN may not create namespaces and `clone3` returns ENOSYS (its
  flags sit behind a pointer; glibc then falls back to clone()), as in Docker;
  `personality` takes Docker's five values.

Syscalls outside every table (io_uring_*, userfaultfd, keyctl, ...: Docker refuses them
too) get the profile's default action, ENOSYS in enforce mode, so libuv, glibc and Node
fall back as they do on an older kernel (libuv uses epoll when io_uring_setup fails).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clawpolicy.errors import Diagnostic, Location, Severity
from clawpolicy.ir import NETLINK_PROTOCOLS, Policy, Span

BASELINE: Mapping[str, tuple[str, ...]] = {
    "files": (
        "access", "chdir", "chmod", "chown", "close", "close_range", "copy_file_range", "creat",
        "dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fallocate",
        "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchownat",
        "fcntl", "fdatasync", "fgetxattr", "flistxattr", "flock", "fremovexattr", "fsetxattr",
        "fstat", "fstatfs", "fsync", "ftruncate", "futimesat", "getcwd", "getdents",
        "getdents64", "getxattr", "getxattrat", "inotify_add_watch", "inotify_init",
        "inotify_init1", "inotify_rm_watch", "ioctl", "lchown", "lgetxattr", "link", "linkat",
        "listmount", "listxattr", "listxattrat", "llistxattr", "lremovexattr", "lseek",
        "lsetxattr", "lstat", "mkdir", "mkdirat", "mknod", "mknodat", "name_to_handle_at",
        "newfstatat", "open", "openat", "openat2", "pread64", "preadv", "preadv2", "pwrite64",
        "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv",
        "removexattr", "removexattrat", "rename", "renameat", "renameat2", "rmdir", "sendfile",
        "setxattr", "setxattrat", "splice", "stat", "statfs", "statmount", "statx", "symlink",
        "symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate", "umask", "unlink",
        "unlinkat", "utime", "utimensat", "utimes", "vmsplice", "write", "writev",
    ),
    "memory": (
        "brk", "cachestat", "madvise", "map_shadow_stack", "membarrier", "memfd_create",
        "memfd_secret", "mincore", "mlock", "mlock2", "mlockall", "mmap", "mprotect", "mremap",
        "mseal", "msync", "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free",
        "pkey_mprotect", "remap_file_pages",
    ),
    "processes and threads": (
        "arch_prctl", "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork",
        "futex", "futex_requeue", "futex_wait", "futex_waitv", "futex_wake", "get_robust_list",
        "getcpu", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrlimit",
        "getrusage", "getsid", "gettid", "ioprio_get", "ioprio_set", "kill",
        "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
        "pidfd_open", "pidfd_send_signal", "prctl", "prlimit64", "process_mrelease",
        "restart_syscall", "rseq", "sched_get_priority_max", "sched_get_priority_min",
        "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_getscheduler",
        "sched_rr_get_interval", "sched_setaffinity", "sched_setattr", "sched_setparam",
        "sched_setscheduler", "sched_yield", "seccomp", "set_robust_list", "set_tid_address",
        "setpgid", "setpriority", "setrlimit", "setsid", "tgkill", "times", "tkill",
        "uretprobe", "vfork", "wait4", "waitid",
    ),
    "identity": (
        "getegid", "geteuid", "getgid", "getgroups", "getresgid", "getresuid", "getuid",
        "setfsgid", "setfsuid", "setgid", "setgroups", "setregid", "setresgid", "setresuid",
        "setreuid", "setuid",
    ),
    "signals and time": (
        "alarm", "clock_getres", "clock_gettime", "clock_nanosleep", "getitimer",
        "gettimeofday", "nanosleep", "pause", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
        "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
        "rt_tgsigqueueinfo", "setitimer", "sigaltstack", "signalfd", "signalfd4", "time",
        "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime", "timer_settime",
        "timerfd_create", "timerfd_gettime", "timerfd_settime",
    ),
    "events and IPC": (
        "epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2",
        "epoll_wait", "eventfd", "eventfd2", "io_cancel", "io_destroy", "io_getevents",
        "io_pgetevents", "io_setup", "io_submit", "mq_getsetattr", "mq_notify", "mq_open",
        "mq_timedreceive", "mq_timedsend", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd",
        "pipe", "pipe2", "poll", "ppoll", "pselect6", "select", "semctl", "semget", "semop",
        "semtimedop", "shmat", "shmctl", "shmdt", "shmget",
    ),
    # Addresses are behind pointers in all of these: nftables decides where traffic may go.
    "sockets in use": (
        "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
        "listen", "recvfrom", "recvmmsg", "recvmsg", "sendmmsg", "sendmsg", "sendto",
        "setsockopt", "shutdown",
    ),
    "system information": ("getrandom", "sysinfo", "uname"),
}

CAPABILITY_SYSCALLS: Mapping[str, tuple[str, ...]] = {
    "bpf": ("bpf",),
    "dac_read_search": ("open_by_handle_at",),
    "perfmon": ("perf_event_open",),
    "sys_admin": (
        "bpf", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie",
        "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open", "pivot_root",
        "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "swapoff",
        "swapon", "umount2", "unshare",
    ),
    "sys_boot": ("kexec_file_load", "kexec_load", "reboot"),
    "sys_chroot": ("chroot",),
    "sys_module": ("delete_module", "finit_module", "init_module"),
    "sys_nice": ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"),
    "sys_pacct": ("acct",),
    "sys_ptrace": ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                   "process_vm_writev", "ptrace"),
    "sys_rawio": ("ioperm", "iopl"),
    "sys_time": ("adjtimex", "clock_adjtime", "clock_settime", "settimeofday"),
    "sys_tty_config": ("vhangup",),
    "syslog": ("syslog",),
}
"""Syscalls that only make sense with a capability (capabilities(7), "CAP_*" entries, and
Docker's `includes.caps` lists). A policy that does not keep the capability gets them refused
(EPERM, the kernel's own answer without the capability): defence in depth should the process
regain it. A syscall listed under several capabilities (bpf, perf_event_open: CAP_BPF or
CAP_PERFMON, or CAP_SYS_ADMIN on older kernels) is allowed when any of them is kept. ptrace
and process_vm_* also work on the caller's own processes without CAP_SYS_PTRACE: refusing
them is stricter than the capability, on purpose (a compromised skill must not read another
agent process's memory or secrets)."""

# clone(2)'s namespace flags (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID,
# NEWNET; include/uapi/linux/sched.h): Docker's mask 0x7e020000. CLONE_NEWTIME (0x80) shares
# clone()'s exit-signal byte, so only unshare/clone3 can pass it: both are refused here.
CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000,
                         0x20000000, 0x40000000)
# personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32,
# and 0xffffffff (query the current persona).
PERSONALITY_VALUES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# Address families and socket types (include/linux/socket.h, include/linux/net.h).
FAMILIES: Mapping[str, int] = {"unix": 1, "inet": 2, "inet6": 10, "netlink": 16, "packet": 17}
SOCKET_TYPES: Mapping[str, int] = {"stream": 1, "dgram": 2, "raw": 3, "seqpacket": 5}
SOCK_TYPE_MASK = 0xF  # the kernel takes type & 0xf; other bits but SOCK_CLOEXEC|SOCK_NONBLOCK are EINVAL
SOCKET_BASELINE = ("unix", "inet", "inet6", "netlink")  # without a `sockets` statement
RAW_FAMILIES = ("inet", "inet6")
# SOCK_RAW here needs CAP_NET_RAW (raw(7)); packet(7) always does
NETLINK_TYPES = frozenset({SOCKET_TYPES["dgram"], SOCKET_TYPES["raw"]})

# Newer syscalls an older libseccomp may not know (it then leaves them to the default action).
NEWER_SYSCALLS: Mapping[str, tuple[str, ...]] = {
    name: ("x86_64", "aarch64") for name in (
        "cachestat", "fchmodat2", "futex_requeue", "futex_wait", "futex_wake", "getxattrat",
        "listmount", "listxattrat", "lsm_get_self_attr", "lsm_list_modules",
        "lsm_set_self_attr", "mseal", "removexattrat", "setxattrat", "statmount")
} | {"map_shadow_stack": ("x86_64",), "uretprobe": ("x86_64",)}

# ----------------------------------------------------------- entries and argument filters


class Verdict(enum.Enum):
    ALLOW = "allow"
    REFUSE = "refuse"  # a rule, the sockets statement or a capability says no
    UNLISTED = "unlisted"  # outside the baseline: the default action


@dataclass(frozen=True)
class Arg:
    index: int
    op: str  # SCMP_CMP_*
    value: int  # the mask, for MASKED_EQ
    value_two: int = 0  # the value compared under the mask

    def document(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "op": self.op, "value": self.value}
        if self.op == "SCMP_CMP_MASKED_EQ":
            out["valueTwo"] = self.value_two
        return out


@dataclass(frozen=True)
class Entry:
    names: tuple[str, ...]
    verdict: Verdict
    comment: str
    args: tuple[Arg, ...] = ()


def location(span: Span) -> Location:
    return Location(span.file, span.line, span.col, span.end_col, span.end_line)


def blocks(first: int, last: int, width: int) -> Iterator[tuple[int, int]]:
    """[first, last] as aligned (mask, value) blocks within `width` bits, like CIDRs."""
    full = (1 << width) - 1
    while first <= last:
        size = first & -first if first else 1 << width
        while first + size - 1 > last:
            size >>= 1
        yield full & ~(size - 1), first
        first += size


def runs(values: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in sorted(values):
        if out and out[-1][1] == v - 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


def _span_text(what: str, first: int, last: int) -> str:
    """'address family 0 is' / 'address families 3-9 are'."""
    if first == last:
        return f"{what} {first} is"
    plural = what[:-1] + "ies" if what.endswith("y") else what + "s"
    return f"{plural} {first}-{last} are"


def keeps(policy: Policy, capability: str) -> bool:
    """Kept means named in `capabilities drop all keep ...`: without that statement the
    policy does not say the agent needs a capability, so its syscalls stay refused."""
    caps = policy.capabilities
    return caps is not None and caps.drop_all and capability in caps.keep


def capability_source(policy: Policy) -> str:
    caps = policy.capabilities
    if caps is None:
        return "capabilities (no capabilities statement)"
    return f"capabilities ({caps.span.file}:{caps.span.line})"


def clone_entries(policy: Policy, decided: set[str]) -> list[Entry]:
    if keeps(policy, "sys_admin"):
        return [Entry(tuple(n for n in ("clone", "clone3") if n not in decided), Verdict.ALLOW,
                      f"{capability_source(policy)}: keeps sys_admin, so namespaces may be created")]
    out = []
    source = capability_source(policy)
    if "clone" not in decided:
        mask = sum(CLONE_NAMESPACE_FLAGS)
        out.append(Entry(("clone",), Verdict.ALLOW, f"{source}: clone without namespace flags "
                         "(sys_admin not kept)", (Arg(0, "SCMP_CMP_MASKED_EQ", mask, 0),)))
        for i, bit in enumerate(CLONE_NAMESPACE_FLAGS):
            below = sum(CLONE_NAMESPACE_FLAGS[: i + 1])
            out.append(Entry(("clone",), Verdict.REFUSE, f"{source}: clone with namespace flag "
                             f"{bit:#x} needs sys_admin, which the policy does not keep",
                             (Arg(0, "SCMP_CMP_MASKED_EQ", below, bit),)))
    if "clone3" not in decided:
        out.append(Entry(("clone3",), Verdict.UNLISTED, f"{source}: clone3's flags are behind a "
                         "pointer; ENOSYS makes glibc fall back to the filtered clone()"))
    return out


Allowed = dict[int, dict[int, frozenset[int] | None]]  # family -> type -> protocols (None: every)
ALL_TYPES = frozenset(range(SOCK_TYPE_MASK + 1))


def _socket_kinds(policy: Policy, out: list[Diagnostic]) -> tuple[Allowed, str, list[str]]:
    """What socket() may ask for (family -> type -> protocols), the source, and the kinds
    refused for want of net_raw. Protocols are only ever narrowed for netlink."""
    source = (f"sockets ({policy.sockets.span.file}:{policy.sockets.span.line})"
              if policy.sockets else "sockets (baseline: no sockets statement)")
    kinds = [(k.family, k.type, k.protocol) for k in policy.sockets.allow] if policy.sockets else \
        [(f, None, None) for f in SOCKET_BASELINE]
    allowed: Allowed = {}
    raw_refused: list[str] = []
    net_raw = keeps(policy, "net_raw")
    for family, kind, protocol in kinds:
        types = (NETLINK_TYPES if protocol is not None else ALL_TYPES if kind is None
                 else frozenset({SOCKET_TYPES[kind]}))
        if family == "netlink" and types & NETLINK_TYPES:
            types = types | NETLINK_TYPES  # netlink(7): raw and dgram are one and the same
        if not net_raw and family == "packet":
            raw_refused.append(family if kind is None else f"{family} {kind}")
            continue
        if not net_raw and family in RAW_FAMILIES and SOCKET_TYPES["raw"] in types:
            if kind is not None:
                raw_refused.append(f"{family} {kind}")
            types = types - {SOCKET_TYPES["raw"]}
            if not types:
                continue
        protocols = None if protocol is None else frozenset({NETLINK_PROTOCOLS[protocol]})
        per_type = allowed.setdefault(FAMILIES[family], {})
        for t in types:
            previous = per_type.get(t, frozenset())
            per_type[t] = None if previous is None or protocols is None else previous | protocols
    if raw_refused and policy.sockets is not None:
        out.append(Diagnostic(
            Severity.WARNING, f"sockets allow {', '.join(raw_refused)}: refused by the seccomp "
            "target because the policy does not keep net_raw", location(policy.sockets.span),
            "keep it ('capabilities drop all keep net_raw, ...') or remove these kinds",
            code="socket"))
    return allowed, source, raw_refused


def _protocol_entries(names: tuple[str, ...], prefix: tuple[Arg, ...], protocols: frozenset[int],
                      text: str) -> list[Entry]:
    """socket(family, type, protocol) for the allowed netlink protocols (arg2 exact) and the
    rest refused (aligned blocks below the largest allowed one, then `protocol > max`), so every
    protocol value lands in entries of one verdict. The kernel reads an int, so 0x1_00000000
    would be NETLINK_ROUTE: the 64-bit exact match misses it and `> max` refuses it (junk in the
    upper half may match a refusing block too: same verdict). 32-bit masks, because the SPO
    resource's int64 cannot hold a 64-bit one."""
    protocol_names = {v: k for k, v in NETLINK_PROTOCOLS.items()}
    entries = [Entry(names, Verdict.ALLOW, f"{text}, protocol {protocol_names[p]} ({p})",
                     (*prefix, Arg(2, "SCMP_CMP_EQ", p))) for p in sorted(protocols)]
    top = max(protocols)
    for first, last in runs(set(range(top)) - protocols):
        entries.extend(Entry(names, Verdict.REFUSE, f"{text}: {_span_text('protocol', first, last)} "
                             "not allowed", (*prefix, Arg(2, "SCMP_CMP_MASKED_EQ", mask, value)))
                       for mask, value in blocks(first, last, 32))
    entries.append(Entry(names, Verdict.REFUSE, f"{text}: protocols above {top} are not allowed",
                         (*prefix, Arg(2, "SCMP_CMP_GT", top))))
    return entries


def socket_entries(policy: Policy, calls: Sequence[str], out: list[Diagnostic]) -> list[Entry]:
    """socket()/socketpair() entries: every argument value in exactly one entry."""
    if not calls:
        return []
    names = tuple(calls)
    allowed, source, raw_refused = _socket_kinds(policy, out)
    no_raw = not keeps(policy, "net_raw")
    why_raw = "; raw and packet sockets need net_raw, which the policy does not keep"

    def why(hit: bool) -> str:
        return why_raw if no_raw and hit else ""

    if not allowed:
        return [Entry(names, Verdict.REFUSE, f"{source}: no socket family is allowed"
                      + why(bool(raw_refused)))]
    family_names = {v: k for k, v in FAMILIES.items()}
    type_names = {v: k for k, v in SOCKET_TYPES.items()}
    entries = []
    for number, per_type in sorted(allowed.items()):
        fam = family_names[number]
        family_arg = Arg(0, "SCMP_CMP_EQ", number)
        if per_type == dict.fromkeys(ALL_TYPES):
            entries.append(Entry(names, Verdict.ALLOW, f"{source}: {fam}, every type", (family_arg,)))
            continue
        groups: dict[frozenset[int] | None, set[int]] = {}
        for t, protocols in per_type.items():
            groups.setdefault(protocols, set()).add(t)
        chosen = [(Verdict.ALLOW, types, protocols) for protocols, types in
                  sorted(groups.items(), key=lambda g: min(g[1]))]
        chosen.append((Verdict.REFUSE, set(ALL_TYPES) - set(per_type), None))
        for verdict, types, protocols in chosen:
            for first, last in runs(types):
                label = ", ".join(type_names.get(t, str(t)) for t in range(first, last + 1))
                text = (f"{source}: {fam} {label}" if verdict is Verdict.ALLOW else
                        f"{source}: {fam} {_span_text('socket type', first, last)} not allowed")
                if verdict is Verdict.REFUSE:
                    text += why(fam in RAW_FAMILIES and first <= SOCKET_TYPES["raw"] <= last)
                for mask, value in blocks(first, last, 4):
                    args = (family_arg, Arg(1, "SCMP_CMP_MASKED_EQ", mask, value))
                    entries.extend([Entry(names, verdict, text, args)] if protocols is None else
                                   _protocol_entries(names, args, protocols, text))
    top = max(allowed)
    for first, last in runs(set(range(top)) - set(allowed)):
        text = (f"{source}: {_span_text('address family', first, last)} not allowed"
                + why(first <= FAMILIES["packet"] <= last))
        entries.extend(Entry(names, Verdict.REFUSE, text, (Arg(0, "SCMP_CMP_MASKED_EQ", mask, value),))
                       for mask, value in blocks(first, last, 32))
    entries.append(Entry(names, Verdict.REFUSE, f"{source}: address families above {top} are not "
                         "allowed" + why(top < FAMILIES["packet"]), (Arg(0, "SCMP_CMP_GT", top),)))
    return entries
