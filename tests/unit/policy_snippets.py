"""One helper for backend unit tests: a policy body in a file, lowered to IR.

Test modules in this directory import it directly (pytest puts tests/unit on sys.path, as
there is no __init__.py here)."""

from __future__ import annotations

from pathlib import Path

from clawpolicy.ir import Policy
from clawpolicy.lower import load_policies

HOST_ENFORCE = "mode enforce\n applies-to host"


def snippet_policy(tmp_path: Path, body: str, header: str = HOST_ENFORCE) -> Policy:
    """`policy p { header body }` written to tmp_path/p.claw and lowered; fails on errors."""
    src = tmp_path / "p.claw"
    src.write_text(f"policy p {{\n {header}\n{body}\n}}\n", encoding="utf-8")
    result = load_policies([src])
    assert result.ok, result.diagnostics
    return result.policies[0]
