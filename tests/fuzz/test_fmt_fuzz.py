"""Fuzzing `fmt`: for every input that parses, formatting is idempotent, keeps every comment
and never changes the IR (nor the diagnostics, apart from positions). Derandomized."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from test_parser_fuzz import FUZZ, TODAY, TOKENS, char_mutation, structured_text, token_mutation

from clawpolicy.errors import PolicyError
from clawpolicy.fmt import TOKEN, format_text
from clawpolicy.lower import LoadResult, load_policies

WORKDIR = Path(tempfile.mkdtemp(prefix="clawpolicy-fmt-fuzz-"))  # one path: equal `source`
atexit.register(shutil.rmtree, WORKDIR, True)


def _load(text: str) -> LoadResult:
    path = WORKDIR / "p.claw"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    (WORKDIR / "x.claw").write_text("define x = 192.0.2.1\n", encoding="utf-8")
    return load_policies([path], today=TODAY)


def _comments(text: str) -> list[str]:
    """Comments as written, but for trailing whitespace (which fmt removes)."""
    return [t.rstrip() for t in TOKEN.findall(text) if t.startswith("#")]


def _check_formatting(text: str) -> None:
    try:
        formatted = format_text(text)
    except PolicyError:
        return  # does not parse: fmt reports it and leaves the file alone
    assert format_text(formatted) == formatted
    assert _comments(formatted) == _comments(text)
    before, after = _load(text), _load(formatted)
    assert before.policies == after.policies  # spans compare equal: meaning only
    assert [(d.severity, d.code, d.message) for d in before.diagnostics] == \
        [(d.severity, d.code, d.message) for d in after.diagnostics]


@st.composite
def respaced_example(draw: st.DrawFn) -> str:
    """The example with its whitespace redrawn: newlines stay newlines (a comment must end)."""
    out = []
    for tok in TOKENS:
        if tok.isspace():
            choices = ["\n", "\n\n\n", "\n      ", " \t\n  "] if "\n" in tok else \
                [" ", "   ", "\t", "\n", "\n        "]
            tok = draw(st.sampled_from(choices))
        out.append(tok)
    return "".join(out)


@FUZZ
@given(respaced_example())
def test_respaced_example_formats_back_to_one_layout(text: str) -> None:
    _check_formatting(text)


@FUZZ
@given(st.one_of(token_mutation(), char_mutation()))
def test_mutated_example_formats_safely(text: str) -> None:
    _check_formatting(text)


@FUZZ
@given(structured_text)
def test_structured_policies_format_safely(text: str) -> None:
    _check_formatting('include "x.claw"\n' + text)
