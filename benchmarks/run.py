#!/usr/bin/env python3
"""Compile-time, memory and `nft -f` load-time figures for clawpolicy (`make bench`).

Not part of the package and not a test: it prints a Markdown table and asserts nothing about
time. Each shape's policy is generated as .claw text (deterministically, from a seed) into a
temporary directory; each measurement runs in a fresh Python process, so the peak RSS it
reports belongs to that shape alone; the resulting ruleset is loaded with `nft -f` into a
network namespace made for the purpose (never the host's) and listed back to confirm it
loaded. See benchmarks/README.md for what each column means.

    python benchmarks/run.py              # all shapes, the issue's sizes
    python benchmarks/run.py --quick      # shapes 10x smaller: a smoke run of a few seconds
    python benchmarks/run.py --shape 3 --repeat 1 --json out.json
    python benchmarks/run.py --shape 3 --profile   # cProfile of one compile, no table
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.util
import ipaddress
import json
import os
import platform
import pwd
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "openclaw-workstation.claw"
SEED = 20240611  # any fixed number: the generated policies are the same on every run
BASE_AND_POLICY_CHAINS = ("output", "egress", "input", "ingress")


# ------------------------------------------------------------------------------ shapes


@dataclass(frozen=True)
class Shape:
    number: int
    name: str
    rules: int  # generated rules (0 for the bundled example)
    cidrs: int  # CIDRs per generated rule
    aerleon_s: float | None = None  # Aerleon 1.18 on the same shape (the issue's figures)
    aerleon_mb: float | None = None

    @property
    def label(self) -> str:
        if not self.rules:
            return "example"
        return f"{self.rules:,}×{self.cidrs:,} (+{len(EXTRA_RULES)})"

    @property
    def large(self) -> bool:
        return self.rules * self.cidrs >= 10_000 and self.rules == 1


SHAPES = (
    Shape(1, "1k-rules", 1_000, 10, aerleon_s=2.6),
    Shape(2, "100-rules", 100, 100, aerleon_s=1.7),
    Shape(3, "100k-cidrs", 1, 100_000, aerleon_s=15.0, aerleon_mb=257.0),
    Shape(4, "example", 0, 0),
)
QUICK = {1: (100, 10), 2: (10, 100), 3: (1, 10_000)}  # 10x fewer rules or CIDRs


# ------------------------------------------------------------------------------ policy text

# Port sets the generated rules cycle through (rule i takes PORT_SETS[i % 4]); shape 3's one
# rule takes the first, so its 100,000 CIDRs make about 100,000 map elements.
PORT_SETS: tuple[tuple[str, ...], ...] = (
    ("443/tcp",), ("53/udp", "53/tcp"), ("443/tcp", "8000-8100/tcp"), ("8000-8100/tcp",))
UMBRELLA_PORTS = ("443/tcp", "8000-8100/tcp")
# The same few hand-written rules in every generated shape: explicit denies in both
# directions and families, ingress rules, and overlaps (a /16 over generated /24s; ingress
# rules inside each other) so the partition into disjoint map elements is exercised, and the
# policy chains have the same lookups (deny v4/v6, allow v4/v6) whatever the shape.
EXTRA_RULES = (
    'deny egress to 169.254.169.254, fd00:ec2::254 reason "bench deny: cloud metadata"',
    'deny egress to 224.0.0.251, ff02::fb port 5353/udp reason "bench deny: mDNS"',
    'allow egress to 11.0.0.0/16 port 443/tcp, 8000-8100/tcp reason "bench umbrella over generated /24s"',
    'allow ingress from 192.168.0.0/16, fd7a:115c:a1e0::/48 port 22/tcp, 9100/tcp reason "bench ingress: admin"',
    'allow ingress from 192.168.10.0/24 port 22/tcp, 443/tcp reason "bench ingress: overlapping"',
    'deny ingress from 192.168.10.128/25, fd7a:115c:a1e0:bad::/64 port 22/tcp reason "bench ingress deny"',
)
# Generated IPv4 peers live in 11.0.0.0-99.255.255.255, one per even /24 (odd /24s stay
# empty so no two peers are adjacent and nothing collapses); IPv6 peers one per even /48 of
# 2001:db8::/32. Umbrella /16s (shapes 1 and 2) are 10.U.0.0/16 with /24s of other rules
# inside them.
V4_BASE, V4_SLOTS = 11 << 24, (100 - 11) * 65536 // 2
V6_BASE, V6_SLOTS = 0x20010DB8 << 96, 65536 // 2
V6_PREFIXES = (48, 52, 56, 60, 64)


def _v4(slot: int, rng: random.Random) -> str:
    prefix = rng.randint(24, 32)
    addr = V4_BASE + (2 * slot << 8) + (rng.randrange(1 << (prefix - 24)) << (32 - prefix))
    text = f"{addr >> 24}.{addr >> 16 & 255}.{addr >> 8 & 255}.{addr & 255}"
    return text if prefix == 32 else f"{text}/{prefix}"


def _v6(slot: int, rng: random.Random) -> str:
    prefix = rng.choice(V6_PREFIXES)
    addr = V6_BASE + (2 * slot << 80) + (rng.randrange(1 << (prefix - 48)) << (128 - prefix))
    return str(ipaddress.IPv6Network((addr, prefix)))


def generate_policy(shape: Shape, rules: int, cidrs: int, seed: int = SEED) -> str:
    """The .claw text of one generated shape: `rules` rules of `cidrs` peers each (a tenth of
    them IPv6), every 10th rule ingress, every 25th a deny, plus EXTRA_RULES."""
    rng = random.Random(seed * 10 + shape.number)
    n6 = cidrs // 10
    n4 = cidrs - n6
    slots4 = iter(rng.sample(range(V4_SLOTS), rules * n4))
    slots6 = iter(rng.sample(range(V6_SLOTS), rules * n6))
    out = [
        f"# Generated by benchmarks/run.py (shape {shape.number}, seed {seed}): do not edit.",
        f"policy bench-{shape.name} {{",
        f'  description "benchmark shape {shape.number}: {rules:,} rules x {cidrs:,} CIDRs"',
        "  mode enforce",
        "  applies-to host",
        "",
    ]
    umbrellas: dict[int, int] = {}  # rule index -> umbrella number (its /16 or its /24 inside)
    if rules >= 10:
        for u, i in enumerate(range(0, rules, 50)):
            for j in range(i, min(i + 4, rules)):
                umbrellas[j] = u
    for i in range(rules):
        peers = [_v4(next(slots4), rng) for _ in range(n4)] + [_v6(next(slots6), rng) for _ in range(n6)]
        ports = PORT_SETS[i % len(PORT_SETS)]
        if i in umbrellas:
            u = umbrellas[i]
            if i % 50 == 0:
                peers[0], ports = f"10.{u}.0.0/16", UMBRELLA_PORTS
            else:
                peers[0] = f"10.{u}.{rng.randrange(256)}.0/24"
        if rules > 1 and i % 10 == 9:
            head = "allow ingress from"
        elif rules > 1 and i % 25 == 12:
            head = "deny egress to"
        else:
            head = "allow egress to"
        lines = [", ".join(peers[k:k + 8]) for k in range(0, len(peers), 8)]
        out.append(f"  {head} " + ",\n      ".join(lines))
        out.append(f'    port {", ".join(ports)} reason "bench {i}"')
    out.append("")
    out.extend(f"  {r}" for r in EXTRA_RULES)
    out.append("}")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ ruleset text


def ruleset_stats(text: str) -> dict[str, Any]:
    """Counts from a generated ruleset: rule lines per chain and elements of named sets/maps."""
    chains: dict[str, int] = {}
    elements = 0
    chain: str | None = None
    in_elements = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if chain is not None:
            if line == "}":
                chain = None
            elif not line.startswith(("comment ", "type ")):
                chains[chain] += 1
            continue
        if in_elements:
            if line == "}":
                in_elements = False
            else:
                elements += 1
            continue
        m = re.fullmatch(r"chain (\S+) \{", line)
        if m:
            chain = m.group(1)
            chains[chain] = 0
        elif line.startswith("elements = {"):
            rest = line.removeprefix("elements = {").strip()
            if rest.endswith("}"):
                elements += len([e for e in rest[:-1].split(",") if e.strip()])
            else:
                in_elements = True
    return {"chains": chains, "elements": elements}


# ------------------------------------------------------------------------------ the child


def _import_compiler() -> Any:
    """Import clawpolicy.compiler; while the docs backend module does not exist yet, register a
    stand-in so the backend registry imports (only the nftables target is measured)."""
    sys.path.insert(0, str(REPO))
    if importlib.util.find_spec("clawpolicy.backends.docs") is None:
        stub = types.ModuleType("clawpolicy.backends.docs")

        class _DocsStub:
            name = "docs"
            summary = "stand-in (benchmarks/run.py)"
            enforces = False
            support: dict[Any, Any] = {}

        stub.BACKEND = _DocsStub()  # type: ignore[attr-defined]
        sys.modules["clawpolicy.backends.docs"] = stub
    import clawpolicy.compiler
    return clawpolicy.compiler


def peak_rss_mb() -> tuple[float, float]:
    """This process's peak RSS in MiB: VmHWM, and getrusage's ru_maxrss for comparison.

    ru_maxrss is not enough on its own: Linux carries the parent's peak across fork and exec
    into it (the old mm's high-water mark is folded in at exec), so a child of a parent that
    once held a 100,000-CIDR policy would report that much too. VmHWM belongs to the
    post-exec address space only."""
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    try:
        status = Path("/proc/self/status").read_text(encoding="utf-8")
    except OSError:
        return ru, ru
    m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return (int(m.group(1)) / 1024 if m else ru), ru


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this (fresh) process: a cold compile_paths, then its two phases."""
    t0 = time.perf_counter()
    compiler = _import_compiler()
    from clawpolicy.backends.base import CompileOptions
    from clawpolicy.backends.nftables import BACKEND
    from clawpolicy.lower import load_policies
    import_s = time.perf_counter() - t0
    paths = [Path(p) for p in spec["paths"]]

    if spec.get("profile"):
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
        compiler.compile_paths(paths, ["nftables"])
        prof.disable()
        pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(spec["profile"])
        return {}

    gc.collect()
    t0 = time.perf_counter()
    result = compiler.compile_paths(paths, ["nftables"])
    compile_s = time.perf_counter() - t0
    peak_mb, ru_maxrss_mb = peak_rss_mb()
    if not result.ok:
        errors = [f"{d.location}: {d.message}" for d in result.diagnostics if d.severity.value == "error"]
        return {"error": "compile failed: " + "; ".join(errors[:5])}
    rulesets = {k: v for k, v in result.outputs.items() if k.endswith(".nft")}
    text = b"".join(rulesets.values())
    Path(spec["out"]).write_bytes(text)
    del result, rulesets
    gc.collect()

    # The phases, warm (the LALR parser and the Jinja template are built by now).
    t0 = time.perf_counter()
    loaded = load_policies(paths)
    parse_lower_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for policy in loaded.policies:
        BACKEND.compile(policy, CompileOptions())
    render_s = time.perf_counter() - t0

    stats = ruleset_stats(text.decode("utf-8"))
    return {"import_s": import_s, "compile_s": compile_s, "parse_lower_s": parse_lower_s,
            "render_s": render_s, "peak_mb": peak_mb, "ru_maxrss_mb": ru_maxrss_mb, "bytes": len(text),
            "policy_rules": sum(len(p.rules) for p in loaded.policies), **stats}


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    r = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                       capture_output=True, text=True, env=env, cwd=REPO)
    if r.returncode != 0:
        raise RuntimeError(f"measurement process failed ({r.returncode}):\n{r.stderr.strip()}")
    if spec.get("profile"):
        return {"profile": r.stdout}
    out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    if "error" in out:
        raise RuntimeError(out["error"])
    return out


