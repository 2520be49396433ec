"""`compile --validate`: both checkers run, a good ruleset passes, a broken one is caught
(so the check can fail), and named users are checked without existing on this machine."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest

from clawpolicy.backends.base import CompileOptions
from clawpolicy.backends.nftables import render
from clawpolicy.lower import load_policies
from clawpolicy.validate import validate_nft

pytestmark = pytest.mark.root
EXAMPLE = Path(__file__).resolve().parents[2] / "examples/openclaw-workstation.claw"


def _example_text() -> str:
    result = load_policies([EXAMPLE])
    return render(result.policies[0], CompileOptions())


def test_generated_ruleset_passes_both_checkers() -> None:
    checks = validate_nft(_example_text())
    assert {c.tool for c in checks} == {"libnftables", "nft -c"}
    assert all(c.ok for c in checks), checks
    assert all("user openclaw checked as uid 0" in c.message for c in checks)


@pytest.mark.parametrize("breakage", [
    ("counter accept", "counter acept"),                                  # a typo
    ("type ipv4_addr . inet_proto", "type ipv4_addr . inet_protocol"),    # a bad type
    ("goto egress_default", "goto no_such_chain"),                        # a dangling jump
])
def test_broken_ruleset_is_rejected(breakage: tuple[str, str]) -> None:
    text = _example_text()
    assert breakage[0] in text
    checks = validate_nft(text.replace(breakage[0], breakage[1], 1))
    assert checks and not any(c.ok for c in checks), checks


def test_says_plainly_when_nothing_can_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_nftables(name: str, *args: Any, **kw: Any) -> Any:
        if name == "nftables":
            raise ImportError(name)
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_nftables)
    monkeypatch.setattr("shutil.which", lambda _: None)
    (check,) = validate_nft(_example_text())
    assert check.tool == "none" and "NOT validated" in check.message
