"""Lint suppressions (review/suppress.py): comments in the policy and the project config
accept findings with a reason; text hides and counts them, JSON and SARIF keep them marked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shared_schemas import schema_path

from clawpolicy.cli import main
from clawpolicy.review.lint import CHECKS
from clawpolicy.review.suppress import inline_suppressions

KNOWN = [c.id for c in CHECKS]
WIDE = 'allow egress to any port 443/tcp reason "web"'


def policy(*body: str) -> str:
    return "policy w {\n  applies-to user w\n" + "".join(f"  {b}\n" for b in body) + "}\n"


# (case, body lines, the line whose findings are accepted or None)
ATTACH = [
    ("trailing", [WIDE + "  # clawpolicy: ignore[wide-egress] web fetches"], 3),
    ("above", ["# clawpolicy: ignore[wide-egress] web fetches", WIDE], 4),
    ("above, other comments between", ["# clawpolicy: ignore[wide-egress] web fetches",
                                       "# SEC-203", WIDE], 5),
    ("several checks", ["# clawpolicy:ignore[shadowed, wide-egress]  both reviewed", WIDE], 4),
    ("a blank line detaches it", ["# clawpolicy: ignore[wide-egress] web fetches", "", WIDE], 0),
    ("inside a string it is text", ['allow egress to any port 443/tcp reason "# clawpolicy: ignore[x]"'],
     None),
]


def test_comments_attach_to_their_rule(subtests: pytest.Subtests) -> None:
    for case, body, line in ATTACH:
        with subtests.test(case=case):
            found, errors = inline_suppressions("w.claw", policy(*body), KNOWN)
            assert not errors
            assert [i.target_line for i in found] == ([] if line is None else [line])
            for i in found:
                assert "wide-egress" in i.checks and i.suppression.kind == "inSource"
                assert i.suppression.justification in ("web fetches", "both reviewed")


# (case, comment, message fragment, hint fragment)
MISTAKES = [
    ("unknown check", "# clawpolicy: ignore[wide-egres] typo", "unknown lint check 'wide-egres'",
     "did you mean 'wide-egress'?"),
    ("no reason", "# clawpolicy: ignore[wide-egress]", "needs a reason", "ignore[check-id] reason"),
    ("blank reason", "# clawpolicy: ignore[wide-egress]   ", "needs a reason", "reason"),
    ("no brackets", "# clawpolicy: ignore wide-egress because", "malformed", "ignore[check-id]"),
    ("empty brackets", "# clawpolicy: ignore[] because", "unknown lint check ''", ""),
]


def test_mistakes_are_positioned_errors(subtests: pytest.Subtests) -> None:
    for case, comment, message, hint in MISTAKES:
        with subtests.test(case=case):
            found, errors = inline_suppressions("w.claw", policy(comment, WIDE), KNOWN)
            assert not found and len(errors) == 1
            e = errors[0]
            assert message in e.message and hint in (e.hint or ""), e
            assert e.location is not None and (e.location.line, e.location.col) == (3, 3)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.claw").write_text(policy(
        "# clawpolicy: ignore[wide-egress] web fetches need the internet (SEC-203)", WIDE,
        'allow egress to 0.0.0.0/0 port 8443/tcp reason "alt"',
        'allow egress to 0.0.0.0/0 port 9443/tcp reason "alt2"'))
    return tmp_path


def test_text_json_and_exit_status(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "w.claw", "--fail-on", "warning"]) == 1  # two unsuppressed
    out = capsys.readouterr().out
    assert out.count("[wide-egress]") == 2 and "1 suppressed finding not shown" in out
    (project / "clawpolicy.toml").write_text(
        '[lint]\nfail-on = "warning"\n\n[[lint.ignore]]\ncheck = "wide-egress"\nfile = "w.claw"\n'
        'reason = "the alt ports are the vendor\'s"\n')
    assert main(["lint", "w.claw"]) == 0
    assert "3 suppressed findings not shown" in capsys.readouterr().out
    assert main(["lint", "w.claw", "--format", "json"]) == 0
    data = [d for d in json.loads(capsys.readouterr().out) if d["check"] == "wide-egress"]
    assert [d["suppressed"] for d in data] == [True, True, True]
    assert [d["suppression"]["kind"] for d in data] == ["inSource", "external", "external"]
    assert main(["lint", "w.claw", "--no-config", "--fail-on", "warning"]) == 1


def test_sarif_suppressions_validate(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import jsonschema

    (project / "clawpolicy.toml").write_text(
        '[lint]\nignore = [{check = "wide-egress", rule = "ae-nope", reason = "other rule"},\n'
        '  {check = "metadata-reachable", reason = "blocked by the VPC"}]\n')
    (project / "w.claw").write_text(policy(WIDE + "  # clawpolicy: ignore[wide-egress] reviewed",
                                           'allow egress to 0.0.0.0/0 port 80/tcp reason "http"'))
    assert main(["lint", "w.claw", "--format", "sarif"]) == 0
    doc = json.loads(capsys.readouterr().out)
    schema = json.loads(schema_path("sarif/sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    jsonschema.Draft4Validator(schema).validate(doc)
    by_rule = {(r["ruleId"], r["locations"][0]["physicalLocation"]["region"]["startLine"]):
               r.get("suppressions") for r in doc["runs"][0]["results"]}
    inline = by_rule[("wide-egress", 3)]
    assert inline is not None and inline[0]["kind"] == "inSource" and inline[0]["justification"] == "reviewed"
    assert inline[0]["location"]["physicalLocation"]["region"]["startLine"] == 3
    assert by_rule[("wide-egress", 4)] is None  # the config names another rule
    external = by_rule[("metadata-reachable", 4)]
    assert external is not None and external[0] == {
        "kind": "external", "justification": "blocked by the VPC",
        "location": {"physicalLocation": {"artifactLocation": {"uri": "clawpolicy.toml"},
                                          "region": {"startLine": 3, "startColumn": 12}}}}
