"""Rendering of diagnostics: the source line and caret under the right column."""

from __future__ import annotations

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


def test_more_than_the_limit_is_summarised() -> None:
    diags = [Diagnostic(Severity.ERROR, f"e{i}", Location("p.claw")) for i in range(25)]
    out = render(diags, {"p.claw": ""}, limit=20)
    assert out.count("error: e") == 20 and out.endswith("... and 5 more")
