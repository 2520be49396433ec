"""Parsing: text → lark tree → syntax nodes. Words keep exact positions, comments and layout
do not matter, keywords stay usable as names, and every syntax error becomes exactly one
positioned diagnostic with a hint (never a lark exception)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import lark
import pytest

from clawpolicy import syntax as syn  # syn.TestDecl: a bare Test* name would make pytest collect it
from clawpolicy.errors import Location, PolicyError, Severity, render
from clawpolicy.lower import load_policies
from clawpolicy.parse import parse_text
from clawpolicy.syntax import (
    CapabilitiesDecl,
    Define,
    FilesDecl,
    RuleDecl,
    Setting,
    SocketsDecl,
    SourceFile,
    ToSyntax,
    unquote,
)

TODAY = dt.date(2026, 11, 1)


def syntax(text: str) -> SourceFile:
    tree = parse_text(text, "f.claw")
    source: SourceFile = ToSyntax("f.claw").transform(tree)
    return source


def test_file_level_items() -> None:
    src = syntax('include "common/x.claw"\ndefine a = 192.0.2.1, @b\n'
                 'policy one { }\npolicy two { }\n')
    assert [i.path.text for i in src.includes] == ["common/x.claw"]
    assert src.includes[0].path.quoted
    assert [(d.name.text, [w.text for w in d.items]) for d in src.defines] == [
        ("a", ["192.0.2.1", "@b"])]
    assert [p.name.text for p in src.policies] == ["one", "two"]


def test_words_keep_their_positions() -> None:
    src = syntax('policy p {\n  allow egress to a.example,  10.0.0.0/8 port 443/tcp\n'
                 '    reason "why"  ticket T-1\n}\n')
    [rule] = src.policies[0].body
    assert isinstance(rule, RuleDecl)
    assert [(w.text, w.loc) for w in rule.peers] == [
        ("a.example", Location("f.claw", 2, 19, 28)), ("10.0.0.0/8", Location("f.claw", 2, 31, 41))]
    assert [(w.text, w.loc.col) for w in rule.ports] == [("443/tcp", 47)]
    assert [(a.key, a.value.text, a.value.loc.line, a.value.loc.col) for a in rule.attrs] == [
        ("reason", "why", 3, 12), ("ticket", "T-1", 3, 26)]
    assert (rule.loc.line, rule.loc.col, rule.loc.end_line) == (2, 3, 3)


def test_comments_and_layout_do_not_matter() -> None:
    spaced = syntax('# heading } " \'\npolicy p {   # a comment with { braces\n'
                    '  allow egress to a.example   # after a peer\n'
                    '    , b.example\n'
                    '    reason "a # is not a comment in a string"\n}  # end\n')
    dense = syntax('policy p{allow egress to a.example,b.example '
                   'reason "a # is not a comment in a string"}')
    [a], [b] = spaced.policies[0].body, dense.policies[0].body
    assert isinstance(a, RuleDecl) and isinstance(b, RuleDecl)
    assert [w.text for w in a.peers] == [w.text for w in b.peers] == ["a.example", "b.example"]
    assert a.attrs[0].value.text == b.attrs[0].value.text == "a # is not a comment in a string"


def test_crlf_and_tabs() -> None:
    src = syntax('policy p {\r\n\tallow egress to a.example reason "r"\r\n}\r\n')
    [rule] = src.policies[0].body
    assert isinstance(rule, RuleDecl) and rule.peers[0].loc == Location("f.claw", 2, 18, 27)


def test_keywords_are_names_where_no_keyword_fits() -> None:
    # The contextual lexer makes a word a keyword only where the grammar expects one.
    src = syntax('define port = 192.0.2.1\npolicy policy { allow egress to @port, test.example '
                 'reason "r" id policy }')
    assert src.defines[0].name.text == "port" and src.policies[0].name.text == "policy"
    [rule] = src.policies[0].body
    assert isinstance(rule, RuleDecl)
    assert [w.text for w in rule.peers] == ["@port", "test.example"]
    assert [(a.key, a.value.text) for a in rule.attrs] == [("reason", "r"), ("id", "policy")]


def test_statements() -> None:
    src = syntax("""policy p {
  description "d"
  owner "o"
  mode shadow
  applies-to user openclaw
  agent-ports 18789/tcp, 9000-9001/tcp
  define x = 192.0.2.1
  capabilities drop all keep net_raw, chown reason "c"
  sockets allow unix, inet stream reason "s"
  files deny ~/.ssh, "/with space" reason "f"
  test "t" { expect allow egress to a.example port 443/tcp as user bob
             expect deny ingress 192.0.2.1 port icmp }
}""")
    body = src.policies[0].body
    settings = [(s.key, [w.text for w in s.values]) for s in body if isinstance(s, Setting)]
    assert settings == [("description", ["d"]), ("owner", ["o"]), ("mode", ["shadow"]),
                        ("applies-to", ["user", "openclaw"]),
                        ("agent-ports", ["18789/tcp", "9000-9001/tcp"])]
    assert [d.name.text for d in body if isinstance(d, Define)] == ["x"]
    [caps] = [s for s in body if isinstance(s, CapabilitiesDecl)]
    assert [(k.text, [w.text for w in names]) for k, names in caps.clauses] == [
        ("drop", ["all"]), ("keep", ["net_raw", "chown"])]
    [socks] = [s for s in body if isinstance(s, SocketsDecl)]
    assert [[w.text for w in kind] for kind in socks.kinds] == [["unix"], ["inet", "stream"]]
    [files] = [s for s in body if isinstance(s, FilesDecl)]
    assert (files.action.text, [(w.text, w.quoted) for w in files.paths]) == (
        "deny", [("~/.ssh", False), ("/with space", True)])
    [test] = [s for s in body if isinstance(s, syn.TestDecl)]
    first, second = test.expects
    assert (first.peer_keyword and first.peer_keyword.text, first.peer.text,
            first.port and first.port.text, first.user and first.user.text) == (
        "to", "a.example", "443/tcp", "bob")
    assert (second.peer_keyword, second.peer.text, second.user) == (None, "192.0.2.1", None)


def test_owner_after_a_rule_continues_the_rule() -> None:
    # The documented LALR shift: `owner "..."` after a rule is the rule's owner.
    src = syntax('policy p {\n  allow egress to a.example reason "r"\n  owner "o"\n}')
    body = src.policies[0].body
    assert len(body) == 1 and isinstance(body[0], RuleDecl)
    assert [a.key for a in body[0].attrs] == ["reason", "owner"]


def test_unquote(subtests: pytest.Subtests) -> None:
    cases = [('"plain"', "plain"), ('"a\\"b"', 'a"b'), ('"a\\\\b"', "a\\b"), ('"\\n"', "\n"),
             ('"\\u00e9"', "é"), ('"\\x41"', "\\x41"), ('"\\ud800"', "\\ud800"),
             ('"\\ud83d\\ude00"', "\U0001f600")]
    for token, expected in cases:
        with subtests.test(token):
            assert unquote(token) == expected


# ====================================================================== syntax errors

SYNTAX_ERRORS = [
    # (name, text, (line, col), message, hint)
    ("unterminated string", 'policy p {\n  allow egress to a.example reason "why }\n}\n',
     (2, 36), "unterminated string", 'close the string with "'),
    ("missing closing brace", 'policy p {\n  allow egress to a.example reason "r"\n',
     (2, 39), "unexpected end of file", "'}' is probably missing"),
    ("single quotes", "policy p {\n  allow egress to a.example reason 'r'\n}\n",
     (2, 36), "unexpected character \"'\"", "a reason is a quoted string"),
    ("backtick", "policy p {\n  owner `o`\n}\n", (2, 9), "unexpected character '`'", "double quotes"),
    ("stray semicolon", 'policy p {\n  mode shadow;\n}\n', (2, 14), "unexpected character ';'", ""),
    ("egress without to", 'policy p {\n  allow egress 1.2.3.4 reason "r"\n}\n',
     (2, 16), "unexpected '1.2.3.4', expected 'from' or 'to'", "name their peers with 'to'"),
    ("missing comma between peers", 'policy p { allow egress to a.example b.example reason "r" }',
     (1, 38), "unexpected 'b.example'", "separate peers and ports with commas"),
    ("missing comma between ports", 'policy p { allow egress to a.example port 1/tcp 2/tcp }',
     (1, 49), "unexpected '2/tcp'", "separate peers and ports with commas"),
    ("comma before reason", 'policy p { allow egress to a.example, reason "r" }',
     (1, 46), "unexpected '\"r\"'", "no ',' comes before reason"),
    ("unquoted reason", 'policy p { allow egress to a.example reason why }',
     (1, 45), "expected a \"quoted string\"", 'reason "why this rule exists"'),
    ("unknown action", "policy p {\n  permit egress to a.example\n}",
     (2, 3), "unexpected 'permit'", "rules start with 'allow' or 'deny'"),
    ("unknown direction", "policy p { allow outbound to a.example }",
     (1, 18), "unexpected 'outbound', expected 'egress' or 'ingress'", "then 'egress' or 'ingress'"),
    ("policy without a name", "policy { }", (1, 8), "unexpected '{'", "policy NAME { ... }"),
    ("extra closing brace", 'policy p { }\n}\n', (2, 1), "unexpected '}'", ""),
    ("unquoted include", "include common/x.claw\n", (1, 9), 'expected a "quoted string"', ""),
    ("end of file in a test", 'policy p { test "t" { expect allow egress', (1, 42),
     "unexpected end of file", "'}' is probably missing"),
    ("form feed does not shift lines", 'policy p {\f\n  allow egress to a.example reason "r"\n',
     (2, 39), "unexpected end of file", ""),
]


def test_syntax_errors(tmp_path: Path, subtests: pytest.Subtests) -> None:
    for n, (name, text, (line, col), message, hint) in enumerate(SYNTAX_ERRORS):
        with subtests.test(name):
            path = tmp_path / f"case{n}.claw"
            path.write_text(text, encoding="utf-8", newline="")
            result = load_policies([path], today=TODAY)  # never raises
            assert result.policies == []
            [diag] = result.diagnostics
            assert (diag.severity, diag.code) == (Severity.ERROR, "syntax")
            assert diag.location is not None
            assert (diag.location.line, diag.location.col) == (line, col)
            assert diag.location.file.endswith(f"case{n}.claw")
            assert message in diag.message
            assert hint in (diag.hint or "")
            with pytest.raises(PolicyError) as raised:  # the parser's own contract
                parse_text(text, "x.claw")
            assert raised.value.diagnostics[0].message == diag.message


def test_rendered_syntax_error_has_a_caret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("bad.claw").write_text('policy p {\n  allow egress 1.2.3.4 reason "r"\n}\n', encoding="utf-8")
    result = load_policies([Path("bad.claw")], today=TODAY)
    assert render(result.diagnostics, result.sources).splitlines() == [
        "bad.claw:2:16: error: unexpected '1.2.3.4', expected 'from' or 'to'",
        '     2 |   allow egress 1.2.3.4 reason "r"',
        "       |                ^^^^^^^",
        "  hint: egress rules name their peers with 'to', ingress rules with 'from'",
    ]


def test_unreadable_files(tmp_path: Path, subtests: pytest.Subtests) -> None:
    with subtests.test("missing"):
        result = load_policies([tmp_path / "nope.claw"], today=TODAY)
        [diag] = result.diagnostics
        assert (diag.severity, diag.code) == (Severity.ERROR, "io")
        assert "no such file" in diag.message
    with subtests.test("not utf-8"):
        (tmp_path / "latin1.claw").write_bytes(b"# caf\xe9\n")
        [diag] = load_policies([tmp_path / "latin1.claw"], today=TODAY).diagnostics
        assert (diag.code, "is not UTF-8 text" in diag.message) == ("io", True)
    with subtests.test("a directory"):
        [diag] = load_policies([tmp_path], today=TODAY).diagnostics
        assert diag.code == "io"
    with subtests.test("no policy: a warning"):
        (tmp_path / "defs.claw").write_text("define x = 192.0.2.1\n", encoding="utf-8")
        result = load_policies([tmp_path / "defs.claw"], today=TODAY)
        assert result.ok
        assert [(d.severity, d.code) for d in result.diagnostics] == [(Severity.WARNING, "empty")]


# ----------------------------------------------------------------------- shipped LALR tables


def test_shipped_tables_are_fresh() -> None:
    """grammar/clawpolicy.lalr.pickle matches the grammar and lark (else `make golden`)."""
    from clawpolicy import parse as P

    assert P._load_tables() is not None, "grammar/clawpolicy.lalr.pickle is stale: run `make golden`"


def test_tables_parser_behaves_as_the_built_one(subtests: pytest.Subtests) -> None:
    """Same trees for every policy in the repository, same errors (message, position, hint) for
    broken ones: the serialized parser is the built parser."""
    from clawpolicy import parse as P

    repo = Path(__file__).resolve().parents[2]
    texts = {str(p.relative_to(repo)): p.read_text(encoding="utf-8")
             for p in sorted([*repo.glob("examples/**/*.claw"), *repo.glob("tests/**/*.claw")])}
    texts.update({f"broken{i}": t for i, t in enumerate((
        "policy p { allow egress 10.0.0.1 reason \"x\" }", "policy p { allow egress to a b }",
        "policy p {", "policy p { allow egress to 10.0.0.1, reason \"x\" }", "policy { }",
        "policy p { deny ingress from 1.2.3.4 port 22/tcp reason 'x' }", "policy p { mode }"))})
    built = P.build_parser()
    loaded = P.parser()
    assert loaded is not built
    for name, text in texts.items():
        with subtests.test(file=name):
            try:
                want: object = built.parse(text)
            except lark.exceptions.UnexpectedInput as exc:
                want = (type(exc).__name__, getattr(exc, "line", None), getattr(exc, "column", None),
                        sorted(getattr(exc, "expected", ()) or ()))
            try:
                got: object = loaded.parse(text)
            except lark.exceptions.UnexpectedInput as exc:
                got = (type(exc).__name__, getattr(exc, "line", None), getattr(exc, "column", None),
                       sorted(getattr(exc, "expected", ()) or ()))
            assert got == want


def test_tables_round_trip_exactly(tmp_path: Path) -> None:
    """The written file reads back as the serialized parser, hash and version included."""
    from clawpolicy import parse as P

    path = P.write_tables(tmp_path)
    tables = P.read_tables(path.read_bytes())
    assert tables["grammar_sha256"] == P._grammar_hash()
    assert tables["lark"] == lark.__version__
    again = P.read_tables(P.tables_bytes(lark.Lark._load_from_dict(tables["data"], tables["memo"])))  # type: ignore[no-untyped-call]
    assert again == tables  # what lark reads from the file is what it wrote


def test_tables_refuse_anything_but_plain_data(subtests: pytest.Subtests,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A pickle naming a class or function (the way a pickle runs code) is refused, and a
    refused or unreadable table file means building from the grammar, not an error."""
    import pickle

    from clawpolicy import parse as P

    refused = {"a function": print, "a class": Path, "a dict holding an object": {1: Path("x")}}
    for name, value in refused.items():
        with subtests.test(holds=name):
            with pytest.raises(pickle.UnpicklingError):
                P.read_tables(pickle.dumps(value, protocol=4))
    plain = {"a": (1, [2, (3,)]), 4: None, ("k", 1): "v"}
    assert P.read_tables(pickle.dumps(plain, protocol=4)) == plain

    def refuse(blob: bytes) -> object:
        raise pickle.UnpicklingError("refused")

    monkeypatch.setattr(P, "read_tables", refuse)
    assert P._load_tables() is None  # so parser() builds from the grammar


