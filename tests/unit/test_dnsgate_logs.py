"""The DNS gate's logs in `explain` and `simulate --dns-log` (clawpolicy/dnsgate/querylog.py):
refusals led back to the policy, rule names to their source line, a changed policy noted;
gate and dnsmasq query logs replayed as the gate would decide them in enforce mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clawpolicy.cli import main
from clawpolicy.dnsgate.logline import GateLogLine, parse
from clawpolicy.dnsgate.querylog import Query, parse_queries

POLICY = """policy gate {
  dns local
  allow egress to api.llm.test port 443/tcp reason "model API" id llm
  deny egress to *.tracker.test reason "no trackers" id trackers
  dns resolve probe.test reason "checks" id checks
}
"""


def _line(verdict: str, name: str, rules: tuple[str, ...] = (), rcode: str = "NOERROR", **kw: str) -> str:
    return "Dec 02 07:00:01 host clawpolicy[812]: " + GateLogLine(
        "gate", verdict, name, "A", rcode, rules, "127.0.0.1", **kw).render()  # type: ignore[arg-type]


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "gate.claw"
    path.write_text(POLICY)
    return path


def test_log_line_round_trip(subtests: pytest.Subtests) -> None:
    lines = [GateLogLine("p", "refuse", "x.test", "A", "REFUSED", (), "127.0.0.1"),
             GateLogLine("p", "allow", "a.test", "AAAA", "NOERROR", ("r1", "r2"), "::1",
                         ("2001:db8::1", "2001:db8::2"), 2),
             GateLogLine("p", "allow", "a.test", "A", "SERVFAIL", ("r1",), "10.0.0.1", note="set update failed")]
    for line in lines:
        with subtests.test(line=line.render()):
            parsed = parse("2026-12-02T07:00:00 host x: " + line.render())
            assert parsed == GateLogLine(**{**line.__dict__, "note": line.note.replace(" ", "_")})
    assert parse("clawpolicy:gate:deny:llm IN= OUT=eth0") is None


def test_explain_reads_gate_lines(policy_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "gate.log"
    log.write_text("\n".join([
        _line("refuse", "exfil.attacker.test", rcode="REFUSED"),
        _line("refuse", "exfil.attacker.test", rcode="REFUSED"),
        _line("deny", "x.tracker.test", ("trackers",), addresses="198.51.100.1"),
        _line("allow", "api.llm.test", ("llm",)),  # not a denial: not listed
        _line("allow", "api.llm.test", ("llm",), rcode="SERVFAIL", note="set-update-failed"),
        _line("refuse", "new.test", rcode="REFUSED"),
        "some other line"]) + "\n")
    policy_file.write_text(POLICY.replace('  dns resolve probe.test', '  dns resolve probe.test, new.test'))
    assert main(["explain", "-p", str(policy_file), "--format", "json", str(log)]) == 0
    doc = json.loads(capsys.readouterr().out)
    got = {(f["verdict"], f["what"]): f for f in doc["findings"]}
    refused = got[("refuse", "dns A exfil.attacker.test")]
    assert refused["count"] == 2 and refused["mechanism"] == "dnsgate" and refused["rule"] == "unlisted"
    assert refused["where"].endswith("gate.claw:1:1") and "never forwards" in refused["reason"]
    deny = got[("deny", "dns A x.tracker.test")]
    assert deny["rule"] == "trackers" and deny["where"].endswith(":4:3") and deny["reason"] == "trackers: no trackers"
    assert "set-update-failed" in got[("servfail", "dns A api.llm.test")]["reason"]
    assert got[("refuse", "dns A new.test")]["note"] == "the policy as given decides resolve (checks)"
    assert ("allow", "dns A api.llm.test") not in got
    assert doc["unrecognised"] == 1  # only "some other line"


def test_parse_queries_from_gate_and_dnsmasq() -> None:
    lines = [_line("would-refuse", "a.test"),
             "Dec  2 06:57:17 dnsmasq[27887]: query[AAAA] API.llm.test. from 10.0.0.5",
             "Dec  2 06:57:17 dnsmasq[27887]: forwarded api.llm.test to 198.18.0.53", "junk"]
    assert list(parse_queries(lines)) == [Query("A", "a.test", "127.0.0.1", "gate"),
                                          Query("AAAA", "api.llm.test", "10.0.0.5")]


def test_simulate_dns_log(policy_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "queries.log"
    log.write_text("\n".join([
        _line("would-refuse", "exfil.attacker.test"),
        "Dec  2 06:57:17 dnsmasq[1]: query[A] exfil.attacker.test from 10.0.0.5",
        "Dec  2 06:57:17 dnsmasq[1]: query[A] api.llm.test from 10.0.0.5",
        "Dec  2 06:57:17 dnsmasq[1]: query[A] a.tracker.test from 10.0.0.5",
        "Dec  2 06:57:17 dnsmasq[1]: query[A] probe.test from 10.0.0.5",
        "Dec  2 06:57:17 dnsmasq[1]: query[A] tracker.test from 10.0.0.5"]) + "\n")
    assert main(["simulate", str(policy_file), "--dns-log", str(log), "--format", "json"]) == 0
    (sim,) = json.loads(capsys.readouterr().out)["dns"]
    assert sim["queries"] == 6
    assert sim["verdicts"] == {"allow": 1, "deny": 1, "refuse": 3, "resolve": 1}
    assert sim["refused"] == {"exfil.attacker.test": 2, "tracker.test": 1}
    assert sim["rules"] == {"checks": 1, "llm": 1, "trackers": 1}
    assert main(["simulate", str(policy_file), "--dns-log", str(log)]) == 0
    assert "2 x exfil.attacker.test" in capsys.readouterr().out


def test_simulate_needs_flows_or_a_dns_log(policy_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(policy_file)]) == 2
    assert "--dns-log" in capsys.readouterr().err


def test_diff_reports_dns_resolve_changes(tmp_path: Path, subtests: pytest.Subtests) -> None:
    """A new `dns resolve` wildcard is a DNS channel out: review sees it (review/diff.py)."""
    from clawpolicy.lower import load_policies
    from clawpolicy.review.diff import Risk, diff_policies

    def load(statements: str) -> object:
        path = tmp_path / "p.claw"
        path.write_text(f"policy p {{\n  dns local\n{statements}}}\n")
        (policy,) = load_policies([path]).policies
        return policy

    base = load('  dns resolve probe.test reason "checks"\n')
    cases = [  # new statements, [(summary, risk)]
        ('  dns resolve probe.test, *.corp.test reason "checks"\n',
         [("`dns resolve *.corp.test` added", Risk.MEDIUM)]),
        ('  dns resolve probe.test, x.test reason "checks"\n', [("`dns resolve x.test` added", Risk.LOW)]),
        ("", [("`dns resolve probe.test` removed", Risk.LOW)]),
        ('  dns resolve probe.test reason "other words"\n', []),  # same names: no change in reach
    ]
    for statements, want in cases:
        with subtests.test(statements=statements):
            changes = [c for c in diff_policies(base, load(statements)) if c.category == "dns"]  # type: ignore[arg-type]
            assert [(c.summary, c.risk) for c in changes] == want
