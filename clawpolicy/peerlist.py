"""Words and peer lists as written: floor 1, the leaves of the syntax nodes (syntax.py).

A `Word` is one item with its position. A peer list (one PEERS token: 100,000 addresses)
stays one `PeerList`; `Peers` gives lowering its items' texts at once and makes their Words,
with positions, only when asked for one (a reference, or an item with a problem to report).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

from clawpolicy.errors import Location


@dataclass(frozen=True, slots=True)  # slots: a peer list may hold 100,000 words
class Word:
    text: str
    loc: Location
    quoted: bool = False


# One item of a PEERS token (the grammar's REF | WORD), a comment to skip, or a line break.
_PEER_ITEM = re.compile(r"#[^\n]*|(\n)|@\w[\w-]*|[\w*~.\/:\[\]][\w*~.\/:\[\]+%-]*")
_PEER_TEXT = re.compile(r"#[^\n]*|@\w[\w-]*|[\w*~.\/:\[\]][\w*~.\/:\[\]+%-]*")


@dataclass(frozen=True, slots=True)
class PeerList:
    """One PEERS token (a whole comma-separated peer list) and where it starts."""

    filename: str
    text: str
    line: int
    column: int

    def texts(self) -> list[str]:
        """The items as written, in order: no Word, no position (a 100,000-address list)."""
        if "#" not in self.text:  # items hold no blank or comma: splitting is exact
            return self.text.replace(",", " ").split()
        return [t for t in _PEER_TEXT.findall(self.text) if t[0] != "#"]

    def words(self) -> tuple[Word, ...]:
        return split_peers(self.filename, self.text, self.line, self.column)


class Peers(Sequence[Word]):
    """The peers of a rule or a definition: single words and whole PEERS tokens, in order.

    `texts` is what lowering reads; a `Word` (with its position) is made only when indexed
    or iterated, i.e. when a peer needs resolving one by one or a diagnostic points at one.
    Equal to, and printed like, the tuple of its words."""

    __slots__ = ("_parts", "_texts", "_words")

    def __init__(self, parts: Sequence[Word | PeerList]) -> None:
        self._parts = tuple(parts)
        self._texts: tuple[str, ...] | None = None
        self._words: tuple[Word, ...] | None = None

    @property
    def texts(self) -> tuple[str, ...]:
        if self._texts is None:
            out: list[str] = []
            for part in self._parts:
                if isinstance(part, Word):
                    out.append(part.text)
                else:
                    out.extend(part.texts())
            self._texts = tuple(out)
        return self._texts

    @property
    def words(self) -> tuple[Word, ...]:
        if self._words is None:
            out: list[Word] = []
            for part in self._parts:
                out.extend((part,) if isinstance(part, Word) else part.words())
            self._words = tuple(out)
        return self._words

    @overload
    def __getitem__(self, index: int) -> Word: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Word, ...]: ...
    def __getitem__(self, index: int | slice) -> Word | tuple[Word, ...]:
        return self.words[index]

    def __len__(self) -> int:
        return len(self.texts)

    def __iter__(self) -> Iterator[Word]:
        return iter(self.words)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Peers):
            other = other.words
        return self.words == other if isinstance(other, tuple) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.words)

    def __repr__(self) -> str:
        return repr(self.words)


def split_peers(filename: str, text: str, line: int, column: int) -> tuple[Word, ...]:
    """The items of a PEERS token starting at line:column, each with the position it has in
    the file (lark counts lines at \n only, columns from 1), as the WORD tokens would have.
    One regex pass that also sees the line breaks: per item, one match and one Word."""
    words: list[Word] = []
    append = words.append
    line_start = -column + 1  # offset in `text` where the current line starts (may be < 0)
    for m in _PEER_ITEM.finditer(text):
        if m.lastindex:  # a line break
            line += 1
            line_start = m.end()
            continue
        item = m.group()
        if item[0] == "#":
            continue
        col = m.start() - line_start + 1
        append(Word(item, Location(filename, line, col, col + len(item))))
    return tuple(words)
