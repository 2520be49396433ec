"""Rule IDs survive edits (issue 17, item 9): an automatic ID comes from the rule's ticket (or
first peer), numbered among rules sharing it, so editing ports, reasons, peers or owner keeps
it, and exactly the changes `ruleids.WHAT_CHANGES_AN_ID` lists rename it. IDs never collide,
whatever the order of the other rules, and never land on an explicit ID."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from clawpolicy.lower import load_policies
from clawpolicy.ruleids import HANDLE_WIDTH, IdRequest, assign, handle

BASE = ('allow egress to 10.20.4.0/22, api.example.com port 8000-8100/tcp '
        'reason "internal tool APIs" owner "tools" ticket SEC-203')


def _auto(prefix: str, name: str, digest: str) -> IdRequest:
    return IdRequest(None, prefix, handle(name), digest)


def _lower(tmp_path: Path, *rules: str) -> list[str]:
    """The rules' IDs in source order (split parts as one, by their base)."""
    src = tmp_path / "ids.claw"
    src.write_text("policy ids {\n" + "".join(f"  {r}\n" for r in rules) + "}\n")
    result = load_policies([src])
    assert result.ok, [d.message for d in result.diagnostics]
    policy = result.policies[0]
    by_line = sorted((r.span.line, r.id.split(".")[0]) for r in (*policy.rules, *policy.files))
    return list(dict.fromkeys(i for _, i in by_line))


def test_handles(subtests: pytest.Subtests) -> None:
    cases = {"SEC-203": "sec-203", "@llm": "llm", "*.slack.com": "slack-com",
             "2001:db8::/32": "2001-db8-32", "~/.ssh": "ssh", "JIRA_1234 (infra)": "jira-1234-infra",
             "façade": "fa-ade", "###": "rule", "x" * 40: "x" * HANDLE_WIDTH}
    for text, want in cases.items():
        with subtests.test(text=text):
            assert handle(text) == want


def test_edits_keep_the_id(tmp_path: Path, subtests: pytest.Subtests) -> None:
    """Each edit of BASE that must keep `ae-sec-203` (with a sibling rule beside it)."""
    sibling = 'deny egress to 10.20.4.13 port 8080/tcp reason "legacy admin API" ticket SEC-204'
    edits = {
        "ports": BASE.replace("8000-8100/tcp", "8000-9000/tcp, 53/udp"),
        "no ports": BASE.replace(" port 8000-8100/tcp", ""),
        "reason": BASE.replace("internal tool APIs", "tools, reworded"),
        "peers replaced": BASE.replace("10.20.4.0/22, api.example.com", "10.0.0.0/8"),
        "peer added first": BASE.replace("to 10.20.4.0/22", "to 192.0.2.7, 10.20.4.0/22"),
        "owner": BASE.replace('owner "tools"', 'owner "platform"'),
        "owner removed": BASE.replace(' owner "tools"', ""),
        "expires added": BASE + " expires 2099-01-01",
        "ticket case": BASE.replace("SEC-203", "sec-203"),
        "moved below another rule": None,
    }
    for edit, rule in edits.items():
        with subtests.test(edit=edit):
            rules = (sibling, BASE) if rule is None else (rule, sibling)
            assert "ae-sec-203" in _lower(tmp_path, *rules)


def test_what_changes_an_id(tmp_path: Path, subtests: pytest.Subtests) -> None:
    """Each change WHAT_CHANGES_AN_ID names, and the ID it gives."""
    no_ticket = BASE.replace(" ticket SEC-203", "")
    cases: dict[str, tuple[tuple[str, ...], int, str]] = {
        "ticket": ((BASE.replace("SEC-203", "SEC-999"),), 0, "ae-sec-999"),
        "action": ((BASE.replace("allow", "deny", 1),), 0, "de-sec-203"),
        "no ticket: the first peer": ((no_ticket,), 0, "ae-10-20-4-0-22"),
        "no ticket: first peer replaced": ((no_ticket.replace("10.20.4.0/22", "10.0.0.0/8"),), 0,
                                           "ae-10-0-0-0-8"),
        "a rule of the same handle inserted above": (
            (BASE.replace("10.20.4.0/22", "192.0.2.0/24"), BASE), 1, "ae-sec-203-2"),
        "an explicit id takes it": ((BASE.replace("SEC-203", "SEC-1") + " id ae-sec-203", BASE), 1,
                                    "ae-sec-203-2"),
        "no ticket: the same first peer": ((no_ticket.replace("8000-8100", "22"), no_ticket), 1,
                                           "ae-10-20-4-0-22-2"),
    }
    for case, (rules, index, want) in cases.items():
        with subtests.test(case=case):
            assert _lower(tmp_path, *rules)[index] == want


