"""Parse tree to syntax nodes: floor 2. A lark Transformer with one method per grammar rule.

The nodes keep what was written and where (every word has its own location; a peer list's
words are made only when asked for: `Peers`, so 100,000 addresses cost their texts), but resolve
nothing: names, includes, addresses and ports are checked by `lower`, which can then point at
the exact word that is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lark
from lark import Discard, Transformer, v_args
from lark.tree import Meta

from clawpolicy.errors import Location
from clawpolicy.peerlist import PeerList, Peers
from clawpolicy.peerlist import Word as Word


@dataclass(frozen=True)
class Include:
    path: Word
    loc: Location


@dataclass(frozen=True)
class Define:
    name: Word
    items: Peers
    loc: Location


@dataclass(frozen=True)
class Attr:
    key: str  # reason | owner | ticket | expires | id
    value: Word
    loc: Location


@dataclass(frozen=True)
class RuleDecl:
    action: Word
    direction: Word
    peer_keyword: Word
    peers: Peers
    ports: tuple[Word, ...]
    attrs: tuple[Attr, ...]
    loc: Location
    refusal: Word | None = None  # `reject` or `drop` after the attributes: how a deny refuses


@dataclass(frozen=True)
class DnsResolveDecl:
    """`dns resolve NAMES reason "..."`: names resolvable through the DNS gate, no egress."""

    names: tuple[Word, ...]
    attrs: tuple[Attr, ...]
    loc: Location


@dataclass(frozen=True)
class CapabilitiesDecl:
    clauses: tuple[tuple[Word, tuple[Word, ...]], ...]  # (drop|keep, names)
    attrs: tuple[Attr, ...]
    loc: Location


@dataclass(frozen=True)
class SocketsDecl:
    kinds: tuple[tuple[Word, ...], ...]  # (family,) or (family, type)
    attrs: tuple[Attr, ...]
    loc: Location


@dataclass(frozen=True)
class SyscallsDecl:
    action: Word
    names: tuple[Word, ...]
    attrs: tuple[Attr, ...]
    loc: Location


@dataclass(frozen=True)
class FilesDecl:
    action: Word
    paths: tuple[Word, ...]
    attrs: tuple[Attr, ...]
    loc: Location


@dataclass(frozen=True)
class ExpectDecl:
    action: Word
    direction: Word
    peer_keyword: Word | None
    peer: Word
    port: Word | None
    user: Word | None
    loc: Location


@dataclass(frozen=True)
class TestDecl:
    name: Word
    expects: tuple[ExpectDecl, ...]
    loc: Location


@dataclass(frozen=True)
class Setting:
    key: str  # description | owner | mode | applies-to | agent-ports
    values: tuple[Word, ...]
    loc: Location
    namespace: Word | None = None  # applies-to pods ... in namespace NAME


Statement = (Define | RuleDecl | CapabilitiesDecl | SocketsDecl | SyscallsDecl | FilesDecl
             | TestDecl | Setting | DnsResolveDecl)


@dataclass(frozen=True)
class PolicyDecl:
    name: Word
    body: tuple[Statement, ...]
    loc: Location


@dataclass(frozen=True)
class SourceFile:
    path: str
    includes: tuple[Include, ...] = ()
    defines: tuple[Define, ...] = ()
    policies: tuple[PolicyDecl, ...] = ()
    text: str = field(default="", repr=False)


def unquote(token: str) -> str:
    """Decode a STRING token; the grammar admits JSON-style escapes (\\" \\\\ \\n \\t \\uXXXX).
    Text that JSON cannot decode, or that decodes to a lone surrogate (not Unicode text, and
    unencodable in any output), is kept as written."""
    try:
        value = str(json.loads(token))
        value.encode("utf-8")
    except (json.JSONDecodeError, UnicodeEncodeError):
        value = token[1:-1]
    return value


class ToSyntax(Transformer[lark.Token, Any]):
    """Builds syntax nodes; each method is named after its grammar rule."""

    def __init__(self, filename: str) -> None:
        super().__init__()
        self.filename = filename

    def transform(self, tree: lark.Tree[lark.Token]) -> Any:
        """What lark's `Transformer.transform` does (children first, then the method named
        after the rule or terminal, `v_args` honoured; no method: the node as lark's default
        makes it), with each name's method looked up once per file, not once per node: the
        generic walk (a getattr, a generator and, for a `v_args` method, a new wrapper with
        functools.update_wrapper per node) cost about 40 µs a rule (issue 14)."""
        rules: dict[str, Callable[[lark.Tree[lark.Token], list[Any]], Any]] = {}
        tokens: dict[str, Callable[[lark.Token], Any]] = {}

        def walk(node: lark.Tree[lark.Token]) -> Any:
            children = []
            for child in node.children:
                if isinstance(child, lark.Tree):
                    child = walk(child)
                elif isinstance(child, lark.Token):
                    call = tokens.get(child.type)
                    if call is None:
                        call = tokens[child.type] = self._token_call(child.type)
                    child = call(child)
                if child is not Discard:
                    children.append(child)
            rule = rules.get(node.data)
            if rule is None:
                rule = rules[node.data] = self._rule_call(node.data)
            return rule(node, children)

        return walk(tree)

    def _rule_call(self, name: str) -> Callable[[lark.Tree[lark.Token], list[Any]], Any]:
        method = getattr(self, name, None)
        if method is None:
            return lambda node, children: self.__default__(name, children, node.meta)  # type: ignore[no-untyped-call]
        wrapper = getattr(method, "visit_wrapper", None)
        if wrapper is not None:
            return lambda node, children: wrapper(method, name, children, node.meta)
        return lambda node, children: method(children)

    def _token_call(self, name: str) -> Callable[[lark.Token], Any]:
        method: Callable[[lark.Token], Any] | None = getattr(self, name, None)
        return self.__default_token__ if method is None else method

    def _loc(self, meta: Meta) -> Location:
        return Location(self.filename, getattr(meta, "line", 0), getattr(meta, "column", 0),
                        getattr(meta, "end_column", 0), getattr(meta, "end_line", 0))

    def _word(self, tok: lark.Token) -> Word:
        text = str(tok)
        quoted = tok.type == "STRING"
        loc = Location(self.filename, tok.line or 0, tok.column or 0,
                       (tok.column or 0) + len(text))
        return Word(unquote(text) if quoted else text, loc, quoted)

    # -- leaves
    def WORD(self, tok: lark.Token) -> Word:  # noqa: N802 - lark names terminal callbacks so
        return self._word(tok)

    def STRING(self, tok: lark.Token) -> Word:  # noqa: N802
        return self._word(tok)

    def REF(self, tok: lark.Token) -> Word:  # noqa: N802
        return self._word(tok)

    def PEERS(self, tok: lark.Token) -> PeerList:  # noqa: N802
        return PeerList(self.filename, str(tok), tok.line or 0, tok.column or 0)

    def _kw(self, items: list[lark.Token]) -> Word:
        return self._word(items[0])

    action = direction = peer_keyword = _kw

    def peer(self, items: list[Word]) -> Word:
        return items[0]

    path = peer

    # -- file level
    @v_args(meta=True)
    def start(self, meta: Meta, items: list[Any]) -> SourceFile:
        return SourceFile(
            path=self.filename,
            includes=tuple(i for i in items if isinstance(i, Include)),
            defines=tuple(i for i in items if isinstance(i, Define)),
            policies=tuple(i for i in items if isinstance(i, PolicyDecl)),
        )

    @v_args(meta=True)
    def include(self, meta: Meta, items: list[Word]) -> Include:
        return Include(items[0], self._loc(meta))

    @v_args(meta=True)
    def define(self, meta: Meta, items: list[Any]) -> Define:
        return Define(items[0], Peers(items[1:]), self._loc(meta))

    @v_args(meta=True)
    def policy(self, meta: Meta, items: list[Any]) -> PolicyDecl:
        return PolicyDecl(items[0], tuple(items[1:]), self._loc(meta))

    # -- settings
    def _setting(key: str) -> Any:  # type: ignore[misc]  # a method factory, used below only
        @v_args(meta=True)
        def method(self: ToSyntax, meta: Meta, items: list[Word]) -> Setting:
            return Setting(key, tuple(items), self._loc(meta))
        return method

    description = _setting("description")
    owner = _setting("owner")
    mode = _setting("mode")
    applies_to = _setting("applies-to")
    agent_ports = _setting("agent-ports")
    executable = _setting("executable")

    def LABEL(self, tok: lark.Token) -> Word:  # noqa: N802
        return self._word(tok)

    def pods_namespace(self, items: list[Word]) -> tuple[str, Word]:
        return ("namespace", items[0])

    @v_args(meta=True)
    def pods_scope(self, meta: Meta, items: list[Any]) -> Setting:
        """`applies-to pods LABEL, ... [in namespace NAME]`: the first value is the keyword
        `pods` (where it was written: the start of the statement), then the labels."""
        loc = self._loc(meta)
        labels = tuple(i for i in items if isinstance(i, Word))
        namespace = next((i[1] for i in items if isinstance(i, tuple)), None)
        pods = Word("pods", Location(loc.file, loc.line, loc.col, loc.col + len("applies-to")))
        return Setting("applies-to", (pods, *labels), loc, namespace)
    dns = _setting("dns")

    # -- rules
    def port_clause(self, items: list[Word]) -> tuple[Word, ...]:
        return tuple(items)

    def _attr(key: str) -> Any:  # type: ignore[misc]
        @v_args(meta=True)
        def method(self: ToSyntax, meta: Meta, items: list[Word]) -> Attr:
            return Attr(key, items[0], self._loc(meta))
        return method

    reason = _attr("reason")
    rule_owner = _attr("owner")
    ticket = _attr("ticket")
    expires = _attr("expires")
    rule_id = _attr("id")

    @v_args(meta=True)
    def refusal(self, meta: Meta, items: list[lark.Token]) -> Attr:
        """`reject` | `drop` after a rule's attributes: an Attr keyed `refusal`, which `rule`
        keeps apart from the documentation."""
        return Attr("refusal", self._word(items[0]), self._loc(meta))

    @v_args(meta=True)
    def rule(self, meta: Meta, items: list[Any]) -> RuleDecl:
        action, direction, keyword = items[:3]
        peers = Peers([i for i in items[3:] if isinstance(i, (Word, PeerList))])
        ports: tuple[Word, ...] = next((i for i in items[3:] if isinstance(i, tuple)), ())
        attrs = tuple(i for i in items[3:] if isinstance(i, Attr) and i.key != "refusal")
        refusal = next((i.value for i in items[3:] if isinstance(i, Attr) and i.key == "refusal"), None)
        return RuleDecl(action, direction, keyword, peers, ports, attrs, self._loc(meta), refusal)

    @v_args(meta=True)
    def dns_resolve(self, meta: Meta, items: list[Any]) -> DnsResolveDecl:
        names = tuple(i for i in items if isinstance(i, Word))
        attrs = tuple(i for i in items if isinstance(i, Attr))
        return DnsResolveDecl(names, attrs, self._loc(meta))

    # -- confinement
    def cap_clause(self, items: list[Any]) -> tuple[Word, tuple[Word, ...]]:
        return (self._word(items[0]), tuple(items[1:]))

    @v_args(meta=True)
    def capabilities(self, meta: Meta, items: list[Any]) -> CapabilitiesDecl:
        clauses = tuple(i for i in items if isinstance(i, tuple))
        attrs = tuple(i for i in items if isinstance(i, Attr))
        return CapabilitiesDecl(clauses, attrs, self._loc(meta))

    def socket_kind(self, items: list[Word]) -> tuple[Word, ...]:
        return tuple(items)

    @v_args(meta=True)
    def sockets(self, meta: Meta, items: list[Any]) -> SocketsDecl:
        kinds = tuple(i for i in items if isinstance(i, tuple))
        attrs = tuple(i for i in items if isinstance(i, Attr))
        return SocketsDecl(kinds, attrs, self._loc(meta))

    @v_args(meta=True)
    def syscalls(self, meta: Meta, items: list[Any]) -> SyscallsDecl:
        names = tuple(i for i in items[1:] if isinstance(i, Word))
        attrs = tuple(i for i in items[1:] if isinstance(i, Attr))
        return SyscallsDecl(items[0], names, attrs, self._loc(meta))

    @v_args(meta=True)
    def files(self, meta: Meta, items: list[Any]) -> FilesDecl:
        paths = tuple(i for i in items[1:] if isinstance(i, Word))
        attrs = tuple(i for i in items[1:] if isinstance(i, Attr))
        return FilesDecl(items[0], paths, attrs, self._loc(meta))

    # -- tests
    def expect_port(self, items: list[Word]) -> tuple[str, Word]:
        return ("port", items[0])

    def expect_user(self, items: list[Word]) -> tuple[str, Word]:
        return ("user", items[0])

    @v_args(meta=True)
    def expect(self, meta: Meta, items: list[Any]) -> ExpectDecl:
        action, direction = items[0], items[1]
        rest = items[2:]
        keyword = None
        words = [i for i in rest if isinstance(i, Word)]
        if len(words) == 2:
            keyword, peer = words
        else:
            peer = words[0]
        extras: dict[str, Word] = dict(i for i in rest if isinstance(i, tuple))
        return ExpectDecl(action, direction, keyword, peer, extras.get("port"), extras.get("user"),
                          self._loc(meta))

    @v_args(meta=True)
    def test(self, meta: Meta, items: list[Any]) -> TestDecl:
        return TestDecl(items[0], tuple(items[1:]), self._loc(meta))
