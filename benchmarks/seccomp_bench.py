#!/usr/bin/env python3
"""What the seccomp filters cost (`python benchmarks/seccomp_bench.py`): a table, no assertions.

1. Size: BPF instructions of the generated filters, built with libseccomp's binary tree (what
   the backend ships) and flat (libseccomp's default layout, the same rules), per architecture;
   and the instructions the kernel runs per call, counted with the loader's emulator: the
   average over every syscall the profile allows, getppid, and socket(AF_INET, SOCK_STREAM).
2. Time: N calls (default 1,000,000) in a child process with no filter, a one-instruction
   filter (what merely having seccomp on costs), our filter (binary tree) and the same rules
   built flat; best of --repeat runs. Two calls: getppid(), which the filter allows whatever
   its arguments (since Linux 5.11 the kernel caches such verdicts per syscall and skips the
   BPF program), and personality(0xffffffff), whose argument the filter checks, so the
   program runs on every call. The loop is a small C program when a C compiler is present
   (the syscall itself, nothing else), or Python otherwise (which adds the interpreter's cost
   to every row). Installing a filter needs no privileges (no_new_privs is set first).

    python benchmarks/seccomp_bench.py                 # the server example, 1,000,000 calls
    python benchmarks/seccomp_bench.py --calls 200000 --repeat 3 --policy examples/x.claw
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from clawpolicy import seccomp_loader as loader  # noqa: E402
from clawpolicy.backends.base import CompileOptions  # noqa: E402
from clawpolicy.backends.seccomp import ARCHITECTURES, BACKEND, BAD_ARCH_ACTION  # noqa: E402
from clawpolicy.ir import Mode, Policy  # noqa: E402
from clawpolicy.lower import load_policies  # noqa: E402

_LIBC = ctypes.CDLL(None)
ALLOW_ALL = struct.pack("=HBBI", 0x06, 0, 0, loader.RET_ALLOW)  # BPF_RET|BPF_K: the cheapest filter
LOOP_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]), nr = atol(argv[2]);
    unsigned long arg = strtoul(argv[3], NULL, 0);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) syscall(nr, arg);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.3f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
    return 0;
}
"""


def _profile(policy: Policy) -> dict[str, Any]:
    import json

    result = BACKEND.compile(policy, CompileOptions())
    files = {a.path: a.content for a in result.artifacts}
    profile: dict[str, Any] = json.loads(files["profile.json"])
    return profile


def _programs(profile: dict[str, Any], arch: str, mode: Mode) -> dict[str, bytes]:
    out = {}
    for label, optimize in (("binary tree", loader.OPTIMIZE_BINARY_TREE), ("flat", loader.OPTIMIZE_PRIORITY)):
        built = loader.build_filter(profile, arch, bad_arch_action=BAD_ARCH_ACTION[mode], optimize=optimize)
        out[label] = loader.export(built)[0]
    return out


def _allowed_numbers(profile: dict[str, Any], arch: str) -> list[int]:
    names = {n for e in profile["syscalls"] if e["action"] == "SCMP_ACT_ALLOW" and not e.get("args")
             for n in e["names"]}
    return sorted(nr for nr in (loader.syscall_number(arch, n) for n in names) if nr >= 0)


def size_table(profile: dict[str, Any], mode: Mode) -> list[str]:
    rows = ["| arch | layout | BPF instructions | run per allowed call (mean / max) | getppid | "
            "socket(AF_INET, SOCK_STREAM) |", "|---|---|---|---|---|---|"]
    for arch, short in ARCHITECTURES.items():
        allowed = _allowed_numbers(profile, arch)
        for label, program in _programs(profile, arch, mode).items():
            code = loader.instructions(program)
            steps = [loader.run_bpf(code, arch, nr).steps for nr in allowed]
            getppid = loader.run_bpf(code, arch, loader.syscall_number(arch, "getppid")).steps
            sock = loader.run_bpf(code, arch, loader.syscall_number(arch, "socket"), (2, 1 | 0o2000000)).steps
            rows.append(f"| {short} | {label} | {len(code)} | {statistics.mean(steps):.1f} / {max(steps)} "
                        f"| {getppid} | {sock} |")
    return rows


def _loop_binary(workdir: Path) -> Path | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src, exe = workdir / "getppid_loop.c", workdir / "getppid_loop"
    src.write_text(LOOP_C)
    done = subprocess.run([cc, "-O2", "-o", str(exe), str(src)], capture_output=True, text=True)
    return exe if done.returncode == 0 else None


def _run(program: bytes | None, calls: int, loop: Path | None, call: tuple[str, int, int]) -> float:
    """ns per call in a fresh child with `program` installed (None: no filter)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: install, measure, report, never return
        try:
            os.close(read)
            if program is not None:
                loader.load_bpf(program)
            name, nr, arg = call
            if loop is not None:
                os.dup2(write, 1)
                os.execv(str(loop), [str(loop), str(calls), str(nr), hex(arg)])
            fn = os.getppid if name == "getppid" else functools.partial(_LIBC.personality, arg)
            start = time.perf_counter_ns()
            for _ in range(calls):
                fn()
            os.write(write, f"{(time.perf_counter_ns() - start) / calls:.3f}\n".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        out = fh.read()
    os.waitpid(pid, 0)
    return float(out)


def time_table(profile: dict[str, Any], mode: Mode, calls: int, repeat: int) -> list[str]:
    arch = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}.get(platform.machine())
    if arch is None:
        return [f"(no timing: {platform.machine()} is not a target architecture)"]
    programs = _programs(profile, arch, mode)
    variants: dict[str, bytes | None] = {
        "no filter": None, "one instruction (allow all)": ALLOW_ALL,
        "our filter (binary tree)": programs["binary tree"], "same rules, flat": programs["flat"]}
    targets = [("getppid", loader.syscall_number(arch, "getppid"), 0),  # allowed whatever its args
               ("personality", loader.syscall_number(arch, "personality"), 0xFFFFFFFF)]  # arg-checked
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        loop = _loop_binary(Path(tmp))
        how = "C loop" if loop else "Python loop"
        rows += [f"{calls:,} calls per run, best of {repeat}, {how}:", "",
                 "| filter | getppid() ns | over no filter | personality(0xffffffff) ns | over no filter |",
                 "|---|---|---|---|---|"]
        best = {label: [min(_run(prog, calls, loop, t) for _ in range(repeat)) for t in targets]
                for label, prog in variants.items()}
    floor = best["no filter"]
    for label, times in best.items():
        cells = [f"{ns:.1f} | {ns - f:+.1f} ns ({(ns / f - 1) * 100:+.1f} %)"
                 for ns, f in zip(times, floor, strict=True)]
        rows.append(f"| {label} | {' | '.join(cells)} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", type=Path, default=REPO / "examples" / "openclaw-server.claw")
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    loaded = load_policies([args.policy])
    if not loaded.ok:
        print(f"{args.policy}: does not compile", file=sys.stderr)
        return 1
    policy = loaded.policies[0].with_mode(Mode.ENFORCE)
    profile = _profile(policy)
    print(f"seccomp filters of {policy.name} (enforce), libseccomp {loader.libseccomp_version()}, "
          f"kernel {platform.release()}, {platform.machine()}")
    print()
    print("\n".join(size_table(profile, Mode.ENFORCE)))
    print()
    print("\n".join(time_table(profile, Mode.ENFORCE, args.calls, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
