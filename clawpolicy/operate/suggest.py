"""What was blocked to policy text a human reviews: audit2allow for clawpolicy.

Input: `simulate`'s blocked groups, or `explain`'s findings. Only what the default denied is
turned into `allow` rules; what a rule denied (deny overrides allow) is listed as a comment
naming that rule, since no allow could admit it. Aggregation, so a reviewer reads intent and
not a list: names are preferred to addresses (where the record has them); peers with the
same ports share one rule; at least `min_hosts` addresses of one /24 (IPv6: /64) become that
network (then adjacent networks merge); at least `min_names` names under one parent domain
become `*.parent`; consecutive ports become a range. Every rule gets `reason "TODO"` for the
human who decides whether the agent should really reach it; nothing is ever applied.

Observations come from flow files and log lines, so from anyone: no value reaches the policy
text unchecked. Each is validated by the language's own validators (`resolve.parse_literal`
for peers: an address or a domain name, never `any`, a catalog group, `@x` or something with
a comma, quote or newline; ports 1-65535 of tcp/udp, or icmp; `confine.SYSCALL_NAME`; rule
labels as `logparse.RULE_LABEL`), and what fails is dropped and counted (`Suggestion.dropped`,
with why). The text is then parsed back inside a throwaway policy (`parse_back`) and must give
exactly the proposed rules (`Suggestion.proposed`), or `suggest` raises: a proposal a reviewer
pastes is the proposal the report describes. (Names go through `resolve.normalise_name`;
IDNA 2008 lands there, for every caller at once.)
"""

from __future__ import annotations

import functools
import ipaddress
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from clawpolicy import seccomp_loader
from clawpolicy.confine import SYSCALL_NAME
from clawpolicy.errors import Diagnostics, Location
from clawpolicy.includes import parse_literal
from clawpolicy.ir import Policy, PortRange, Protocol
from clawpolicy.lower import POLICY_NAME, load_policies
from clawpolicy.names import is_address, is_public_suffix
from clawpolicy.netspace import merge_ports
from clawpolicy.operate import suggest_review
from clawpolicy.operate.explain import Explanation
from clawpolicy.operate.logparse import RULE_LABEL
from clawpolicy.operate.simulate import Simulation
from clawpolicy.parse import parser
from clawpolicy.review.risk import Risk
from clawpolicy.syntax import Word

REASON = "TODO"
IPv4Net = ipaddress.IPv4Network
IPv6Net = ipaddress.IPv6Network


@dataclass(frozen=True)
class Observation:
    """Flows the default denied: direction, peer (address or name), protocol, port, count."""

    direction: str
    peer: str
    protocol: str
    port: int | None
    count: int
    denied_by: str | None = None  # a rule that denied it explicitly (no allow can help)


@dataclass(frozen=True)
class ProposedRule:
    """One proposed rule as the IR will hold it: peers as `Peers.describe()` writes them."""

    direction: str
    peers: frozenset[str]
    ports: tuple[PortRange, ...]


@dataclass
class Suggestion:
    policy: str
    text: str
    rules: int
    flows: int
    proposed: list[ProposedRule] = field(default_factory=list)
    syscalls: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # why each invalid observation was dropped
    risks: list[str] = field(default_factory=list)  # diff's risk of each proposed rule, in order


class SuggestError(Exception):
    """The proposal text does not parse back to the proposed rules: a bug, never shown as rules."""


_RULE_LABEL = re.compile(rf"^{RULE_LABEL}$")
_PROTOCOLS = {"tcp": Protocol.TCP, "udp": Protocol.UDP, "icmp": Protocol.ICMP}
_HERE = Location("<suggest>")


def from_simulation(sim: Simulation) -> list[Observation]:
    out = []
    for b in sim.blocked:
        denied_by = b.decided_by if b.by_rule else None
        peers = sorted(b.names) if b.names and b.direction == "egress" else [b.peer]
        for i, peer in enumerate(peers):  # the flows are counted once, on the first name
            out.append(Observation(b.direction, peer, b.protocol, b.port, b.count if i == 0 else 0, denied_by))
    return out


