"""Syntax nodes to IR: floor 3, the second half of lowering.

Validates every statement of a policy, expands definitions and catalog groups (through
`includes`), normalises addresses, names and ports, and gives each rule a stable ID: its
explicit `id`, or one from its ticket or first peer (ruleids), never from its content. All
problems of a file are collected, so one run shows them all.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clawpolicy import ir
from clawpolicy.confine import RuleLowering, span
from clawpolicy.errors import Diagnostic, Diagnostics, Location, Severity, closest
from clawpolicy.includes import (
    Atom,
    Resolver,
    Workspace,
    file_defines,
    load_file,
    parse_port,
)
from clawpolicy.kubernetes import DEFAULT_NAMESPACE, label_problem, namespace_problem
from clawpolicy.literals import address_keys, literal_peers, peers_of
from clawpolicy.netspace import merge_ports
from clawpolicy.syntax import (
    CapabilitiesDecl,
    Define,
    DnsResolveDecl,
    FilesDecl,
    PolicyDecl,
    RuleDecl,
    Setting,
    SocketsDecl,
    SyscallsDecl,
    TestDecl,
    Word,
)

POLICY_NAME = re.compile(r"^[a-z](?:[a-z0-9-]{0,46}[a-z0-9])?$")  # a DNS-1123 label
# OpenClaw's gateway and its loopback helper ports (DESIGN.md, field facts).
OPENCLAW_AGENT_PORTS = (ir.PortRange(protocol=ir.Protocol.TCP, first=18789, last=18793),
                        ir.PortRange(protocol=ir.Protocol.TCP, first=18800, last=18899))


@dataclass
class LoadResult:
    policies: list[ir.Policy] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(d.severity.value == "error" for d in self.diagnostics)


def load_policies(paths: Sequence[Path], today: dt.date | None = None,
                  include_root: Path | None = None) -> LoadResult:
    """Parse, resolve and lower every policy in `paths`; never raises for bad input.
    `include_root`: the tree includes must stay in (default: each named file's directory)."""
    ws = Workspace(include_root=include_root)
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


class PolicyLowering(RuleLowering):
    """Lowers one policy: its settings and network rules here, the rest in `RuleLowering`."""

    def __init__(self, diagnostics: Diagnostics, defines: list[Define], today: dt.date) -> None:
        super().__init__(diagnostics, today)
        self.file_defines = defines

    def lower(self, decl: PolicyDecl, source: str) -> ir.Policy | None:
        errors_before = len([d for d in self.diag.items if d.severity.value == "error"])
        name = decl.name.text
        if not POLICY_NAME.match(name):
            self.diag.error(f"invalid policy name '{name}'", decl.name.loc,
                            "use 1-48 lower-case letters, digits and '-', starting with a letter "
                            "and not ending with '-' (it names Kubernetes objects)",
                            code="name")
        local = [s for s in decl.body if isinstance(s, Define)]
        self.resolver = Resolver([*self.file_defines, *local], self.diag)
        for define_name in self.resolver.defines:  # unused definitions must be valid too
            self.resolver.check(define_name)
        settings = self._settings([s for s in decl.body if isinstance(s, Setting)])
        rules: list[ir.Rule] = []
        files: list[ir.FileRule] = []
        syscalls: list[ir.SyscallRule] = []
        tests: list[ir.Expectation] = []
        resolvable: list[ir.ResolveRule] = []
        caps = socks = None
        for stmt in decl.body:
            if isinstance(stmt, RuleDecl):
                rules.extend(self._rule(stmt))
            elif isinstance(stmt, FilesDecl):
                files.extend(self._files(stmt))
            elif isinstance(stmt, SyscallsDecl):
                syscalls.extend(self._syscalls(stmt))
            elif isinstance(stmt, TestDecl):
                tests.extend(self._test(stmt))
            elif isinstance(stmt, DnsResolveDecl):
                resolvable.extend(self._dns_resolve(stmt))
            elif isinstance(stmt, CapabilitiesDecl):
                caps = self._once(caps, stmt.loc, "capabilities", self._capabilities(stmt))
            elif isinstance(stmt, SocketsDecl):
                socks = self._once(socks, stmt.loc, "sockets", self._sockets(stmt))
        renamed = self._final_ids()
        rules = [renamed.get(id(r), r) for r in rules]
        files = [renamed.get(id(f), f) for f in files]
        syscalls = [renamed.get(id(s), s) for s in syscalls]
        resolvable = [renamed.get(id(r), r) for r in resolvable]
        self._unreachable_ingress(rules, settings.get("scope", ir.Scope()))
        if len([d for d in self.diag.items if d.severity.value == "error"]) > errors_before:
            return None
        return ir.Policy(
            name=name, description=settings.get("description"), owner=settings.get("owner"),
            mode=settings.get("mode", ir.Mode.ENFORCE), scope=settings.get("scope", ir.Scope()),
            rules=tuple(sorted(rules, key=lambda r: r.id)), capabilities=caps, sockets=socks,
            files=tuple(sorted(files, key=lambda f: f.id)), tests=tuple(tests),
            syscalls=tuple(sorted(syscalls, key=lambda s: s.id)),
            executable=settings.get("executable"),
            local_dns=self._local_dns(rules, settings.get("scope", ir.Scope()),
                                      settings.get("dns") == "local", decl.loc),
            resolve=tuple(sorted(resolvable, key=lambda r: r.id)),
            source=source, span=span(decl.loc))

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
            elif s.key == "executable":
                out[s.key] = self._executable(s.values[0])
            elif s.key == "dns":
                if s.values[0].text == "local" and any(
                        x.key == "applies-to" and x.values[0].text == "pods" for x in settings):
                    self.diag.error("'dns local' does not apply to pods", s.values[0].loc,
                                    "pods resolve through the cluster DNS; the k8s target allows "
                                    "egress to it when FQDN rules need it", code="dns")
                elif s.values[0].text != "local":
                    self.diag.error(f"unknown dns setting '{s.values[0].text}'", s.values[0].loc,
                                    "write 'dns local': the agent resolves names only through "
                                    "the local resolver (the dnsmasq target)", code="dns")
                out["dns"] = s.values[0].text
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

    def _executable(self, word: Word) -> str | None:
        """The agent's program, as AppArmor attaches a profile to it: an absolute path
        (globs allowed, e.g. /usr/lib/node_modules/openclaw/bin/*)."""
        text = word.text
        if not text.startswith("/") or any(ord(c) < 32 or c in '"\\\x7f' for c in text):
            self.diag.error(f"invalid executable '{text}'", word.loc,
                            'an absolute path, e.g. executable "/usr/bin/node"', code="path")
            return None
        return text

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
        if kind.text == "pods" and len(s.values) > 1 and all(
                "=" in v.text for v in s.values[1:]):  # from the `pods_scope` grammar rule
            return self._pods(s)
        if kind.text in ("service", "pods", "container"):
            self.diag.error(f"'applies-to {kind.text}' is not supported yet", kind.loc,
                            "use 'applies-to host', 'applies-to user NAME' or 'applies-to pods app=NAME'", code="scope")
            return None
        self.diag.error("invalid applies-to", kind.loc,
                        "write 'applies-to host', 'applies-to user NAME|UID' or "
                        "'applies-to pods KEY=VALUE, ... [in namespace NAME]'", code="scope")
        return None

    def _pods(self, s: Setting) -> ir.Scope | None:
        """`applies-to pods LABEL, ... [in namespace NAME]`; without a namespace, Kubernetes'
        own `default`, written into every manifest (never left to kubectl's context)."""
        labels: dict[str, str] = {}
        ok = True
        for word in s.values[1:]:
            key, _, value = word.text.partition("=")
            problem = label_problem(key, value)
            if problem is None and key in labels:
                problem = f"label '{key}' is given twice"
            if problem:
                ok = False
                self.diag.error(f"invalid pod label '{word.text}'", word.loc,
                                f"{problem}; e.g. app=openclaw or app.kubernetes.io/name=openclaw",
                                code="scope")
            labels[key] = value
        namespace = DEFAULT_NAMESPACE
        if s.namespace is not None:
            namespace = s.namespace.text
            problem = namespace_problem(namespace)
            if problem:
                ok = False
                self.diag.error(f"invalid namespace '{namespace}'", s.namespace.loc, problem,
                                code="scope")
        if not ok:
            return None
        return ir.Scope(kind="pods", pod_selector=tuple(sorted(labels.items())), namespace=namespace)

    # ------------------------------------------------------------------ network rules
    def _rule(self, decl: RuleDecl) -> list[ir.Rule]:
        direction = ir.Direction(decl.direction.text)
        action = ir.Action(decl.action.text)
        expected = "to" if direction is ir.Direction.EGRESS else "from"
        if decl.peer_keyword.text != expected:
            self.diag.error(f"{direction.value} rules use '{expected}', not '{decl.peer_keyword.text}'",
                            decl.peer_keyword.loc, f"write '{action.value} {direction.value} "
                            f"{expected} ...'", code="syntax")
        texts = decl.peers.texts
        # A list of address literals only (100,000 of them): integers, no Atom, no Word.
        keys = address_keys(texts)
        atoms: list[Atom] = []
        for index in range(len(texts)) if keys is None else ():
            resolved = self.resolver.resolve_at(decl.peers, index)
            atoms.extend(resolved)
            if direction is ir.Direction.INGRESS:
                named = [a for a in resolved if a.kind in ("name", "wildcard")]
                if named:
                    shown = ("*." if named[0].kind == "wildcard" else "") + named[0].value
                    self.diag.error(f"ingress peers must be addresses, but '{texts[index]}' names "
                                    f"{shown}", decl.peers[index].loc, "a firewall sees where a packet "
                                    "comes from, not a name; use addresses or CIDRs", code="ingress-fqdn")
        explicit = [p for p in (parse_port(w, self.diag) for w in decl.ports) if p is not None]
        docs = self._docs(decl.attrs, decl.loc, f"{action.value} {direction.value} rule")
        refusal = None if decl.refusal is None else ir.Refusal(decl.refusal.text)
        if refusal is not None and action is ir.Action.ALLOW:
            self.diag.error(f"'{refusal.value}' says how a deny refuses; an allow rule refuses nothing",
                            decl.refusal.loc if decl.refusal else decl.loc,
                            f"remove '{refusal.value}', or make the rule 'deny'", code="refusal")
            refusal = None
        if docs is None or not (atoms or keys):
            return []
        base_id = self._request_id(
            docs.get("id"), action.value[0] + direction.value[0],
            docs.get("ticket") or texts[0], decl.loc, direction.value,
            action.value, sorted(t.lower() for t in texts),
            sorted(w.text.lower() for w in decl.ports))
        # Without a port clause, catalog groups bring their own ports and literals mean every
        # port; atoms with different port sets become separate IR rules sharing the docs.
        groups: dict[tuple[ir.PortRange, ...], list[Atom]] = {}
        merged: dict[tuple[ir.PortRange, ...] | None, tuple[ir.PortRange, ...]] = {}
        rule_ports = merge_ports(explicit) if decl.ports else None
        if rule_ports is not None or keys is not None:  # one group (hashing the ports per
            groups[rule_ports or ()] = atoms                # atom costs 1 µs each)
        for atom in atoms if rule_ports is None else ():
            if atom.ports not in merged:
                ports = merged[atom.ports] = merge_ports(atom.ports or ())
            else:
                ports = merged[atom.ports]
            groups.setdefault(ports, []).append(atom)
        ordered = sorted(groups.items(), key=lambda kv: [str(p) for p in kv[0]])
        out = []
        for n, (ports, group) in enumerate(ordered, 1):
            rule_id = base_id if len(ordered) == 1 else f"{base_id}.{n}"
            peers, origin = ((peers_of(group), (a.origin for a in group)) if keys is None
                             else (literal_peers(*keys), texts))
            out.append(ir.Rule(
                id=rule_id, direction=direction, action=action, peers=peers, ports=ports,
                reason=docs["reason"], owner=docs.get("owner"), ticket=docs.get("ticket"),
                expires=docs.get("expires"), origin=tuple(dict.fromkeys(origin)),
                refusal=refusal, span=span(decl.loc), id_pinned="id" in docs))
        self.id_requests[-1][2].extend(out)
        return out

    def _dns_resolve(self, decl: DnsResolveDecl) -> list[ir.ResolveRule]:
        """`dns resolve NAMES`: domain names and wildcards only (definitions and catalog
        groups expand to theirs); an address names nothing to resolve."""
        names: set[str] = set()
        wildcards: set[str] = set()
        for word in decl.names:
            for atom in self.resolver.resolve(word):
                if atom.kind == "name":
                    names.add(atom.value)
                elif atom.kind == "wildcard":
                    wildcards.add(atom.value)
                elif not (word.text.startswith("@") or atom.origin != word.text):
                    self.diag.error(f"'dns resolve' takes domain names, not '{word.text}'", word.loc,
                                    "list names (api.example.com) or wildcards (*.example.com); "
                                    "addresses need no resolving", code="dns")
        docs = self._docs(decl.attrs, decl.loc, "dns resolve statement")
        if docs is None or not (names or wildcards):
            return []
        rule_id = self._request_id(docs.get("id"), "dr", docs.get("ticket") or decl.names[0].text,
                                   decl.loc, "resolve", sorted(names), sorted(wildcards))
        out = [ir.ResolveRule(
            id=rule_id, action=ir.Action.ALLOW, reason=docs["reason"], owner=docs.get("owner"),
            ticket=docs.get("ticket"), expires=docs.get("expires"), span=span(decl.loc),
            id_pinned="id" in docs, names=tuple(sorted(names)), wildcards=tuple(sorted(wildcards)))]
        self.id_requests[-1][2].extend(out)
        return out

    def _unreachable_ingress(self, rules: Sequence[ir.Rule], scope: ir.Scope) -> None:
        """A user-scoped policy governs ingress only on the agent ports: an ingress rule
        for other ports would silently never apply, so say so."""
        if scope.kind != "user":
            return
        for rule in rules:
            if rule.direction is ir.Direction.INGRESS and rule.ports and not any(
                    p.protocol is a.protocol and p.bounds[0] <= a.bounds[1] and a.bounds[0] <= p.bounds[1]
                    for p in rule.ports for a in scope.agent_ports):
                agent = ", ".join(str(p) for p in scope.agent_ports)
                self.diag.warning(
                    f"ingress rule {rule.id} never applies: a policy for user {scope.user} governs "
                    f"ingress only on the agent ports ({agent})", Location(
                        rule.span.file, rule.span.line, rule.span.col),
                    "add the ports to 'agent-ports', or use 'applies-to host'", code="scope")

    def _local_dns(self, rules: Sequence[ir.Rule], scope: ir.Scope, enabled: bool,
                   loc: Location) -> ir.LocalDns | None:
        """`dns local` keeps the agent's DNS on the local resolver (ir.LocalDns), which fills
        the FQDN sets; an allow rule that names DNS ports is then overridden for the agent, so
        say so. Without it, FQDN rules still hold (only addresses in their sets pass), but the
        agent may resolve elsewhere, and a note says how to close that."""
        if not enabled:
            if scope.kind != "pods" and any(r.direction is ir.Direction.EGRESS and r.peers.has_fqdns for r in rules):
                self.diag.items.append(Diagnostic(
                    Severity.NOTE, "FQDN rules admit only addresses the local resolver put into "
                    "their sets, but the agent may still send DNS queries elsewhere", loc,
                    "add 'dns local' to keep the agent's DNS on the local resolver "
                    "(generated/<policy>/dnsmasq/)", code="dns"))
            return None
        dns = ir.LocalDns()
        for rule in rules:
            if rule.direction is not ir.Direction.EGRESS or rule.action is not ir.Action.ALLOW:
                continue
            named = [str(p) for p in rule.ports if p.first is not None and any(
                d.protocol is p.protocol and p.covers(d.protocol, d.first) for d in dns.ports)]
            if not named:
                continue
            where = Location(rule.span.file, rule.span.line, rule.span.col)
            if scope.kind == "user":
                self.diag.warning(
                    f"rule {rule.id} never applies on {', '.join(named)}: with FQDN rules the agent's "
                    f"DNS goes only to the local resolver ({dns.id})", where,
                    "the resolver runs as another user, outside this policy: drop the rule", code="dns")
            else:
                self.diag.items.append(Diagnostic(
                    Severity.NOTE, f"rule {rule.id} applies on {', '.join(named)} only to the "
                    f"resolver's own queries (user {dns.resolver_user}): with FQDN rules every other "
                    f"process's DNS goes to the local resolver ({dns.id})", where, code="dns"))
        return dns
