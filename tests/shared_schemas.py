"""Where the suite finds the upstream schemas: ../shared/schemas beside the clone (SOURCES.md
there says where each came from), or $CLAWPOLICY_SCHEMAS. They are never copied into the project.

In CI (``$CI`` set) a missing schema fails the test; elsewhere it skips it, so a clone without
shared/ beside it can still run the rest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = Path(os.environ.get("CLAWPOLICY_SCHEMAS", REPO.parent / "shared" / "schemas"))


def schema_path(relative: str) -> Path:
    """The path of one upstream schema file; fails (CI) or skips (elsewhere) if it is missing."""
    path = SCHEMAS / relative
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing (CI has ../shared/schemas beside the clone)")
        pytest.skip(f"{path} not found (set CLAWPOLICY_SCHEMAS)")
    return path