def from_explanation(result: Explanation, policy: str) -> tuple[list[Observation], list[tuple[str, int]]]:
    """Network observations and the syscalls seccomp refused as outside the baseline."""
    flows: list[Observation] = []
    syscalls: dict[str, int] = {}
    for f in result.findings:
        if f.policy not in (policy, None) or f.peer is None:
            continue
        if f.mechanism == "nftables" and f.peer.get("peer"):
            denied_by = None if (f.rule or "").startswith("default-") else f.rule
            flows.append(Observation(str(f.peer["direction"]), str(f.peer["peer"]),
                                     str(f.peer["protocol"]), f.peer.get("port"), f.count, denied_by))
        elif f.mechanism == "seccomp" and f.rule == "baseline" and f.peer.get("syscall"):
            name = str(f.peer["syscall"])
            syscalls[name] = syscalls.get(name, 0) + f.count
    return flows, sorted(syscalls.items())


def _peer(observation: Observation) -> str:
    """The peer as the policy writes it: a canonical address or a normalised domain name,
    checked by the language's own `parse_literal`; `ValueError` saying why not."""
    text = observation.peer
    if not isinstance(text, str) or not text or len(text) > 253:
        raise ValueError("peer is not an address or a domain name")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is not None:
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        canonical = str(mapped or address)
        atom = parse_literal(Word(canonical, _HERE), Diagnostics())
        if atom is None or atom.kind not in ("net4", "net6"):
            raise ValueError("peer is an address the policy language refuses")
        return canonical
    atom = parse_literal(Word(text, _HERE), Diagnostics())
    if atom is None or atom.kind != "name":  # never any, a group, @x, *.x, or punctuation
        raise ValueError("peer is not an address or a domain name")
    if observation.direction == "ingress":
        raise ValueError("ingress peers must be addresses (a firewall sees no names)")
    return atom.value


def _port(observation: Observation) -> PortRange:
    proto = _PROTOCOLS.get(observation.protocol) if isinstance(observation.protocol, str) else None
    if proto is None:
        raise ValueError("protocol is not tcp, udp or icmp")
    port = observation.port
    if proto is Protocol.ICMP or port is None:
        return PortRange(protocol=proto)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValueError("port is not 1-65535")
    return PortRange(protocol=proto, first=port, last=port)


def validate(observation: Observation) -> Observation:
    """`observation` with its values as the policy writes them; `ValueError` (why) if any
    value cannot be written as policy text."""
    if observation.direction not in ("egress", "ingress"):
        raise ValueError("direction is neither egress nor ingress")
    if observation.denied_by is not None and not (
            isinstance(observation.denied_by, str) and _RULE_LABEL.match(observation.denied_by)):
        raise ValueError("the denying rule's label is not a rule ID")
    if not isinstance(observation.count, int) or observation.count < 0:
        raise ValueError("count is not a number of flows")
    port = _port(observation)
    return Observation(observation.direction, _peer(observation), port.protocol.value, port.first,
                       observation.count, observation.denied_by)


def _syscall(name: object) -> bool:
    """A syscall name libseccomp knows (when it is here), never a keyword of the language."""
    if not isinstance(name, str) or not SYSCALL_NAME.match(name) or name in _keywords():
        return False
    try:
        return name in seccomp_loader.known_syscalls(("SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"))
    except seccomp_loader.LoaderError:  # no libseccomp: the shape is what lowering checks
        return True


@functools.cache
def _keywords() -> frozenset[str]:
    return frozenset(str(t.pattern.value) for t in parser().terminals if t.pattern.type == "str")


def _ports_text(ports: Sequence[PortRange]) -> str:
    return ", ".join(str(p) for p in ports)


def _aggregate_addresses(addresses: Iterable[str], min_hosts: int) -> list[str]:
    buckets: dict[IPv4Net | IPv6Net, set[ipaddress.IPv4Address | ipaddress.IPv6Address]] = {}
    for text in addresses:
        address = ipaddress.ip_address(text)
        prefix = 24 if address.version == 4 else 64
        buckets.setdefault(ipaddress.ip_network(f"{address}/{prefix}", strict=False), set()).add(address)
    nets4: list[IPv4Net] = []
    nets6: list[IPv6Net] = []
    for bucket, members in buckets.items():
        chosen = [bucket] if len(members) >= min_hosts else [ipaddress.ip_network(a) for a in members]
        for net in chosen:
            if isinstance(net, IPv4Net):
                nets4.append(net)
            else:
                nets6.append(net)
    merged: list[IPv4Net | IPv6Net] = [*ipaddress.collapse_addresses(nets4),
                                       *ipaddress.collapse_addresses(nets6)]
    return [str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in merged]


