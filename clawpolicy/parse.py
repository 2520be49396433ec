"""Text to syntax tree: floor 2. Loads the one grammar (cached) and turns lark's exceptions
into positioned diagnostics with hints, so no lark exception ever reaches a user.

Building the LALR tables from grammar/clawpolicy.lark costs about 0.1 s per process (lark
parses its own meta-grammar first), which is most of a small compile's start-up. So the built
parser is also shipped as data, grammar/clawpolicy.lalr.pickle (lark's own serialization, with
the grammar's SHA-256 and lark's version), written only by `make golden` (``write_tables``);
``parser()`` uses it when both still match and builds from the grammar otherwise, so a stale
file costs time, never correctness (and a unit test says it is stale). Pickle, not JSON: the
tables hold tuples and integer keys, which JSON could only keep through an object hook called
for each of their 6,000 dicts (46 M instructions per process, against 3 M to unpickle); the
unpickler refuses every class, so the file can hold plain data only, never code."""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import io
import pickle
from pathlib import Path
from typing import Any

import lark
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from clawpolicy.errors import Diagnostic, Location, PolicyError, Severity

# Friendly names for the grammar's terminals, used in "expected ..." messages.
_TERMINAL_NAMES = {
    "WORD": "a name, address, port or date",
    "REF": "an @reference",
    "LABEL": "a pod label key=value",
    "STRING": 'a "quoted string"',
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COMMA": "','",
    "EQUAL": "'='",
    "$END": "end of file",
}

# Common mistakes, recognised by where the parser stopped (lark's match_examples), with hints.
_EXAMPLES: dict[str, list[str]] = {
    "egress rules name their peers with 'to', ingress rules with 'from'":
        ["policy p { allow egress 10.0.0.1 reason \"x\" }", "policy p { allow ingress 10.0.0.1 reason \"x\" }"],
    "separate peers and ports with commas: 'to a.example, b.example port 443/tcp, 80/tcp'":
        ["policy p { allow egress to a.example b.example }", "policy p { allow egress to a.example port 1/tcp 2/tcp }"],
    "a reason is a quoted string: reason \"why this rule exists\"":
        ["policy p { allow egress to a.example reason why }"],
    "a quoted string here follows a keyword (reason \"...\"), and no ',' comes before reason":
        ["policy p { allow egress to a.example, reason \"x\" }",
         "policy p { allow egress to a.example \"x\" }"],
    "every policy needs a name and a body: policy NAME { ... }":
        ["policy { }", "policy p allow"],
    "pods are selected by labels written key=value, without spaces: "
    "applies-to pods app=openclaw[, key=value ...] [in namespace NAME]":
        ["policy p { applies-to pods }", "policy p { applies-to pods app = x }",
         "policy p { applies-to pods app=x namespace y }"],
    "rules start with 'allow' or 'deny', then 'egress' or 'ingress'":
        ["policy p { permit egress to a.example }", "policy p { allow outbound to a.example }"],
}


@functools.cache
def grammar_text() -> str:
    return (importlib.resources.files("clawpolicy") / "grammar" / "clawpolicy.lark").read_text(
        encoding="utf-8")


TABLES = "clawpolicy.lalr.pickle"
_PICKLE_PROTOCOL = 4  # fixed, not HIGHEST_PROTOCOL: the file must not depend on which Python wrote it


def build_parser() -> lark.Lark:
    """The parser built from the grammar text (the slow path; also what the tables hold)."""
    return lark.Lark(grammar_text(), parser="lalr", propagate_positions=True,
                     maybe_placeholders=False)


@functools.cache
def parser() -> lark.Lark:
    tables = _load_tables()
    if tables is not None:
        try:
            return lark.Lark._load_from_dict(tables["data"], tables["memo"])  # type: ignore[no-untyped-call,no-any-return]
        except Exception:  # a table lark cannot read: build instead  # pragma: no cover
            pass
    return build_parser()


def tables_bytes(built: lark.Lark) -> bytes:
    """The serialized parser: lark's `memo_serialize` (dicts, lists, tuples, strings, numbers)
    with the grammar's hash and lark's version, pickled."""
    from lark.grammar import Rule
    from lark.lexer import TerminalDef

    data, memo = built.memo_serialize([TerminalDef, Rule])
    body = {"grammar_sha256": _grammar_hash(), "lark": lark.__version__, "data": data, "memo": memo}
    return pickle.dumps(body, protocol=_PICKLE_PROTOCOL)