# ------------------------------------------------------------------------------ nft load


def can_load() -> str | None:
    """None when rulesets can be loaded here; else why not."""
    if os.geteuid() != 0:
        return "not root"
    missing = [t for t in ("ip", "nft", "unshare") if shutil.which(t) is None]
    return f"missing {', '.join(missing)}" if missing else None


@contextmanager
def namespace() -> Iterator[str]:
    """A network namespace of our own, deleted afterwards whatever happens."""
    name = f"cpbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def _unknown_users(text: str) -> list[str]:
    unknown = []
    for name in sorted(set(re.findall(r'meta skuid "([^"]+)"', text))):
        try:
            pwd.getpwnam(name)
        except KeyError:
            unknown.append(name)
    return unknown


def load_ruleset(path: Path, workdir: Path) -> dict[str, Any]:
    """Time `ip netns exec NS nft -f FILE` into a fresh namespace, then count what loaded.

    A ruleset naming a user this machine lacks (the example's `meta skuid "openclaw"`) cannot
    load as is: nft resolves the name while parsing. Then nft runs in a private mount
    namespace where a copy of /etc/passwd with that user added is bind-mounted (the host's
    file is never changed); the timing includes that wrapper (a few ms)."""
    unknown = _unknown_users(path.read_text(encoding="utf-8"))
    with namespace() as ns:
        argv = ["ip", "netns", "exec", ns, "nft", "-f", str(path)]
        if unknown:
            passwd = workdir / "passwd"
            body = Path("/etc/passwd").read_text(encoding="utf-8")
            body += "".join(f"{u}:x:{60000 + k}:{60000 + k}::/nonexistent:/usr/sbin/nologin\n"
                            for k, u in enumerate(unknown))
            passwd.write_text(body, encoding="utf-8")
            passwd.chmod(0o644)
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'mount --bind "$1" /etc/passwd && shift && exec "$@"', "sh", str(passwd), *argv]
        t0 = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, text=True)
        load_s = time.perf_counter() - t0
        if r.returncode != 0:
            return {"load_error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else
                    f"nft exited {r.returncode}"}
        listed = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"],
                                capture_output=True, text=True, check=True)
    loaded = 0
    for obj in json.loads(listed.stdout).get("nftables", []):
        for kind in ("set", "map"):
            if kind in obj:
                loaded += len(obj[kind].get("elem", []))
    return {"load_s": load_s, "loaded_elements": loaded, "users_added": unknown}


