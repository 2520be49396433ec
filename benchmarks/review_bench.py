#!/usr/bin/env python3
"""Whole-process times of the review commands on the 100,000-network policy (issue 17,
item 10; `make bench`). Prints a Markdown table; asserts nothing (figures are for people).

Inputs come from review_shapes.py (deterministic). Each row is `python -m clawpolicy.cli
...` as a user runs it, interpreter start included, stdout to a pipe (so no progress
display), the median of --repeat runs; the table also gives the exit status and the size of
what was printed, so a row that got fast by failing, or a Markdown comment over GitHub's
65,536 characters, shows.

    python benchmarks/review_bench.py                  # 100,000 networks, 150,000 flows
    python benchmarks/review_bench.py --networks 10000 --flows 15000 --repeat 1
    python benchmarks/review_bench.py --keep /tmp/scale --only diff
    python benchmarks/review_bench.py --repo /path/to/main --no-huge   # the same rows, another checkout
    python benchmarks/review_bench.py --split        # also: CPU in load_policies vs after it

--split runs each row once more in one process (`cli.main`, imports done before timing) with
`load_policies` timed, and prints the command's own share: what is left once loads are fast.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from review_shapes import CHANGES, write  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
GOAL_S = 5.0


def commands(paths: dict[str, Path], huge: bool) -> list[tuple[str, list[str]]]:
    """(label, arguments) of each row: diff of the one-address change in both formats with and
    without artifacts; with `huge`, the other changes too (text and Markdown, no artifacts)."""
    old, new = str(paths["old"]), str(paths["one-address"])
    rows = [
        ("diff one-address (text)", ["diff", old, new]),
        ("diff one-address --no-artifacts", ["diff", old, new, "--no-artifacts"]),
        ("diff one-address --format markdown", ["diff", old, new, "--format", "markdown"]),
        ("diff one-address --format markdown --no-artifacts", ["diff", old, new, "--format", "markdown",
                                                               "--no-artifacts"]),
    ]
    if huge:
        for change in CHANGES:
            if change != "one-address":
                rows.append((f"diff {change} --format markdown", ["diff", old, str(paths[change]),
                                                                  "--format", "markdown"]))
                rows.append((f"diff {change} --no-artifacts", ["diff", old, str(paths[change]), "--no-artifacts"]))
    rows += [
        ("lint", ["lint", old]),
        ("test (no tests)", ["test", old]),
        ("test (6 tests)", ["test", str(paths["tested"])]),
        ("simulate (flows.jsonl)", ["simulate", old, str(paths["flows"])]),
    ]
    return rows


def run(args: list[str], repeat: int, repo: Path = REPO) -> tuple[float, float, int, int]:
    """Median wall and CPU (user + system) seconds, exit status and characters printed of
    `clawpolicy ARGS`. CPU time is the steadier figure on a shared machine."""
    times, cpus, status, size = [], [], 0, 0
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "clawpolicy.cli", *args], capture_output=True,
                              text=True, cwd=repo)
        times.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        status, size = proc.returncode, len(proc.stdout)
        if proc.returncode not in (0, 1):
            print(f"{args[0]}: exit {proc.returncode}: {proc.stderr.strip()[-400:]}", file=sys.stderr)
    return statistics.median(times), statistics.median(cpus), status, size


SPLIT = """
import sys, time, io, contextlib, importlib
import clawpolicy.lower as lower
from clawpolicy import cli
spent = [0.0]
real = lower.load_policies
def timed(*a, **k):
    t = time.process_time()
    try:
        return real(*a, **k)
    finally:
        spent[0] += time.process_time() - t
for name in ("clawpolicy.commands.diff", "clawpolicy.commands.review", "clawpolicy.commands.test",
             "clawpolicy.commands.logs", "clawpolicy.compiler"):
    module = importlib.import_module(name)
    if hasattr(module, "load_policies"):
        module.load_policies = timed
t = time.process_time()
with contextlib.redirect_stdout(io.StringIO()):
    cli.main(sys.argv[1:])
print(time.process_time() - t, spent[0])
"""


def split(args: list[str], repo: Path = REPO) -> tuple[float, float]:
    """CPU seconds of `clawpolicy ARGS` in one process after imports, and of its loads."""
    proc = subprocess.run([sys.executable, "-c", SPLIT, *args], capture_output=True, text=True, cwd=repo)
    total, load = (float(x) for x in proc.stdout.split()[-2:])
    return total, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--networks", type=int, default=100_000)
    parser.add_argument("--flows", type=int, default=150_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the inputs here (and keep them)")
    parser.add_argument("--only", help="rows whose label contains this text")
    parser.add_argument("--no-huge", action="store_true", help="only the one-address diff")
    parser.add_argument("--split", action="store_true",
                        help="also time each command in one process: its loads and the rest")
    parser.add_argument("--repo", type=Path, default=REPO,
                        help="time the clawpolicy of another checkout (e.g. before a change)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="review-bench-") as tmp:
        folder = args.keep or Path(tmp)
        paths = write(folder, args.networks, args.flows)
        print(f"policy: {args.networks:,} networks (+ a 1% blocklist), {args.flows:,} flows; "
              f"median of {args.repeat}; goal <= {GOAL_S:.0f} s\n")
        extra = " load CPU s | after-load CPU s |" if args.split else ""
        print("| command | wall s | CPU s | exit | stdout chars |" + extra)
        print("|---|---:|---:|---:|---:|" + ("---:|---:|" if args.split else ""))
        for label, cli in commands(paths, huge=not args.no_huge):
            if args.only and args.only not in label:
                continue
            seconds, cpu, status, size = run(cli, args.repeat, args.repo.resolve())
            flag = "" if seconds <= GOAL_S else " (over)"
            cells = ""
            if args.split:
                total, load = split(cli, args.repo.resolve())
                cells = f" {load:.2f} | {total - load:.2f} |"
            print(f"| {label} | {seconds:.2f}{flag} | {cpu:.2f} | {status} | {size:,} |{cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
