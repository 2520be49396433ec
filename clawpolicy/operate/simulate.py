"""Recorded flows against a policy as if it were enforced: what each rule allowed, what would
have been blocked (grouped by peer, port and deciding rule), and which rules matched nothing.

Every flow is decided by the evaluator (the reference semantics) in enforce mode. A record
with both an address and a domain name is decided as the kernel would see it with the
dnsmasq-filled sets: a deny rule matching either the name or the address denies (deny
overrides allow), otherwise an allow matching either allows. Flows are decided once per kind
(`RuleIndex.kind`: direction, protocol, port, user, name and the set of rules that can match
the address, not the address itself): a week of traffic to 90,000 partner addresses is a few
hundred decisions, which is what makes 150,000 flows take about a second.

Times and names come from the flow file as written (validated by `flowfile`, but a time is
free text): the text report escapes every line for the terminal, the Markdown report puts
every value through `clawpolicy.markdown`, the one escaper for Markdown.
"""

from __future__ import annotations

import pwd
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from clawpolicy.evaluate import Flow, Verdict, evaluate
from clawpolicy.ir import Action, Direction, Mode, Policy, Protocol
from clawpolicy.markdown import md_cell, md_code, md_text
from clawpolicy.operate.flowfile import FlowRecord
from clawpolicy.operate.ruleindex import RuleIndex, address_value
from clawpolicy.printable import shown

_Key = tuple[str, Hashable, str, str, int | None, str | None]  # direction, address kind, name, proto, port, uid


@dataclass
class Blocked:
    """Flows enforce mode would have blocked, for one peer, protocol, port and decision."""

    direction: str
    peer: str  # the address (or the name, when the record has no address)
    protocol: str
    port: int | None
    decided_by: str  # rule ID, local-dns-only, or default-egress|default-ingress
    names: set[str] = field(default_factory=set)
    count: int = 0
    first: str = ""
    last: str = ""

    @property
    def by_rule(self) -> bool:
        """Denied by a rule (not the default): allowing it takes removing or narrowing that rule."""
        return not self.decided_by.startswith("default-")

    def to_json(self) -> dict[str, Any]:
        return {"direction": self.direction, "peer": self.peer, "protocol": self.protocol,
                "port": self.port, "decided_by": self.decided_by, "names": sorted(self.names),
                "count": self.count, "first": self.first, "last": self.last}


@dataclass
class Simulation:
    policy: str
    flows: int = 0
    passed: dict[str, int] = field(default_factory=dict)  # loopback / out-of-scope -> count
    allowed: dict[str, int] = field(default_factory=dict)  # rule ID -> flows it allowed
    denied: dict[str, int] = field(default_factory=dict)  # rule ID or default -> flows denied
    blocked: list[Blocked] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)  # rules that matched no flow
    unused_where: dict[str, str] = field(default_factory=dict)
    user: str = ""  # applies-to user: how flows' uids and names were matched to it

    @property
    def blocked_flows(self) -> int:
        return sum(b.count for b in self.blocked)

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "flows": self.flows, "passed": self.passed,
                "allowed": self.allowed, "denied": self.denied, "blocked_flows": self.blocked_flows,
                "blocked": [b.to_json() for b in self.blocked],
                "unused_rules": [{"rule": r, "where": self.unused_where[r]} for r in self.unused],
                "user": self.user}


@dataclass(frozen=True)
class Identity:
    """The spellings of the policy's user in flow records (its name and its uid), and how
    they were found: a record may carry either (`ss` gives uids, a JSON exporter names)."""

    forms: frozenset[str]
    note: str


Lookup = Callable[[str], "int | None"]
ReverseLookup = Callable[[int], "str | None"]


