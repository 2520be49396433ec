"""The one switch that lets golden and captured-data tests rewrite their own expected files.

`CLAWPOLICY_REGENERATE=1` (exactly `1`: `0`, `no` or an empty value mean no) rewrites them, for
`make golden` after a reviewed change. It is refused when `CI` is set: CI must compare with the
reviewed files, and a rewrite there would make every golden test pass whatever the compiler does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pytest

VARIABLE = "CLAWPOLICY_REGENERATE"


def requested(env: Mapping[str, str] | None = None) -> bool:
    """Whether regeneration is asked for; raises RuntimeError when it is asked for under CI."""
    env = os.environ if env is None else env
    if env.get(VARIABLE) != "1":
        return False
    if env.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        raise RuntimeError(f"{VARIABLE}=1 is refused when CI is set: CI compares with the "
                           "reviewed files and never rewrites them")
    return True


def regenerate() -> bool:
    """`requested()` for a test: a refusal fails the test that asked."""
    try:
        return requested()
    except RuntimeError as exc:
        pytest.fail(str(exc))
