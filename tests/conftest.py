"""Shared paths for the suite. Tests run from any directory; artifacts name sources relative
to the working directory, so tests that compile the examples chdir to the repository."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.claw"))


@pytest.fixture
def in_repo() -> Iterator[Path]:
    old = Path.cwd()
    os.chdir(REPO)
    try:
        yield REPO
    finally:
        os.chdir(old)
