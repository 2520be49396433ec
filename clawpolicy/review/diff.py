"""Semantic diff: what a change to a policy means, with a risk level each. Floor 3.

Computed on the IRs, not the text: network reach by set algebra (`reach`), then
capabilities, sockets, files, syscalls, mode, scope, DNS, the executable, expiries and the
rules' documentation. Rules are matched across versions by what they mean (direction,
action, peers, ports), so reordering or re-wording a rule is not a change in reach.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from clawpolicy.evaluate import evaluate
from clawpolicy.ir import Action, Direction, Mode, Policy, Rule
from clawpolicy.netspace import intervals
from clawpolicy.review.exposure import CREDENTIAL_DIRS, DANGEROUS_CAPS
from clawpolicy.review.peertext import PeerList
from clawpolicy.review.protected import protected_by
from clawpolicy.review.reach import Decider, reach_changes
from clawpolicy.review.risk import Risk, opened, reach_risk

__all__ = ["Change", "Flow", "Ref", "Risk", "at_or_above", "diff_policies", "diff_policy_sets", "opened",
           "reach_risk"]

RAW_SOCKET_FAMILIES = ("packet", "netlink")


@dataclass(frozen=True)
class Ref:
    """A rule on one side of a change: its ID, where it is written, and why it exists."""

    rule_id: str
    where: str = ""
    reason: str = ""

    def __str__(self) -> str:
        return self.rule_id + (f" ({self.where})" if self.where else "")


@dataclass(frozen=True)
class Flow:
    """An edge for the diagram: agent -> peers (egress) or peers -> agent (ingress)."""

    direction: Direction
    peers: str
    ports: str
    added: bool


@dataclass(frozen=True)
class Change:
    policy: str
    category: str
    risk: Risk
    summary: str
    why: str = ""
    old: tuple[Ref, ...] = ()
    new: tuple[Ref, ...] = ()
    flow: Flow | None = None
    peers: Sequence[str] = ()  # reach: every peer the summary may count (JSON lists them; lazy)

    def sort_key(self) -> tuple[object, ...]:
        return (-self.risk.rank, self.policy, CATEGORIES.index(self.category), self.summary)


CATEGORIES = ("policy", "mode", "scope", "reach", "dns", "capabilities", "sockets", "files",
              "syscalls", "executable", "expiry", "documentation", "ids", "tests")


def diff_policy_sets(old: Sequence[Policy], new: Sequence[Policy]) -> list[Change]:
    """Changes between two sets of policies, matched by name; sorted by risk, then policy."""
    before = {p.name: p for p in old}
    after = {p.name: p for p in new}
    changes: list[Change] = []
    for name in sorted(before.keys() | after.keys()):
        o, n = before.get(name), after.get(name)
        if o is None and n is not None:
            changes.append(Change(name, "policy", Risk.MEDIUM, f"policy {name} added",
                                  "a new boundary: review everything it allows",
                                  new=(Ref(name, n.span.where()),)))
        elif n is None and o is not None:
            changes.append(Change(name, "policy", Risk.HIGH, f"policy {name} removed",
                                  "its boundary no longer exists", old=(Ref(name, o.span.where()),)))
        elif o is not None and n is not None:
            changes.extend(diff_policies(o, n))
    return sorted(changes, key=Change.sort_key)


def diff_policies(old: Policy, new: Policy) -> list[Change]:
    name = new.name
    found: list[Change] = []
    for section in (_mode, _refusals, _scope, _reach, _dns, _capabilities, _sockets, _files,
                    _syscalls, _executable, _rule_docs, _renamed_rules, _tests):
        found.extend(section(old, new))
    return sorted((Change(name, c.category, c.risk, c.summary, c.why, c.old, c.new, c.flow, c.peers)
                   for c in found), key=Change.sort_key)


def _ref(policy: Policy, rule_id: str) -> Ref:
    item = policy.rule(rule_id)
    if item is not None:
        return Ref(rule_id, item.span.where(), item.reason)
    if policy.local_dns is not None and rule_id == policy.local_dns.id:
        return Ref(rule_id, policy.span.where(), policy.local_dns.reason)
    return Ref(rule_id)


def _mode(old: Policy, new: Policy) -> Iterator[Change]:
    if old.mode is new.mode:
        return
    if new.mode is Mode.SHADOW:
        yield Change("", "mode", Risk.HIGH, "enforce → shadow: denials are only logged now",
                     "nothing the policy denies is blocked any more")
    else:
        yield Change("", "mode", Risk.LOW, "shadow → enforce: denials now block",
                     "check `clawpolicy explain` on the shadow logs first: what was logged as "
                     "would-deny will fail")


def _refusals(old: Policy, new: Policy) -> Iterator[Change]:
    """How denies refuse (drop or reject, ir.Refusal): the same denials, but what the agent
    and a scanner see changes. Ingress rejects tell a scanner a filter answers: medium."""
    def how(policy: Policy) -> dict[tuple[str, str], str]:
        out = {("default", d.value): policy.refusal(d).value for d in Direction}
        out.update({(r.id, r.direction.value): policy.refusal(r.direction, r).value
                    for r in policy.rules if r.action is Action.DENY})
        return out
    before, after = how(old), how(new)
    for (rule_id, direction), now in sorted(after.items()):
        was = before.get((rule_id, direction))
        if was is None or was == now:
            continue
        what = f"the default {direction} deny" if rule_id == "default" else f"rule {rule_id}"
        scanner = direction == Direction.INGRESS.value and now == "reject"
        refs = () if rule_id == "default" else (_ref(new, rule_id),)
        yield Change("", "mode", Risk.MEDIUM if scanner else Risk.LOW, f"{what}: {was} → {now}",
                     "a scanner now learns that a filter answers here" if scanner else
                     "senders now fail at once (TCP reset, ICMP prohibited)" if now == "reject" else
                     "senders now wait for their timeout", new=refs)


def _scope_text(policy: Policy) -> str:
    s = policy.scope
    if s.kind == "pods":
        labels = ", ".join(f"{k}={v}" for k, v in s.pod_selector)
        return f"pods {labels} in namespace {s.namespace}"
    return "host" if s.kind == "host" else f"{s.kind} {s.user if s.user is not None else s.uid}"


def _scope(old: Policy, new: Policy) -> Iterator[Change]:
    if _scope_text(old) != _scope_text(new):
        yield Change("", "scope", Risk.MEDIUM,
                     f"applies-to {_scope_text(old)} → {_scope_text(new)}",
                     "the traffic the policy fences changed")
    if old.scope.agent_ports != new.scope.agent_ports and new.scope.kind == "user":
        text = ", ".join(str(p) for p in new.scope.agent_ports)
        yield Change("", "scope", Risk.MEDIUM, f"agent ports (ingress scope) now {text}",
                     "ingress outside the agent ports is not fenced")


def _reach(old: Policy, new: Policy) -> Iterator[Change]:
    changes = reach_changes(old, new)
    totals = opened(changes)
    for c in changes:
        total = totals.get((c.direction, c.family, c.new.rule_id), 0) if c.family is not None else 0
        risk, why = reach_risk(c, total)
        where = "to" if c.direction is Direction.EGRESS else "from"
        verb = "now allowed" if c.widened else "now denied"
        shown = c.peers_text()
        summary = f"{c.direction.value} {where} {shown} on {c.ports_text} {verb}"
        yield Change("", "reach", risk, summary, why, _decider_refs(old, c.old), _decider_refs(new, c.new),
                     Flow(c.direction, shown, c.ports_text, c.widened),
                     PeerList(c))
    yield from _protections(old, new)


def _protections(old: Policy, new: Policy) -> Iterator[Change]:
    """Explicit denies of dangerous destinations that are gone while default deny still
    refuses them: reach is unchanged, but the documented intent and the defence in depth
    (against a later, wider allow) are lost. Where the destination became reachable, the
    reach change above already says so (high)."""
    seen: set[str] = set()
    for rule in old.rules:
        for what, flow in protected_by(rule):
            if what in seen:
                continue
            seen.add(what)
            now = evaluate(new, flow)
            if now.action is Action.DENY and now.cause == "default":
                where = "to" if flow.direction is Direction.EGRESS else "from"
                yield Change("", "reach", Risk.LOW,
                             f"explicit deny of {what} removed",
                             f"still denied by default; an allow added later would reach it "
                             f"({flow.direction.value} {where} {flow.peer})",
                             (_ref(old, rule.id),), (Ref("default deny"),))


def _decider_refs(policy: Policy, d: Decider) -> tuple[Ref, ...]:
    if d.rule_id in ("default", "loopback"):
        return (Ref(f"{d.rule_id} {d.action.value}"),)
    return (_ref(policy, d.rule_id),)


def _dns(old: Policy, new: Policy) -> Iterator[Change]:
    if old.local_dns is not None and new.local_dns is None:
        yield Change("", "dns", Risk.MEDIUM, "`dns local` removed: the agent may query other resolvers",
                     "DNS to any allowed resolver can carry data out")
    elif old.local_dns is None and new.local_dns is not None:
        yield Change("", "dns", Risk.LOW, "`dns local` added: DNS only through the local resolver")
    yield from _dns_resolve(old, new)


def _resolvable(policy: Policy) -> dict[str, str]:
    """`dns resolve` entries (name or *.suffix) -> the statement's id."""
    return {entry: r.id for r in policy.resolve for entry in r.describe()}


