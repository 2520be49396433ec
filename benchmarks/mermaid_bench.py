#!/usr/bin/env python3
"""What rendering a Mermaid diagram costs with mermaid-cli (`python benchmarks/mermaid_bench.py`):
a table, no assertions. It tells whether tests/unit/test_mermaid_render.py should batch: one
diagram per mmdc run pays node's and chromium's start-up each time; one run over a Markdown
file of N diagrams pays it once. The diagram is the workstation example's docs diagram.

Needs the test tools (`scripts/setup.sh --test-tools`); without them it says so and exits 0.

    python benchmarks/mermaid_bench.py
    python benchmarks/mermaid_bench.py --repeat 5 --batch 1 8 32
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MMDC = REPO / ".tools" / "node_modules" / ".bin" / "mmdc"
PUPPETEER = REPO / ".tools" / "puppeteer.json"
SOURCE = REPO / "generated" / "openclaw-workstation" / "docs" / "README.md"


def render_seconds(diagram: str, n: int, work: Path) -> float:
    """Wall time of one mmdc run over a Markdown file holding `n` copies of `diagram`."""
    md = work / f"in{n}.md"
    md.write_text("\n".join(f"```mermaid\n{diagram}```\n" for _ in range(n)), encoding="utf-8")
    start = time.perf_counter()
    r = subprocess.run([str(MMDC), "--quiet", "--puppeteerConfigFile", str(PUPPETEER), "--input", str(md),
                        "--output", str(work / f"out{n}.md")], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"mmdc failed: {r.stderr.strip()[-500:]}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per batch size; the median is shown")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 5], help="diagrams per mmdc run")
    args = ap.parse_args()
    if not (MMDC.exists() and shutil.which("node")):
        print("mermaid bench: skipped (no mmdc: run scripts/setup.sh --test-tools)")
        return 0
    match = re.search(r"```mermaid\n(.*?)```", SOURCE.read_text(encoding="utf-8"), re.S)
    if match is None:
        raise SystemExit(f"no Mermaid block in {SOURCE}")
    diagram = match.group(1)
    print("| diagrams per mmdc run | median s (whole run) | s per diagram |")
    print("|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="mermaid-bench-") as tmp:
        for n in args.batch:
            runs = [render_seconds(diagram, n, Path(tmp)) for _ in range(args.repeat)]
            median = statistics.median(runs)
            print(f"| {n} | {median:.2f} | {median / n:.2f} |")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