# ----------------------------------------------------------------------- PEERS fast path


def _per_token_parser() -> lark.Lark:
    """The grammar without the PEERS fast path: every peer a WORD/REF token (the reference)."""
    from clawpolicy import parse as P

    text = P.grammar_text().replace("_peers: (PEERS | peer)", "_peers: peer")
    assert text != P.grammar_text()
    return lark.Lark(text, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def _outcome(parser: lark.Lark, text: str) -> object:
    try:
        return repr(ToSyntax("f.claw").transform(parser.parse(text)))
    except lark.exceptions.UnexpectedInput as exc:
        return (type(exc).__name__, getattr(exc, "line", None), getattr(exc, "column", None),
                sorted(getattr(exc, "expected", ()) or ()))


def test_peer_list_token_gives_the_same_words_and_errors(subtests: pytest.Subtests) -> None:
    """Whole peer lists lexed as one token give the same syntax nodes (every word, every
    position) and the same errors as one token per peer: blanks, tabs, CRLF, comments and
    keywords inside lists, references, wildcards and mistakes."""
    import random

    from clawpolicy.parse import parser

    reference = _per_token_parser()
    items = ["10.0.0.1", "2001:db8::/32", "@llm", "*.example.com", "api.example.com", "any",
             "port.example", "id-1.example", "reason", "port", "owner", "expires", "id", "x",
             "1.2.3.4/33", "fe80::1%eth0", "[::1]", "a+b", "ports"]
    # Every keyword of the grammar, so a keyword added later is tried inside lists too.
    items += sorted({str(t.pattern.value) for t in reference.terminals
                     if t.pattern.type == "str" and str(t.pattern.value).replace("-", "").isalpha()})
    seps = [",", ", ", " ,", ",\n      ", " , # note, with a comma\n  ", ",\r\n\t", ",,", " ", "\n"]
    tails = ["", " port 443/udp", ' reason "r"', " port 1/tcp, 2/tcp reason \"r\"", ", reason \"r\"",
             " # end\n", " owner \"o\""]
    rng = random.Random(14)
    cases = []
    for _ in range(600):
        peers = rng.choice(items)
        for _ in range(rng.randrange(0, 6)):
            peers += rng.choice(seps) + rng.choice(items)
        head = rng.choice(["allow egress to ", "deny ingress from ", "  allow egress\tto\t"])
        body = f"{head}{peers}{rng.choice(tails)}"
        if rng.random() < 0.3:
            body = f"define d{rng.randrange(3)} = {peers}\n  {head}@d0 reason \"r\""
        cases.append(f"policy p {{\n  {body}\n  allow egress to a.example reason \"x\"\n}}\n")
    for k, text in enumerate(cases):
        with subtests.test(case=k):
            assert _outcome(parser(), text) == _outcome(reference, text), text


# ----------------------------------------------------------------------- the syntax walk


def test_syntax_walk_is_larks_transform(subtests: pytest.Subtests) -> None:
    """ToSyntax.transform (each method looked up once per file) builds exactly what lark's
    generic Transformer.transform builds from the same methods, for every policy here."""
    repo = Path(__file__).resolve().parents[2]
    files = sorted([*repo.glob("examples/**/*.claw"), *repo.glob("tests/**/*.claw")])
    texts = {str(p.relative_to(repo)): p.read_text(encoding="utf-8") for p in files}
    texts["comments and every statement"] = (
        'define web = 1.2.3.4, 10.0.0.0/8 # a comment\n'
        'policy p {\n  applies-to pods app=x, tier=y in namespace z\n  dns resolve a.example reason "r"\n'
        '  allow egress to @web, a.example port 443/tcp, 53/udp reason "x" owner "o" ticket T-1 '
        'expires 2030-01-01 id web-1\n  deny ingress from 10.0.0.1 reason "d" reject\n}\n')
    walked = 0
    for name, text in texts.items():
        try:
            tree = parse_text(text, name)
        except PolicyError:
            continue
        with subtests.test(file=name):
            assert repr(ToSyntax(name).transform(tree)) == repr(lark.Transformer.transform(ToSyntax(name), tree))
            walked += 1
    assert walked >= 10