def _dns_resolve(old: Policy, new: Policy) -> Iterator[Change]:
    """Names the DNS gate may forward without egress: a wildcard lets the agent put any label
    below it into queries that reach that domain's servers (a DNS channel out)."""
    before, after = _resolvable(old), _resolvable(new)
    for entry in sorted(after.keys() - before.keys()):
        wild = entry.startswith("*.")
        yield Change("", "dns", Risk.MEDIUM if wild else Risk.LOW, f"`dns resolve {entry}` added",
                     "any label below it reaches that domain's name servers: a DNS channel out"
                     if wild else "the agent may look the name up (no egress to it)",
                     new=(_ref(new, after[entry]),))
    for entry in sorted(before.keys() - after.keys()):
        yield Change("", "dns", Risk.LOW, f"`dns resolve {entry}` removed", old=(_ref(old, before[entry]),))


def _capabilities(old: Policy, new: Policy) -> Iterator[Change]:
    o, n = old.capabilities, new.capabilities
    if o == n:
        return
    o_all = o is not None and o.drop_all
    n_all = n is not None and n.drop_all
    if o_all and not n_all:
        yield Change("", "capabilities", Risk.HIGH, "capabilities no longer `drop all`",
                     "every capability not named is kept now")
        return
    if not o_all and n_all:
        yield Change("", "capabilities", Risk.LOW, "capabilities now `drop all` "
                     f"keep {', '.join(n.keep) if n else ''}".rstrip())
        return
    if o_all and n_all and o is not None and n is not None:
        for cap in sorted(set(n.keep) - set(o.keep)):
            danger = cap in DANGEROUS_CAPS
            yield Change("", "capabilities", Risk.HIGH if danger else Risk.MEDIUM,
                         f"CAP_{cap.upper()} is now kept",
                         "raw network or system control" if danger else "a new privilege")
        for cap in sorted(set(o.keep) - set(n.keep)):
            yield Change("", "capabilities", Risk.LOW, f"CAP_{cap.upper()} is no longer kept")
        return
    dropped_before = set(o.drop) if o else set()
    dropped_now = set(n.drop) if n else set()
    for cap in sorted(dropped_before - dropped_now):
        yield Change("", "capabilities", Risk.HIGH if cap in DANGEROUS_CAPS else Risk.MEDIUM,
                     f"CAP_{cap.upper()} is no longer dropped")
    for cap in sorted(dropped_now - dropped_before):
        yield Change("", "capabilities", Risk.LOW, f"CAP_{cap.upper()} is now dropped")


