"""The command line as pipelines use it: exit statuses, messages, --check, atomic output.

Most tests call `main([...])` in-process; a few run the installed console script in a
subprocess to prove the real entry point and exit codes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clawpolicy.cli import main

REPO = Path(__file__).resolve().parents[2]
GOOD = """policy demo {
  mode enforce
  applies-to host
  define tailnet = 100.64.0.0/10
  allow egress to 192.0.2.10 port 443/tcp reason "api"
  allow ingress from @tailnet port 18789/tcp reason "gateway"
  test "api" { expect allow egress 192.0.2.10 port 443/tcp }
}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo.claw").write_text(GOOD)
    return tmp_path


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_compile_writes_and_check_passes(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", "demo.claw"]) == 0
    files = _tree(workdir / "generated")
    assert {"demo/nftables/ruleset.nft", "demo/docs/README.md", "demo/apparmor/clawpolicy-demo",
            "demo/apparmor/apparmorprofile.yaml"} <= set(files)
    assert main(["compile", "demo.claw", "--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_two_compiles_are_byte_identical(workdir: Path) -> None:
    assert main(["compile", "demo.claw", "-o", "a"]) == 0
    assert main(["compile", "demo.claw", "-o", "b"]) == 0
    assert _tree(workdir / "a") == _tree(workdir / "b")


def test_check_reports_stale_output(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", "demo.claw"]) == 0
    ruleset = workdir / "generated/demo/nftables/ruleset.nft"
    ruleset.write_text(ruleset.read_text().replace("443", "444"))
    (workdir / "generated/demo/nftables/leftover.nft").write_text("old")
    manifest = workdir / "generated/demo/nftables/.clawpolicy-manifest"  # as if compile wrote it
    manifest.write_text(manifest.read_text() + "leftover.nft\n")
    capsys.readouterr()
    assert main(["compile", "demo.claw", "--check"]) == 1
    err = capsys.readouterr().err
    assert "differs: generated/demo/nftables/ruleset.nft" in err
    assert re.search(r"^ *-\t+meta l4proto . th dport vmap { tcp . 444 ", err, re.M)
    assert re.search(r"^ *\+\t+meta l4proto . th dport vmap { tcp . 443 ", err, re.M)
    assert "no longer generated: generated/demo/nftables/leftover.nft" in err
    assert main(["compile", "demo.claw"]) == 0  # a real compile repairs both
    assert not (workdir / "generated/demo/nftables/leftover.nft").exists()
    assert main(["compile", "demo.claw", "--check"]) == 0


def test_failed_compile_leaves_outputs_untouched(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", "demo.claw"]) == 0
    before = _tree(workdir / "generated")
    stat = {p: (workdir / "generated" / p).stat().st_mtime_ns for p in before}
    (workdir / "demo.claw").write_text(GOOD.replace('reason "gateway"', ""))
    assert main(["compile", "demo.claw"]) == 1
    err = capsys.readouterr().err
    assert "nothing was written" in err
    assert _tree(workdir / "generated") == before
    assert {p: (workdir / "generated" / p).stat().st_mtime_ns for p in before} == stat


def test_policy_error_is_positioned_with_caret_and_hint(workdir: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "demo.claw").write_text(GOOD.replace("from @tailnet", "from @tailnt"))
    assert main(["compile", "demo.claw"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "demo.claw:6:22: error: unknown definition '@tailnt'"
    assert err[1].endswith("allow ingress from @tailnt port 18789/tcp reason \"gateway\"")
    assert err[2].index("^") == err[1].index("@tailnt") and err[2].count("^") == len("@tailnt")
    assert "hint: did you mean @tailnet?" in err[3]


def test_syntax_error(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "demo.claw").write_text("policy demo {\n  allow egress to 192.0.2.1 reason 'x'\n}\n")
    assert main(["ir", "demo.claw"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("demo.claw:2:36: error: unexpected character")
    assert 'hint: a reason is a quoted string' in err


def test_mode_override_and_output_dir(workdir: Path) -> None:
    (workdir / "demo.claw").write_text(GOOD.replace("mode enforce", "mode shadow"))
    assert main(["compile", "demo.claw", "--mode", "enforce", "-o", "out"]) == 0
    text = (workdir / "out/demo/nftables/ruleset.nft").read_text()
    assert "(enforce mode)" in text and "policy drop;" in text


def test_strict_turns_warnings_into_errors(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "demo.claw").write_text(GOOD.replace('reason "api"', 'reason "api" expires 2020-01-01'))
    assert main(["compile", "demo.claw"]) == 0
    assert "warning: allow egress rule expired on 2020-01-01" in capsys.readouterr().err
    assert main(["compile", "demo.claw", "--strict"]) == 1
    assert "error: allow egress rule expired" in capsys.readouterr().err


def test_ir_and_schema(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ir", "demo.claw"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["name"] == "demo" and doc["rules"][0]["peers"]["ipv4"] == ["192.0.2.10/32"]
    assert main(["ir", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "Policy" and "rules" in schema["properties"]


def test_test_command(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", "demo.claw"]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out
    (workdir / "demo.claw").write_text(GOOD.replace("expect allow egress 192.0.2.10",
                                                    "expect allow egress 192.0.2.11"))
    assert main(["test", "demo.claw"]) == 1
    out = capsys.readouterr().out
    assert "FAIL demo: api" in out and "demo.claw:7:" in out


def test_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "telegram"]) == 0
    assert "149.154.167.220" in capsys.readouterr().out
    assert main(["catalog", "nope"]) == 1


@pytest.mark.parametrize("argv", [["compile"], ["compile", "x.claw", "--mode", "loud"],
                                  ["frobnicate"], [], ["compile", "x.claw", "--target", "pf"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["compile", "ir", "test", "catalog"])
def test_help_teaches_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "example" in out and f"clawpolicy {command}" in out


def test_console_script_exit_codes(workdir: Path) -> None:
    exe = shutil.which("clawpolicy") or str(Path(sys.executable).parent / "clawpolicy")
    if not os.path.exists(exe):
        pytest.skip("clawpolicy console script not installed")
    ok = subprocess.run([exe, "compile", "demo.claw", "--check"], capture_output=True, text=True)
    assert ok.returncode == 1 and "missing:" in ok.stderr
    assert subprocess.run([exe, "compile", "demo.claw"], capture_output=True).returncode == 0
    assert subprocess.run([exe, "bogus"], capture_output=True).returncode == 2


def test_examples_are_up_to_date(in_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The suite keeps generated/ honest: this is CI's `compile --check`."""
    examples = [str(p.relative_to(in_repo)) for p in sorted(in_repo.glob("examples/*.claw"))]
    assert main(["compile", *examples, "--check"]) == 0, capsys.readouterr().err


def test_target_options(workdir: Path) -> None:
    assert main(["compile", "demo.claw", "--apparmor-abi", "4.0", "--target", "apparmor"]) == 0
    assert "abi <abi/4.0>," in (workdir / "generated/demo/apparmor/clawpolicy-demo").read_text()
    assert main(["compile", "demo.claw", "--fqdn-timeout", "0"]) == 2


def test_one_summary_line_for_rules_other_targets_enforce(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A single-target compile names what other targets enforce in one line (-v: each rule);
    it is a division of labour, so --strict passes."""
    monkeypatch.chdir(REPO)
    server = "examples/openclaw-server.claw"
    out = str(tmp_path / "o")
    assert main(["compile", server, "-t", "nftables", "-o", out, "--strict"]) == 0
    err = capsys.readouterr().err
    summary = re.fullmatch(r"clawpolicy: (\d+) rules are enforced only by other targets \(apparmor, "
                           r"seccomp, systemd\): -v lists them\n", err)
    assert summary, err
    assert main(["compile", server, "-t", "nftables", "-o", out, "-v"]) == 0
    err = capsys.readouterr().err
    notes = re.findall(r"note: (\S+): .* enforced only by other targets \(", err)
    assert len(set(notes)) == int(summary.group(1)) and "-v lists" not in err


def test_the_examples_compile_strictly_with_their_default_targets(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(REPO)
    examples = sorted(str(p.relative_to(REPO)) for p in (REPO / "examples").glob("*.claw"))
    assert main(["compile", *examples, "--strict", "-o", str(tmp_path)]) == 0
    assert "warning" not in capsys.readouterr().err