def _host_uid(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _host_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def identity(policy: Policy, users: Mapping[str, int] | None = None, uid_of: Lookup = _host_uid,
             name_of: ReverseLookup = _host_name) -> Identity | None:
    """Both spellings of `applies-to user X`: given on the command line (`--user name=uid`),
    else from this host's user database. None for host and pod policies. When the other
    spelling is unknown the note says so: flows that use it count as other users' traffic."""
    scope = policy.scope
    if scope.kind != "user" or scope.user is None:
        return None
    if scope.uid is not None:  # `applies-to user 995`
        name = next((n for n, u in (users or {}).items() if u == scope.uid), None)
        how = "from --user"
        if name is None:
            name, how = name_of(scope.uid), "on this host"
        if name is None:
            return Identity(frozenset({scope.user}), f"uid {scope.uid} has no user name on this "
                            "host: flows naming a user are matched to it only by --user NAME=UID")
        return Identity(frozenset({scope.user, name}), f"uid {scope.uid} is user {name} {how}")
    uid = (users or {}).get(scope.user)
    how = "from --user"
    if uid is None:
        uid, how = uid_of(scope.user), "on this host"
    if uid is None:
        return Identity(frozenset({scope.user}), f"user {scope.user} does not exist on this host: "
                        f"flows with a numeric uid are not matched to it (give --user {scope.user}=UID)")
    return Identity(frozenset({scope.user, str(uid)}), f"user {scope.user} is uid {uid} {how}")


def _flow(direction: Direction, peer: str, proto: str, port: int | None, uid: str | None) -> Flow:
    protocol = Protocol(proto)
    return Flow(direction, peer, protocol, None if protocol is Protocol.ICMP else port, uid)


def decide(policy: Policy | RuleIndex, flows: Sequence[Flow]) -> Verdict:
    """One decision for the same connection seen by address and by name (see the docstring)."""
    verdicts = [policy.evaluate(f) if isinstance(policy, RuleIndex) else evaluate(policy, f) for f in flows]
    for v in verdicts:
        if v.cause in ("out-of-scope", "loopback"):
            return v
    for v in verdicts:
        if v.action is Action.DENY and v.cause == "rule":
            return v
    for v in verdicts:
        if v.action is Action.ALLOW:
            return v
    return verdicts[0]


class _Decision(NamedTuple):
    """The verdict for one kind of flow, and how its flows are counted."""

    verdict: Verdict
    flows: tuple[Flow, ...]  # as the evaluator saw the first of them (for the unused rules)
    label: str  # the rule ID or default that decided, or the pass cause
    blocks: bool  # denied (enforce mode would have blocked it)


def _decide(index: RuleIndex, record: FlowRecord, name: str, uid: str | None) -> _Decision:
    direction = Direction(record.direction)
    address = record.dst if direction is Direction.EGRESS else record.src
    peers = [p for p in (address, name if direction is Direction.EGRESS else "") if p]
    flows = tuple(_flow(direction, p, record.proto, record.port, uid) for p in peers)
    verdict = decide(index, flows)
    if verdict.cause in ("out-of-scope", "loopback"):
        return _Decision(verdict, flows, verdict.cause, False)
    label = verdict.rule_id or f"default-{record.direction}"
    return _Decision(verdict, flows, label, verdict.action is Action.DENY)


def simulate(policy: Policy, records: Iterable[FlowRecord], users: Mapping[str, int] | None = None,
             who: Identity | None = None) -> Simulation:
    """`users`: name -> uid given by the operator (`--user`), before the host's user database;
    `who`: the identity already worked out (tests).

    A flow's key is what the evaluator reads of it: the address by its kind (remembered per
    address), a uid or name of the policy's user as its own traffic (None) whichever spelling
    the record uses. Flows are counted per key and summed per rule at the end; only blocked
    flows are looked at one by one (their peers, times and names are reported)."""
    policy = policy.with_mode(Mode.ENFORCE)
    who = who if who is not None else identity(policy, users)
    out = Simulation(policy.name, user=who.note if who else "")
    own = who.forms if who else frozenset()
    index = RuleIndex(policy)  # the evaluator, on the rules that can match each address
    kinds: dict[str, Hashable] = {}
    decided: dict[_Key, _Decision] = {}
    tally: dict[_Key, int] = {}
    blocked: dict[tuple[str, str, str, int | None, str], Blocked] = {}
    for record in records:
        direction = record.direction
        address = record.dst if direction == "egress" else record.src
        kind = kinds.get(address)
        if kind is None:
            kind = kinds[address] = index.kind(address) if address else ""
        name = record.name or ""
        uid = None if record.uid in own else record.uid
        key = (direction, kind, name, record.proto, record.port, uid)
        hit = decided.get(key)
        if hit is None:  # the first flow of its kind stands for all of them
            hit = decided[key] = _decide(index, record, name, uid)
            tally[key] = 0
        tally[key] += 1
        if not hit.blocks:
            continue
        group_key = (direction, address or name, record.proto, record.port, hit.label)
        group = blocked.get(group_key)
        if group is None:
            group = blocked[group_key] = Blocked(*group_key, first=record.time)
        group.count += 1
        group.last = record.time
        if name:
            group.names.add(name)
    for key, count in tally.items():
        hit = decided[key]
        out.flows += count
        into = (out.passed if hit.verdict.cause in ("out-of-scope", "loopback")
                else out.allowed if hit.verdict.action is Action.ALLOW else out.denied)
        into[hit.label] = into.get(hit.label, 0) + count
    matched = {i for hit in decided.values() for f in hit.flows for i in index.matching_ids(f)}
    out.unused = sorted(r.id for r in policy.rules if r.id not in matched)
    out.unused_where = {r.id: r.span.where() for r in policy.rules if r.id in out.unused}
    out.blocked = sorted(blocked.values(), key=lambda b: (-b.count, b.direction, _sort_peer(b.peer),
                                                          b.protocol, b.port or 0, b.decided_by))
    out.allowed = dict(sorted(out.allowed.items()))
    out.denied = dict(sorted(out.denied.items()))
    out.passed = dict(sorted(out.passed.items()))
    return out


def _sort_peer(peer: str) -> tuple[int, int, str]:
    where = address_value(peer)
    return (2, 0, peer) if where is None else (where[0] - 4, where[1], "")


# ------------------------------------------------------------------------------ output


def _where(b: Blocked) -> str:
    port = b.protocol if b.port is None else f"{b.port}/{b.protocol}"
    names = f" ({', '.join(sorted(b.names))})" if b.names else ""
    arrow = "to" if b.direction == "egress" else "from"
    return f"{b.direction} {arrow} {b.peer}{names} port {port}"


def render_text(sim: Simulation, limit: int = 50) -> str:
    out = [f"policy {sim.policy}: {sim.flows} flows, as if enforced"]
    if sim.user:
        out.append(f"  ({sim.user})")
    for cause, n in sim.passed.items():
        out.append(f"  {n:>8}  pass ({cause})")
    for rule, n in sim.allowed.items():
        out.append(f"  {n:>8}  allowed by {rule}")
    for rule, n in sim.denied.items():
        out.append(f"  {n:>8}  denied by {rule}")
    out.append(f"would have been blocked: {sim.blocked_flows} flows to {len(sim.blocked)} peer/port groups")
    for b in sim.blocked[:limit]:
        out.append(f"  {b.count:>8}  {_where(b)}  [{b.decided_by}; first {b.first or '-'}, last {b.last or '-'}]")
    if len(sim.blocked) > limit:
        out.append(f"  ... and {len(sim.blocked) - limit} more groups (--format json lists all)")
    out.append("rules that matched no flow (candidates for removal): "
               + (", ".join(f"{r} [{sim.unused_where[r]}]" for r in sim.unused) or "none"))
    return "\n".join(shown(line) for line in out)


def render_markdown(sim: Simulation) -> str:
    out = [f"## Simulation of policy {md_code(sim.policy)} ({sim.flows} flows, as if enforced)", "",
           *([md_text(sim.user), ""] if sim.user else []),
           "| rule | allowed | denied |", "|---|---:|---:|"]
    for rule in sorted(set(sim.allowed) | set(sim.denied)):
        out.append(f"| {md_code(rule)} | {sim.allowed.get(rule, 0)} | {sim.denied.get(rule, 0)} |")
    out += ["", f"### Would have been blocked ({sim.blocked_flows} flows)", "",
            "| flows | direction | peer | names | port | decided by | first | last |",
            "|---:|---|---|---|---|---|---|---|"]
    for b in sim.blocked:
        port = b.protocol if b.port is None else f"{b.port}/{b.protocol}"
        cells = [md_cell(v) for v in (b.direction, b.peer, ", ".join(sorted(b.names)), port)]
        out.append(f"| {b.count} | " + " | ".join(cells) + f" | {md_code(b.decided_by)} "
                   f"| {md_cell(b.first)} | {md_cell(b.last)} |")
    out += ["", "### Rules that matched no flow", ""]
    out += [f"- {md_code(r)} ({md_text(sim.unused_where[r])})" for r in sim.unused] or ["none"]
    return "\n".join(out)