def _sockets(old: Policy, new: Policy) -> Iterator[Change]:
    o = {str(k) for k in old.sockets.allow} if old.sockets else None
    n = {str(k) for k in new.sockets.allow} if new.sockets else None
    if o == n:
        return
    if n is None:
        yield Change("", "sockets", Risk.HIGH, "socket families no longer restricted")
        return
    if o is None:
        yield Change("", "sockets", Risk.LOW, f"socket families restricted to {', '.join(sorted(n))}")
        return
    for kind in sorted(n - o):
        if kind.split()[0] in o:  # `netlink` became `netlink route`: narrower, not new
            yield Change("", "sockets", Risk.LOW, f"socket {kind} now allowed, within {kind.split()[0]}")
            continue
        raw = kind.split()[0] in RAW_SOCKET_FAMILIES or kind.endswith("raw")
        yield Change("", "sockets", Risk.HIGH if raw else Risk.MEDIUM, f"socket {kind} now allowed",
                     "raw packets or kernel interfaces" if raw else "")
    for kind in sorted(o - n):
        yield Change("", "sockets", Risk.LOW, f"socket {kind} no longer allowed")


def _paths(policy: Policy, action: Action) -> dict[str, str]:
    return {p: f.id for f in policy.files if f.action is action for p in f.paths}