def _aggregate_names(names: Iterable[str], min_names: int) -> list[str]:
    """`*.parent` for at least `min_names` names one label below the same parent, never a
    public suffix (`*.com`, `*.co.uk`, `*.github.io`: the Public Suffix List, as lint rates
    them); the others as they are."""
    names = sorted(set(names))
    parents: dict[str, list[str]] = {}
    for name in names:
        labels = name.split(".")
        if len(labels) >= 3 and not is_public_suffix(".".join(labels[1:])):
            parents.setdefault(".".join(labels[1:]), []).append(name)
    wide = {p for p, members in parents.items() if len(members) >= min_names}
    out = {f"*.{p}" for p in wide}
    out |= {n for n in names if not any(n.endswith("." + p) for p in wide)}
    return sorted(out, key=lambda n: (n.lstrip("*."), n))


def _described(peer: str) -> str:
    """A written peer as `Peers.describe()` gives it back (an address is a /32 or /128)."""
    return str(ipaddress.ip_network(peer)) if is_address(peer) or "/" in peer else peer


def suggest(policy: str, observations: Sequence[Observation], syscalls: Sequence[tuple[str, int]] = (),
            *, min_hosts: int = 8, min_names: int = 3, base: Policy | None = None) -> Suggestion:
    """Rules (policy text, to paste inside `policy <name> { ... }`) that allow what was observed.
    `base`: the policy as it is, against which each rule's risk is rated (default: empty)."""
    if not POLICY_NAME.match(policy):
        raise ValueError(f"invalid policy name {policy!r}")
    dropped: list[str] = []
    valid: list[Observation] = []
    for o in observations:
        try:
            valid.append(validate(o))
        except ValueError as exc:
            dropped.append(f"{o.direction} {o.peer} {o.protocol} {o.port}: {exc}")
    counted: dict[str, int] = {}  # one rule per name (two would share an ID)
    for name, n in syscalls:
        if _syscall(name):
            counted[name] = counted.get(name, 0) + n
        else:
            dropped.append(f"syscall {name}: not a syscall name")
    calls = sorted(counted.items())
    allowable = [o for o in valid if o.denied_by is None]
    # peer -> its ports, per direction
    ports: dict[tuple[str, str], list[PortRange]] = {}
    counts: dict[tuple[str, str], int] = {}
    for o in allowable:
        key = (o.direction, o.peer)
        ports.setdefault(key, []).append(_port(o))
        counts[key] = counts.get(key, 0) + o.count
    # names most of a catalog group's names: the group instead
    picks = suggest_review.pick_groups({peer: merge_ports(found) for (direction, peer), found in ports.items()
                                        if direction == "egress" and not is_address(peer)})
    picked = [(g, sum(counts.pop(("egress", n)) for n in g.seen)) for g in picks]
    for g in picks:
        for name in g.seen:
            del ports[("egress", name)]
    # peers with the same ports share a rule
    rules: dict[tuple[str, tuple[PortRange, ...]], tuple[list[str], int]] = {}
    for (direction, peer), port_list in ports.items():
        rule_key = (direction, merge_ports(port_list))
        peers, n = rules.get(rule_key, ([], 0))
        rules[rule_key] = ([*peers, peer], n + counts[(direction, peer)])
    lines = [f"# Suggested by `clawpolicy suggest` for policy {policy}: review every rule, write its",
             f"# reason, and paste what you keep inside `policy {policy} {{ ... }}`. Never applied",
             "# automatically."]
    if dropped:
        lines.append(f"# {_count(len(dropped), 'observation')} dropped: values a policy cannot hold "
                     "(listed on stderr)")
    total = 0
    proposed: list[ProposedRule] = []
    blocks: list[tuple[str, list[str]]] = []  # (comment, rule lines), rated below
    for g, n in picked:
        blocks.append((f"# {_count(n, 'flow')} to {', '.join(g.seen)}: catalog group {g.group} "
                       f"(its own names and ports, {_ports_text(g.ports)})",
                       [f"allow egress to {g.group}", f'  reason "{REASON}"']))
        proposed.append(ProposedRule("egress", g.peers, g.ports))
        total += n
    for (direction, port_ranges), (peers, n) in sorted(rules.items(), key=lambda kv: (kv[0][0], _ports_text(kv[0][1]))):
        names = _aggregate_names([p for p in peers if not is_address(p)], min_names)
        nets = _aggregate_addresses([p for p in peers if is_address(p)], min_hosts)
        keyword = "to" if direction == "egress" else "from"
        blocks.append((f"# {_count(n, 'flow')} {keyword} {_count(len(peers), 'peer')}",
                       [f"allow {direction} {keyword} " + ",\n    ".join([*names, *nets])
                        + f" port {_ports_text(port_ranges)}", f'  reason "{REASON}"']))
        proposed.append(ProposedRule(direction, frozenset(_described(p) for p in [*names, *nets]), port_ranges))
        total += n
    risks = _rate(policy, blocks, proposed, base)
    for (comment, rule_lines), (risk, why) in zip(blocks, risks):
        lines += ["", comment, f"# risk {risk.value}: {why}", *rule_lines]
    for name, n in calls:
        lines += ["", f"# {_count(n, 'call')} outside the seccomp baseline",
                  f"syscalls allow {name}", f'  reason "{REASON}"']
    explicit: dict[str, int] = {}
    for o in valid:
        if o.denied_by is not None:
            explicit[o.denied_by] = explicit.get(o.denied_by, 0) + o.count
    for rule, n in sorted(explicit.items()):
        lines += ["", f"# {_count(n, 'flow')} denied by rule {rule}: deny overrides allow, so no rule here "
                  "admits them;", f"# narrow or remove {rule} if the agent should reach them."]
    out = Suggestion(policy, "\n".join(lines) + "\n", len(rules) + len(picked) + len(calls), total, proposed,
                     [name for name, _ in calls], dropped, [r.value for r, _ in risks])
    if parse_back(out) != (sorted(proposed, key=_order), sorted(out.syscalls)):
        raise SuggestError("the proposed text does not parse back to the proposed rules")
    return out


