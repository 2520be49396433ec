"""What the DNS gate decides: floor 3, pure functions over the IR (no sockets, no netlink).

Two questions, asked for every query and every answer:

1. **Which names may reach the upstream** (`GatePolicy.decide`): the names an egress rule
   names (exact, or below a wildcard: one or more labels, never the suffix itself, as
   `ir.Peers` and `evaluate.peer_matches` define it), deny rules included (their addresses must
   reach the deny sets), and the names of `dns resolve` statements (forwarded, no set). Any
   other name is answered by the gate itself: REFUSED, with the extended DNS error 18
   "Prohibited" (RFC 8914) naming the policy. Not NXDOMAIN: the name may well exist, and
   NXDOMAIN is a cacheable claim that it does not (RFC 2308): a cache between the agent and
   the gate would keep failing the name after a reload allowed it, and an operator reading a
   failure would look for a typo instead of a policy. REFUSED says "not here, by policy".
2. **Which addresses go into which set, until when** (`plan_answer`): the CNAME chain is
   followed from the queried name only (records of other owners in the answer are ignored);
   every A/AAAA at the end of the chain goes into the sets of the rules that name the queried
   name, plus the deny sets of every name along the chain (deny overrides allow, as in the
   ruleset). Sets and names come from the nftables backend (`fqdn_groups`,
   `FqdnGroup.set_name`), never re-derived here.

Time: CAP is the set's own `timeout` (the ruleset's `fqdn_timeout`, read from the kernel by
the server): each new connection's `update @set` restarts an element to now + CAP, whatever
timeout the element itself carries (measured on 6.18: an element added with `timeout 5s`
went to 59 s left after one packet through a 60 s set). The gate writes
`{ addr timeout CAP expires E }` with E = max(min(TTL, CAP), floor): on kernel 6.18 only an
explicit `expires` restarts an existing element (a plain re-add leaves the old expiry; see
tests/kernel/test_dnsgate_kernel.py), and an element's expiry can be shortened that way, so
the `Ledger` remembers the latest deadline any answer promised per (set, address) and never
writes an earlier one. Every TTL handed out is capped at CAP: a connection resets the
element to now + CAP, so nothing longer than CAP is ever honoured.
"""

from __future__ import annotations

import enum
import ipaddress
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from clawpolicy.backends.nftables import FqdnGroup, fqdn_groups, table_name
from clawpolicy.ir import Action, Mode, Policy, ResolveRule, Rule

MAX_CHAIN = 16  # CNAME hops followed; a longer chain admits nothing (a loop or an attack)


class Verdict(str, enum.Enum):
    """The gate's decision for one query name (the `verdict=` of its log line)."""

    ALLOW = "allow"  # an allow rule names it: forwarded, addresses into the allow sets
    DENY = "deny"  # a deny rule names it: forwarded, addresses into the deny sets
    RESOLVE = "resolve"  # only `dns resolve` names it: forwarded, no set
    REFUSE = "refuse"  # unlisted: answered REFUSED, never forwarded
    WOULD_REFUSE = "would-refuse"  # unlisted in shadow mode: forwarded and logged

    @property
    def forwards(self) -> bool:
        return self is not Verdict.REFUSE


@dataclass(frozen=True)
class Decision:
    name: str  # the query name, lower-case, no final dot
    verdict: Verdict
    rule_ids: tuple[str, ...] = ()  # the rules that name it, sorted
    sets: tuple[tuple[int, str], ...] = ()  # (family, set name) its addresses go into


@dataclass(frozen=True)
class Record:
    """One answer record as the planner needs it (the server converts dnspython's rrsets)."""

    name: str  # owner, lower-case, no final dot
    rtype: str  # "A", "AAAA", "CNAME", ...
    ttl: int
    value: str  # the address, or the CNAME target (lower-case, no final dot)


@dataclass(frozen=True)
class Element:
    set_name: str
    family: int
    address: str
    expires: int  # seconds from now
    timeout: int  # the element's own timeout, written as CAP (a connection restarts the set's)


@dataclass(frozen=True)
class AnswerPlan:
    chain: tuple[str, ...]  # the queried name, then each CNAME target followed
    addresses: tuple[str, ...]  # A/AAAA at the end of the chain, in answer order
    elements: tuple[Element, ...]  # what goes into the sets (one transaction)
    ttl_cap: int  # every TTL in the reply is at most this


