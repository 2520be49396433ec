"""`explain`, `simulate`, `suggest` and `test --junit/--kernel` as pipelines call them:
formats, exit statuses, and the shape of the JUnit XML."""

from __future__ import annotations

import io
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from clawpolicy.cli import main

DATA = Path(__file__).resolve().parents[1] / "data" / "logs"
POLICY = str(DATA / "logdemo.claw")


def test_explain_formats(capsys: pytest.CaptureFixture[str]) -> None:
    logs = [str(DATA / "captured-kmsg.txt"), str(DATA / "formats.txt")]
    assert main(["explain", "-p", POLICY, *logs, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["unrecognised"] == 5 and any(f["rule"] == "no-exfil-host" for f in doc["findings"])
    assert main(["explain", "-p", POLICY, *logs, "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("| count | mechanism |")
    assert main(["explain", *logs]) == 0
    assert "policy logdemo: no-exfil-host" in capsys.readouterr().out


def test_explain_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    raw = (DATA / "captured-kmsg.txt").read_bytes()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(raw)))
    assert main(["explain", "-p", POLICY]) == 0
    assert "no-exfil-host" in capsys.readouterr().out


def test_bad_input_exit_statuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(tmp_path / "missing.log")]) == 1  # unreadable input: 1 everywhere
    assert "clawpolicy: error: cannot read" in capsys.readouterr().err
    assert main(["simulate", POLICY, str(tmp_path / "missing.jsonl")]) == 1
    assert main(["suggest", POLICY]) == 2  # --flows or --log is required
    assert main(["suggest", POLICY, "--flows", "x", "--min-hosts", "0"]) == 2
    (tmp_path / "bad.claw").write_text("policy {")
    assert main(["simulate", str(tmp_path / "bad.claw"), POLICY]) == 1
    capsys.readouterr()


