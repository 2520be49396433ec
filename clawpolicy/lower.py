"""Syntax nodes to IR: floor 3, the second half of lowering.

Validates every statement of a policy, expands definitions and catalog groups (through
`resolve`), normalises addresses, names and ports, and gives each rule a stable ID derived
from its content (or its explicit `id`), never from its position. All problems of a file are
collected, so one run shows them all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import posixpath
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clawpolicy import ir
from clawpolicy.errors import Diagnostic, Diagnostics, Location, closest
from clawpolicy.netspace import merge_networks, merge_ports
from clawpolicy.resolve import (
    Atom, Resolver, Workspace, display_path, file_defines, load_file, parse_literal, parse_port,
)
from clawpolicy.syntax import (
    Attr, CapabilitiesDecl, Define, ExpectDecl, FilesDecl, PolicyDecl, RuleDecl, Setting,
    SocketsDecl, TestDecl, Word,
)

POLICY_NAME = re.compile(r"^[a-z][a-z0-9-]{0,47}$")
RULE_ID = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
# OpenClaw's gateway and its loopback helper ports (DESIGN.md, field facts).
OPENCLAW_AGENT_PORTS = (ir.PortRange(protocol=ir.Protocol.TCP, first=18789, last=18793),
                        ir.PortRange(protocol=ir.Protocol.TCP, first=18800, last=18899))
CAPABILITIES = frozenset("""chown dac_override dac_read_search fowner fsetid kill setgid setuid
setpcap linux_immutable net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner
sys_module sys_rawio sys_chroot sys_ptrace sys_pacct sys_admin sys_boot sys_nice sys_resource
sys_time sys_tty_config mknod lease audit_write audit_control setfcap mac_override mac_admin
syslog wake_alarm block_suspend audit_read perfmon bpf checkpoint_restore""".split())
SOCKET_FAMILIES = ("unix", "inet", "inet6", "netlink", "packet")
SOCKET_TYPES = ("stream", "dgram", "raw", "seqpacket")


@dataclass
class LoadResult:
    policies: list[ir.Policy] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(d.severity.value == "error" for d in self.diagnostics)


def load_policies(paths: Sequence[Path], today: dt.date | None = None) -> LoadResult:
    """Parse, resolve and lower every policy in `paths`; never raises for bad input."""
    ws = Workspace()
    today = today or dt.date.today()
    policies: list[ir.Policy] = []
    seen: dict[str, Location] = {}
    done: set[str] = set()
    for path in paths:
        source = load_file(ws, path)
        if source is None or source.path in done:  # a file named twice is compiled once
            continue
        done.add(source.path)
        if not source.policies:
            ws.diagnostics.warning(f"{source.path} defines no policy", Location(source.path),
                                   code="empty")
        defines = file_defines(ws, source)
        for decl in source.policies:
            name = decl.name.text
            if name in seen:
                first = seen[name]
                ws.diagnostics.error(f"policy '{name}' is already defined at {first.file}:{first.line}",
                                     decl.name.loc, "policy names must be unique", code="redefined")
                continue
            seen[name] = decl.name.loc
            policy = PolicyLowering(ws.diagnostics, defines, today).lower(decl, source.path)
            if policy is not None:
                policies.append(policy)
    # Shared definitions are checked once per policy that sees them: report each problem once.
    return LoadResult(policies, list(dict.fromkeys(ws.diagnostics.items)), dict(ws.sources))


def span(loc: Location) -> ir.Span:
    return ir.Span(file=loc.file, line=loc.line, col=loc.col, end_line=loc.end_line or loc.line,
                   end_col=loc.end_col)


def stable_id(prefix: str, *parts: object) -> str:
    """A content-derived ID: inserting or moving other rules never changes it."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()
    return f"{prefix}-{digest[:8]}"


