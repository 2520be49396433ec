"""The package type-checks under mypy --strict, and the tree passes ruff (both configured in
pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

from shared_schemas import REPO


def test_package_is_strictly_typed() -> None:
    r = subprocess.run([sys.executable, "-m", "mypy", "clawpolicy"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_tree_passes_ruff() -> None:
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "clawpolicy", "tests",
                        "benchmarks", "scripts"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
