"""Escaping user text for Markdown and Mermaid: floor 1, shared by every Markdown writer
(the docs and k8s targets, `diff`, `explain`). Reasons, names, paths and log fields are user
text; here they become inert text in a cell, a code span or a diagram label."""

from __future__ import annotations

import unicodedata

ABSENT = "—"
# Backslash-escaping ASCII punctuation is valid CommonMark outside code (spec 2.4), and GFM
# tables honour `\|`; `<`, `>` and `&` become entities so no renderer ever sees a tag or an
# entity the user wrote. `$` (GitHub math), `~` (strikethrough) and `#` (closing ATX heading
# marks) are structure on the renderers these files are read in.
MD_ESCAPES = {c: "\\" + c for c in "\\`*_[]|~#$"} | {"<": "&lt;", ">": "&gt;", "&": "&amp;"}
_MD_TABLE = str.maketrans(MD_ESCAPES)
# Mermaid entity codes (mermaid.js.org, flowchart "Entity codes to escape characters"): a
# quote would end the label, `#`/`;` start codes and statements, a leading backtick would
# make a "markdown string", `<`/`>`/`&` would reach the HTML label renderer. `%`: Mermaid
# strips `%%{init: …}%%` directives from the whole text before parsing, labels included, and
# applies them (a label could restyle or reconfigure the diagram: seen with mermaid-cli 11.17).
MERMAID_ESCAPES = {'"': "#quot;", "#": "#35;", ";": "#59;", "<": "#lt;", ">": "#gt;",
                   "&": "#amp;", "`": "#96;", "|": "#124;", "%": "#37;"}
# Invisible characters that reorder or hide text (Trojan Source): shown, not obeyed.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _one_line(value: object) -> str:
    """User text on one line: line breaks and control characters become spaces (a newline
    would end a table row or a Mermaid statement), bidi controls and the other invisible
    format characters (zero-width, BOM, tags) and lone surrogates (which no encoder accepts)
    become visible U+XXXX."""
    text = "" if value is None else str(value)
    if text.isascii() and text.isprintable():  # the common case, at C speed (docs of 100,000 networks)
        return text
    out = []
    for c in text:
        if c in BIDI_CONTROLS or unicodedata.category(c) in ("Cf", "Cs"):
            out.append(f"(U+{ord(c):04X})")
        elif unicodedata.category(c) in ("Cc", "Zl", "Zp"):
            out.append(" ")
        else:
            out.append(c)
    return "".join(out)


def md_text(value: object) -> str:
    """Running Markdown text that cannot open a link, tag, emphasis, code span or heading."""
    return _one_line(value).translate(_MD_TABLE)


def md_cell(value: object) -> str:
    """One table cell: `md_text`, never empty (an absent value reads as a dash)."""
    return md_text(value).strip() or ABSENT


def md_code(value: object) -> str:
    """A code span holding the text literally: the fence is longer than any backtick run
    inside (CommonMark 6.1), padded when the text starts or ends with a backtick."""
    text = _one_line(value)
    longest = run = 0
    for c in text:
        run = run + 1 if c == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def mermaid_label(value: object) -> str:
    """A quoted Mermaid label; node IDs are always generated, never user text."""
    return '"' + "".join(MERMAID_ESCAPES.get(c, c) for c in _one_line(value)) + '"'