# ------------------------------------------------------------------------------ the parent


def measure(shape: Shape, quick: bool, repeat: int | None, workdir: Path,
            loader: str | None, profile: int = 0) -> dict[str, Any]:
    rules, cidrs = QUICK.get(shape.number, (shape.rules, shape.cidrs)) if quick else (shape.rules, shape.cidrs)
    shown = Shape(shape.number, shape.name, rules, cidrs, shape.aerleon_s, shape.aerleon_mb)
    if shape.rules:
        source = workdir / f"bench-{shape.name}.claw"
        t0 = time.perf_counter()
        source.write_text(generate_policy(shape, rules, cidrs), encoding="utf-8")
        generate_s = time.perf_counter() - t0
    else:
        source, generate_s = EXAMPLE, 0.0
    out = workdir / f"bench-{shape.name}.nft"
    spec: dict[str, Any] = {"paths": [str(source)], "out": str(out), "profile": profile}
    if profile:
        return run_child(spec)
    k = repeat if repeat is not None else (1 if shown.large else 3)
    runs = [run_child(spec) for _ in range(k)]
    best: dict[str, Any] = dict(runs[0])
    for key in ("import_s", "compile_s", "parse_lower_s", "render_s"):
        best[key] = min(r[key] for r in runs)
    best["peak_mb"] = max(r["peak_mb"] for r in runs)  # the largest seen: conservative
    chains = best["chains"]
    row: dict[str, Any] = {
        "shape": shape.number, "name": shape.name, "rules": rules, "cidrs": cidrs,
        "label": shown.label, "source": os.path.relpath(source, REPO) if not shape.rules else None,
        "source_bytes": source.stat().st_size, "generate_s": generate_s, "repeat": k, **best,
        "nft_rules": sum(chains.values()),
        "egress_path_rules": [chains.get("output", 0), chains.get("egress", 0)],
        "ingress_path_rules": [chains.get("input", 0), chains.get("ingress", 0)],
        "rule_chains": sum(1 for c in chains if c not in BASE_AND_POLICY_CHAINS
                           and not c.endswith("_default")),
        "aerleon_s": None if quick else shape.aerleon_s,
        "aerleon_mb": None if quick else shape.aerleon_mb,
    }
    if loader is None:
        loads = [load_ruleset(out, workdir) for _ in range(k)]
        errors = [x["load_error"] for x in loads if "load_error" in x]
        if errors:
            row["load_error"] = errors[0]
        else:
            row["load_s"] = min(x["load_s"] for x in loads)
            row["loaded_elements"] = loads[0]["loaded_elements"]
            row["users_added"] = loads[0]["users_added"]
    else:
        row["load_error"] = f"not loaded: {loader}"
    del row["chains"]
    return row