def test_simulate_and_suggest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flows = tmp_path / "flows.jsonl"
    flows.write_text("\n".join(json.dumps({"dst": f"203.0.113.{i}", "port": 443}) for i in range(10))
                     + '\n{"dst": "198.51.100.80", "port": 443}\nnot a flow\n')
    assert main(["simulate", POLICY, str(flows), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["unrecognised"] == 1 and doc["policies"][0]["blocked_flows"] == 10
    assert main(["simulate", POLICY, str(flows), "--format", "markdown"]) == 0
    assert "### Would have been blocked (10 flows)" in capsys.readouterr().out
    assert main(["suggest", POLICY, "--flows", str(flows)]) == 0
    out = capsys.readouterr().out
    assert "allow egress to 203.0.113.0/24 port 443/tcp" in out and 'reason "TODO"' in out
    assert main(["suggest", POLICY, "--log", str(DATA / "captured-kmsg.txt")]) == 0
    out = capsys.readouterr().out
    assert "allow egress to 198.51.100.99 port 53/udp" in out and "denied by rule no-exfil-host" in out


def test_junit_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No JUnit schema ships in shared/schemas: check the structure consumers rely on."""
    report = tmp_path / "report.xml"
    bad = tmp_path / "bad.claw"
    bad.write_text((DATA / "logdemo.claw").read_text().replace(
        'expect allow egress 198.51.100.80', 'expect allow egress 198.51.100.81'))
    assert main(["test", str(bad), "--junit", str(report)]) == 1
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "3" and root.get("failures") == "1"
    (suite,) = root
    assert suite.tag == "testsuite" and suite.get("name") == "logdemo" and suite.get("tests") == "3"
    cases = list(suite)
    assert all(c.tag == "testcase" and c.get("classname") == "logdemo.evaluator" and c.get("name")
               and c.get("file") == str(bad) and (c.get("line") or "").isdigit()
               and float(c.get("time") or "x") >= 0 for c in cases)
    failures = [c for c in cases if c.find("failure") is not None]
    assert len(failures) == 1 and "expected allow" in (failures[0].find("failure").get("message") or "")  # type: ignore[union-attr]
    capsys.readouterr()


def test_kernel_without_root(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["test", "--kernel", POLICY]) == 2
    assert "needs root" in capsys.readouterr().err


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, nft)")
def test_kernel_layers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.xml"
    assert main(["test", "--kernel", POLICY, "--junit", str(report)]) == 0
    root = ET.parse(report).getroot()
    layers = {c.get("classname") for c in root.iter("testcase")}
    assert layers == {"logdemo.evaluator", "logdemo.nftables", "logdemo.seccomp"}
    assert root.get("tests") == str(3 + 3 + 12) and root.get("failures") == "0"  # 12 socket kinds
    capsys.readouterr()


# ------------------------------------------------------------------ hostile names and lines (issue 16)

# Test names the grammar accepts (JSON escapes), each hiding something from a terminal or an
# XML parser: ESC sequences, a forged "ok" line, NUL and other C0, C1, DEL, separators, bidi,
# zero-width, noncharacters, a character outside the BMP.
HOSTILE_NAMES = ["\\u001b[2J\\u001b]0;title\\u0007", "x\\r\\nok   logdemo: forged", "nul\\u0000", "\\u000bvt\\u000cff",
                 "del\\u007f", "csi\\u009b31m", "nel\\u0085", "ls\\u2028ps\\u2029", "rlo\\u202etxt",
                 "zw\\u200b\\ufeff", "nonchar\\uffff\\ufffe\\ufdd0", "astral\\ud83d\\ude00", "tab\\there"]


def test_hostile_test_names(tmp_path: Path, capsys: pytest.CaptureFixture[str], subtests: pytest.FixtureRequest) -> None:
    """A test name cannot reach the terminal raw, forge an "ok" line, or make the JUnit
    report invalid XML (checked with expat and ElementTree)."""
    import xml.parsers.expat

    for n, name in enumerate(HOSTILE_NAMES):
        with subtests.test(msg=name):  # type: ignore[attr-defined]
            policy = tmp_path / f"p{n}.claw"
            policy.write_text((DATA / "logdemo.claw").read_text().replace(
                'test "api"', f'test "{name}"').replace("198.51.100.80 port 443/tcp }", "198.51.100.81 port 443/tcp }"))
            report = tmp_path / f"r{n}.xml"
            assert main(["test", str(policy), "--junit", str(report)]) == 1
            out = capsys.readouterr().out
            assert all(c.isprintable() for c in out.replace("\n", "")), repr(out)
            assert len(out.splitlines()) == 4 and sum(line.startswith("ok") for line in out.splitlines()) == 2
            data = report.read_bytes()
            xml.parsers.expat.ParserCreate().Parse(data, True)
            cases = ET.fromstring(data).findall(".//testcase")
            assert len(cases) == 3 and all(c.isprintable() for c in cases[0].get("name", ""))


def test_explain_warns_with_positions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "kern.log"
    log.write_text("".join(f"type=SECCOMP msg=audit(99999999999{i}.1:1): arch=c000003e syscall=41\n" for i in range(12))
                   + "[ 1.0] clawpolicy:logdemo:deny:no-exfil-host IN= OUT=e SRC=1.1.1.1 DST=198.51.100.66 PROTO=TCP SPT=1 DPT=443\n")
    assert main(["explain", "-p", POLICY, str(log), "--format", "json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["unreadable"] == 12 and [f["rule"] for f in doc["findings"]] == ["no-exfil-host"]
    warnings = captured.err.splitlines()
    assert warnings[0] == f"{log}:1: warning: timestamp out of range" and len(warnings) == 11
    assert warnings[-1] == "... and 2 more unreadable lines"


def test_suggest_cli_drops_hostile_flows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flows = tmp_path / "flows.jsonl"
    flows.write_text('{"name": "api.example.com, any", "port": 443}\n{"name": "a.example\\n}\\npolicy evil {"}\n'
                     '{"dst": "203.0.113.5", "port": 443}\n')
    assert main(["suggest", POLICY, "--flows", str(flows)]) == 0
    captured = capsys.readouterr()
    assert "allow egress to 203.0.113.5 port 443/tcp" in captured.out
    assert "any" not in captured.out and "evil" not in captured.out
    assert f"{flows}:1: warning: name is not a domain name" in captured.err
    assert f"{flows}:2: warning: name is not a domain name" in captured.err


def test_explain_warns_when_the_kernel_dropped_audit_records(tmp_path: Path, subtests: pytest.Subtests,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """dmesg rate-limits audit records (`kauditd_printk_skb: N callbacks suppressed`): explain
    says its seccomp/AppArmor counts are too low and where to read them all (issue 18)."""
    captured = (DATA / "captured-kmsg.txt").read_text(encoding="utf-8")
    for extra, warned in (("", None),
                          ("[ 99.1] kauditd_printk_skb: 42 callbacks suppressed\n"
                           "[ 99.9] kauditd_printk_skb: 7 callbacks suppressed\n", "dropped 49 audit record(s)"),
                          ("[ 99.1] net_ratelimit: 5 callbacks suppressed\n", None)):
        with subtests.test(extra=extra):
            log = tmp_path / "kmsg.txt"
            log.write_text(captured + extra, encoding="utf-8")
            assert main(["explain", "-p", POLICY, str(log), "--format", "json"]) == 0
            captured_io = capsys.readouterr()
            json.loads(captured_io.out)  # the report itself is unchanged
            if warned is None:
                assert "suppressed" not in captured_io.err
            else:
                assert warned in captured_io.err and "clawpolicy: warning:" in captured_io.err
                assert "ausearch" in captured_io.err
