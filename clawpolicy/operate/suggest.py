"""What was blocked to policy text a human reviews: audit2allow for clawpolicy.

Input: `simulate`'s blocked groups, or `explain`'s findings. Only what the default denied is
turned into `allow` rules; what a rule denied (deny overrides allow) is listed as a comment
naming that rule, since no allow could admit it. Aggregation, so a reviewer reads intent and
not a list: names are preferred to addresses (where the record has them); peers with the
same ports share one rule; at least `min_hosts` addresses of one /24 (IPv6: /64) become that
network (then adjacent networks merge); at least `min_names` names under one parent domain
become `*.parent`; consecutive ports become a range. Every rule gets `reason "TODO"` for the
human who decides whether the agent should really reach it; nothing is ever applied.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from clawpolicy.operate.explain import Explanation
from clawpolicy.operate.simulate import Simulation

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


@dataclass
class Suggestion:
    policy: str
    text: str
    rules: int
    flows: int


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


def _is_address(peer: str) -> bool:
    try:
        ipaddress.ip_address(peer)
    except ValueError:
        return False
    return True


def _ports_text(ports: Iterable[tuple[str, int | None]]) -> str:
    by_proto: dict[str, list[int | None]] = {}
    for proto, port in sorted(ports, key=lambda p: (p[0], p[1] or 0)):
        by_proto.setdefault(proto, []).append(port)
    parts: list[str] = []
    for proto, numbers in sorted(by_proto.items()):
        if proto == "icmp" or None in numbers:
            parts.append("icmp" if proto == "icmp" else proto)
            continue
        values = sorted({n for n in numbers if n is not None})
        start = prev = values[0]
        for n in [*values[1:], None]:
            if n is not None and n == prev + 1:
                prev = n
                continue
            parts.append(f"{start}/{proto}" if start == prev else
                         (f"{start}-{prev}/{proto}" if prev - start >= 2 else f"{start}/{proto}, {prev}/{proto}"))
            if n is not None:
                start = prev = n
    return ", ".join(parts)


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
    """`*.parent` for at least `min_names` names one label below the same parent (of at
    least two labels: never `*.com`); the others as they are."""
    names = sorted(set(names))
    parents: dict[str, list[str]] = {}
    for name in names:
        labels = name.split(".")
        if len(labels) >= 3:
            parents.setdefault(".".join(labels[1:]), []).append(name)
    wide = {p for p, members in parents.items() if len(members) >= min_names}
    out = {f"*.{p}" for p in wide}
    out |= {n for n in names if not any(n.endswith("." + p) for p in wide)}
    return sorted(out, key=lambda n: (n.lstrip("*."), n))


def suggest(policy: str, observations: Sequence[Observation], syscalls: Sequence[tuple[str, int]] = (),
            *, min_hosts: int = 8, min_names: int = 3) -> Suggestion:
    """Rules (policy text, to paste inside `policy <name> { ... }`) that allow what was observed."""
    allowable = [o for o in observations if o.denied_by is None]
    # peer -> its ports, per direction
    ports: dict[tuple[str, str], set[tuple[str, int | None]]] = {}
    counts: dict[tuple[str, str], int] = {}
    for o in allowable:
        key = (o.direction, o.peer)
        ports.setdefault(key, set()).add((o.protocol, None if o.protocol == "icmp" else o.port))
        counts[key] = counts.get(key, 0) + o.count
    # peers with the same ports share a rule
    rules: dict[tuple[str, str], tuple[list[str], int]] = {}
    for (direction, peer), port_set in ports.items():
        key = (direction, _ports_text(port_set))
        peers, n = rules.get(key, ([], 0))
        rules[key] = ([*peers, peer], n + counts[(direction, peer)])
    lines = [f"# Suggested by `clawpolicy suggest` for policy {policy}: review every rule, write its",
             f"# reason, and paste what you keep inside `policy {policy} {{ ... }}`. Never applied",
             "# automatically."]
    total = 0
    for (direction, port_text), (peers, n) in sorted(rules.items()):
        names = _aggregate_names([p for p in peers if not _is_address(p)], min_names)
        nets = _aggregate_addresses([p for p in peers if _is_address(p)], min_hosts)
        keyword = "to" if direction == "egress" else "from"
        lines += ["", f"# {_count(n, 'flow')} {keyword} {_count(len(peers), 'peer')}",
                  f"allow {direction} {keyword} " + ",\n    ".join([*names, *nets]) + f" port {port_text}",
                  f'  reason "{REASON}"']
        total += n
    for name, n in syscalls:
        lines += ["", f"# {_count(n, 'call')} outside the seccomp baseline",
                  f"syscalls allow {name}", f'  reason "{REASON}"']
    explicit: dict[str, int] = {}
    for o in observations:
        if o.denied_by is not None:
            explicit[o.denied_by] = explicit.get(o.denied_by, 0) + o.count
    for rule, n in sorted(explicit.items()):
        lines += ["", f"# {_count(n, 'flow')} denied by rule {rule}: deny overrides allow, so no rule here "
                  "admits them;", f"# narrow or remove {rule} if the agent should reach them."]
    return Suggestion(policy, "\n".join(lines) + "\n", len(rules) + len(syscalls), total)


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