def test_assign_numbers_only_what_shares_a_handle(subtests: pytest.Subtests) -> None:
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    cases = {
        "distinct handles": ([_auto("ae", "SEC-1", a), _auto("ae", "SEC-2", b)], ["ae-sec-1", "ae-sec-2"]),
        "one handle, source order": ([_auto("ae", "SEC-1", b), _auto("ae", "SEC-1", a), _auto("ae", "SEC-1", c)],
                                     ["ae-sec-1", "ae-sec-1-2", "ae-sec-1-3"]),
        "different kinds never collide": ([_auto("ae", "SEC-1", a), _auto("de", "SEC-1", b)],
                                          ["ae-sec-1", "de-sec-1"]),
        "an explicit ID equal to a bare handle": ([IdRequest("ae-sec-1"), _auto("ae", "SEC-1", a)],
                                                  ["ae-sec-1", "ae-sec-1-2"]),
        "an explicit ID equal to a number": (
            [IdRequest("ae-sec-1-2"), _auto("ae", "SEC-1", a), _auto("ae", "SEC-1", b)],
            ["ae-sec-1-2", "ae-sec-1", "ae-sec-1-3"]),
        "another handle's bare ID is skipped": (
            [_auto("ae", "SEC-1", a), _auto("ae", "SEC-1", b), _auto("ae", "SEC-1-2", c)],
            ["ae-sec-1", "ae-sec-1-3", "ae-sec-1-2"]),
        "the same content twice stays one ID": ([_auto("ae", "SEC-1", a), _auto("ae", "SEC-1", a)],
                                                 ["ae-sec-1", "ae-sec-1"]),
        "the same content under another ticket is the same rule": (
            [_auto("ae", "SEC-1", a), _auto("ae", "SEC-2", a)], ["ae-sec-1", "ae-sec-1"]),
    }
    for case, (requests, expected) in cases.items():
        with subtests.test(case=case):
            assert assign(requests) == expected
            # the order of the other groups never matters: permute, keeping each group's order
            for order in itertools.permutations(range(len(requests))):
                shuffled = [requests[i] for i in order]
                same_group_order = all(
                    [i for i in order if requests[i].base == requests[k].base]
                    == [i for i in range(len(requests)) if requests[i].base == requests[k].base]
                    for k in range(len(requests)))
                if same_group_order and len({r.digest for r in requests}) == len(requests):
                    assert assign(shuffled) == [expected[i] for i in order]


def test_automatic_ids_can_be_pinned(tmp_path: Path, subtests: pytest.Subtests) -> None:
    """Every automatic ID is a valid explicit one (so `fmt --add-ids` can write it)."""
    long = "allow egress to 192.0.2.1 reason \"r\" ticket " + "X" * 60
    ids = _lower(tmp_path, long, long.replace("192.0.2.1", "192.0.2.2"), 'files deny ~/.aws reason "r"')
    for rule_id in ids:
        with subtests.test(rule_id=rule_id):
            assert re.fullmatch(r"[a-z][a-z0-9-]{0,31}", rule_id)


def test_a_split_rule_keeps_its_parts_under_one_id(tmp_path: Path) -> None:
    src = tmp_path / "split.claw"
    src.write_text('policy s {\n  allow egress to openai, 192.0.2.9 reason "r" ticket T-1\n}\n')
    ids = sorted(r.id for r in load_policies([src]).policies[0].rules)
    assert ids == ["ae-t-1.1", "ae-t-1.2"]


def test_the_same_rule_twice_is_reported(tmp_path: Path) -> None:
    rule = 'allow egress to 192.0.2.1 reason "r"'
    src = tmp_path / "twice.claw"
    other = rule.replace('"r"', '"other"')
    src.write_text(f"policy twice {{\n  {rule}\n  {other}\n}}\n")
    assert any("used twice" in d.message for d in load_policies([src]).diagnostics)
