"""Canonical layout of policy files: floor 2, behind `clawpolicy fmt`.

Formatting only moves whitespace, so it can never change what a policy means (the tests
check the IR is equal before and after, and that formatting twice changes nothing). The
parse tree says where each item, statement and `expect` starts; everything else is decided
token by token:

- every statement on its own line, indented two spaces per block; at most one blank line
  between statements, none after `{` or before `}`;
- inside a statement, the author's line breaks are kept (long peer lists stay one per line)
  and continuation lines are indented two more; elsewhere one space between tokens, none
  before a comma, and tokens the author wrote touching (`app=openclaw`) stay touching;
- `test "name" { expect ... }` stays on one line if it was written so;
- consecutive `define`s align their `=`, consecutive one-line tests their `{`;
- comments are kept: trailing ones where the author aligned them (or one space after the
  code), whole-line ones at the indentation of what follows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import lark

from clawpolicy.parse import parse_text

TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[{},=]|[^\s{},="#]+')
INDENT = "  "
CONTINUATION = "  "


@dataclass(frozen=True)
class _Tok:
    text: str
    start: int
    end: int
    line: int
    col: int  # 0-based


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    line, line_start = 1, 0
    for m in TOKEN.finditer(text):
        gap = text[out[-1].end if out else 0:m.start()]
        for i, ch in enumerate(gap):
            if ch == "\n":
                line += 1
                line_start = (out[-1].end if out else 0) + i + 1
        out.append(_Tok(m.group(), m.start(), m.end(), line, m.start() - line_start))
    return out


@dataclass(frozen=True)
class _Layout:
    statements: frozenset[int]  # start offsets of items, statements and expects
    expects: frozenset[int]
    define_runs: dict[int, int]  # start of a define -> name width of its run
    test_runs: dict[int, int]  # start of a one-line test -> name width of its run


def _children(tree: lark.Tree[lark.Token]) -> Iterator[lark.Tree[lark.Token]]:
    return (c for c in tree.children if isinstance(c, lark.Tree))


def _layout(tree: lark.Tree[lark.Token], text: str) -> _Layout:
    starts: set[int] = set()
    expects: set[int] = set()
    blocks: list[list[lark.Tree[lark.Token]]] = [list(_children(tree))]
    for item in blocks[0]:
        if item.data == "policy":
            blocks.append(list(_children(item)))
    for block in blocks:
        starts.update(s.meta.start_pos for s in block)
        for s in block:
            if s.data == "test":
                expects.update(e.meta.start_pos for e in _children(s))
    define_runs: dict[int, int] = {}
    test_runs: dict[int, int] = {}
    for block in blocks:
        _runs(block, text, "define", define_runs)
        _runs(block, text, "test", test_runs)
    return _Layout(frozenset(starts | expects), frozenset(expects), define_runs, test_runs)


def _runs(block: list[lark.Tree[lark.Token]], text: str, kind: str, out: dict[int, int]) -> None:
    """Group consecutive statements of `kind` (no blank line or comment between them) and
    record the width of the widest name in each group."""
    run: list[tuple[int, int]] = []

    def close() -> None:
        width = max((w for _, w in run), default=0)
        out.update((start, width) for start, _ in run)
        run.clear()

    prev_end = None
    for s in block:
        name = s.children[0]
        one_line = s.meta.line == s.meta.end_line
        eligible = (s.data == kind and isinstance(name, lark.Token)
                    and (kind == "define" or one_line))
        between = text[prev_end:s.meta.start_pos] if prev_end is not None else ""
        own_line_comment = any(ln.lstrip().startswith("#") for ln in between.split("\n")[1:])
        if not eligible or between.count("\n") > 1 or own_line_comment:
            close()
        if eligible:
            run.append((s.meta.start_pos, len(str(name))))
        prev_end = s.meta.end_pos
    close()


def format_text(text: str, filename: str = "<text>") -> str:
    """The canonical form of `text`; raises PolicyError (positioned) if it does not parse."""
    tree = parse_text(text, filename)
    layout = _layout(tree, text)
    toks = _tokens(text)
    out: list[str] = []
    column = 0  # of the output's current line
    depth = 0
    prev: _Tok | None = None
    pad_next = 0  # alignment padding owed before the next token
    lines = 0  # newlines emitted so far
    opened: list[int] = []  # the output line of each open `{`
    define_eq = 0  # 1: the next token is a define's `=`, 2: it follows it (spaced both sides)

    def newline(blank: bool, indent: str) -> None:
        nonlocal column, lines
        lines += 1
        while out and out[-1].endswith(" "):
            out[-1] = out[-1].rstrip(" ")
        out.append("\n\n" if blank else "\n")
        out.append(indent)
        column = len(indent)

    def emit(s: str) -> None:
        nonlocal column
        out.append(s)
        column += len(s)

    for tok in toks:
        gap = text[prev.end:tok.start] if prev is not None else ""
        newlines = gap.count("\n")
        blank = newlines > 1 and prev is not None and prev.text != "{"
        if tok.text == "}":
            depth -= 1
        statement = tok.start in layout.statements
        if prev is None:
            pass
        elif tok.text.startswith("#") and newlines == 0:  # a trailing comment
            emit(" " * max(1, tok.col - column))
        elif prev.text.startswith("#"):
            newline(blank, INDENT * depth if statement or tok.text == "}" or tok.text.startswith("#")
                    else INDENT * depth + CONTINUATION)
        elif tok.text == "}" or statement:
            inline = (tok.start in layout.expects and newlines == 0
                      or tok.text == "}" and bool(opened) and opened[-1] == lines)
            if inline:
                emit(" ")
            else:
                newline(blank and tok.text != "}", INDENT * depth)
        elif tok.text.startswith("#"):  # a whole-line comment inside a statement or before one
            newline(blank, INDENT * depth)
        elif newlines:
            newline(False, INDENT * depth + CONTINUATION)
        elif tok.text == ",":
            pass
        elif prev.text == "," or gap or tok.text == "{" or define_eq:
            emit(" ")
        if pad_next and tok.text in ("=", "{") and newlines == 0:
            emit(" " * pad_next)
        pad_next = 0
        emit(tok.text)
        define_eq = 2 if define_eq == 1 and tok.text == "=" else 0
        if tok.text == "{":
            depth += 1
            opened.append(lines)
        elif tok.text == "}" and opened:
            opened.pop()
        if prev is not None and prev.start in layout.define_runs and prev.text == "define":
            pad_next = layout.define_runs[prev.start] - len(tok.text)
            define_eq = 1
        if prev is not None and prev.start in layout.test_runs and prev.text == "test":
            pad_next = layout.test_runs[prev.start] - len(tok.text)
        prev = tok
    result = "".join(out).rstrip() + "\n"
    return "\n".join(line.rstrip() for line in result.split("\n"))
