"""`make bench` keeps working: the quick shapes compile and the table prints.
No timing is asserted (the figures are for people, see benchmarks/README.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_benchmark_runs() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/run.py"), "--quick", "--no-load",
                           "--repeat", "1"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "| shape |" in proc.stdout and "100k-cidrs" in proc.stdout


def test_aerleon_benchmark_runs_without_aerleon() -> None:
    """The side-by-side benchmark's clawpolicy half (no install, no packets, one small shape)."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/aerleon_bench.py"), "--no-aerleon",
                           "--no-packets", "--repeat", "1", "--shape", "100x100"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "| 100x100 | claw |" in proc.stdout and "clawpolicy --help" in proc.stdout
    assert "| 100x100 | aerleon | skipped |" in proc.stdout


def test_review_benchmark_runs() -> None:
    """The review commands' table at a small scale (every row a whole process)."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/review_bench.py"), "--networks", "300",
                           "--flows", "300", "--repeat", "1", "--no-huge"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "| diff one-address --format markdown |" in proc.stdout and "| simulate (flows.jsonl) |" in proc.stdout
    assert "| lint |" in proc.stdout and "| test (6 tests) | " in proc.stdout