def normalise(name: str) -> str:
    """Query names compare lower-case without the final dot (DNS is case-insensitive, and
    clients randomise case: draft-vixie-dnsext-dns0x20)."""
    return name.rstrip(".").lower()


def labels(name: str) -> list[str]:
    """The labels of a name in presentation format, split on unescaped dots only: dnspython
    writes a dot inside a label as `\\.` (RFC 1035 5.1), and `x\\.chat.test` is one label
    `x.chat` under `test`, not a name below `chat.test`."""
    out, current, i = [], [], 0
    while i < len(name):
        c = name[i]
        if c == "\\":
            current.append(name[i:i + 2])  # \X or the first digit of \DDD (the rest follows)
            i += 2
            continue
        if c == ".":
            out.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    out.append("".join(current))
    return out


def _suffixes(name: str) -> Iterable[str]:
    """The proper suffixes of `name`: what a wildcard `*.suffix` must be for it to match."""
    parts = labels(name)
    for i in range(1, len(parts)):
        yield ".".join(parts[i:])


@dataclass
class _Index:
    exact: dict[str, list[tuple[FqdnGroup | None, Rule | ResolveRule]]] = field(default_factory=dict)
    wild: dict[str, list[tuple[FqdnGroup | None, Rule | ResolveRule]]] = field(default_factory=dict)

    def add(self, group: FqdnGroup | None, rule: Rule | ResolveRule, names: Iterable[str],
            wildcards: Iterable[str]) -> None:
        for n in names:
            self.exact.setdefault(n, []).append((group, rule))
        for w in wildcards:
            self.wild.setdefault(w, []).append((group, rule))

    def matches(self, name: str) -> list[tuple[FqdnGroup | None, Rule | ResolveRule]]:
        out = list(self.exact.get(name, ()))
        for suffix in _suffixes(name):
            out.extend(self.wild.get(suffix, ()))
        return out


class GatePolicy:
    """One policy, indexed for the gate. `mode` overrides the policy's own (`--mode`)."""

    def __init__(self, policy: Policy, mode: Mode | None = None) -> None:
        self.policy = policy
        self.name = policy.name
        self.table = table_name(policy)
        self.mode = mode or policy.mode
        self.groups = fqdn_groups(policy)
        self._index = _Index()
        for g in self.groups:
            for rule in g.rules:
                self._index.add(g, rule, rule.peers.names, rule.peers.wildcards)
        for r in policy.resolve:
            self._index.add(None, r, r.names, r.wildcards)

    @property
    def set_names(self) -> tuple[tuple[int, str], ...]:
        """Every set the gate may write, (family, name), in the backend's order."""
        return tuple((fam, g.set_name(fam)) for g in self.groups for fam in (4, 6))

    def decide(self, qname: str) -> Decision:
        name = normalise(qname)
        hits = self._index.matches(name)
        ids = tuple(sorted({rule.id for _, rule in hits}))
        groups = _unique_groups(g for g, _ in hits if g is not None)
        sets = tuple((fam, g.set_name(fam)) for g in groups for fam in (4, 6))
        actions = {g.action for g in groups}
        if Action.DENY in actions:
            verdict = Verdict.DENY
        elif Action.ALLOW in actions:
            verdict = Verdict.ALLOW
        elif hits:
            verdict = Verdict.RESOLVE
        else:
            verdict = Verdict.WOULD_REFUSE if self.mode is Mode.SHADOW else Verdict.REFUSE
        return Decision(name, verdict, ids, sets)

    def deny_sets(self, name: str) -> tuple[tuple[int, str], ...]:
        """The deny sets naming `name` (for the names a CNAME chain passes through)."""
        groups = _unique_groups(g for g, _ in self._index.matches(normalise(name))
                                if g is not None and g.action is Action.DENY)
        return tuple((fam, g.set_name(fam)) for g in groups for fam in (4, 6))


def _unique_groups(groups: Iterable[FqdnGroup]) -> list[FqdnGroup]:
    seen: dict[int, FqdnGroup] = {}
    for g in groups:
        seen.setdefault(id(g), g)
    return list(seen.values())


def follow_chain(qname: str, records: Sequence[Record]) -> tuple[str, ...]:
    """The queried name, then each CNAME target, as far as the answer goes. A loop or a chain
    longer than MAX_CHAIN ends it (the addresses of such an answer are not admitted)."""
    cnames: dict[str, str] = {}
    for r in records:
        if r.rtype == "CNAME":
            cnames.setdefault(r.name, r.value)
    chain = [normalise(qname)]
    while chain[-1] in cnames:
        nxt = cnames[chain[-1]]
        if nxt in chain or len(chain) > MAX_CHAIN:
            return ()
        chain.append(nxt)
    return tuple(chain)


