"""Pinning rule IDs: `clawpolicy fmt --add-ids` writes each rule's current automatic ID as an
explicit `id` (same IDs, same meaning, comments kept, idempotent), and lint's `explicit-id`
note names exactly the rules without one, with the ID to write."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from clawpolicy.cli import main
from clawpolicy.ir import Policy
from clawpolicy.lower import load_policies
from clawpolicy.pinids import add_ids
from clawpolicy.review.lint import lint

REPO = Path(__file__).resolve().parents[2]
TODAY = dt.date(2026, 11, 1)

POLICY = """\
include "shared.claw"

policy p {
  # the model APIs
  allow egress to api.example.com, 192.0.2.0/24 port 443/tcp
    reason "APIs, id shown in a string" ticket SEC-1  # trailing comment
  allow egress to openai, 192.0.2.9 reason "splits in two" ticket SEC-2
  deny egress to 169.254.169.254 reason "metadata"
  allow egress to 198.51.100.7 port 22/tcp reason "pinned already" id git
  files deny ~/.ssh reason "keys"
  syscalls deny ptrace reason "no debugging" ticket SEC-3
  dns resolve api.example.com reason "names to lock"
}
"""
SHARED = 'define llm = openai\n'


def _ids(policy: Policy) -> list[tuple[str, bool]]:
    items = [*policy.rules, *policy.files, *policy.syscalls, *policy.resolve]
    return sorted((i.id, i.id_pinned) for i in items)


def _load(path: Path) -> Policy:
    result = load_policies([path], today=TODAY)
    assert result.ok, [d.message for d in result.diagnostics]
    return result.policies[0]


def test_add_ids_pins_what_the_rules_are_called(tmp_path: Path, subtests: pytest.Subtests) -> None:
    src = tmp_path / "p.claw"
    src.write_text(POLICY)
    (tmp_path / "shared.claw").write_text(SHARED)
    before = _load(src)
    pinned = add_ids(src, POLICY, "p.claw")
    src.write_text(pinned)
    after = _load(src)
    with subtests.test("same IDs, all pinned"):
        assert [i for i, _ in _ids(after)] == [i for i, _ in _ids(before)]
        assert all(p for _, p in _ids(after))
        assert ("git", True) in _ids(before) and sum(p for _, p in _ids(before)) == 1
    with subtests.test("same meaning"):
        def meaning(p: Policy) -> list[dict[str, object]]:
            return [r.model_dump(exclude={"id_pinned", "span"}) for r in (*p.rules, *p.files, *p.syscalls)]
        assert meaning(after) == meaning(before)
    with subtests.test("the IDs written"):
        for line in ("ticket SEC-1 id ae-sec-1  # trailing comment", 'ticket SEC-2 id ae-sec-2\n',
                     'reason "metadata" id de-169-254-169-254\n', 'reason "pinned already" id git\n',
                     'reason "keys" id fd-ssh\n', "ticket SEC-3 id sd-sec-3\n",
                     'reason "names to lock" id dr-api-example-com\n', "  # the model APIs\n"):
            assert line in pinned, line
        assert pinned.count(" id ") == 7 + 1 and "id git id" not in pinned  # + 1: in a reason
    with subtests.test("a second run changes nothing"):
        assert add_ids(src, pinned, "p.claw") == pinned
    with subtests.test("the included file is not touched"):
        assert (tmp_path / "shared.claw").read_text() == SHARED


def test_lint_notes_rules_without_an_id(tmp_path: Path, subtests: pytest.Subtests) -> None:
    src = tmp_path / "p.claw"
    src.write_text(POLICY)
    (tmp_path / "shared.claw").write_text(SHARED)
    found = [f for f in lint(_load(src), today=TODAY, targets=("nftables",)) if f.check == "explicit-id"]
    with subtests.test("one note per declaration, with the ID to write"):
        assert sorted(f.rule_id or "" for f in found) == [
            "ae-sec-1", "ae-sec-2", "de-169-254-169-254", "dr-api-example-com", "fd-ssh", "sd-sec-3"]
        assert all(f.severity.value == "note" and f"id {f.rule_id}" in f.hint for f in found)
    with subtests.test("none once pinned"):
        src.write_text(add_ids(src, POLICY, "p.claw"))
        assert not [f for f in lint(_load(src), today=TODAY, targets=("nftables",)) if f.check == "explicit-id"]


def test_cli_add_ids(tmp_path: Path, subtests: pytest.Subtests, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "examples"
    shutil.copytree(REPO / "examples", work)
    with subtests.test("the examples are pinned already"):
        names = [str(p) for p in sorted(work.glob("openclaw-*.claw"))]
        before = {n: Path(n).read_text() for n in names}
        assert main(["fmt", "--add-ids", *names]) == 0
        assert {n: Path(n).read_text() for n in names} == before
    with subtests.test("stdin is refused"):
        assert main(["fmt", "--add-ids", "-"]) == 2
        assert "--add-ids needs files" in capsys.readouterr().err
    with subtests.test("a file that does not compile is left alone, exit 1"):
        bad = tmp_path / "bad.claw"
        bad.write_text('policy b {\n  allow egress to 192.0.2.1\n}\n')
        assert main(["fmt", "--add-ids", str(bad)]) == 1
        assert bad.read_text() == 'policy b {\n  allow egress to 192.0.2.1\n}\n'


def test_lint_text_summarises_the_notes_per_file(tmp_path: Path, subtests: pytest.Subtests,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A real policy lacks an id on nearly every rule: text gets one note per file naming the
    first IDs and `fmt --add-ids`; -v, JSON and SARIF keep one per rule."""
    import json
    src = tmp_path / "p.claw"
    src.write_text(POLICY)
    (tmp_path / "shared.claw").write_text(SHARED)
    with subtests.test("text: one note, the count, the first three IDs, the command"):
        assert main(["lint", str(src), "--no-config"]) == 0
        notes = [line for line in capsys.readouterr().out.splitlines() if "[explicit-id]" in line]
        assert notes == [f"{src}:5:3: note: [explicit-id] 6 rules have no explicit id "
                         "(ae-sec-1, ae-sec-2, de-169-254-169-254 and 3 more)"]
    with subtests.test("-v: one note per rule"):
        assert main(["lint", str(src), "--no-config", "-v"]) == 0
        assert capsys.readouterr().out.count("[explicit-id] rule has no explicit id") == 6
    for fmt in ("json", "sarif"):
        with subtests.test(f"{fmt}: one result per rule"):
            assert main(["lint", str(src), "--no-config", "--format", fmt]) == 0
            out = capsys.readouterr().out
            results = (json.loads(out) if fmt == "json" else json.loads(out)["runs"][0]["results"])
            ids = [r for r in results if r.get("check", r.get("ruleId")) == "explicit-id"]
            assert len(ids) == 6
    with subtests.test("a single note stays as it is"):
        src.write_text('policy q {\n  applies-to host\n  allow egress to 192.0.2.1 port 443/tcp reason "r"\n}\n')
        assert main(["lint", str(src), "--no-config"]) == 0
        assert "rule has no explicit id (ae-192-0-2-1)" in capsys.readouterr().out


def test_summarise_keeps_suppressed_and_other_files_apart() -> None:
    from clawpolicy.errors import Location, Severity
    from clawpolicy.review import explicit_id
    from clawpolicy.review.finding import Finding, Suppression

    def note(file: str, line: int, rule: str, accepted: bool = False) -> Finding:
        why = Suppression("inSource", "no dashboards") if accepted else None
        return Finding("explicit-id", Severity.NOTE, "rule has no explicit id", rule, Location(file, line, 3),
                       f"add `id {rule}`", why)
    other = Finding("wide-egress", Severity.WARNING, "wide", "ae-x", Location("a.claw", 2, 3), "")
    findings = [note("a.claw", 1, "a1"), other, note("a.claw", 3, "a2"), note("a.claw", 4, "a3", True),
                note("b.claw", 1, "b1")]
    got = explicit_id.summarise(findings)
    assert [(f.location.file, f.location.line, f.rule_id) for f in got] == [
        ("a.claw", 1, None), ("a.claw", 2, "ae-x"), ("a.claw", 4, "a3"), ("b.claw", 1, "b1")]
    assert got[0].message == "2 rules have no explicit id (a1, a2)"