def _files(old: Policy, new: Policy) -> Iterator[Change]:
    od, nd = _paths(old, Action.DENY), _paths(new, Action.DENY)
    for path in sorted(od.keys() - nd.keys()):
        credential = any(path == c or c.startswith(path.rstrip("/") + "/") for c in CREDENTIAL_DIRS)
        yield Change("", "files", Risk.HIGH if credential else Risk.MEDIUM,
                     f"{path} is no longer denied", "a credential store" if credential else "",
                     old=(_ref(old, od[path]),))
    for path in sorted(nd.keys() - od.keys()):
        yield Change("", "files", Risk.LOW, f"{path} is now denied", new=(_ref(new, nd[path]),))
    oa, na = _paths(old, Action.ALLOW), _paths(new, Action.ALLOW)
    for path in sorted(na.keys() - oa.keys()):
        yield Change("", "files", Risk.MEDIUM, f"{path} is now explicitly allowed",
                     new=(_ref(new, na[path]),))
    for path in sorted(oa.keys() - na.keys()):
        yield Change("", "files", Risk.LOW, f"{path} is no longer explicitly allowed",
                     old=(_ref(old, oa[path]),))


def _syscall_names(policy: Policy, action: Action) -> dict[str, str]:
    return {n: s.id for s in policy.syscalls if s.action is action for n in s.names}


def _syscalls(old: Policy, new: Policy) -> Iterator[Change]:
    for action, widening in ((Action.ALLOW, True), (Action.DENY, False)):
        o, n = _syscall_names(old, action), _syscall_names(new, action)
        for name in sorted(n.keys() - o.keys()):
            yield Change("", "syscalls", Risk.MEDIUM if widening else Risk.LOW,
                         f"syscall {name} now {'added to' if widening else 'removed from'} the baseline",
                         new=(_ref(new, n[name]),))
        for name in sorted(o.keys() - n.keys()):
            yield Change("", "syscalls", Risk.LOW if widening else Risk.MEDIUM,
                         f"syscall {name} no longer {'added to' if widening else 'removed from'} the baseline",
                         old=(_ref(old, o[name]),))


def _executable(old: Policy, new: Policy) -> Iterator[Change]:
    if old.executable != new.executable:
        yield Change("", "executable", Risk.MEDIUM,
                     f"executable {old.executable or '(default)'} → {new.executable or '(default)'}",
                     "the AppArmor profile attaches to another program")


