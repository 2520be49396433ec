"""Log-only dry runs that lead to enforcement: `explain`, `simulate`, `suggest` (issue 8)."""

from __future__ import annotations

from clawpolicy.commands import Subparsers


def register(sub: Subparsers) -> None:
    """Nothing yet."""
