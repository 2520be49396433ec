"""IR to Markdown rule documentation: floor 2, one backend, one entry point (`BACKEND.compile`).

The docs target enforces nothing. From the IR alone it writes what a pull-request reviewer
and an auditor need: every rule with its reason, owner, ticket, expiry and source line; the
confinement settings; the enforcement matrix, built from the `support` tables of the
enforcing targets in `registry.BACKENDS` (the tables the compile-time check reads, so the
docs and the warnings cannot disagree); the policy's `test` blocks with the evaluator's
verdicts; and a Mermaid diagram of the flows.

A peer cell lists at most `PEERS_LISTED` peers, then counts the rest and points at the rule's
source line ("11.0.0.0/24, … and 99,950 more networks (source: FILE:LINE)"): a document of
100,000 networks in one table cell is read by nobody, and writing it out was most of this
backend's time. The full list is the source, the nftables sets and `diff --format json`.

This module prepares plain rows of text; `templates/docs/policy.md.j2` lays them out.
Autoescape is off (Markdown is not HTML), so every piece of user text goes through an
explicit filter: `md_text`/`md_cell` (Markdown), `md_code` (code spans) or `mermaid_label`.
The output depends on the IR only: sorted iteration, no clock, no absolute paths.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clawpolicy.backends import support_tables
from clawpolicy.backends.base import (
    Artifact,
    Backend,
    BackendResult,
    CompileOptions,
    Feature,
    Level,
    Support,
    display_path,
)
from clawpolicy.backends.templating import load_template
from clawpolicy.evaluate import run_tests
from clawpolicy.ir import (
    LOCAL_DNS_ID,
    Action,
    Direction,
    FileRule,
    Mode,
    Peers,
    Policy,
    PortRange,
    Refusal,
    ResolveRule,
    Rule,
    Span,
    SyscallRule,
)
from clawpolicy.markdown import md_cell, md_code, md_text, mermaid_label

if TYPE_CHECKING:
    import jinja2

DIAGRAM_MAX_PEERS = 4  # a node lists this many peers, then "…": the tables hold the full list
PEERS_LISTED = 50  # a table cell lists this many peers, then counts the rest (module docstring)
CONFINEMENT = (Feature.SOCKETS, Feature.CAPABILITIES, Feature.FILES)
Cells = list[object]  # one table row, each cell through md_cell (None reads as a dash)


@dataclass(frozen=True)
class Node:
    id: str
    label: str


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str
    dashed: bool


def where(span: Span) -> str:
    return f"{display_path(span.file)}:{span.line}"


def ports_text(ports: Iterable[PortRange]) -> str:
    return ", ".join(str(p) for p in ports) or "any"


def _canonical(peers: Iterable[str]) -> set[str]:
    out = set()
    for peer in peers:
        try:
            out.add(str(ipaddress.ip_network(peer, strict=False)))
        except ValueError:
            out.add(peer.lower().rstrip("."))
    return out


def _written_as_shown(origin: Sequence[str], shown: Sequence[str]) -> bool:
    """Whether the source spelled the peers as `shown` lists them, up to spelling."""
    return _canonical(origin) == _canonical(shown)


def listed(peers: Peers, limit: int) -> tuple[list[str], int]:
    """The first `limit` peers as `Peers.describe` orders them, and how many there are in
    all; only the listed networks are turned into text (100,000 cost a second a side)."""
    if peers.any:
        return ["any"], 1
    words = [*peers.names, *(f"*.{w}" for w in peers.wildcards)]
    total = len(peers.ipv4) + len(peers.ipv6) + len(words)
    shown = [str(n) for n in itertools.islice(itertools.chain(peers.ipv4, peers.ipv6), limit)]
    return shown + words[:limit - len(shown)], total


def peers_text(rule: Rule) -> str:
    """The peers the rule matches, and the spelling of the source when it says more (a group
    such as @llm, a name defined elsewhere); spelling-only differences are not repeated.
    Past `PEERS_LISTED` peers the rest are counted, and the note gives only the references
    the source used (its `@` words), not its spelling of each network."""
    shown, total = listed(rule.peers, PEERS_LISTED)
    if total <= PEERS_LISTED:
        text = ", ".join(shown)
        if rule.origin and not _written_as_shown(rule.origin, shown):
            text += f" (as written: {_capped(rule.origin)})"
        return text
    networks = len(rule.peers.ipv4) + len(rule.peers.ipv6) - PEERS_LISTED
    rest = [f"{n:,} more {kind}{'' if n == 1 else 's'}" for n, kind in
            ((max(networks, 0), "network"), (total - PEERS_LISTED - max(networks, 0), "name"))
            if n]
    text = (", ".join(shown) + ", … and " + " and ".join(rest) + f" (source: {where(rule.span)})")
    references = [w for w in rule.origin if w.startswith("@")]
    if references:
        text += f" (as written: {_capped(references)}{', …' if len(references) < len(rule.origin) else ''})"
    return text


def _capped(words: Sequence[str]) -> str:
    more = len(words) - PEERS_LISTED
    return ", ".join(words[:PEERS_LISTED]) + (f", … and {more:,} more" if more > 0 else "")


def rule_cells(rule: Rule, with_direction: bool) -> Cells:
    return [rule.id, *([rule.direction.value] if with_direction else []), peers_text(rule),
            ports_text(rule.ports), rule.reason, rule.owner, rule.ticket, rule.expires,
            where(rule.span)]


def _refused(policy: Policy, rule: Rule) -> Cells:
    """A deny row; the direction cell says `reject` where the rule rejects (not drops)."""
    cells = rule_cells(rule, True)
    if policy.refusal(rule.direction, rule) is Refusal.REJECT:
        cells[1] = f"{rule.direction.value}, reject"
    return cells


def rejects_text(policy: Policy) -> str:
    """Which refusals reject: the default deny per direction, and the rules that say so."""
    parts = [f"the default {d.value} deny" for d in Direction
             if policy.refusal(d) is Refusal.REJECT]
    rules = [r.id for r in sorted(policy.rules, key=lambda r: r.id)
             if r.action is Action.DENY and policy.refusal(r.direction, r) is Refusal.REJECT]
    if rules:
        parts.append("rules " + ", ".join(rules))
    return "; ".join(parts)


def file_cells(f: FileRule | SyscallRule) -> Cells:
    """One row for a files or syscalls rule: the same columns, paths or syscall names."""
    items = f.paths if isinstance(f, FileRule) else f.names
    return [f.id, f.action.value, ", ".join(items), f.reason, f.owner, f.ticket,
            f.expires, where(f.span)]


def resolve_cells(rule: ResolveRule) -> Cells:
    """One row for a `dns resolve` rule: its names, wildcards and documentation."""
    return [rule.id, ", ".join(rule.names), ", ".join(f"*.{w}" for w in rule.wildcards), rule.reason,
            rule.owner, rule.ticket, rule.expires, where(rule.span)]


def fqdn_cells(policy: Policy, rule: Rule) -> Cells:
    # Lazy for the same reason as registry in render(); the set names are the nftables
    # target's own, so an auditor can `nft list set` them.
    from clawpolicy.backends.nftables import group_of

    group = group_of(policy, rule)
    sets = [group.set_name(family) for family in (4, 6)] if group else []
    return [rule.id, ", ".join(rule.peers.names), ", ".join(f"*.{w}" for w in rule.peers.wildcards),
            ", ".join(sets)]


def local_dns_cells(policy: Policy) -> list[Cells]:
    """The rule lowering adds for FQDN rules (`Policy.local_dns`), as a row of the deny table."""
    dns = policy.local_dns
    if dns is None:
        return []
    peers = "any but loopback" + (f" (not for user {dns.resolver_user}, the resolver)"
                                  if policy.scope.kind == "host" else "")
    return [[dns.id, Direction.EGRESS.value, peers, ports_text(dns.ports), dns.reason, None, None,
             None, "added for the FQDN rules"]]


def test_cells(policy: Policy) -> list[Cells]:
    """The `test` blocks with the evaluator's verdicts (run_tests keeps the blocks' order)."""
    return [[r.name, str(r.flow), r.expected.value, str(r.verdict), "pass" if r.ok else "FAIL",
             where(t.span)] for t, r in zip(policy.tests, run_tests(policy), strict=True)]


def matrix(enforcing: list[Backend], used: Iterable[tuple[Feature, str, Span]]) -> list[list[str]]:
    """Rows of cells: feature, the rules using it, then one "level: how" per enforcing target."""
    by_feature: dict[Feature, set[str]] = {}
    for feature, rule_id, _ in used:
        by_feature.setdefault(feature, set()).add(rule_id)
    rows = []
    for feature in Feature:  # the enum's order: stable, and the order a reader expects
        if feature in by_feature:
            cells = [feature.value, ", ".join(sorted(by_feature[feature]))]
            for backend in enforcing:
                s = backend.support.get(feature, Support(Level.NO, "not declared"))
                cells.append(f"{s.level.value}: {s.how}")
            rows.append(cells)
    return rows


def diagram(policy: Policy, rules: list[Rule]) -> tuple[str, list[Node], list[Edge]]:
    """One node for the agent and one per rule; edges point the way connections are opened."""
    scope = ("host" if policy.scope.kind == "host" else f"user {policy.scope.user or policy.scope.uid}"
             if policy.scope.kind == "user" else "pods")
    agent = f"{policy.name} ({scope})"
    nodes, edges = [], []
    for n, rule in enumerate(rules, 1):
        node_id = f"n{n}"
        peers, total = listed(rule.peers, DIAGRAM_MAX_PEERS)
        more = total - DIAGRAM_MAX_PEERS
        label = ", ".join(peers) + (f", … (+{more})" if more > 0 else "")
        nodes.append(Node(node_id, label))
        deny = rule.action is Action.DENY
        text = ("deny " if deny else "") + ports_text(rule.ports)
        if rule.direction is Direction.EGRESS:
            edges.append(Edge("agent", node_id, text, deny))
        else:
            edges.append(Edge(node_id, "agent", text, deny))
    return agent, nodes, edges


TEMPLATE = "docs/policy.md.j2"  # and its filters: test_templating.py compiles it ahead of time
TEMPLATE_FILTERS: Mapping[str, Callable[[Any], str]] = {
    "md_text": md_text,
    "md_cell": md_cell,
    "md_code": md_code,
    "mermaid_label": mermaid_label,
}


@functools.cache
def _template() -> jinja2.Template:
    return load_template(TEMPLATE, TEMPLATE_FILTERS)


def render(policy: Policy, options: CompileOptions) -> str:
    # Imported here: registry imports this module to list it in BACKENDS.
    from clawpolicy.backends import nftables, registry

    built = registry.targets_for(policy, tuple(registry.BACKENDS), options)[0]  # what compile builds
    enforcing = sorted((registry.BACKENDS[t] for t in built if registry.BACKENDS[t].enforces),
                       key=lambda b: b.name)
    rules = sorted(policy.rules, key=lambda r: (r.direction.value, r.action.value, r.id))

    def select(direction: Direction | None, action: Action) -> list[Rule]:
        return [r for r in rules if r.action is action and direction in (None, r.direction)]

    confiners = [b.name for b in enforcing if any(
        b.support.get(f, Support(Level.NO, "")).level is not Level.NO for f in CONFINEMENT)]
    tests = test_cells(policy)
    agent, nodes, edges = diagram(policy, rules)
    return _template().render(
        policy=policy, shadow=policy.mode is Mode.SHADOW, source=display_path(policy.source),
        agent_ports=ports_text(policy.scope.agent_ports) if policy.scope.agent_ports else "",
        egress_allow=[rule_cells(r, False) for r in select(Direction.EGRESS, Action.ALLOW)],
        denied=local_dns_cells(policy) + [_refused(policy, r) for r in select(None, Action.DENY)],
        rejects=rejects_text(policy),
        ingress_allow=[rule_cells(r, False) for r in select(Direction.INGRESS, Action.ALLOW)],
        fqdn=[fqdn_cells(policy, r) for r in rules if r.peers.has_fqdns],
        resolve=[resolve_cells(r) for r in sorted(policy.resolve, key=lambda r: r.id)],
        nft_table=nftables.table_name(policy), where=where, local_dns_id=LOCAL_DNS_ID,
        log_prefix=nftables.log_prefix(policy, "would-deny" if policy.mode is Mode.SHADOW else "deny"),
        capabilities=policy.capabilities, sockets=policy.sockets,
        files=[file_cells(f) for f in sorted(policy.files, key=lambda f: f.id)],
        syscalls=[file_cells(s) for s in policy.syscalls],
        confiners=confiners, enforcing=[b.name for b in enforcing],
        columns=["Feature", "Rules", *(b.name for b in enforcing)],
        matrix=matrix(enforcing, registry.features_used(policy)),
        uses_user_scope=policy.scope.kind == "user",
        tests=tests, passed=sum(1 for t in tests if t[4] == "pass"),
        agent=agent, nodes=nodes, edges=edges)


class DocsBackend:
    name = "docs"
    summary = "Markdown documentation: rules, confinement, enforcement matrix, tests, flow diagram"
    enforces = False
    support: Mapping[Feature, Support] = support_tables.DOCS

    def compile(self, policy: Policy, options: CompileOptions) -> BackendResult:
        text = render(policy, options)
        return BackendResult([Artifact("README.md", text.encode("utf-8"), "text/markdown")])


BACKEND = DocsBackend()
