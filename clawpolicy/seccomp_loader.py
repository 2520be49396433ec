"""OCI seccomp profiles into libseccomp, raw BPF into the kernel, and a BPF emulator: floor 1.

The seccomp backend writes `profile.json` (what Docker, podman, runc/crun and Kubernetes load)
and `filter-<arch>.bpf`; both are built here, from the same profile, through libseccomp (the
`pyseccomp` ctypes binding). `build_filter` follows runc's reading of a profile
(libcontainer/seccomp/seccomp_linux.go): a rule whose action equals the default is skipped
(libseccomp refuses it), several conditions on one argument become separate rules (OR, not
AND), and names this libseccomp does not know are left out. The backend never emits the last
two, so runc, crun and this loader agree on every profile it writes.

`load_bpf` installs a raw program with seccomp(2) as a launcher would; `run_bpf` executes a
program on one `struct seccomp_data` in Python, so tests can check decisions for an
architecture this machine cannot run (aarch64 here) and benchmarks can count instructions.
No clawpolicy imports: the backend, tests and benchmarks all sit above this module.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as errno_module
import functools
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Architecture tokens (AUDIT_ARCH_*, include/uapi/linux/audit.h). x32 is libseccomp's own
# token: the kernel reports x32 calls as x86_64 with X32_SYSCALL_BIT set in the number.
ARCH_TOKENS: Mapping[str, int] = {
    "SCMP_ARCH_X86": 0x40000003,
    "SCMP_ARCH_X86_64": 0xC000003E,
    "SCMP_ARCH_X32": 0x4000003E,
    "SCMP_ARCH_ARM": 0x40000028,
    "SCMP_ARCH_AARCH64": 0xC00000B7,
}
X32_SYSCALL_BIT = 0x40000000

# SECCOMP_RET_* (include/uapi/linux/seccomp.h); the low 16 bits carry data (the errno).
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
RET_NAMES = {RET_KILL_PROCESS: "KILL_PROCESS", RET_KILL_THREAD: "KILL_THREAD", RET_TRAP: "TRAP",
             RET_ERRNO: "ERRNO", RET_TRACE: "TRACE", RET_LOG: "LOG", RET_ALLOW: "ALLOW"}

OPERATORS: Mapping[str, int] = {  # enum scmp_compare (seccomp.h)
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}
FLAG_ATTRS: Mapping[str, int] = {  # OCI flag -> enum scmp_filter_attr
    "SECCOMP_FILTER_FLAG_TSYNC": 4, "SECCOMP_FILTER_FLAG_LOG": 6, "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 7,
}
ATTR_ACT_BADARCH = 2
ATTR_CTL_OPTIMIZE = 8
OPTIMIZE_BINARY_TREE = 2
OPTIMIZE_PRIORITY = 1  # libseccomp's default: one comparison per syscall, in priority order

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_LOG = 2
PR_SET_NO_NEW_PRIVS = 38
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}


class LoaderError(RuntimeError):
    """libseccomp is missing or refused a profile."""


def _pyseccomp() -> Any:
    """The binding, imported on first use: it loads libseccomp.so.2 at import time, and
    compiling other targets must not need it."""
    try:
        import pyseccomp  # type: ignore[import-untyped]
    except (ImportError, RuntimeError) as exc:
        raise LoaderError(f"libseccomp is not available ({exc}); install libseccomp2 and "
                          "`pip install pyseccomp`") from exc
    return pyseccomp


def libseccomp_version() -> str:
    class Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    lib = _pyseccomp()._libseccomp
    lib.seccomp_version.restype = ctypes.POINTER(Version)
    v = lib.seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def action_value(action: str, errno: int | None = None) -> int:
    """An OCI action name (and errno) as a SECCOMP_RET_* value, as runc reads it: ERRNO and
    TRACE without a number mean EPERM."""
    base = {"SCMP_ACT_KILL": RET_KILL_THREAD, "SCMP_ACT_KILL_THREAD": RET_KILL_THREAD,
            "SCMP_ACT_KILL_PROCESS": RET_KILL_PROCESS, "SCMP_ACT_TRAP": RET_TRAP,
            "SCMP_ACT_ERRNO": RET_ERRNO, "SCMP_ACT_TRACE": RET_TRACE, "SCMP_ACT_LOG": RET_LOG,
            "SCMP_ACT_ALLOW": RET_ALLOW}.get(action)
    if base is None:
        raise LoaderError(f"unsupported seccomp action {action!r}")
    if base in (RET_ERRNO, RET_TRACE):
        return base | ((errno_module.EPERM if errno is None else errno) & 0xFFFF)
    return base


def syscall_number(arch: str, name: str) -> int:
    """The syscall's number on `arch` (an SCMP_ARCH_* name); negative when it does not exist
    there (-1: libseccomp does not know the name at all)."""
    sc = _pyseccomp()
    return int(sc.resolve_syscall(ARCH_TOKENS[arch], name))


def syscall_name(arch: str, nr: int) -> str | None:
    """The name of syscall `nr` on `arch` (an SCMP_ARCH_* name), as libseccomp's
    seccomp_syscall_resolve_num_arch gives it; None when it knows no such number."""
    try:
        name = _pyseccomp().resolve_syscall(ARCH_TOKENS[arch], nr)
    except ValueError:
        return None
    return name.decode("ascii") if isinstance(name, bytes) else str(name)


@functools.cache
def known_syscalls(arches: tuple[str, ...]) -> frozenset[str]:
    """Every syscall name libseccomp knows on these architectures (SCMP_ARCH_* names)."""
    sc = _pyseccomp()
    names = set()
    for arch in arches:
        for nr in range(1024):
            try:
                names.add(sc.resolve_syscall(ARCH_TOKENS[arch], nr).decode("ascii"))
            except ValueError:
                continue
    return frozenset(names)


@dataclass
class Built:
    """A libseccomp filter context and what building it left out."""

    ctx: Any
    skipped: list[str] = field(default_factory=list)  # names unknown to this libseccomp
    optimize: int = OPTIMIZE_BINARY_TREE


def build_filter(profile: Mapping[str, Any], arch: str | None = None, *,
                 bad_arch_action: int | None = None,
                 optimize: int = OPTIMIZE_BINARY_TREE) -> Built:
    """A libseccomp context for `profile`: for one architecture (`arch`, what the backend
    exports), or like a runtime (None: the native architecture plus the profile's).
    `optimize=OPTIMIZE_PRIORITY` builds libseccomp's flat layout (benchmarks, and the tests
    that reproduce its x32 fail-open)."""
    sc = _pyseccomp()
    default = action_value(profile["defaultAction"], profile.get("defaultErrnoRet"))
    ctx = sc.SyscallFilter(default)
    arches = [arch] if arch is not None else list(profile.get("architectures", ()))
    for name in arches:
        if not ctx.exist_arch(ARCH_TOKENS[name]):
            ctx.add_arch(ARCH_TOKENS[name])
    if arch is not None and ARCH_TOKENS[arch] != sc.system_arch():
        ctx.remove_arch(sc.Arch.NATIVE)
    if bad_arch_action is not None:
        ctx.set_attr(ATTR_ACT_BADARCH, bad_arch_action)
    built = Built(ctx, optimize=optimize)
    try:  # the binary tree; libseccomp < 2.5 lacks it (and our profiles are safe without)
        ctx.set_attr(ATTR_CTL_OPTIMIZE, optimize)
    except OSError:
        built.optimize = OPTIMIZE_PRIORITY
    for flag in profile.get("flags", ()):
        ctx.set_attr(FLAG_ATTRS[flag], 1)
    probe_arch = arch or "SCMP_ARCH_X86_64"
    for entry in profile.get("syscalls", ()):
        act = action_value(entry["action"], entry.get("errnoRet"))
        if act == default:
            continue  # runc: "This rule is redundant, silently skip it"
        conditions = [(a["index"], OPERATORS[a["op"]], a["value"], a.get("valueTwo", 0))
                      for a in entry.get("args", ())]
        indexes = [c[0] for c in conditions]
        groups = ([[c] for c in conditions] if len(set(indexes)) < len(indexes) else [conditions])
        for name in entry["names"]:
            known = sc.resolve_syscall(ARCH_TOKENS[probe_arch], name) if arch else \
                sc.resolve_syscall(sc.Arch.NATIVE, name)
            if known == -1:
                built.skipped.append(name)
                continue
            if arch is not None and known < 0:
                continue  # not a syscall of this architecture (e.g. open on aarch64)
            for group in groups:
                try:
                    ctx.add_rule(act, name, *(sc.Arg(*c) for c in group))
                except OSError as exc:
                    raise LoaderError(f"libseccomp refused the rule for {name}: {exc}") from exc
    return built


def export(built: Built) -> tuple[bytes, str]:
    """The filter's BPF program and libseccomp's pseudo-filter-code listing."""
    out = []
    for method in (built.ctx.export_bpf, built.ctx.export_pfc):
        fd = os.memfd_create("clawpolicy-seccomp")
        with os.fdopen(fd, "w+b") as fh:
            method(fh)
            fh.seek(0)
            out.append(fh.read())
    return out[0], out[1].decode("utf-8")


def load_profile(profile: Mapping[str, Any], optimize: int = OPTIMIZE_BINARY_TREE) -> Built:
    """Install `profile` on the calling thread's process, as a runtime would (irreversible:
    call it in a child)."""
    built = build_filter(profile, optimize=optimize)
    built.ctx.load()
    return built


def load_bpf(program: bytes, flags: int = 0) -> None:
    """Install a raw filter with seccomp(2), as a launcher would (irreversible)."""
    if len(program) % 8 or not program:
        raise LoaderError("a BPF program is a non-empty sequence of 8-byte instructions")
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    prog = SockFprog(len(program) // 8, program)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    nr = SYS_SECCOMP[os.uname().machine]
    if libc.syscall(nr, SECCOMP_SET_MODE_FILTER, ctypes.c_uint(flags), ctypes.byref(prog)) != 0:
        raise OSError(ctypes.get_errno(), "seccomp(SECCOMP_SET_MODE_FILTER)")


# ------------------------------------------------------------------------ the emulator


@dataclass(frozen=True)
class Decision:
    ret: int  # the SECCOMP_RET_* value the program returned
    steps: int  # instructions executed

    @property
    def action(self) -> str:
        return RET_NAMES.get(self.ret & 0xFFFF0000, f"{self.ret:#x}")

    @property
    def data(self) -> int:
        return self.ret & 0xFFFF

    def __str__(self) -> str:
        return f"{self.action}({self.data})" if self.action in ("ERRNO", "TRACE") else self.action


def instructions(program: bytes) -> list[tuple[int, int, int, int]]:
    """(code, jt, jf, k) for each `struct sock_filter` (host byte order)."""
    return [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]


def run_bpf(program: bytes | Sequence[tuple[int, int, int, int]], arch: str, nr: int,
            args: Iterable[int] = (), ip: int = 0) -> Decision:
    """Run a classic-BPF seccomp program on one call, as the kernel's interpreter would
    (the subset seccomp accepts: loads of seccomp_data, ALU, jumps, returns)."""
    code = instructions(program) if isinstance(program, bytes) else program
    words = list(args) + [0] * 6
    token = ARCH_TOKENS[arch]
    if arch == "SCMP_ARCH_X32":  # the kernel reports x32 calls as x86_64 with bit 30 set
        token, nr = ARCH_TOKENS["SCMP_ARCH_X86_64"], nr | X32_SYSCALL_BIT
    data = struct.pack("=iIQ6Q", nr, token, ip, *(w & (2**64 - 1) for w in words[:6]))
    a = x = 0
    mem = [0] * 16
    pc = steps = 0
    while True:
        op, jt, jf, k = code[pc]
        steps += 1
        pc += 1
        cls = op & 0x07
        if cls == 0x00:  # BPF_LD
            a = struct.unpack_from("=I", data, k)[0] if op & 0xE0 == 0x20 else (
                k if op & 0xE0 == 0x00 else mem[k])
        elif cls == 0x01:  # BPF_LDX
            x = k if op & 0xE0 == 0x00 else mem[k]
        elif cls == 0x02:  # BPF_ST
            mem[k] = a
        elif cls == 0x03:  # BPF_STX
            mem[k] = x
        elif cls == 0x04:  # BPF_ALU
            a = _alu(op & 0xF0, a, x if op & 0x08 else k)
        elif cls == 0x05:  # BPF_JMP
            if op & 0xF0 == 0x00:
                pc += k
                continue
            b = x if op & 0x08 else k
            taken = {0x10: a == b, 0x20: a > b, 0x30: a >= b, 0x40: bool(a & b)}[op & 0xF0]
            pc += jt if taken else jf
        elif cls == 0x06:  # BPF_RET
            return Decision(a if op & 0x18 == 0x10 else k, steps)
        else:  # BPF_MISC: TAX / TXA
            if op & 0xF8 == 0x00:
                x = a
            else:
                a = x


def _alu(op: int, a: int, b: int) -> int:
    if op == 0x50:  # BPF_AND, the one libseccomp emits (masked comparisons)
        return a & b
    if op in (0x30, 0x90) and b == 0:
        return 0  # the kernel rejects a constant zero divisor at load time
    results = {0x00: lambda: a + b, 0x10: lambda: a - b, 0x20: lambda: a * b,
               0x30: lambda: a // b, 0x40: lambda: a | b, 0x60: lambda: a << (b & 31),
               0x70: lambda: a >> (b & 31), 0x80: lambda: -a, 0x90: lambda: a % b,
               0xA0: lambda: a ^ b}
    return results[op]() & 0xFFFFFFFF