def _meaning(rule: Rule) -> tuple[object, ...]:
    """What a rule decides, as a key (networks as integer intervals: hashing 100,000 network
    objects cost more than the rest of the diff's bookkeeping)."""
    p = rule.peers
    return (rule.direction, rule.action, intervals(p.ipv4), intervals(p.ipv6), p.names, p.wildcards, p.any,
            rule.ports)


def _rule_docs(old: Policy, new: Policy) -> Iterator[Change]:
    before = {_meaning(r): r for r in old.rules}
    for rule in new.rules:
        prev = before.get(_meaning(rule))
        if prev is None:
            continue
        o, n = (_ref(old, prev.id),), (_ref(new, rule.id),)
        if prev.expires != rule.expires:
            if rule.expires is None:
                yield Change("", "expiry", Risk.MEDIUM, f"rule {rule.id} no longer expires "
                             f"(was {prev.expires})", "a temporary exception became permanent", old=o, new=n)
            elif prev.expires is None:
                yield Change("", "expiry", Risk.LOW, f"rule {rule.id} now expires on {rule.expires}", old=o, new=n)
            else:
                yield Change("", "expiry", Risk.LOW,
                             f"rule {rule.id} expires on {rule.expires} (was {prev.expires})", old=o, new=n)
        fields = [f for f in ("reason", "owner", "ticket") if getattr(prev, f) != getattr(rule, f)]
        if fields:
            yield Change("", "documentation", Risk.LOW,
                         f"rule {rule.id}: {', '.join(fields)} changed", old=o, new=n)


def _handle(rule: Rule) -> tuple[Direction, Action, str]:
    """What a reader calls a rule across an edit: its kind and its first peer as written."""
    first = rule.origin[0] if rule.origin else (rule.peers.describe() or [""])[0]
    return (rule.direction, rule.action, first)


def _base_id(rule_id: str) -> str:
    return rule_id.split(".")[0]


def _renamed_rules(old: Policy, new: Policy) -> Iterator[Change]:
    """Rules that are still there but under another ID: an automatic ID follows the rule's
    ticket or first peer and its rank among rules sharing it (ruleids.WHAT_CHANGES_AN_ID), so
    editing the ticket, or inserting a rule of the same handle above it, renames its nftables
    chain, log prefix and counters, and every dashboard or alert built on them (the old ID may
    even name the inserted rule now). Paired by kind and first peer as written, where exactly
    one rule on each side fits (split rules `ID.n` as one)."""
    before = {_base_id(r.id): r for r in old.rules}
    after = {_base_id(r.id): r for r in new.rules}
    for key in sorted({_handle(r) for r in before.values()}, key=str):
        o = [r for r in before.values() if _handle(r) == key]
        n = [r for r in after.values() if _handle(r) == key]
        if len(o) == 1 and len(n) == 1 and _base_id(o[0].id) != _base_id(n[0].id):
            a, b = _base_id(o[0].id), _base_id(n[0].id)
            yield Change("", "ids", Risk.LOW, f"rule {a} is now {b} ({key[0].value} {key[1].value} "
                         f"{'to' if key[0] is Direction.EGRESS else 'from'} {key[2]}, edited)",
                         "nftables chain names, log prefixes and counters follow the ID: dashboards "
                         "and alerts on the old one stop matching; an explicit `id` keeps it",
                         (_ref(old, o[0].id),), (_ref(new, n[0].id),))


def _tests(old: Policy, new: Policy) -> Iterator[Change]:
    o = {t.name for t in old.tests}
    n = {t.name for t in new.tests}
    for name in sorted(n - o):
        yield Change("", "tests", Risk.LOW, f"test \"{name}\" added")
    for name in sorted(o - n):
        yield Change("", "tests", Risk.LOW, f"test \"{name}\" removed",
                     "fewer claims are checked on every build")


def at_or_above(changes: Iterable[Change], threshold: str) -> bool:
    """`--fail-on`: high, medium, any (every change), or never."""
    if threshold == "never":
        return False
    floor = Risk.LOW.rank if threshold == "any" else Risk(threshold).rank
    return any(c.risk.rank >= floor for c in changes)

