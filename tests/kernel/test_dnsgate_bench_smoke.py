"""`make bench` keeps working for the DNS gate: a small run prints its table (no timing is
asserted; the figures are for people, benchmarks/README.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]


def test_dnsgate_benchmark_runs() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/dnsgate_bench.py"), "--queries", "300",
                           "--latency-queries", "100"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "| through the gate |" in proc.stdout and "added by the gate" in proc.stdout