def _num(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}"


def table(rows: Sequence[dict[str, Any]]) -> str:
    head = ("shape", "rules×CIDRs", "parse+lower s", "render s", "compile s", "peak MB",
            "ruleset KB", "elements", "nft rules", "chain rules per packet", "nft -f load s")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        if "load_error" in r:
            load = "n/a"
        else:
            load = _num(r["load_s"])
            if r["loaded_elements"] != r["elements"]:
                load += f" (listed {r['loaded_elements']:,} elements!)"
        out, pol = r["egress_path_rules"]
        cells = (f"{r['shape']} {r['name']}", r["label"], _num(r["parse_lower_s"]),
                 _num(r["render_s"]), _num(r["compile_s"]), _num(r["peak_mb"], 0),
                 f"{r['bytes'] / 1024:,.0f}", f"{r['elements']:,}", f"{r['nft_rules']:,}",
                 f"{out + pol} ({out} output + {pol} egress)", load)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison(rows: Sequence[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        if r.get("aerleon_s"):
            s = (f"- shape {r['shape']} ({r['label']}): Aerleon 1.18 {r['aerleon_s']:g} s, "
                 f"clawpolicy {r['compile_s']:.2f} s: {r['aerleon_s'] / r['compile_s']:.1f}× faster")
            if r.get("aerleon_mb"):
                s += f"; peak memory {r['aerleon_mb']:g} MB vs {r['peak_mb']:.0f} MB"
            out.append(s)
    if out:
        out.insert(0, "Compile time against the Aerleon 1.18 reference figures quoted in the issue "
                      "(their machine, not this run; a ratio, not a race):")
    return out


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in
                    Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "")
    except OSError:
        pass
    nft = subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout.strip() \
        if shutil.which("nft") else None
    return {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
            "cpus": os.cpu_count(), "nft": nft}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shapes 10x smaller (a smoke run)")
    ap.add_argument("--shape", type=int, action="append", choices=[s.number for s in SHAPES],
                    help="run only this shape (repeatable); default all")
    ap.add_argument("--repeat", type=int, help="runs per shape, the minimum time is reported "
                    "(default 3; 1 for the 100,000-CIDR shape)")
    ap.add_argument("--json", type=Path, metavar="FILE", help="also save the results as JSON")
    ap.add_argument("--no-load", action="store_true", help="skip the nft -f load")
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="generate policies and rulesets into DIR and keep them")
    ap.add_argument("--profile", type=int, nargs="?", const=25, default=0, metavar="N",
                    help="instead of the table: cProfile one compile per shape, top N by cumtime")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        spec = json.loads(args.child)
        result = child(spec)
        if not spec.get("profile"):
            print(json.dumps(result))
        return 0
    if args.repeat is not None and args.repeat < 1:
        ap.error("--repeat must be at least 1")
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the namespace and temp dir are removed.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)

    shapes = [s for s in SHAPES if not args.shape or s.number in args.shape]
    loader = "--no-load" if args.no_load else can_load()
    rows = []
    with tempfile.TemporaryDirectory(prefix="clawpolicy-bench-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for shape in shapes:
            if args.profile:
                print(f"## shape {shape.number} {shape.name}\n")
                print(measure(shape, args.quick, 1, workdir, loader, args.profile)["profile"])
                continue
            row = measure(shape, args.quick, args.repeat, workdir, loader)
            rows.append(row)
            print(f"shape {row['shape']} {row['name']}: compile {row['compile_s']:.3f} s "
                  f"(min of {row['repeat']})", file=sys.stderr, flush=True)
    if args.profile:
        return 0

    info = machine()
    print(f"clawpolicy benchmark{' (--quick: shapes 10x smaller)' if args.quick else ''}: "
          f"Python {info['python']}, {info['nft'] or 'no nft'}, {info['cpus']} CPUs "
          f"{info['cpu']}".rstrip())
    print()
    print(table(rows))
    print()
    print("parse+lower and render are measured warm after the cold `compile s` in the same "
          "process; peak MB is that process's peak RSS; chain rules per packet counts the "
          "rule lines of the output and egress chains (then one rule chain's counter and verdict).")
    if loader is not None:
        print(f"nft -f load skipped: {loader}.")
    for row in rows:
        if "load_error" in row and not row["load_error"].startswith("not loaded"):
            print(f"shape {row['shape']}: nft -f failed: {row['load_error']}")
        if row.get("users_added"):
            print(f"shape {row['shape']}: loaded with user(s) {', '.join(row['users_added'])} "
                  "added in a private mount namespace (this machine lacks them).")
    lines = comparison(rows)
    if lines:
        print()
        print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "quick": args.quick, "seed": SEED,
                                         "results": rows}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
