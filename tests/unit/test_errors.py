"""Rendering of diagnostics: the source line and caret under the right column."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clawpolicy.errors import Diagnostic, Location, Severity, render


def test_caret_under_the_word() -> None:
    text = "policy p {\n  allow egress to @tailnt port 1/tcp\n}\n"
    diag = Diagnostic(Severity.ERROR, "unknown definition '@tailnt'",
                      Location("p.claw", 2, 19, 26), "did you mean @tailnet?")
    lines = render([diag], {"p.claw": text}).splitlines()
    assert lines[0] == "p.claw:2:19: error: unknown definition '@tailnt'"
    assert lines[1].endswith("allow egress to @tailnt port 1/tcp")
    assert lines[2].index("^") == lines[1].index("@tailnt") and lines[2].count("^") == 7
    assert lines[3] == "  hint: did you mean @tailnet?"


def test_only_newline_breaks_lines() -> None:
    """Form feeds and Unicode line separators are not line breaks for the parser, so the
    rendered source line must not count them either."""
    text = 'policy p { description "a\u2028b\x0cc" }\nallow here\n'
    diag = Diagnostic(Severity.ERROR, "x", Location("p.claw", 2, 1, 6))
    assert "allow here" in render([diag], {"p.claw": text}).splitlines()[1]


def test_warnings_beyond_the_limit_are_summarised_errors_never() -> None:
    warnings = [Diagnostic(Severity.WARNING, f"w{i}", Location("p.claw")) for i in range(25)]
    out = render(warnings, {"p.claw": ""}, limit=20)
    assert out.count("warning: w") == 20 and out.endswith("... and 5 more warnings or notes")
    errors = [Diagnostic(Severity.ERROR, f"e{i}", Location("p.claw")) for i in range(25)]
    out = render(warnings + errors, {"p.claw": ""}, limit=20)
    lines = out.splitlines()
    assert lines[:25] == [f"p.claw: error: e{i}" for i in range(25)]  # first, all of them
    assert out.count("warning: w") == 0 and out.endswith("... and 25 more warnings or notes")


def _unprintable(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 32 and c != "\n") or 0x7F <= ord(c) < 0xA0 or c in
            "\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\ufeff"]


def test_control_characters_are_escaped_and_the_caret_stays_aligned(subtests: pytest.Subtests) -> None:
    """Source lines, file names, messages and hints can hold terminal escapes, carriage
    returns and bidi overrides (from a policy, a path or a quoted word): none reaches the
    terminal raw, and the caret still points at the word."""
    cases = {
        "ESC before the word": ("\x1b[2J\x1b]0;pwned\x07", "@bad"),
        "CR before the word": ("x\r", "@bad"),
        "C1 CSI": ("\x9b31m", "@bad"),
        "bidi override": ("\u202e", "@bad"),
        "line separator": ("a\u2028", "@bad"),
        "DEL and NUL": ("\x7f\x00", "@bad"),
        "control inside the word": ("", "@b\x1bad"),
    }
    for name, (before, word) in cases.items():
        with subtests.test(msg=name):
            line = f"  allow egress to {before}{word} port 1/tcp"
            col = line.index(word) + 1
            diag = Diagnostic(Severity.ERROR, f"unknown definition '{word}'",
                              Location(f"dir/\x1b[31mp{before}.claw", 2, col, col + len(word)),
                              f"hint with {before}")
            out = render([diag], {f"dir/\x1b[31mp{before}.claw": f"policy p {{\n{line}\n}}\n"})
            assert _unprintable(out) == [], out
            lines = out.splitlines()
            src, caret = lines[1], lines[2]
            shown_word = src[caret.index("^"):caret.index("^") + caret.count("^")]
            assert shown_word == word.replace("\x1b", "\\x1b"), (src, caret)
    with subtests.test(msg="tabs keep the caret aligned"):
        out = render([Diagnostic(Severity.ERROR, "m", Location("p", 1, 3, 6))], {"p": "\t\tabc"})
        src, caret = out.splitlines()[1:3]
        assert src[caret.index("^"):].startswith("abc") and caret.count("^") == 3
    with subtests.test(msg="a CRLF file shows no \\x0d"):
        out = render([Diagnostic(Severity.ERROR, "m", Location("p", 1, 1, 7))], {"p": "policy\r\n"})
        assert "\\x0d" not in out and "policy" in out


def test_compile_escapes_what_the_policy_and_its_path_hold(tmp_path: Path) -> None:
    name = "evil\x1b[2Jname.claw"
    (tmp_path / name).write_text('policy p {\n  applies-to host\n  allow egress to \x1b]0;x\x07 reason "r"\n}\n')
    done = subprocess.run([sys.executable, "-m", "clawpolicy.cli", "compile", name, "-o", "out"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert _unprintable(done.stderr) == [], done.stderr
    assert "\\x1b[2Jname.claw" in done.stderr
