#!/usr/bin/env python3
"""Overlap blow-up figures (`make bench`): element count, compile time, `nft -f` time.

Not a test: it prints a Markdown table and asserts nothing about time. Each pathological
shape of overlap_shapes.py is generated at a few scales; each compile runs in this process
(render of the nftables target, parse and lowering included); each ruleset is loaded with
`nft -f` into a network namespace made for the purpose (never the host's) by run.py's loader.
"Elements" counts verdict elements (`: jump`), in named maps and in anonymous port maps.

    python benchmarks/overlap_bench.py                 # the issue's scale (300) and below
    python benchmarks/overlap_bench.py --sizes 50 100  # other scales
    python benchmarks/overlap_bench.py --no-load       # no root: compile figures only
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import run  # noqa: E402  (benchmarks/run.py: the namespace loader)
from overlap_shapes import SHAPES, needed  # noqa: E402

from clawpolicy.backends.base import CompileOptions  # noqa: E402
from clawpolicy.backends.nftables import render  # noqa: E402
from clawpolicy.lower import load_policies  # noqa: E402


def measure(name: str, n: int, workdir: Path, load: bool) -> dict[str, object]:
    src = workdir / f"{name}-{n}.claw"
    src.write_text(SHAPES[name](n), encoding="utf-8")
    t0 = time.perf_counter()
    result = load_policies([src])
    if not result.ok:
        raise SystemExit(f"{src}: does not compile: {result.diagnostics[:3]}")
    text = render(result.policies[0], CompileOptions())
    compile_s = time.perf_counter() - t0
    out = workdir / f"{name}-{n}.nft"
    out.write_text(text, encoding="utf-8")
    row: dict[str, object] = {"shape": name, "n": n, "needed": needed(n, name),
                              "elements": text.count(" : jump "), "chains": text.count("\n\tchain "),
                              "bytes": len(text.encode()), "compile_s": compile_s, "load_s": None}
    if load:
        loaded = run.load_ruleset(out, workdir)
        row["load_s"] = loaded.get("load_s")
        if "load_error" in loaded:
            row["load_s"] = f"error: {loaded['load_error']}"
    return row


def table(rows: Sequence[dict[str, object]]) -> str:
    lines = ["| shape | n | policy size | elements | chains | ruleset | compile | `nft -f` |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        load = r["load_s"]
        load_text = "n/a" if load is None else (f"{load:.3f} s" if isinstance(load, float) else str(load))
        lines.append(f"| {r['shape']} | {r['n']} | {r['needed']:,} | {r['elements']:,} | {r['chains']:,} | "
                     f"{int(r['bytes']) / 1024:,.0f} KiB | {float(r['compile_s']):.3f} s | {load_text} |")  # type: ignore[arg-type]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[75, 150, 300])
    parser.add_argument("--shape", choices=sorted(SHAPES), action="append")
    parser.add_argument("--no-load", action="store_true")
    args = parser.parse_args(argv)
    why = None if args.no_load else run.can_load()
    load = not args.no_load and why is None
    rows = []
    with tempfile.TemporaryDirectory(prefix="clawpolicy-overlap-") as tmp:
        for name in args.shape or list(SHAPES):
            for n in args.sizes:
                rows.append(measure(name, n, Path(tmp), load))
    print("## Overlap shapes (issue 16, item 8)\n")
    print(table(rows))
    if why:
        print(f"\n`nft -f` not measured: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