def write_tables(directory: Path | None = None, *, force: bool = False) -> Path:
    """Write grammar/clawpolicy.lalr.pickle from the grammar (`make golden` calls this) unless
    it is already fresh: lark numbers the tables' tokens in set-iteration order, so two builds
    of one grammar differ byte for byte, and rewriting a fresh file would only churn it."""
    target = (directory or Path(__file__).resolve().parent / "grammar") / TABLES
    if force or directory is not None or _load_tables() is None:
        target.write_bytes(tables_bytes(build_parser()))
    return target


def _grammar_hash() -> str:
    return hashlib.sha256(grammar_text().encode("utf-8")).hexdigest()


class _PlainData(pickle.Unpickler):
    """An unpickler for containers, strings and numbers only: any class or function named in
    the stream is refused, so loading the tables never runs code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the parser tables name {module}.{name}; plain data expected")


def read_tables(blob: bytes) -> Any:
    return _PlainData(io.BytesIO(blob)).load()


def _load_tables() -> dict[str, Any] | None:
    try:
        blob = (importlib.resources.files("clawpolicy") / "grammar" / TABLES).read_bytes()
        tables = read_tables(blob)
    except (OSError, pickle.UnpicklingError, EOFError, ValueError):
        return None
    if not isinstance(tables, dict) or tables.get("grammar_sha256") != _grammar_hash() \
            or tables.get("lark") != lark.__version__:
        return None
    return tables


def parse_text(text: str, filename: str) -> lark.Tree[lark.Token]:
    """Parse one file's text; raises PolicyError with one positioned diagnostic on bad syntax."""
    try:
        return parser().parse(text)
    except UnexpectedInput as exc:
        raise PolicyError([_diagnose(exc, text, filename)]) from None


def _diagnose(exc: UnexpectedInput, text: str, filename: str) -> Diagnostic:
    hint = _match_hint(exc)
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        char = text[pos] if pos < len(text) else ""
        message = f"unexpected character {char!r}"
        if char == '"':  # STRING did not match: no closing quote before the end of the line
            message = "unterminated string"
            hint = 'close the string with " on the same line'
        elif char in "'`":
            hint = hint or 'strings are written in double quotes: "like this"'
        loc = Location(filename, exc.line, exc.column, exc.column + 1)
    elif isinstance(exc, UnexpectedEOF):
        loc = _end_of(text, filename)
        message = "unexpected end of file"
        hint = hint or "a '}' is probably missing"
    elif isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type == "$END":
            loc = _end_of(text, filename)
            message = "unexpected end of file"
            hint = hint or "a '}' is probably missing"
        else:
            width = len(str(tok)) or 1
            loc = Location(filename, tok.line or 0, tok.column or 0, (tok.column or 0) + width)
            message = f"unexpected {str(tok)!r}, expected {_expected(exc.expected)}"
    else:  # pragma: no cover - lark has no other UnexpectedInput subclasses
        loc = Location(filename, getattr(exc, "line", 0), getattr(exc, "column", 0))
        message = str(exc).splitlines()[0]
    return Diagnostic(Severity.ERROR, message, loc, hint, code="syntax")


def _end_of(text: str, filename: str) -> Location:
    """Where the file ends, counting lines as lark does (only \\n ends a line, unlike
    str.splitlines, which also splits at \\f, \\x85, \\u2028 and others)."""
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":  # the final newline ends the last line
        lines.pop()
    return Location(filename, len(lines), len(lines[-1].rstrip("\r")) + 1)


def _expected(names: set[str]) -> str:
    readable = sorted({_TERMINAL_NAMES.get(n, _keyword(n)) for n in names})
    if len(readable) > 6:
        return ", ".join(readable[:6]) + ", ..."
    return " or ".join(readable) if len(readable) <= 2 else ", ".join(readable)


def _keyword(terminal: str) -> str:
    for term in parser().terminals:
        if term.name == terminal and term.pattern.type == "str":
            return repr(term.pattern.value)
    return terminal.lower()


def _match_hint(exc: UnexpectedInput) -> str | None:
    try:
        label = exc.match_examples(parser().parse, _EXAMPLES, use_accepts=True,
                                   token_type_match_fallback=True)
    except Exception:  # match_examples re-parses examples; never let that hide the real error
        return None
    return label if isinstance(label, str) else None
