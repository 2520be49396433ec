"""`diff` risk: it follows the size and kind of what is newly reachable, whichever edit made it
so (a rule's peers edited, a new rule, a define, an included file, the catalog), and explicit
protections that disappear are reported even where default deny still holds.

Instances differ on purpose from the issue's (10.20.4.0/22 → 10.0.0.0/8, 169.254.169.254).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from pathlib import Path

import pytest

import clawpolicy.includes
from clawpolicy.catalog import CatalogGroup, load_catalog
from clawpolicy.cli import main
from clawpolicy.evaluate import Flow, evaluate
from clawpolicy.ir import Direction, Policy, Protocol
from clawpolicy.lower import load_policies
from clawpolicy.review.diff import Change, Risk, diff_policies
from clawpolicy.review.reach import reach_changes

HEADER = "mode enforce\n  applies-to host\n  dns local"


def _load(folder: Path, body: str, extra: Mapping[str, str] | None = None) -> Policy:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (extra or {}).items():
        (folder / name).write_text(text, encoding="utf-8")
    head = 'include "defs.claw"\n' if extra and "defs.claw" in extra else ""
    (folder / "p.claw").write_text(f"{head}policy p {{\n  {HEADER}\n{body}\n}}\n", encoding="utf-8")
    result = load_policies([folder / "p.claw"])
    assert result.ok, result.diagnostics
    return result.policies[0]


def _reach(changes: list[Change]) -> list[Change]:
    return [c for c in changes if c.category == "reach" and c.summary.endswith("now allowed")]


# name: (old body, new body, expected risk of the widest widening, words in its `why`)
EDITS: dict[str, tuple[str, str, Risk, str]] = {
    "edit: a /24 becomes a /8": (
        'allow egress to 192.168.10.0/24 port 8443/tcp reason "svc"',
        'allow egress to 192.0.0.0/8 port 8443/tcp reason "svc"', Risk.HIGH, "wide range"),
    "edit: IPv6 /48 becomes a /24": (
        'allow egress to 2001:db8:1::/48 port 443/tcp reason "svc"',
        'allow egress to 2001:d00::/24 port 443/tcp reason "svc"', Risk.HIGH, "wide range"),
    "edit: ingress /24 becomes a /8": (
        'allow ingress from 172.16.9.0/24 port 9100/tcp reason "scrape"',
        'allow ingress from 172.0.0.0/8 port 9100/tcp reason "scrape"', Risk.HIGH, "wide range"),
    "edit: a /22 becomes a /16 (not wide)": (
        'allow egress to 10.30.4.0/22 port 443/tcp reason "svc"',
        'allow egress to 10.30.0.0/16 port 443/tcp reason "svc"', Risk.MEDIUM, "new egress"),
    "edit: widening over a removed deny (two pieces, one rule)": (
        'allow egress to 10.30.4.0/22 port 443/tcp reason "svc"\n'
        'deny egress to 10.99.0.0/16 reason "lab"',
        'allow egress to 10.0.0.0/8 port 443/tcp reason "svc"', Risk.HIGH, "wide range"),
    "new rule: two distant /9s": (
        'allow egress to 192.0.2.1 port 443/tcp reason "a"',
        'allow egress to 192.0.2.1 port 443/tcp reason "a"\n'
        'allow egress to 11.0.0.0/9, 13.128.0.0/9 port 443/tcp reason "b"', Risk.HIGH, "wide range"),
    "new rule: one /9 (half a /8, not wide)": (
        'allow egress to 192.0.2.1 port 443/tcp reason "a"',
        'allow egress to 192.0.2.1 port 443/tcp reason "a"\n'
        'allow egress to 13.128.0.0/9 port 443/tcp reason "b"', Risk.MEDIUM, "new egress"),
    "define: gains a wide range": (
        'define svc = 198.51.100.0/24\n  allow egress to @svc port 443/tcp reason "svc"',
        'define svc = 198.51.100.0/24, 44.0.0.0/8\n  allow egress to @svc port 443/tcp reason "svc"',
        Risk.HIGH, "wide range"),
    "define: gains a metadata endpoint": (
        'define svc = 198.51.100.0/24\n  allow egress to @svc reason "svc"',
        'define svc = 198.51.100.0/24, 169.254.170.0/24\n  allow egress to @svc reason "svc"',
        Risk.HIGH, "metadata"),
    "define: gains a public-suffix wildcard": (
        'define svc = api.example.net\n  allow egress to @svc port 443/tcp reason "svc"',
        'define svc = api.example.net, *.co.jp\n  allow egress to @svc port 443/tcp reason "svc"',
        Risk.HIGH, "public suffix"),
    "define: gains mDNS": (
        'define lan = 192.168.1.0/24\n  allow egress to @lan port 5353/udp reason "printers"',
        'define lan = 192.168.1.0/24, ff00::/8\n  allow egress to @lan port 5353/udp reason "printers"',
        Risk.HIGH, "mDNS"),
}

INCLUDE_OLD = "define shared = 203.0.113.0/24\n"
INCLUDE_NEW = "define shared = 203.0.113.0/24, 20.0.0.0/7\n"


def _widest(changes: list[Change]) -> Change:
    reach = _reach(changes)
    assert reach, [c.summary for c in changes]
    return min(reach, key=lambda c: -c.risk.rank)


def test_risk_follows_what_is_newly_reachable(tmp_path: Path, subtests: pytest.Subtests) -> None:
    for n, (name, (old_body, new_body, risk, why)) in enumerate(EDITS.items()):
        with subtests.test(msg=name):
            old = _load(tmp_path / f"{n}o", old_body)
            new = _load(tmp_path / f"{n}n", new_body)
            top = _widest(diff_policies(old, new))
            assert top.risk is risk, (top.summary, top.why)
            assert why in top.why, top.why


def test_risk_of_a_widening_made_in_an_included_file(tmp_path: Path) -> None:
    body = 'allow egress to @shared port 443/tcp reason "shared"'
    old = _load(tmp_path / "o", body, {"defs.claw": INCLUDE_OLD})
    new = _load(tmp_path / "n", body, {"defs.claw": INCLUDE_NEW})
    top = _widest(diff_policies(old, new))
    assert top.risk is Risk.HIGH and "wide range" in top.why, (top.summary, top.why)


# name: (group, field, value added, expected risk, words in the why)
CATALOG_EDITS: dict[str, tuple[str, str, str, Risk, str]] = {
    "group gains a wide range": ("anthropic", "addresses", "52.0.0.0/8", Risk.HIGH, "wide range"),
    "group gains a public-suffix wildcard": ("anthropic", "wildcards", "github.io", Risk.HIGH, "public suffix"),
    "group gains one host": ("anthropic", "fqdns", "console.anthropic.com", Risk.MEDIUM, "new egress"),
}


def test_risk_of_a_catalog_change(tmp_path: Path, subtests: pytest.Subtests,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    body = 'allow egress to anthropic reason "llm"'
    real = load_catalog()
    old = _load(tmp_path / "o", body)
    for n, (name, (group, field, value, risk, why)) in enumerate(CATALOG_EDITS.items()):
        with subtests.test(msg=name):
            changed: CatalogGroup = dataclasses.replace(
                real[group], **{field: tuple(sorted((*getattr(real[group], field), value)))})
            monkeypatch.setattr(clawpolicy.includes, "load_catalog", lambda c=changed, g=group: {**real, g: c})
            new = _load(tmp_path / f"n{n}", body)
            monkeypatch.undo()
            top = _widest(diff_policies(old, new))
            assert top.risk is risk, (top.summary, top.why)
            assert why in top.why, top.why


def test_fail_on_high_follows_a_widening_edit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old_body, new_body = EDITS["edit: a /24 becomes a /8"][:2]
    for name, body in (("old.claw", old_body), ("new.claw", new_body)):
        (tmp_path / name).write_text(f"policy p {{\n  {HEADER}\n{body}\n}}\n", encoding="utf-8")
    assert main(["diff", str(tmp_path / "old.claw"), str(tmp_path / "new.claw"), "--no-artifacts",
                 "--fail-on", "high", "--format", "json"]) == 1
    assert "addresses newly reachable" in capsys.readouterr().out


# name: (old body, new body, what the low change names, or None when no such change is due)
PROTECTIONS: dict[str, tuple[str, str, str | None]] = {
    "Azure WireServer deny removed": (
        'deny egress to 168.63.129.16 reason "wireserver"', "", "168.63.129.16"),
    "IPv6 mDNS deny removed": (
        'deny egress to ff02::fb port 5353/udp reason "no mDNS"', "", "mDNS ff02::fb"),
    "gateway-from-LAN deny removed": (
        'deny ingress from 192.168.50.0/24 port 18789/tcp reason "not from the LAN"', "", "gateway port"),
    "still denied by another explicit rule": (
        'deny egress to 168.63.129.16 reason "wireserver"',
        'deny egress to 168.63.129.0/24 reason "azure"', None),
    "not a dangerous destination": ('deny egress to 198.51.100.7 reason "old host"', "", None),
}


def test_removed_protections_are_reported_low(tmp_path: Path, subtests: pytest.Subtests) -> None:
    base = 'allow egress to 198.51.100.0/25 port 443/tcp reason "a"'
    for n, (name, (old_extra, new_extra, words)) in enumerate(PROTECTIONS.items()):
        with subtests.test(msg=name):
            old = _load(tmp_path / f"{n}o", f"{base}\n{old_extra}")
            new = _load(tmp_path / f"{n}n", f"{base}\n{new_extra}")
            found = [c for c in diff_policies(old, new) if c.summary.startswith("explicit deny of")]
            if words is None:
                assert found == [], [c.summary for c in found]
                continue
            assert len(found) == 1 and words in found[0].summary, [c.summary for c in found]
            assert found[0].risk is Risk.LOW and "still denied by default" in found[0].why


def test_a_removed_protection_that_opens_reach_is_the_high_reach_change(tmp_path: Path) -> None:
    old = _load(tmp_path / "o", 'allow egress to 168.63.129.0/24 port 80/tcp reason "azure"\n'
                                'deny egress to 168.63.129.16 reason "wireserver"')
    new = _load(tmp_path / "n", 'allow egress to 168.63.129.0/24 port 80/tcp reason "azure"')
    changes = diff_policies(old, new)
    assert not any(c.summary.startswith("explicit deny of") for c in changes)
    assert any(c.risk is Risk.HIGH and "168.63.129.16" in c.summary for c in changes)


# old body, new body: a wildcard added over names the old version already allowed
WILDCARDS: dict[str, tuple[str, str]] = {
    "name below the new wildcard": ('allow egress to git.example.net port 22/tcp reason "a"',
                                    'allow egress to git.example.net, *.example.net port 22/tcp reason "a"'),
    "wildcard below the new wildcard": ('allow egress to *.cdn.example.net port 443/tcp reason "a"',
                                        'allow egress to *.example.net port 443/tcp reason "a"'),
    "name kept by another rule": ('allow egress to ci.build.example.org port 443/tcp reason "a"',
                                  'allow egress to ci.build.example.org port 443/tcp reason "a"\n'
                                  'allow egress to *.example.org port 443/tcp, 80/tcp reason "b"'),
}


def test_a_wildcard_does_not_claim_names_already_allowed(tmp_path: Path, subtests: pytest.Subtests) -> None:
    for n, (name, (old_body, new_body)) in enumerate(WILDCARDS.items()):
        with subtests.test(msg=name):
            old = _load(tmp_path / f"{n}o", old_body)
            new = _load(tmp_path / f"{n}n", new_body)
            changes = reach_changes(old, new)
            names = ["git.example.net", "x.git.example.net", "a.cdn.example.net", "b.example.net",
                     "ci.build.example.org", "y.build.example.org", "example.org"]
            for peer, (proto, port) in itertools.product(names, ((Protocol.TCP, 22), (Protocol.TCP, 443),
                                                                 (Protocol.TCP, 80))):
                flow = Flow(Direction.EGRESS, peer, proto, port)
                changed = evaluate(old, flow).action is not evaluate(new, flow).action
                covered = any(c.direction is flow.direction and c.family is None and c.covers_name(peer)
                              and any(p is proto and lo <= port <= hi for p, (lo, hi) in c.ports)
                              for c in changes)
                assert changed == covered, (flow, [(c.names, c.excluded, c.ports) for c in changes])
            shown = " ".join(c.peers_text() for c in changes)
            assert "except" in shown, shown


# old body, new body, whether diff reports an ID the edit renamed (ruleids.WHAT_CHANGES_AN_ID)
RENAMES: dict[str, tuple[str, str, bool]] = {
    "ports edited (the ID stays)": ('allow egress to git.example.net port 22/tcp reason "git"',
                                    'allow egress to git.example.net port 22/tcp, 9418/tcp reason "git"', False),
    "a second peer added (the ID stays)": (
        'allow egress to 198.51.100.0/26 port 443/tcp reason "svc"',
        'allow egress to 198.51.100.0/26, 198.51.100.200 port 443/tcp reason "svc"', False),
    "peers edited under a ticket (the ID stays)": (
        'allow egress to 198.51.100.0/26 port 443/tcp reason "svc" ticket OPS-1',
        'allow egress to 203.0.113.0/24 port 443/tcp reason "svc" ticket OPS-1', False),
    "ticket edited": ('allow egress to git.example.net port 22/tcp reason "git" ticket OPS-1',
                      'allow egress to git.example.net port 22/tcp reason "git" ticket OPS-2', True),
    "ticket added": ('allow egress to git.example.net port 22/tcp reason "git"',
                     'allow egress to git.example.net port 22/tcp reason "git" ticket OPS-2', True),
    "a rule of the same ticket inserted above": (
        'allow egress to git.example.net port 22/tcp reason "git" ticket OPS-2',
        'allow egress to ci.example.net port 443/tcp reason "ci" ticket OPS-2\n'
        'allow egress to git.example.net port 22/tcp reason "git" ticket OPS-2', True),
    "reason edited (the ID stays)": ('allow egress to git.example.net port 22/tcp reason "git"',
                                     'allow egress to git.example.net port 22/tcp reason "source"', False),
    "explicit id kept": ('allow egress to git.example.net port 22/tcp reason "git" id git',
                         'allow egress to git.example.net port 22/tcp reason "git" ticket OPS-2 id git', False),
    "another rule entirely": ('allow egress to git.example.net port 22/tcp reason "git"',
                              'allow egress to ci.example.net port 22/tcp reason "git"', False),
}


def test_renamed_rule_ids_are_reported(tmp_path: Path, subtests: pytest.Subtests) -> None:
    for n, (name, (old_body, new_body, renamed)) in enumerate(RENAMES.items()):
        with subtests.test(msg=name):
            old = _load(tmp_path / f"{n}o", old_body)
            new = _load(tmp_path / f"{n}n", new_body)
            found = [c for c in diff_policies(old, new) if c.category == "ids"]
            assert bool(found) is renamed, [c.summary for c in found]
            if renamed:
                (change,) = found
                assert old.rules[0].id in change.summary and new.rules[0].id in change.summary
                assert change.risk is Risk.LOW and "explicit `id`" in change.why
