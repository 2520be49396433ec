"""Automatic rule IDs never collide (issue 16, item 17): widened exactly where they would,
whatever the order of the rules, and never onto an explicit ID."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from clawpolicy.lower import load_policies
from clawpolicy.ruleids import FULL_WIDTH, SHORT_WIDTH, IdRequest, assign, content_digest

# Two rules whose automatic IDs share their first 8 hex digits (found by a birthday search
# over content_digest("egress", "allow", [address], [])); checked below, so a change of the
# digest's input shows up here rather than as a vacuous test.
CLASH = ("10.0.188.41", "10.1.96.94")
CLASH_ID = "ae-4275a569"
# A rule that splits (`openai, 172.16.1.55`) against a plain one, found the same way.
SPLIT_CLASH = ("openai, 172.16.1.55", "10.19.202.6", "ae-9676ebe1")


def _auto(prefix: str, digest: str) -> IdRequest:
    return IdRequest(None, prefix, digest)


def test_the_pair_really_collides_at_the_short_width() -> None:
    a, b = (content_digest("egress", "allow", [addr], []) for addr in CLASH)
    assert a[:SHORT_WIDTH] == b[:SHORT_WIDTH] == CLASH_ID[3:] and a != b


def test_assign_widens_only_what_collides(subtests: pytest.Subtests) -> None:
    d1 = "1234abcd" + "0" * 56
    d2 = "1234abcd" + "1" * 56  # same 8 digits as d1
    d3 = "1234abcd0000" + "f" * 52  # same 12 digits as d1
    d4 = "9" * 64
    cases = {
        "two autos": ([_auto("ae", d1), _auto("ae", d2), _auto("ae", d4)],
                      ["ae-1234abcd0000", "ae-1234abcd1111", "ae-99999999"]),
        "three autos, two share 12 digits": (
            [_auto("ae", d1), _auto("ae", d2), _auto("ae", d3)],
            ["ae-1234abcd00000000", "ae-1234abcd1111", "ae-1234abcd0000ffff"]),
        "an explicit ID equal to an auto ID": ([IdRequest("ae-1234abcd"), _auto("ae", d1)],
                                                ["ae-1234abcd", "ae-1234abcd0000"]),
        "an explicit ID equal to a widened ID": (
            [IdRequest("ae-1234abcd0000"), _auto("ae", d1), _auto("ae", d2)],
            ["ae-1234abcd0000", "ae-1234abcd00000000", "ae-1234abcd1111"]),
        "different kinds never collide": ([_auto("ae", d1), _auto("de", d2)], ["ae-1234abcd", "de-1234abcd"]),
        "the same content twice stays one ID": ([_auto("ae", d1), _auto("ae", d1)],
                                                 ["ae-1234abcd", "ae-1234abcd"]),
        "the same content twice beside a clash": (
            [_auto("ae", d1), _auto("ae", d1), _auto("ae", d2)],
            ["ae-1234abcd0000", "ae-1234abcd0000", "ae-1234abcd1111"]),
    }
    for case, (requests, expected) in cases.items():
        with subtests.test(case=case):
            assert assign(requests) == expected
            for order in itertools.permutations(range(len(requests))):  # order-independent
                got = assign([requests[i] for i in order])
                assert got == [expected[i] for i in order]


def test_a_full_width_id_is_longer_than_any_explicit_one() -> None:
    same_but_last = "a" * 63
    ids = assign([_auto("ae", same_but_last + "0"), _auto("ae", same_but_last + "1")])
    assert ids == ["ae-" + same_but_last + "0", "ae-" + same_but_last + "1"]
    assert len(ids[0]) == 3 + FULL_WIDTH > 32  # lowering caps explicit IDs at 32 characters


def _lower(tmp_path: Path, *rules: str) -> list[str]:
    src = tmp_path / "ids.claw"
    src.write_text("policy ids {\n" + "".join(f"  {r}\n" for r in rules) + "}\n")
    result = load_policies([src])
    assert result.ok, [d.message for d in result.diagnostics]
    return [r.id for r in result.policies[0].rules]


def test_colliding_rules_get_distinct_ids_in_any_order(tmp_path: Path, subtests: pytest.Subtests) -> None:
    a, b = (f'allow egress to {addr} reason "r"' for addr in CLASH)
    other = 'allow egress to 192.0.2.77 reason "r"'
    with subtests.test(case="the clash widens, the rest stays short"):
        ids = _lower(tmp_path, a, b, other)
        widened = sorted(i for i in ids if i.startswith(CLASH_ID))
        assert len(widened) == 2 and len(set(widened)) == 2
        assert all(len(i) == len(CLASH_ID) + 4 for i in widened)
        assert [i for i in ids if not i.startswith(CLASH_ID)] == [
            "ae-" + content_digest("egress", "allow", ["192.0.2.77"], [])[:SHORT_WIDTH]]
    with subtests.test(case="reordered"):
        assert sorted(_lower(tmp_path, other, b, a)) == sorted(ids)
    with subtests.test(case="one alone keeps its short ID"):
        assert _lower(tmp_path, a) == [CLASH_ID]
    with subtests.test(case="an explicit ID takes the short form"):
        got = _lower(tmp_path, f'deny egress to 192.0.2.1 reason "r" id {CLASH_ID}', a)
        assert CLASH_ID in got and len(set(got)) == 2 and all(i.startswith(CLASH_ID) for i in got)
    with subtests.test(case="a split rule's parts follow its widened ID"):
        split, plain, short = SPLIT_CLASH
        got = _lower(tmp_path, f'allow egress to {plain} reason "r"', f'allow egress to {split} reason "r"')
        assert len(set(got)) == 3
        base = next(i for i in got if "." in i).split(".")[0]
        assert base.startswith(short) and len(base) == len(short) + 4
        assert {f"{base}.1", f"{base}.2"} <= set(got)
        assert [i for i in got if "." not in i][0].startswith(short)
        assert sorted(_lower(tmp_path, f'allow egress to {split} reason "r"')) == [f"{short}.1", f"{short}.2"]
    with subtests.test(case="the same rule twice is reported"):
        src = tmp_path / "twice.claw"
        src.write_text(f"policy twice {{\n  {a}\n  {a}\n}}\n")
        assert any("used twice" in d.message for d in load_policies([src]).diagnostics)
