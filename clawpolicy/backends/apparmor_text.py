"""AppArmor profile text: floor 2, the escaping the apparmor backend applies to user text.

Every path is a quoted string (apparmor.d(5)). The IR's paths are literal: `* ? [ ] { }` get a
backslash so they match themselves (which also keeps `@{` from naming a variable); `"`, `\\`,
control and invisible characters become octal escapes, so no backslash ever precedes a quote
(the lexer's quoted-string rule would read on past it). User text in comments is one line.
Only the executable is a glob, as the language documents.
"""

from __future__ import annotations

import unicodedata

from clawpolicy.backends.base import clip

_ESCAPED_GLOB = frozenset("*?[]{}")


def aa_escape(text: str, globs: bool = False) -> str:
    """`text` for the inside of a quoted AppArmor string. With `globs` False the text is
    literal: AppArmor's pattern characters get a backslash. `"`, `\\`, control characters and
    invisible or line-breaking non-ASCII characters become octal escapes of their bytes, which
    the parser decodes (parser_misc.c, processunquoted): a backslash is never followed by a
    quote, and the rule reads as it matches."""
    out = []
    for c in text:
        code = ord(c)
        if code == 0:
            raise ValueError("a path cannot contain NUL")
        if c in '"\\' or code < 32 or code == 127:
            out.append(f"\\{code:03o}")
        elif code > 127 and unicodedata.category(c)[0] in "CZ" and c != " ":
            # invisible or line-breaking (bidi controls, U+2028): its UTF-8 bytes, visibly
            out.append("".join(f"\\{b:03o}" for b in c.encode("utf-8")))
        elif not globs and c in _ESCAPED_GLOB:
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)


def path_pattern(path: str) -> str:
    """An IR path (absolute, or ~/ for every home) as a quoted pattern for the path itself
    and everything below it. `{,/**}` also matches the directory with its trailing slash."""
    if path == "~" or path.startswith("~/"):
        head, rest = "@{HOME}", path[1:]  # @{HOME} ends in '/': the parser folds the '//'
    elif path.startswith("/"):
        head, rest = "", path
    else:
        raise ValueError(f"not an absolute or ~/ path: {path!r}")
    rest = rest.rstrip("/")
    tail = "{,/**}" if rest else ("{,**}" if head else "/{,**}")
    return f'"{head}{aa_escape(rest)}{tail}"'


def aa_comment(value: object) -> str:
    """Text for a `#` comment: one line whatever the user wrote (only a line break ends an
    AppArmor comment; every comment line starts with '# ', so it can never be `#include`).
    Invisible format characters (bidi controls) are shown, not obeyed. Bounded: the parser's
    scanner fails on a line of ~16 KiB (base.COMMENT_LINE_MAX_BYTES)."""
    out = []
    for c in str(value):
        category = unicodedata.category(c)
        out.append(" " if category in ("Cc", "Zl", "Zp") else f"<U+{ord(c):04X}>"
                   if category == "Cf" else c)
    return clip("".join(out))


def glob_error(pattern: str) -> str | None:
    """Why an executable glob would not parse (unbalanced {} or []), or None."""
    depth, in_class = 0, False
    for c in pattern:
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                return "a '}' closes nothing"
        elif c == "]":
            return "a ']' closes nothing"
    if in_class or depth:
        return "an unclosed '[' or '{'"
    return None
