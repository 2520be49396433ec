"""registry.check_support: which rules the selected targets cannot enforce, and when that is
not a problem (another selected rule covers it; the user named targets and another enforces it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawpolicy.backends.registry import check_support
from clawpolicy.errors import Severity
from clawpolicy.lower import load_policies

POD = "applies-to pods app=x in namespace ai"
NAMES = 'allow egress to api.example.com port 443/tcp reason "api"'

# (case, extra rule, the names rule's diagnostic code and severity)
COVER = [
    ("every address, same port", 'allow egress to 0.0.0.0/0, ::/0 port 443/tcp reason "web"',
     ("covered", Severity.NOTE)),
    ("every address, every port", 'allow egress to 0.0.0.0/0, ::/0 reason "all"',
     ("covered", Severity.NOTE)),
    ("IPv4 only: the names' IPv6 addresses are refused", 'allow egress to 0.0.0.0/0 port 443/tcp reason "v4"',
     ("unenforced", Severity.WARNING)),
    ("another port", 'allow egress to 0.0.0.0/0, ::/0 port 80/tcp reason "http"',
     ("unenforced", Severity.WARNING)),
    ("a wide deny does not cover", 'deny egress to 0.0.0.0/0, ::/0 port 443/tcp reason "no"',
     ("unenforced", Severity.WARNING)),
    ("ingress does not cover egress", 'allow ingress from 0.0.0.0/0, ::/0 port 443/tcp reason "in"',
     ("unenforced", Severity.WARNING)),
]


def _diagnostics(tmp_path: Path, extra: str, targets: list[str], explicit: bool = False,
                 strict: bool = False) -> list[tuple[str, Severity, str]]:
    path = tmp_path / "p.claw"
    path.write_text(f"policy p {{\n  {POD}\n  {NAMES}\n  {extra}\n}}\n")
    loaded = load_policies([path])
    assert loaded.ok, loaded.diagnostics
    policy = loaded.policies[0]
    return [(d.code, d.severity, d.message) for d in check_support(policy, targets, strict,
                                                                  explicit=explicit)
            if d.location is not None and d.location.line == 3]


def test_names_covered_by_a_wider_enforced_allow(tmp_path: Path, subtests: pytest.Subtests) -> None:
    for case, extra, (code, severity) in COVER:
        with subtests.test(case=case):
            found = _diagnostics(tmp_path, extra, ["k8s"], strict=True)
            assert [(c, s) for c, s, _ in found] == [
                (code, Severity.ERROR if severity is Severity.WARNING else severity)]


def test_named_targets_leave_the_rest_to_others(tmp_path: Path) -> None:
    found = _diagnostics(tmp_path, "", ["seccomp"], explicit=True, strict=True)
    assert [(c, s) for c, s, _ in found] == [("enforced-elsewhere", Severity.NOTE)]
    assert found[0][2].endswith("domain names enforced only by other targets (nftables)")
    found = _diagnostics(tmp_path, "", ["seccomp"], explicit=False, strict=True)
    assert [(c, s) for c, s, _ in found] == [("unenforced", Severity.ERROR)]
