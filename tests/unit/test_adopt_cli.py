"""`clawpolicy init --from-openclaw` through main(): files, exit codes, messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawpolicy.cli import main

DATA = Path(__file__).resolve().parents[1] / "data" / "openclaw"


def test_init_writes_and_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "agent.claw"
    args = ["init", "--from-openclaw", str(DATA / "workstation/openclaw.json"), "--name", "agent",
            "--user", "openclaw", "-o", str(out)]
    assert main(args) == 0
    first = out.read_text()
    assert "applies-to user openclaw" in first and "policy agent {" in first
    assert "next: clawpolicy test" in capsys.readouterr().out
    out.write_text("# mine\n")
    assert main(args) == 1
    assert "exists; use --force" in capsys.readouterr().err
    assert out.read_text() == "# mine\n"
    assert main([*args, "--force"]) == 0 and out.read_text() == first
    assert main(["test", str(out)]) == 0


def test_init_stdout_env_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENCLAW_CONFIG_PATH", str(DATA / "lan-mdns/openclaw.json"))
    assert main(["init", "--from-openclaw", "--host", "--name", "x", "-o", "-"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Starter policy") and "applies-to host" in out and "# REVIEW" in out
    bad = tmp_path / "openclaw.json"
    bad.write_text("{\n  gateway: { port: 18789,, },\n}\n")
    assert main(["init", "--from-openclaw", str(bad), "-o", "-"]) == 1
    assert capsys.readouterr().err.startswith(f"{bad}:2:")
    assert main(["init", "-o", "-"]) == 2
    assert main(["init", "--from-openclaw", str(bad), "--name", "Bad Name"]) == 2
    assert main(["init", "--from-openclaw", str(bad), "--user", "x\ny"]) == 2
    assert main(["init", "--help"]) == 0 and "--from-openclaw" in capsys.readouterr().out
    assert main(["observe", "--help"]) == 0 and "[EXPOSED]" in capsys.readouterr().out
