"""Adoption: `init --from-openclaw` and `observe` (issue 9)."""

from __future__ import annotations

from clawpolicy.commands import Subparsers


def register(sub: Subparsers) -> None:
    """Nothing yet."""
