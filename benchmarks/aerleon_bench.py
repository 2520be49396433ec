#!/usr/bin/env python3
"""clawpolicy against Aerleon, side by side in one run (`make bench`; issue 14).

Not part of the package and not a test: it prints Markdown tables and asserts nothing.

Both tools get the same three shapes: N rules, each allowing 443/udp to its own M unique,
non-adjacent IPv4 /32s (100×100, 1,000×10, 1×100,000). clawpolicy reads one `.claw` file;
Aerleon reads `.net` definitions plus a `.pol` (its fastest front end, the Capirca DSL) through
`aclgen --policy_file` (one file, no worker processes). Each compile is a whole process,
interpreter start included, and the two tools alternate run by run, so a noisy neighbour
hurts both. Reported: the median wall time, the peak RSS of the compiling process (GNU time's
%M: the process is forked by `time`, not by this script, whose own high-water mark Linux would
otherwise fold into the child's), the ruleset size, the `nft -f` load time into a fresh
network namespace (never the host's), and clawpolicy / Aerleon ratios. Start-up rows:
`clawpolicy --help` and compiling the bundled example. clawpolicy's bytecode is compiled
first (`compileall`), as an installed tool's is and as Aerleon's venv has it: the environment
may set PYTHONDONTWRITEBYTECODE, and timing a process that compiles the package from source
on every run would charge clawpolicy for a cost no user pays.

Aerleon is installed, pinned, into a throwaway virtual environment under this run's temporary
directory (it is not a dependency of clawpolicy); if that fails, its columns are skipped with
the reason. Pass `--aerleon-python PATH` to reuse an interpreter that already has it.

    python benchmarks/aerleon_bench.py                 # everything, 5 runs per tool and shape
    python benchmarks/aerleon_bench.py --repeat 3 --shape 100x100
    python benchmarks/aerleon_bench.py --keep /tmp/b   # keep the inputs and outputs
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
EXAMPLE = REPO / "examples" / "openclaw-workstation.claw"
AERLEON = "aerleon==1.18.0"  # pinned: the version the issue measured
SEED = 14
SHAPES: dict[str, tuple[int, int]] = {"100x100": (100, 100), "1000x10": (1_000, 10), "1x100000": (1, 100_000)}
TIME = "/usr/bin/time"


# ------------------------------------------------------------------------------ inputs


def addresses(rules: int, per_rule: int, seed: int = SEED) -> list[list[str]]:
    """rules × per_rule unique /32s, no two adjacent (every other address of 11.0.0.0/8 up),
    shuffled with a fixed seed so neither tool sees sorted input."""
    rng = random.Random(seed)
    slots = rng.sample(range(1 << 22), rules * per_rule)  # 11.0.0.0 + 2*slot < 11.128.0.0
    base = 11 << 24
    out: list[list[str]] = []
    for r in range(rules):
        row = []
        for s in slots[r * per_rule:(r + 1) * per_rule]:
            a = base + 2 * s
            row.append(f"{a >> 24}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}")
        out.append(row)
    return out


def claw_text(name: str, peers: list[list[str]], *, define: bool = False) -> str:
    """The .claw policy: one `allow egress` per rule, peers eight to a line (or, with
    `define`, each rule's peers in a @define referenced by the rule)."""
    out = [f"policy bench-{name} {{", '  description "issue 14 shape"', "  mode enforce",
           "  applies-to host", ""]
    for i, row in enumerate(peers):
        lines = ",\n      ".join(", ".join(row[k:k + 8]) for k in range(0, len(row), 8))
        if define:
            out.append(f"  define r{i} = {lines}")
            out.append(f'  allow egress to @r{i} port 443/udp reason "rule {i}"')
        else:
            out.append(f"  allow egress to {lines}")
            out.append(f'    port 443/udp reason "rule {i}"')
    out.append("}")
    return "\n".join(out) + "\n"


def aerleon_files(root: Path, name: str, peers: list[list[str]]) -> Path:
    """NETWORK.net + SERVICES.svc under root/def, the policy under root/pol; returns the .pol."""
    (root / "def").mkdir(parents=True, exist_ok=True)
    (root / "pol").mkdir(parents=True, exist_ok=True)
    net = []
    for i, row in enumerate(peers):
        net.append(f"R{i} = {row[0]}/32")
        net.extend(f"     {a}/32" for a in row[1:])
    (root / "def" / "NETWORK.net").write_text("\n".join(net) + "\n", encoding="utf-8")
    (root / "def" / "SERVICES.svc").write_text("QUIC = 443/udp\n", encoding="utf-8")
    pol = ["header {", "  target:: nftables inet output", "}"]
    for i in range(len(peers)):
        pol += [f"term r{i} {{", f"  destination-address:: R{i}", "  destination-port:: QUIC",
                "  protocol:: udp", "  action:: accept", "}"]
    path = root / "pol" / f"{name}.pol"
    path.write_text("\n".join(pol) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ running


@dataclass
class Runs:
    wall: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def peak(self) -> float:
        return max(self.peak_mb)


def timed(argv: Sequence[str], runs: Runs, workdir: Path, env: dict[str, str] | None = None) -> None:
    """One whole-process run: wall time here, peak RSS from GNU time (or getrusage)."""
    stats = workdir / "time.out"
    wrapped = [TIME, "-f", "%M", "-o", str(stats), *argv] if Path(TIME).exists() else list(argv)
    t0 = time.perf_counter()
    r = subprocess.run(wrapped, capture_output=True, text=True, env=env, cwd=workdir)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        runs.error = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        return
    runs.wall.append(wall)
    if Path(TIME).exists():
        runs.peak_mb.append(int(stats.read_text().split()[-1]) / 1024)
    else:  # includes this script's own high-water mark folded in at exec: an upper bound
        import resource
        runs.peak_mb.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def install_aerleon(tmp: Path) -> tuple[str | None, str]:
    """A throwaway venv with Aerleon pinned; (python, note) or (None, why not)."""
    venv = tmp / "aerleon-venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        py = venv / "bin" / "python"
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", AERLEON],
                           capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"Aerleon not installed ({exc}); its columns are skipped"
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["pip failed"])[-1]
        return None, f"Aerleon not installed (pip: {tail}); its columns are skipped"
    return str(py), f"{AERLEON} in a throwaway venv"


def claw_argv(policy: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "clawpolicy.cli", "compile", str(policy), "-t", "nftables", "-o", str(out)]


def aerleon_argv(py: str, pol: Path, out: Path) -> list[str]:
    root = pol.parent.parent
    return [py, "-m", "aerleon.aclgen", "--base_directory", str(root), "--definitions_directory",
            str(root / "def"), "--policy_file", str(pol), "--output_directory", str(out)]


def nft_load(ruleset: Path) -> float | None:
    """Seconds for `nft -f` into a fresh network namespace (None without root/nft)."""
    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"):
        return None
    ns = f"cpa{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        t0 = time.perf_counter()
        r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", str(ruleset)], capture_output=True, text=True)
        took = time.perf_counter() - t0
        if r.returncode != 0:
            print(f"nft -f {ruleset} failed: {r.stderr.strip()[:300]}", file=sys.stderr)
            return None
        return took
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def nft_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.nft"))


# ------------------------------------------------------------------------------ main


def fmt_ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a is not None and b else "n/a"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per tool and shape (median reported)")
    ap.add_argument("--shape", action="append", choices=sorted(SHAPES), help="only this shape (repeatable)")
    ap.add_argument("--aerleon-python", help="an interpreter that already has aerleon (skip the install)")
    ap.add_argument("--no-aerleon", action="store_true", help="measure clawpolicy only")
    ap.add_argument("--define", action="store_true", help="also time the shapes written with @define")
    ap.add_argument("--keep", type=Path, metavar="DIR", help="work in DIR and keep it")
    ap.add_argument("--json", type=Path, metavar="FILE", help="also save the figures as JSON")
    ap.add_argument("--no-packets", action="store_true", help="skip the packet-path benchmark")
    ap.add_argument("--rounds", type=int, default=5, help="packet-path rounds per configuration")
    args = ap.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "clawpolicy")], check=True)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="clawpolicy-aerleon-") as tmpname:
        tmp = args.keep or Path(tmpname)
        tmp.mkdir(parents=True, exist_ok=True)
        if args.no_aerleon:
            aer_py, note = None, "Aerleon skipped (--no-aerleon)"
        elif args.aerleon_python:
            aer_py, note = args.aerleon_python, f"Aerleon from {args.aerleon_python}"
        else:
            print(f"installing {AERLEON} into a throwaway venv ...", file=sys.stderr, flush=True)
            aer_py, note = install_aerleon(tmp)
        print(note, file=sys.stderr)

        # Start-up rows.
        startup: dict[str, Runs] = {"clawpolicy --help": Runs(), "compile the bundled example": Runs()}
        ex_out = tmp / "example-out"
        for _ in range(max(args.repeat, 5)):
            timed([sys.executable, "-m", "clawpolicy.cli", "--help"], startup["clawpolicy --help"], tmp, env)
            timed(claw_argv(EXAMPLE, ex_out), startup["compile the bundled example"], tmp, env)
        if aer_py:
            startup["import aerleon.aclgen (Aerleon)"] = Runs()
            for _ in range(max(args.repeat, 5)):
                timed([aer_py, "-c", "import aerleon.aclgen"], startup["import aerleon.aclgen (Aerleon)"], tmp)

        rows = []
        rulesets: dict[str, dict[str, str]] = {}
        all_peers: dict[str, list[list[str]]] = {}
        for name in args.shape or list(SHAPES):
            n, m = SHAPES[name]
            peers = addresses(n, m)
            d = tmp / name
            d.mkdir(exist_ok=True)
            claw = d / f"bench-{name}.claw"
            claw.write_text(claw_text(name, peers), encoding="utf-8")
            variants = {"claw": claw}
            if args.define:
                cdef = d / f"bench-{name}-define.claw"
                cdef.write_text(claw_text(name, peers, define=True), encoding="utf-8")
                variants["claw @define"] = cdef
            pol = aerleon_files(d / "aerleon", name.replace("x", "_"), peers)
            runs = {k: Runs() for k in (*variants, "aerleon")}
            for _ in range(args.repeat):  # alternate: one of each, then again
                for k, path in variants.items():
                    timed(claw_argv(path, d / f"out-{k.replace(' ', '')}"), runs[k], tmp, env)
                if aer_py:
                    timed(aerleon_argv(aer_py, pol, d / "aerleon-out"), runs["aerleon"], tmp)
            print(f"{name}: done", file=sys.stderr, flush=True)
            row: dict[str, object] = {"shape": name}
            for k in variants:
                out = nft_files(d / f"out-{k.replace(' ', '')}")
                row[k] = runs[k]
                row[k + " bytes"] = sum(p.stat().st_size for p in out)
                row[k + " load"] = nft_load(out[0]) if len(out) == 1 else None
            aer_out = nft_files(d / "aerleon-out")
            if name in ("1x100000", "1000x10"):
                all_peers[name] = peers
                rulesets[name] = {"clawpolicy": nft_files(d / "out-claw")[0].read_text(encoding="utf-8")}
                if aer_out:
                    rulesets[name]["aerleon"] = aer_out[0].read_text(encoding="utf-8")
            row["aerleon"] = runs["aerleon"]
            row["aerleon bytes"] = sum(p.stat().st_size for p in aer_out) if aer_out else None
            row["aerleon load"] = nft_load(aer_out[0]) if aer_out else None
            rows.append(row)

    print(f"clawpolicy vs Aerleon: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {note}; "
          f"median of {args.repeat} alternating whole-process runs")
    print()
    print("| command | median s | min s | peak MB |")
    print("|---|---|---|---|")
    for label, r in startup.items():
        if r.error or not r.wall:
            print(f"| {label} | failed: {r.error} | | |")
        else:
            print(f"| {label} | {r.median:.3f} | {min(r.wall):.3f} | {r.peak:.0f} |")
    print()
    head = ("shape", "tool", "compile s (median)", "min s", "peak MB", "ruleset KB", "nft -f load s",
            "time ratio", "peak ratio", "size ratio", "load ratio")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for row in rows:
        aer = row["aerleon"]
        assert isinstance(aer, Runs)
        a_ok = bool(aer.wall)
        for k in [k for k in row if isinstance(row[k], Runs)]:
            r = row[k]
            assert isinstance(r, Runs)
            if r.error or not r.wall:
                why = f"failed: {r.error}" if r.error else "skipped"
                print(f"| {row['shape']} | {k} | {why} |" + " |" * 8)
                continue
            size = row[k + " bytes"]
            load = row[k + " load"]
            assert isinstance(size, (int, type(None))) and isinstance(load, (float, type(None)))
            cells = [str(row["shape"]), k, f"{r.median:.3f}", f"{min(r.wall):.3f}", f"{r.peak:.0f}",
                     f"{size / 1024:,.0f}" if size else "n/a", f"{load:.3f}" if load is not None else "n/a"]
            if k != "aerleon" and a_ok:
                a_size, a_load = row["aerleon bytes"], row["aerleon load"]
                assert isinstance(a_size, (int, type(None))) and isinstance(a_load, (float, type(None)))
                cells += [fmt_ratio(r.median, aer.median), fmt_ratio(r.peak, aer.peak),
                          fmt_ratio(size, a_size), fmt_ratio(load, a_load)]
            else:
                cells += ["", "", "", ""]
            print("| " + " | ".join(cells) + " |")
        results[str(row["shape"])] = {
            k: (vars(v) if isinstance(v, Runs) else v) for k, v in row.items() if k != "shape"}
    packet_lines: list[str] = []
    if args.no_packets:
        packet_lines = ["Packet path skipped (--no-packets)."]
    elif os.geteuid() != 0:
        packet_lines = ["Packet path skipped: needs root (network namespaces)."]
    elif rulesets:
        print("packet path ...", file=sys.stderr, flush=True)
        from packet_bench import packet_path
        packet_lines = packet_path(rulesets, all_peers, args.rounds)
    print()
    print("Ratios are clawpolicy / Aerleon (below 1: clawpolicy is faster or smaller). Peak MB is the "
          "compiling process's maximum RSS; nft -f load is one load into a fresh namespace.")
    print()
    print("\n".join(packet_lines))
    if args.json:
        results["packet_path"] = packet_lines
        results["startup"] = {k: vars(v) for k, v in startup.items()}
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
