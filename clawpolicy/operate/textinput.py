"""Bounded, positioned reading of untrusted line-oriented input: floor 3, under `logparse` and
`flowfile` (what `explain`, `simulate` and `suggest` read).

Kernel logs and flow files are written by whoever can write a log line (`logger` is enough)
or hand over a file. So a reader never holds more than `MAX_LINE_BYTES` of one line (a
gigabyte without a newline is skipped, not loaded), never raises on one bad line (it is
counted as unreadable, with where and why), and splits lines on `\\n` only: a bare `\\r` or a
U+2028 inside a field is text of that line, never a line break an attacker chose.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

MAX_LINE_BYTES = 1 << 20  # journal JSON lines are the longest legitimate ones: a few KiB
MAX_PROBLEMS_KEPT = 10  # positions kept for the report; the count covers all


@dataclass(frozen=True)
class Overlong:
    """A line longer than `MAX_LINE_BYTES`, skipped without being read whole."""

    size: int


Line = str | Overlong


def read_lines(stream: IO[bytes] | Iterable[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[Line]:
    """Lines of a byte stream, decoded leniently (logs are not always UTF-8), each at most
    `limit` bytes; a longer one is consumed in `limit`-sized pieces and yields `Overlong`."""
    readline = getattr(stream, "readline", None)
    if readline is None:  # a list of byte strings (tests): no unbounded read possible anyway
        for raw in stream:
            yield Overlong(len(raw)) if len(raw) > limit + 1 else _decode(raw)
        return
    while raw := readline(limit + 1):
        if len(raw) <= limit or raw.endswith(b"\n"):
            yield _decode(raw)
            continue
        size = len(raw)
        while (piece := readline(limit + 1)) and not piece.endswith(b"\n"):
            size += len(piece)
        yield Overlong(size + len(piece))


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").removesuffix("\n")


def json_depth(text: str) -> int:
    """Bracket nesting of JSON text outside strings, counted before a recursive decoder
    (CPython's `json` recurses per level: 100,000 `[` is a RecursionError) sees it."""
    depth = deepest = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (c == "\\", c != '"')
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


@dataclass(frozen=True)
class Problem:
    """One line that could not be read: `file:line: why`."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: warning: {self.message}"


@dataclass
class Problems:
    """Unreadable lines: all counted, the first `MAX_PROBLEMS_KEPT` kept with positions."""

    count: int = 0
    first: list[Problem] = field(default_factory=list)

    def add(self, file: str, line: int, message: str) -> None:
        self.count += 1
        if len(self.first) < MAX_PROBLEMS_KEPT:
            self.first.append(Problem(file, line, message))

    def report(self) -> list[str]:
        """Warning lines for stderr (the caller escapes them for the terminal)."""
        out = [str(p) for p in self.first]
        if self.count > len(self.first):
            out.append(f"... and {self.count - len(self.first)} more unreadable lines")
        return out

    def to_json(self) -> list[dict[str, object]]:
        return [{"file": p.file, "line": p.line, "message": p.message} for p in self.first]
