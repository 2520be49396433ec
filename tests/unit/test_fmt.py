"""`clawpolicy fmt`: the examples are already canonical, formatting is idempotent and keeps
meaning (fuzzed in tests/fuzz/test_fmt_fuzz.py), and the command's modes and errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from clawpolicy.cli import main
from clawpolicy.fmt import format_text
from clawpolicy.lower import load_policies

REPO = Path(__file__).resolve().parents[2]
POLICY_FILES = sorted(p for p in REPO.glob("**/*.claw")
                      if ".venv" not in p.parts and "generated" not in p.parts)

MESSY = """# header
include   "common.claw"
policy   messy{
description    "x"   # trailing, aligned by its author
    mode shadow


  define a=10.0.0.1 ,10.0.0.2
  define bbbb = 10.0.0.3
# whole-line comment
  allow egress to @a,
        10.1.0.0/16,   # second
        api.example.com port 443/tcp reason "r"
      owner "o"
  sockets   allow unix ,netlink    route
  test "t" { expect allow egress 10.0.0.1 port 443/tcp }
  test "longer name" {
  expect deny egress 203.0.113.9 port 443/tcp
  expect deny egress 203.0.113.10 port 443/tcp }
}
"""

CANONICAL = """# header
include "common.claw"
policy messy {
  description "x"    # trailing, aligned by its author
  mode shadow

  define a    = 10.0.0.1, 10.0.0.2
  define bbbb = 10.0.0.3
  # whole-line comment
  allow egress to @a,
    10.1.0.0/16,       # second
    api.example.com port 443/tcp reason "r"
    owner "o"
  sockets allow unix, netlink route
  test "t" { expect allow egress 10.0.0.1 port 443/tcp }
  test "longer name" {
    expect deny egress 203.0.113.9 port 443/tcp
    expect deny egress 203.0.113.10 port 443/tcp
  }
}
"""


def test_policy_files_in_the_repository_are_formatted(subtests: pytest.Subtests) -> None:
    """fmt --check over every example, include and golden case (what CI recipes run)."""
    assert POLICY_FILES
    for path in POLICY_FILES:
        with subtests.test(msg=str(path.relative_to(REPO))):
            text = path.read_text(encoding="utf-8")
            assert format_text(text, str(path)) == text


def test_a_messy_file_gets_the_canonical_layout(tmp_path: Path) -> None:
    assert format_text(MESSY) == CANONICAL
    assert format_text(CANONICAL) == CANONICAL
    (tmp_path / "common.claw").write_text("define c = 192.0.2.1\n")
    (tmp_path / "a.claw").write_text(MESSY)
    (tmp_path / "b.claw").write_text(CANONICAL)
    a, b = load_policies([tmp_path / "a.claw"]), load_policies([tmp_path / "b.claw"])
    assert a.ok and a.policies[0].rules == b.policies[0].rules
    assert a.policies[0].sockets == b.policies[0].sockets
    assert b.policies[0].sockets is not None
    assert [str(k) for k in b.policies[0].sockets.allow] == ["unix", "netlink route"]


def test_check_write_stdin_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    messy, clean = tmp_path / "messy.claw", tmp_path / "clean.claw"
    messy.write_text(MESSY)
    clean.write_text(CANONICAL)
    assert main(["fmt", "--check", str(clean)]) == 0
    assert main(["fmt", "--check", str(messy), str(clean)]) == 1
    captured = capsys.readouterr()
    assert "messy.claw: not formatted" in captured.err and "clean.claw" not in captured.err
    assert '-include   "common.claw"\n' in captured.out and '+include "common.claw"\n' in captured.out
    assert messy.read_text() == MESSY  # --check writes nothing
    before = clean.stat().st_mtime_ns
    assert main(["fmt", str(messy), str(clean)]) == 0
    assert messy.read_text() == CANONICAL and clean.stat().st_mtime_ns == before
    assert "formatted" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO(MESSY))
    assert main(["fmt", "-"]) == 0
    assert capsys.readouterr().out == CANONICAL
    broken = tmp_path / "broken.claw"
    broken.write_text("policy p {\n  allow egress to\n}\n")
    assert main(["fmt", str(broken)]) == 1
    err = capsys.readouterr().err
    assert "broken.claw:3:1: error:" in err and "^" in err
    assert broken.read_text() == "policy p {\n  allow egress to\n}\n"
    assert main(["fmt", str(tmp_path / "nope.claw")]) == 1
