"""Untrusted text made safe to print on a terminal: floor 1, shared by every text writer.

Log fields (an AppArmor `name=` decodes from hex to any bytes), flow files, OpenClaw configs
and test names reach the terminal. A raw ESC can recolour or clear the screen and rewrite
the title, a newline or U+2028 can forge a whole output line ("ok", a fake finding), a
bidi override (U+202E) or a zero-width character can make text read other than it is, and
a lone surrogate (from JSON's `\\ud800`) makes printing itself fail. `shown` turns every such
character into a visible escape (`\\x1b`, `\\n`, `\\u202e`), so one input field is one piece
of visible text on one line. JSON output needs none of this (`json.dumps` escapes); Markdown
has its own escaper (`clawpolicy.markdown`).
"""

from __future__ import annotations

# Categories that are never text to show: controls (C0, DEL, C1), format characters
# (bidi controls, zero-width joiners, BOM, soft hyphen, tag characters), surrogates, and the
# line and paragraph separators. `is_hidden` escapes these and a little more.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def is_hidden(c: str) -> bool:
    """A character that does not simply show as itself: one that acts on the terminal or on
    the reading order (HIDDEN_CATEGORIES), and, as `str.isprintable` counts them, private-use
    and unassigned code points (Unicode noncharacters such as U+FFFE among them: invalid in
    XML) and spaces other than U+0020 (a no-break space passes for a space)."""
    return not c.isprintable() and c != " "


def escape_char(c: str) -> str:
    code = ord(c)
    if c in _SHORT:
        return _SHORT[c]
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def shown(value: object) -> str:
    """`value` as one line of visible text: hidden characters become escapes."""
    text = "" if value is None else str(value)
    if text.isprintable():  # fast path: nothing to escape
        return text
    return "".join(escape_char(c) if is_hidden(c) else c for c in text)


def shown_lines(text: str) -> str:
    """A rendered report whose own line breaks are kept and whose every line is `shown`."""
    return "\n".join(shown(line) for line in text.split("\n"))