def plan_answer(gate: GatePolicy, decision: Decision, records: Sequence[Record], *, cap: int,
                floor: int) -> AnswerPlan:
    """The set elements an answer creates or refreshes, and the TTL cap of the reply.

    `cap`: the sets' timeout (what a connection restarts, so the most any answer may promise);
    `floor`: the least an admitted address stays (clamped to `cap`)."""
    cap = max(int(cap), 1)
    floor = min(max(int(floor), 0), cap)
    chain = follow_chain(decision.name, records)
    if not chain:
        return AnswerPlan((), (), (), cap)
    at_end = set(chain)
    addresses = [r for r in records if r.rtype in ("A", "AAAA") and r.name in at_end]
    targets = list(decision.sets) if decision.verdict.forwards else []
    for hop in chain[1:]:
        targets.extend(gate.deny_sets(hop))
    best: dict[tuple[str, str], Element] = {}
    for r in addresses:
        family = 6 if r.rtype == "AAAA" else 4
        try:
            address = str(ipaddress.ip_address(r.value))
        except ValueError:
            continue
        expires = max(min(r.ttl, cap), floor, 1)
        for fam, set_name in dict.fromkeys(targets):
            if fam != family:
                continue
            key = (set_name, address)
            if key not in best or best[key].expires < expires:
                best[key] = Element(set_name, family, address, expires, cap)
    return AnswerPlan(chain, tuple(dict.fromkeys(r.value for r in addresses)),
                      tuple(best[k] for k in sorted(best)), cap)


class Ledger:
    """The latest deadline any answer promised per (set, address), so a later answer with a
    shorter TTL never brings an element's expiry forward (the kernel would let it)."""

    def __init__(self) -> None:
        self._deadline: dict[tuple[str, str], float] = {}

    def extend(self, elements: Sequence[Element], now: float) -> tuple[Element, ...]:
        out = []
        for e in elements:
            key = (e.set_name, e.address)
            promised = self._deadline.get(key, 0.0)
            expires = max(e.expires, math.ceil(promised - now))
            out.append(Element(e.set_name, e.family, e.address, expires, e.timeout))
        return tuple(out)

    def commit(self, elements: Sequence[Element], now: float) -> None:
        """Record what the kernel accepted (only after the transaction succeeded)."""
        for e in elements:
            key = (e.set_name, e.address)
            self._deadline[key] = max(self._deadline.get(key, 0.0), now + e.expires)
        if len(self._deadline) > 4096:
            self.prune(now)

    def prune(self, now: float) -> None:
        self._deadline = {k: d for k, d in self._deadline.items() if d > now}

    def forget(self, keep_sets: Iterable[str]) -> None:
        """After a reload: sets the new policy no longer writes are forgotten."""
        keep = set(keep_sets)
        self._deadline = {k: d for k, d in self._deadline.items() if k[0] in keep}

    def __len__(self) -> int:
        return len(self._deadline)


def nft_transaction(table: str, elements: Sequence[Element]) -> str:
    """One libnftables buffer (one transaction) adding or refreshing `elements`: `expires` is
    what restarts an existing element (module docstring); `timeout` is the set's own, so a
    listing shows the element as the ruleset would have made it."""
    by_set: dict[str, list[Element]] = {}
    for e in elements:
        by_set.setdefault(e.set_name, []).append(e)
    lines = []
    for set_name, items in by_set.items():
        body = ", ".join(f"{e.address} timeout {e.timeout}s expires {e.expires}s" for e in items)
        lines.append(f"add element inet {table} {set_name} {{ {body} }}")
    return "\n".join(lines) + ("\n" if lines else "")


def flush_transaction(table: str, set_names: Iterable[str]) -> str:
    """Empties sets the policy no longer writes (a reload: removed names lose their addresses
    at once, even before the new ruleset is loaded)."""
    return "".join(f"flush set inet {table} {s}\n" for s in set_names)


def cap_of(timeouts: Mapping[str, int], default: int) -> int:
    """The TTL cap: the smallest timeout of the sets the gate writes (each read from the
    kernel), or `default` when there are none."""
    return min(timeouts.values(), default=default)
