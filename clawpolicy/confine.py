"""Documentation fields, confinement and test flows: floor 3, part of lowering.

`RuleLowering` is the base of `lower.PolicyLowering`: it owns what every rule's documentation
must satisfy (a reason; one-line owner and ticket; ISO expiry dates, with expired rules
reported), and lowers the statements that are not network rules: `capabilities`, `sockets`,
`files` and the `expect` flows of `test` blocks.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import posixpath
import re
import unicodedata
from collections.abc import Sequence
from typing import Any, TypeVar, get_args

from clawpolicy import ir
from clawpolicy.errors import Diagnostics, Location, closest
from clawpolicy.includes import parse_literal, parse_port
from clawpolicy.ruleids import IdRequest, assign, content_digest, handle, reserved
from clawpolicy.syntax import (
    Attr,
    CapabilitiesDecl,
    ExpectDecl,
    FilesDecl,
    SocketsDecl,
    SyscallsDecl,
    TestDecl,
    Word,
)

RULE_ID = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
D = TypeVar("D", bound=ir.Documented)
SYSCALL_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$", re.ASCII)
CAPABILITIES = frozenset(ir.CAPABILITIES)
PATH_MAX_BYTES = 4095  # PATH_MAX (4096) less the NUL: the kernel resolves no longer path
SOCKET_FAMILIES: tuple[str, ...] = get_args(ir.SocketFamily)
SOCKET_TYPES: tuple[str, ...] = get_args(ir.SocketType)


def span(loc: Location) -> ir.Span:
    return ir.Span(file=loc.file, line=loc.line, col=loc.col, end_line=loc.end_line or loc.line,
                   end_col=loc.end_col)


class RuleLowering:
    def __init__(self, diagnostics: Diagnostics, today: dt.date) -> None:
        self.diag = diagnostics
        self.today = today
        # each rule declaration's ID request and the IR items it became (with the short ID);
        # `_final_ids` settles the IDs once every declaration of the policy is known
        self.id_requests: list[tuple[IdRequest, Location, list[Any]]] = []

    def _request_id(self, explicit: str | None, prefix: str, named: str, loc: Location,
                    *parts: object) -> str:
        """The declaration's provisional ID (explicit, or the bare automatic one from `named`,
        its ticket or first peer: ruleids); record it."""
        request = (IdRequest(explicit) if explicit
                   else IdRequest(None, prefix, handle(named), content_digest(*parts)))
        self.id_requests.append((request, loc, []))
        return request.base

    def _final_ids(self) -> dict[int, Any]:
        """Number automatic IDs that share a handle (ruleids.assign); report IDs used twice or
        reserved. Returns the items whose ID changed, keyed by id() of the provisional item."""
        requests = [r for r, _, _ in self.id_requests]
        final = assign(requests)
        first: dict[str, Location] = {}
        renamed: dict[int, Any] = {}
        for (request, loc, items), rule_id in zip(self.id_requests, final):
            why = reserved(rule_id) if request.explicit else None
            if why is not None:
                self.diag.error(f"rule id '{rule_id}' is reserved: {why}", loc, "choose another id",
                                code="duplicate")
            if rule_id in first:
                self.diag.error(f"rule id '{rule_id}' is used twice (first at line {first[rule_id].line})",
                                loc, "two rules with the same content are one rule too many; "
                                "otherwise give each an explicit id", code="duplicate")
            first.setdefault(rule_id, loc)
            short = request.base
            if rule_id != short:
                for item in items:
                    renamed[id(item)] = item.model_copy(update={"id": rule_id + item.id[len(short):]})
        return renamed

    def _once(self, current: Any, loc: Location, what: str, new: Any) -> Any:
        if current is not None:
            self.diag.error(f"a policy has one '{what}' statement", loc,
                            f"merge the two '{what}' statements into one", code="duplicate")
            return current
        return new

    def _one_line(self, what: str, word: Word) -> None:
        """Free text ends up in comments, log prefixes and docs: one line, no control codes."""
        if not word.text.strip() or any(
                unicodedata.category(c) in ("Cc", "Zl", "Zp") and c != "\t" for c in word.text):
            self.diag.error(f"'{what}' must be one non-empty line", word.loc,
                            "write it on one line, without control characters", code="docs")

    def _reason_only(self, attrs: Sequence[Attr], what: str) -> str | None:
        """`capabilities` and `sockets` are not rules: they take a reason and nothing else
        (an ignored `expires` would promise an expiry that never happens)."""
        reason = None
        for a in attrs:
            if a.key != "reason":
                self.diag.error(f"'{what}' takes only a reason, not '{a.key}'", a.loc,
                                f"remove '{a.key}'", code="docs")
            elif reason is not None:
                self.diag.error("'reason' is given twice", a.loc, "keep one 'reason'",
                                code="duplicate")
            else:
                self._one_line("reason", a.value)
                reason = a.value.text
        return reason

    # ------------------------------------------------------------------ documentation fields
    def _docs(self, attrs: Sequence[Attr], loc: Location, what: str) -> dict[str, Any] | None:
        docs: dict[str, Any] = {}
        for a in attrs:
            if a.key in docs:
                self.diag.error(f"'{a.key}' is given twice", a.loc, f"keep one '{a.key}'",
                                code="duplicate")
                continue
            if a.key == "expires":
                try:  # fromisoformat alone would also take 20270630 and 2027-W26-3
                    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", a.value.text):
                        raise ValueError(a.value.text)
                    docs[a.key] = dt.date.fromisoformat(a.value.text)
                except ValueError:
                    self.diag.error(f"invalid date '{a.value.text}'", a.value.loc,
                                    "write dates as YYYY-MM-DD", code="date")
                    continue
                if docs[a.key] < self.today:
                    self.diag.warning(f"{what} expired on {a.value.text}", a.value.loc,
                                      "renew it (a new expires date) or remove the rule; "
                                      "--strict makes this an error", code="expired")
            elif a.key == "id":
                if not RULE_ID.match(a.value.text):
                    self.diag.error(f"invalid rule id '{a.value.text}'", a.value.loc,
                                    "ids are 1-32 lower-case letters, digits and '-'", code="name")
                docs[a.key] = a.value.text
            else:
                self._one_line(a.key, a.value)
                docs[a.key] = a.value.text
        if "reason" not in docs:
            self.diag.error(f"{what} has no reason", loc,
                            'every rule says why it exists: add reason "..." after it',
                            code="missing-reason")
            return None
        return docs

    # ------------------------------------------------------------------ confinement
    def _capabilities(self, decl: CapabilitiesDecl) -> ir.Capabilities | None:
        drop_all = False
        keep: list[str] = []
        drop: list[str] = []
        where: dict[str, Location] = {}
        for keyword, names in decl.clauses:
            for w in names:
                cap = w.text.lower().removeprefix("cap_")
                if keyword.text == "drop" and cap == "all":
                    drop_all = True
                elif cap not in CAPABILITIES:
                    guess = closest(cap, CAPABILITIES)
                    self.diag.error(f"unknown capability '{w.text}'", w.loc,
                                    f"did you mean {guess}?" if guess else "see capabilities(7)",
                                    code="capability")
                else:
                    (keep if keyword.text == "keep" else drop).append(cap)
                    where.setdefault(cap, w.loc)
        if keep and not drop_all:
            self.diag.error("'keep' needs 'drop all' first", decl.loc,
                            "write 'capabilities drop all keep NAME, ...'", code="capability")
        for cap in sorted(set(keep) & set(drop)):
            self.diag.error(f"capability '{cap}' is both kept and dropped", where[cap],
                            f"remove '{cap}' from one of the lists", code="capability")
        reason = self._reason_only(decl.attrs, "capabilities")
        return ir.Capabilities(drop_all=drop_all, keep=tuple(sorted(set(keep))),
                               drop=tuple(sorted(set(drop))), reason=reason, span=span(decl.loc))

    def _sockets(self, decl: SocketsDecl) -> ir.Sockets | None:
        kinds: set[ir.SocketKind] = set()
        for words in decl.kinds:
            family, second = words[0], (words[1] if len(words) > 1 else None)
            if family.text not in SOCKET_FAMILIES:
                guess = closest(family.text, SOCKET_FAMILIES)
                self.diag.error(f"unknown socket family '{family.text}'", family.loc,
                                f"did you mean {guess}?" if guess else
                                f"families: {', '.join(SOCKET_FAMILIES)}", code="socket")
                continue
            if second is None or second.text in SOCKET_TYPES:
                kind = ir.SocketKind.model_validate(
                    {"family": family.text, "type": second.text if second else None})
                if family.text == "netlink":
                    self.diag.warning(f"'{kind}' allows every netlink protocol", (second or family).loc,
                                      "name the protocols the agent needs, e.g. 'netlink route' "
                                      "(interface addresses: Node's os.networkInterfaces)",
                                      code="netlink-any")
            elif family.text == "netlink" and second.text in ir.NETLINK_PROTOCOLS:
                kind = ir.SocketKind(family="netlink", protocol=second.text)
            else:
                names = (*SOCKET_TYPES, *ir.NETLINK_PROTOCOLS) if family.text == "netlink" else SOCKET_TYPES
                guess = closest(second.text, names)
                what = "socket type or netlink protocol" if family.text == "netlink" else "socket type"
                self.diag.error(f"unknown {what} '{second.text}'", second.loc,
                                f"did you mean {guess}?" if guess else f"types: {', '.join(SOCKET_TYPES)}"
                                + (f"; netlink protocols: {', '.join(ir.NETLINK_PROTOCOLS)}"
                                   if family.text == "netlink" else ""), code="socket")
                continue
            kinds.add(kind)
        reason = self._reason_only(decl.attrs, "sockets")
        return ir.Sockets(allow=tuple(sorted(kinds, key=lambda k: k.sort_key)), reason=reason,
                          span=span(decl.loc))

    def _files(self, decl: FilesDecl) -> list[ir.FileRule]:
        paths: list[str] = []
        for w in decl.paths:
            if not (w.text.startswith("/") or w.text.startswith("~/")):
                self.diag.error(f"path '{w.text}' must be absolute or start with ~/", w.loc,
                                f"e.g. ~/{w.text.removeprefix('./')} or /{w.text.removeprefix('./')}",
                                code="path")
            elif any(ord(c) < 32 or c == "\x7f" for c in w.text) or "\\" in w.text:
                self.diag.error(f"path '{w.text}' contains a control character or backslash",
                                w.loc, "AppArmor paths are plain '/'-separated text", code="path")
            elif len(w.text.encode("utf-8")) > PATH_MAX_BYTES:
                self.diag.error(f"path '{w.text[:40]}...' is longer than {PATH_MAX_BYTES} bytes", w.loc,
                                "no file has a longer path (PATH_MAX)", code="path")
            elif (clean := _clean_path(w.text)) != (w.text.rstrip("/") or "/"):
                # AppArmor matches resolved paths: a rule naming /a/../b or //b would never match.
                self.diag.error(f"path '{w.text}' is not in canonical form", w.loc,
                                f"write {'~/' if clean == '~' else clean}", code="path")
            else:
                paths.append(w.text.rstrip("/") or "/")
        return self._documented(ir.FileRule, "paths", "f", decl.action, paths, decl.attrs, decl.loc)

    def _syscalls(self, decl: SyscallsDecl) -> list[ir.SyscallRule]:
        """`syscalls allow|deny NAME, ...`: names are checked for shape here; the seccomp
        target checks them against libseccomp's table for each architecture."""
        names: list[str] = []
        for w in decl.names:
            if not SYSCALL_NAME.match(w.text):
                self.diag.error(f"invalid syscall name '{w.text}'", w.loc,
                                "syscall names are lower-case, e.g. ptrace, bpf, mount",
                                code="syscall")
            else:
                names.append(w.text)
        return self._documented(ir.SyscallRule, "names", "s", decl.action, names, decl.attrs,
                                decl.loc)

    def _documented(self, model: type[D], field: str, prefix: str, action_word: Word,
                    items: list[str], attrs: Sequence[Attr], loc: Location) -> list[D]:
        """A confinement rule with its documentation and an ID from its ticket or first item
        (`fd-ssh` for files deny ~/.ssh, `sa-…` for syscalls allow, …: ruleids)."""
        keyword = "files" if field == "paths" else "syscalls"
        docs = self._docs(attrs, loc, f"{keyword} {action_word.text} rule")
        if docs is None or not items:
            return []
        action = ir.Action(action_word.text)
        rule_id = self._request_id(docs.get("id"), prefix + action.value[0],
                                   docs.get("ticket") or items[0], loc, action.value, sorted(items))
        out = [model(id=rule_id, action=action, reason=docs["reason"], owner=docs.get("owner"),
                     ticket=docs.get("ticket"), expires=docs.get("expires"), span=span(loc),
                     id_pinned="id" in docs, **{field: tuple(sorted(set(items)))})]
        self.id_requests[-1][2].extend(out)
        return out

    # ------------------------------------------------------------------ tests
    def _test(self, decl: TestDecl) -> list[ir.Expectation]:
        return [e for e in (self._expect(decl.name.text, x) for x in decl.expects) if e is not None]

    def _expect(self, name: str, x: ExpectDecl) -> ir.Expectation | None:
        direction = ir.Direction(x.direction.text)
        expected = "to" if direction is ir.Direction.EGRESS else "from"
        if x.peer_keyword is not None and x.peer_keyword.text != expected:
            self.diag.error(f"{direction.value} flows use '{expected}', not '{x.peer_keyword.text}'",
                            x.peer_keyword.loc, f"write 'expect ... {direction.value} {expected} HOST'",
                            code="syntax")
        atom = parse_literal(x.peer, self.diag)
        if atom is None:
            return None
        if atom.kind in ("wildcard",) or (atom.kind.startswith("net") and "/" in x.peer.text):
            self.diag.error(f"a test flow names one host, not '{x.peer.text}'", x.peer.loc,
                            "use an address or a full domain name", code="test")
            return None
        if atom.kind == "name" and direction is ir.Direction.INGRESS:
            self.diag.error("ingress flows come from an address", x.peer.loc,
                            "a firewall sees the sender's address, not its name: e.g. 192.0.2.1",
                            code="test")
            return None
        if x.port is None:
            self.diag.error("a test flow needs a port", x.peer.loc,
                            f"add one: {x.peer.text} port 443/tcp (or port icmp)", code="test")
            return None
        port = parse_port(x.port, self.diag)
        if port is None:
            return None
        if port.first != port.last or (port.first is None and port.protocol is not ir.Protocol.ICMP):
            self.diag.error(f"a test flow has one port, not '{x.port.text}'", x.port.loc,
                            "name a single port, e.g. port 443/tcp (or icmp)", code="test")
            return None
        peer = atom.value if atom.kind == "name" else str(ipaddress.ip_network(atom.value).network_address)
        return ir.Expectation(name=name, verdict=ir.Action(x.action.text), direction=direction,
                              peer=peer, protocol=port.protocol, port=port.first,
                              user=x.user.text if x.user else None, span=span(x.loc))


def _clean_path(path: str) -> str:
    """`path` without '.', '..', '//' or a trailing '/', as the IR stores it ('~' for ~/)."""
    home = path.startswith("~/")
    clean = posixpath.normpath("/" + path[2:] if home else path)
    if clean.startswith("//"):  # POSIX keeps a leading '//'; no AppArmor path has one
        clean = "/" + clean.lstrip("/")
    if home:
        return "~" if clean == "/" else "~" + clean
    return clean