def _order(rule: ProposedRule) -> tuple[str, list[str], list[str]]:
    return (rule.direction, sorted(rule.peers), [str(p) for p in rule.ports])


def _rate(policy: str, blocks: Sequence[tuple[str, list[str]]], proposed: Sequence[ProposedRule],
          base: Policy | None) -> list[tuple[Risk, str]]:
    """`diff`'s risk of each proposed rule (suggest_review.rate), matched by meaning."""
    if not blocks:
        return []
    ir = _load(policy, "\n".join(line for _, rule_lines in blocks for line in rule_lines) + "\n")
    if ir is None:
        raise SuggestError("the proposed rules do not load")
    by_meaning = {(r.direction.value, frozenset(r.peers.describe()), r.ports): r for r in ir.rules}
    chosen = [by_meaning.get((p.direction, p.peers, p.ports)) for p in proposed]
    if any(r is None for r in chosen):
        raise SuggestError("the proposed text does not load as the proposed rules")
    empty = base if base is not None else ir.model_copy(update={"rules": ()})
    return suggest_review.rate([r for r in chosen if r is not None], empty)


def _load(policy: str, body: str) -> Policy | None:
    """`body` pasted into a throwaway policy, read by the real front end (None: it does not load)."""
    text = f"policy {policy} {{\n  applies-to host\n{body}}}\n"
    with tempfile.TemporaryDirectory(prefix="clawpolicy-suggest-") as tmp:
        path = Path(tmp) / "suggested.claw"
        path.write_text(text, encoding="utf-8")
        loaded = load_policies([path])
    if not loaded.ok or len(loaded.policies) != 1:
        return None
    return loaded.policies[0]


def parse_back(suggestion: Suggestion) -> tuple[list[ProposedRule], list[str]] | None:
    """The rules and syscalls the text gives when pasted into a policy (None: it does not
    load), read by the real front end from a throwaway file."""
    ir = _load(suggestion.policy, suggestion.text)
    if ir is None:
        return None
    rules = [ProposedRule(r.direction.value, frozenset(r.peers.describe()), r.ports) for r in ir.rules]
    calls = sorted(n for rule in ir.syscalls for n in rule.names)
    return sorted(rules, key=_order), calls


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def insert(source: str, policy: str, rules: str) -> str:
    """`source` with `rules` added before the closing brace of `policy <name> { ... }` (for the
    round trip in tests and for a reviewer who wants the whole file). Naive about braces in
    strings; the text is for review, the parser checks the result."""
    start = source.index(f"policy {policy}")
    depth = 0
    for i in range(source.index("{", start), len(source)):
        if source[i] == "{":
            depth += 1
        elif source[i] == "}":
            depth -= 1
            if depth == 0:
                indented = "".join(f"  {line}\n" if line else "\n" for line in rules.splitlines())
                return source[:i] + "\n" + indented + source[i:]
    raise ValueError(f"policy {policy}: no closing brace")
