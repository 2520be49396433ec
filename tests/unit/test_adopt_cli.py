"""`clawpolicy init --from-openclaw` through main(): files, exit codes, messages."""

from __future__ import annotations

import json
import os
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


def test_init_with_hostile_values_writes_a_policy_that_compiles(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                subtests: pytest.FixtureRequest) -> None:
    """Values from the configuration never break the starter: init either writes a policy
    that loads, compiles and passes its tests, or fails with a message. Messages and the
    paths in them reach the terminal escaped."""
    from clawpolicy.compiler import compile_paths

    hostile = ["a\nb", "x\u2028y", "p\u202eq", "z\x1b[2J", "n\x00", "q\"}{", "\ud800", "é" * 70, "-", "1"]
    urls = ["http://[fe80::1%25eth0]:8080", "http://[::ffff:10.1.2.3]:80", "http://[fe80::1%eth0]/",
            "https://x.example.com:0", "http://0.0.0.0:1", "http://[::]:1", "http://224.0.0.251",
            "http://a.example\u2028.com", "http://xn--.example", "https://a" + ".b" * 200]
    for n, (pid, url) in enumerate(zip(hostile, urls, strict=True)):
        with subtests.test(msg=f"{pid!r} {url!r}"):  # type: ignore[attr-defined]
            config = tmp_path / f"c{n}" / "openclaw.json"
            config.parent.mkdir()
            config.write_text(json.dumps({"models": {"providers": {pid: {"baseUrl": url}}},
                                          "channels": {pid: {"baseUrl": url}},
                                          "gateway": {"bind": "custom", "customBindHost": pid}}))
            out = tmp_path / f"c{n}" / "p.claw"
            assert main(["init", "--from-openclaw", str(config), "--host", "--name", "p", "-o", str(out)]) == 0
            assert all(c.isprintable() for c in capsys.readouterr().out.replace("\n", ""))
            result = compile_paths([out], ["nftables", "docs"])
            assert result.ok, result.diagnostics
            assert main(["test", str(out)]) == 0
            capsys.readouterr()


def test_init_refuses_a_starter_that_does_not_compile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from clawpolicy.adopt import starter

    real = starter.render
    monkeypatch.setattr(starter, "render", lambda *a, **k: real(*a, **k).replace("mode shadow", "mode sideways"))
    out = tmp_path / "p.claw"
    assert main(["init", "--from-openclaw", str(DATA / "workstation/openclaw.json"), "--host", "-o", str(out)]) == 1
    assert "does not compile" in capsys.readouterr().err and not out.exists()


def test_init_error_messages_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x\x1b[2Jy.json"
    bad.write_text("{\n  a: \x1b[31m,\n}\n")
    assert main(["init", "--from-openclaw", str(bad), "-o", "-"]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b" in err


def test_init_owner_with_an_odd_account_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The configuration's owner becomes `applies-to user`; a name the language does not
    accept (a dot, upper case, a newline) is written as the uid instead."""
    from clawpolicy.adopt import procnet

    config = tmp_path / "openclaw.json"
    config.write_text("{}")
    if os.geteuid() == 0:  # as root, give the file an owner other than root
        os.chown(config, 4321, 4321)
    for odd in ["John.Doe", "a\nb", "x" * 40]:
        monkeypatch.setattr(procnet, "user_name", lambda uid, odd=odd: odd)
        assert main(["init", "--from-openclaw", str(config), "--name", "p", "-o", "-"]) == 0
        out = capsys.readouterr().out
        uid = config.stat().st_uid
        assert (f"applies-to user {uid}" in out) if uid else ("applies-to host" in out)