class PolicyLowering:
    def __init__(self, diagnostics: Diagnostics, defines: list[Define], today: dt.date) -> None:
        self.diag = diagnostics
        self.file_defines = defines
        self.today = today

    def lower(self, decl: PolicyDecl, source: str) -> ir.Policy | None:
        errors_before = len([d for d in self.diag.items if d.severity.value == "error"])
        name = decl.name.text
        if not POLICY_NAME.match(name):
            self.diag.error(f"invalid policy name '{name}'", decl.name.loc,
                            "use 1-48 lower-case letters, digits and '-', starting with a letter",
                            code="name")
        local = [s for s in decl.body if isinstance(s, Define)]
        self.resolver = Resolver([*self.file_defines, *local], self.diag)
        for define in self.resolver.defines.values():  # unused definitions must be valid too
            for item in define.items:
                self.resolver.resolve(item, (define.name.text,))
        settings = self._settings([s for s in decl.body if isinstance(s, Setting)])
        rules: list[ir.Rule] = []
        files: list[ir.FileRule] = []
        tests: list[ir.Expectation] = []
        caps = socks = None
        for stmt in decl.body:
            if isinstance(stmt, RuleDecl):
                rules.extend(self._rule(stmt))
            elif isinstance(stmt, FilesDecl):
                files.extend(self._files(stmt))
            elif isinstance(stmt, TestDecl):
                tests.extend(self._test(stmt))
            elif isinstance(stmt, CapabilitiesDecl):
                caps = self._once(caps, stmt.loc, "capabilities", self._capabilities(stmt))
            elif isinstance(stmt, SocketsDecl):
                socks = self._once(socks, stmt.loc, "sockets", self._sockets(stmt))
        self._unique_ids([*rules, *files])
        if len([d for d in self.diag.items if d.severity.value == "error"]) > errors_before:
            return None
        return ir.Policy(
            name=name, description=settings.get("description"), owner=settings.get("owner"),
            mode=settings.get("mode", ir.Mode.ENFORCE), scope=settings.get("scope", ir.Scope()),
            rules=tuple(sorted(rules, key=lambda r: r.id)), capabilities=caps, sockets=socks,
            files=tuple(sorted(files, key=lambda f: f.id)), tests=tuple(tests),
            source=source, span=span(decl.loc))

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

    # ------------------------------------------------------------------ settings
    def _settings(self, settings: list[Setting]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, Location] = {}
        agent_ports: tuple[ir.PortRange, ...] | None = None
        for s in settings:
            if s.key in seen:
                self.diag.error(f"'{s.key}' is set twice (first at line {seen[s.key].line})", s.loc,
                                f"keep one '{s.key}'", code="duplicate")
                continue
            seen[s.key] = s.loc
            if s.key in ("description", "owner"):
                out[s.key] = s.values[0].text
            elif s.key == "mode":
                word = s.values[0]
                try:
                    out["mode"] = ir.Mode(word.text)
                except ValueError:
                    guess = closest(word.text, [m.value for m in ir.Mode])
                    self.diag.error(f"unknown mode '{word.text}'", word.loc,
                                    f"did you mean {guess}?" if guess else "mode is enforce or shadow",
                                    code="mode")
            elif s.key == "agent-ports":
                ports = [parse_port(w, self.diag) for w in s.values]
                agent_ports = merge_ports(p for p in ports if p is not None)
            elif s.key == "applies-to":
                chosen = self._scope(s)
                if chosen is not None:  # an invalid scope was reported; go on with the default
                    out["scope"] = chosen
        scope: ir.Scope = out.get("scope", ir.Scope())
        if scope.kind == "user":
            out["scope"] = scope.model_copy(update={"agent_ports": agent_ports or OPENCLAW_AGENT_PORTS})
        elif agent_ports is not None:
            self.diag.error("agent-ports only applies to 'applies-to user ...'", seen["agent-ports"],
                            "a host policy governs every port", code="scope")
        return out

    def _scope(self, s: Setting) -> ir.Scope | None:
        kind = s.values[0]
        if kind.text == "host" and len(s.values) == 1:
            return ir.Scope(kind="host")
        if kind.text == "user" and len(s.values) == 2:
            who = s.values[1].text
            if re.fullmatch(r"[0-9]+", who):  # not str.isdigit(): that admits other scripts' digits
                if int(who) >= 2**32 - 1:  # (uid_t)-1 is "no user" to the kernel
                    self.diag.error(f"uid {who} is out of range", s.values[1].loc,
                                    "uids are 0-4294967294", code="scope")
                    return None
                return ir.Scope(kind="user", user=who, uid=int(who))
            if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}\$?", who):
                self.diag.error(f"invalid user name '{who}'", s.values[1].loc,
                                "a user is a name (lower-case letters, digits, '_', '-') or a uid",
                                code="scope")
                return None
            return ir.Scope(kind="user", user=who)
        if kind.text in ("service", "pods", "container"):
            self.diag.error(f"'applies-to {kind.text}' is not supported yet", kind.loc,
                            "use 'applies-to host' or 'applies-to user NAME'", code="scope")
            return None
        self.diag.error("invalid applies-to", kind.loc,
                        "write 'applies-to host' or 'applies-to user NAME|UID'", code="scope")
        return None

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

    # ------------------------------------------------------------------ network rules
    def _rule(self, decl: RuleDecl) -> list[ir.Rule]:
        direction = ir.Direction(decl.direction.text)
        action = ir.Action(decl.action.text)
        expected = "to" if direction is ir.Direction.EGRESS else "from"
        if decl.peer_keyword.text != expected:
            self.diag.error(f"{direction.value} rules use '{expected}', not '{decl.peer_keyword.text}'",
                            decl.peer_keyword.loc, f"write '{action.value} {direction.value} "
                            f"{expected} ...'", code="syntax")
        atoms: list[Atom] = []
        for word in decl.peers:
            resolved = self.resolver.resolve(word)
            atoms.extend(resolved)
            if direction is ir.Direction.INGRESS:
                named = [a for a in resolved if a.kind in ("name", "wildcard")]
                if named:
                    shown = ("*." if named[0].kind == "wildcard" else "") + named[0].value
                    self.diag.error(f"ingress peers must be addresses, but '{word.text}' names "
                                    f"{shown}", word.loc, "a firewall sees where a packet "
                                    "comes from, not a name; use addresses or CIDRs", code="ingress-fqdn")
        explicit = [p for p in (parse_port(w, self.diag) for w in decl.ports) if p is not None]
        docs = self._docs(decl.attrs, decl.loc, f"{action.value} {direction.value} rule")
        if docs is None or not atoms:
            return []
        base_id = docs.get("id") or stable_id(
            action.value[0] + direction.value[0], direction.value, action.value,
            sorted(w.text.lower() for w in decl.peers), sorted(w.text.lower() for w in decl.ports))
        # Without a port clause, catalog groups bring their own ports and literals mean every
        # port; atoms with different port sets become separate IR rules sharing the docs.
        groups: dict[tuple[ir.PortRange, ...], list[Atom]] = {}
        merged: dict[tuple[ir.PortRange, ...] | None, tuple[ir.PortRange, ...]] = {}
        rule_ports = merge_ports(explicit) if decl.ports else None
        for atom in atoms:
            if rule_ports is not None:
                ports = rule_ports
            elif atom.ports not in merged:
                ports = merged[atom.ports] = merge_ports(atom.ports or ())
            else:
                ports = merged[atom.ports]
            groups.setdefault(ports, []).append(atom)
        ordered = sorted(groups.items(), key=lambda kv: [str(p) for p in kv[0]])
        out = []
        for n, (ports, group) in enumerate(ordered, 1):
            rule_id = base_id if len(ordered) == 1 else f"{base_id}.{n}"
            out.append(ir.Rule(
                id=rule_id, direction=direction, action=action, peers=_peers(group), ports=ports,
                reason=docs["reason"], owner=docs.get("owner"), ticket=docs.get("ticket"),
                expires=docs.get("expires"), origin=tuple(dict.fromkeys(a.origin for a in group)),
                span=span(decl.loc)))
        return out

    def _unique_ids(self, items: Sequence[ir.Rule | ir.FileRule]) -> None:
        seen: dict[str, ir.Span] = {}
        for item in items:
            if item.id in seen:
                first = seen[item.id]
                self.diag.error(f"rule id '{item.id}' is used twice (first at line {first.line})",
                                Location(item.span.file, item.span.line, item.span.col,
                                         item.span.end_col, item.span.end_line),
                                "two rules with the same content are one rule too many; "
                                "otherwise give each an explicit id", code="duplicate")
            seen[item.id] = item.span

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
            family, kind = words[0], (words[1] if len(words) > 1 else None)
            if family.text not in SOCKET_FAMILIES:
                guess = closest(family.text, SOCKET_FAMILIES)
                self.diag.error(f"unknown socket family '{family.text}'", family.loc,
                                f"did you mean {guess}?" if guess else
                                f"families: {', '.join(SOCKET_FAMILIES)}", code="socket")
                continue
            if kind is not None and kind.text not in SOCKET_TYPES:
                guess = closest(kind.text, SOCKET_TYPES)
                self.diag.error(f"unknown socket type '{kind.text}'", kind.loc,
                                f"did you mean {guess}?" if guess else
                                f"types: {', '.join(SOCKET_TYPES)}", code="socket")
                continue
            kinds.add(ir.SocketKind(family=family.text, type=kind.text if kind else None))
        reason = self._reason_only(decl.attrs, "sockets")
        ordered = sorted(kinds, key=lambda k: (SOCKET_FAMILIES.index(k.family), k.type or ""))
        return ir.Sockets(allow=tuple(ordered), reason=reason, span=span(decl.loc))

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
            elif (clean := _clean_path(w.text)) != (w.text.rstrip("/") or "/"):
                # AppArmor matches resolved paths: a rule naming /a/../b or //b would never match.
                self.diag.error(f"path '{w.text}' is not in canonical form", w.loc,
                                f"write {'~/' if clean == '~' else clean}", code="path")
            else:
                paths.append(w.text.rstrip("/") or "/")
        docs = self._docs(decl.attrs, decl.loc, f"files {decl.action.text} rule")
        if docs is None or not paths:
            return []
        action = ir.Action(decl.action.text)
        rule_id = docs.get("id") or stable_id("f" + action.value[0], action.value, sorted(paths))
        return [ir.FileRule(id=rule_id, action=action, paths=tuple(sorted(set(paths))),
                            reason=docs["reason"], owner=docs.get("owner"), ticket=docs.get("ticket"),
                            expires=docs.get("expires"), span=span(decl.loc))]

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


def _peers(atoms: list[Atom]) -> ir.Peers:
    if any(a.kind == "any" for a in atoms):
        return ir.Peers(any=True)
    return ir.Peers(
        ipv4=merge_networks(a.net for a in atoms if isinstance(a.net, ipaddress.IPv4Network)),
        ipv6=merge_networks(a.net for a in atoms if isinstance(a.net, ipaddress.IPv6Network)),
        names=tuple(sorted({a.value for a in atoms if a.kind == "name"})),
        wildcards=tuple(sorted({a.value for a in atoms if a.kind == "wildcard"})),
    )

