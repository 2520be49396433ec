"""IR to an nftables ruleset: floor 2, one backend, one entry point (`BACKEND.compile`).

Shape (see the nft wiki, "Sets", "Verdict maps", "Concatenations"):
- one `table inet clawpolicy_<policy>`, reloaded atomically by `nft -f` (declare, delete,
  define: the file is one transaction);
- per direction and family, one interval verdict map keyed `addr . l4proto . th dport` for
  deny rules and one for allow rules. The compiler partitions the rules' address/port space
  so every element is disjoint (the kernel rejects overlaps) and maps to the chain of one
  rule. A packet therefore meets a constant number of rules however many addresses or rules
  the policy has, and each rule's chain carries its counter, comment and log prefix;
- FQDN peers become address sets (`flags timeout`) grouped by port signature, empty until
  DNS fills them at run time (dnsmasq `nftset=`), so they never stop the ruleset loading;
- deny overrides allow because deny maps are consulted first; the default chain logs and
  drops (enforce) or logs `would-deny` and accepts (shadow).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import jinja2

from clawpolicy.backends.base import Artifact, BackendResult, CompileOptions, Feature, Level, Support
from clawpolicy.ir import Action, Direction, Mode, Policy, PortRange, Protocol, Rule
from clawpolicy.netspace import Box, interval_to_text, network_interval, partition, protocol_number

COMMENT_MAX_BYTES = 127  # the kernel keeps 128 bytes of user data, NUL included
PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp"}
FAMILY_KEYWORD = {4: "ip", 6: "ip6"}
ADDR_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
ALL_PROTOCOLS = (0, 255)
ALL_PORTS = (0, 65535)
FQDN_SET_TIMEOUT = "1h"  # elements DNS adds age out unless the name is looked up again
# ICMPv6 that IPv6 needs to work at all (RFC 4890 section 4.4.1): neighbour and router
# discovery, and multicast listener reports (the kernel sends MLDv2 reports for solicited-node
# groups; switches that snoop MLD stop forwarding neighbour solicitations without them).
ND_EGRESS = ("nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-solicit",
             "mld-listener-report", "mld2-listener-report")
ND_INGRESS = ("nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-advert",
              "mld-listener-query")


def table_name(policy: Policy) -> str:
    return "clawpolicy_" + policy.name.replace("-", "_")


def chain_name(rule_id: str) -> str:
    return "rule_" + re.sub(r"[^a-z0-9]", "_", rule_id)


_CONTROL_TO_SPACE = {c: " " for c in (*range(32), 127)}
_NFT_STRING_MAP = {**_CONTROL_TO_SPACE, ord('"'): "'"}


def log_prefix(policy: Policy, label: str) -> str:
    """The kernel log prefix: `clawpolicy:<policy>:<deny|would-deny>:<rule>`. Policy names
    and rule IDs are restricted to [a-z0-9-] while lowering, so the prefix needs no escaping."""
    return f"clawpolicy:{policy.name}:{label}"


def nft_string(text: str, limit: int = COMMENT_MAX_BYTES) -> str:
    """A double-quoted nft string. nft's scanner has no escapes inside quotes, so a quote
    or a line break in user text would end the string: replace them, cap the length."""
    clean = text.translate(_NFT_STRING_MAP)
    raw = clean.encode("utf-8")
    if len(raw) > limit:
        clean = raw[: limit - 3].decode("utf-8", errors="ignore") + "..."
    return f'"{clean}"'


def line_comment(text: str) -> str:
    """Text for a `#` comment line: one line, whatever the user wrote."""
    return text.translate(_CONTROL_TO_SPACE)


def port_signature(ports: Sequence[PortRange]) -> str:
    """A readable, stable identifier for a port set, used in FQDN set names."""
    if not ports:
        return "all"
    parts = []
    for p in ports:
        if p.first is None or p.last is None:
            parts.append(f"{p.protocol.value}any")
        elif p.first == p.last:
            parts.append(f"{p.protocol.value}{p.first}")
        else:
            parts.append(f"{p.protocol.value}{p.first}to{p.last}")
    sig = "_".join(parts)
    if len(sig) > 32:
        sig = "p" + hashlib.sha256(sig.encode()).hexdigest()[:12]
    return sig


def fqdn_set_name(direction: Direction, action: Action, family: int, ports: Sequence[PortRange]) -> str:
    """The set DNS fills for names with these ports (the dnsmasq target uses the same name)."""
    return f"{direction.value}_{action.value}_fqdn{family}_{port_signature(ports)}"


# ------------------------------------------------------------------------------- model


@dataclass
class VerdictMap:
    name: str
    family: int
    comment: str
    elements: list[str]


@dataclass
class FqdnSet:
    name: str
    family: int
    comment: str
    match: str  # the rule that uses the set


@dataclass
class RuleChain:
    name: str
    comment: str
    statements: list[str]


@dataclass
class DirectionModel:
    direction: str  # egress | ingress
    hook_chain: str  # output | input
    policy: str  # drop | accept
    nd_types: tuple[str, ...]
    interface: str  # oifname | iifname
    scope_rule: str  # the rule that sends in-scope traffic to the policy chain
    maps: list[VerdictMap] = field(default_factory=list)
    fqdn_sets: list[FqdnSet] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)  # the policy chain, in evaluation order
    default_statements: list[str] = field(default_factory=list)


def _boxes(rules: Sequence[Rule], family: int) -> list[Box]:
    boxes = []
    for owner, rule in enumerate(rules):
        if rule.peers.any:
            nets: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = [
                ipaddress.ip_network("0.0.0.0/0" if family == 4 else "::/0")]
        else:
            nets = rule.peers.ipv4 if family == 4 else rule.peers.ipv6
        port_boxes = [(ALL_PROTOCOLS, ALL_PORTS)] if not rule.ports else [
            ((n, n), p.bounds) for p in rule.ports for n in [protocol_number(p.protocol, family)]]
        for net in nets:
            for proto, ports in port_boxes:
                boxes.append(Box((network_interval(net), proto, ports), owner))
    return boxes


def _range(bounds: tuple[int, int], names: dict[int, str] | None = None) -> str:
    lo, hi = bounds
    if lo == hi:
        return names.get(lo, str(lo)) if names else str(lo)
    return f"{lo}-{hi}"


class _Builder:
    def __init__(self, policy: Policy, options: CompileOptions) -> None:
        self.policy = policy
        self.options = options
        self.shadow = policy.mode is Mode.SHADOW
        self.chains: dict[str, RuleChain] = {}

    def log(self, verdict_label: str) -> str:
        prefix = log_prefix(self.policy, verdict_label) + " "
        return (f"limit rate {self.options.nft_log_rate} burst {self.options.nft_log_burst} packets "
                f"log prefix {nft_string(prefix)} level warn")

    def rule_chain(self, rule: Rule) -> str:
        name = chain_name(rule.id)
        if name not in self.chains:
            comment = nft_string(f"{rule.id} ({rule.span.file}:{rule.span.line}): {rule.reason}")
            label = ("would-deny" if self.shadow else "deny") + f":{rule.id}"
            self.chains[name] = RuleChain(name, comment, self.verdict_statements(rule.action, label))
        return name

    def direction(self, direction: Direction) -> DirectionModel:
        egress = direction is Direction.EGRESS
        scope = self.policy.scope
        if scope.kind == "user" and egress:
            who = str(scope.uid) if scope.uid is not None else nft_string(scope.user or "")
            scope_rule = f"meta skuid {who} goto {direction.value}"
        elif scope.kind == "user":
            scope_rule = f"meta l4proto . th dport @agent_ports goto {direction.value}"
        else:
            scope_rule = f"goto {direction.value}"
        host_enforce = scope.kind == "host" and not self.shadow
        model = DirectionModel(
            direction=direction.value, hook_chain="output" if egress else "input",
            policy="drop" if host_enforce else "accept",
            nd_types=ND_EGRESS if egress else ND_INGRESS,
            interface="oifname" if egress else "iifname", scope_rule=scope_rule)
        addr = "daddr" if egress else "saddr"
        for action in (Action.DENY, Action.ALLOW):  # deny first: deny overrides allow
            rules = sorted((r for r in self.policy.rules
                            if r.direction is direction and r.action is action), key=lambda r: r.id)
            for family in (4, 6):
                self._verdict_map(model, rules, action, family, addr)
            self._fqdn_sets(model, [r for r in rules if r.peers.has_fqdns], direction, action)
        label = "would-deny" if self.shadow else "deny"
        model.default_statements = self.verdict_statements(Action.DENY, f"{label}:default-{direction.value}")
        return model

    def _verdict_map(self, model: DirectionModel, rules: list[Rule], action: Action,
                     family: int, addr: str) -> None:
        boxes = _boxes(rules, family)
        if not boxes:
            return
        elements = []
        for box in partition(boxes):
            address, proto, ports = box.bounds
            elements.append(f"{interval_to_text(*address, family)} . "
                            f"{_range(proto, PROTO_NAMES)} . {_range(ports)} : "
                            f"jump {self.rule_chain(rules[box.owner])}")
        ids = sorted({rules[b.owner].id for b in boxes})
        name = f"{model.direction}_{action.value}_v{family}"
        comment = nft_string(f"{model.direction} {action.value} IPv{family}: " + ", ".join(ids))
        model.maps.append(VerdictMap(name, family, comment, elements))
        model.lookups.append(f"{FAMILY_KEYWORD[family]} {addr} . meta l4proto . th dport vmap @{name}")

    def _fqdn_sets(self, model: DirectionModel, rules: list[Rule], direction: Direction,
                   action: Action) -> None:
        groups: dict[tuple[PortRange, ...], list[Rule]] = {}
        for rule in rules:
            groups.setdefault(rule.ports, []).append(rule)
        for ports, members in sorted(groups.items(), key=lambda kv: port_signature(kv[0])):
            names = sorted({*(n for r in members for n in r.peers.names),
                            *(f"*.{w}" for r in members for w in r.peers.wildcards)})
            if len(members) == 1:
                target = self.rule_chain(members[0])
            else:  # several rules share the set: one chain names them all
                target = f"{direction.value}_{action.value}_fqdn_{port_signature(ports)}"
                label = ("would-deny" if self.shadow else "deny") + f":{target}"
                self.chains[target] = RuleChain(target, nft_string(", ".join(r.id for r in members)),
                                                self.verdict_statements(action, label))
            for family in (4, 6):
                name = fqdn_set_name(direction, action, family, ports)
                match = f"{FAMILY_KEYWORD[family]} daddr @{name}"
                if ports:
                    keys = ", ".join(f"{_range((n, n), PROTO_NAMES)} . {_range(p.bounds)}"
                                     for p in ports for n in [protocol_number(p.protocol, family)])
                    match += f" meta l4proto . th dport {{ {keys} }}"
                comment = nft_string("filled by DNS at run time: " + " ".join(names))
                model.fqdn_sets.append(FqdnSet(name, family, comment, f"{match} jump {target}"))
                model.lookups.append(f"{match} jump {target}")

    def verdict_statements(self, action: Action, label: str) -> list[str]:
        """What a matched rule does: allow accepts; deny logs (rate-limited) and drops, or in
        shadow mode logs 'would-deny' and accepts."""
        if action is Action.ALLOW:
            return ["counter accept"]
        return [self.log(label), "counter " + ("accept" if self.shadow else "drop")]


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("clawpolicy", "templates"),
                             undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["nft_string"] = nft_string
    env.filters["line_comment"] = line_comment
    return env.get_template("nftables/ruleset.nft.j2")


def render(policy: Policy, options: CompileOptions) -> str:
    builder = _Builder(policy, options)
    directions = [builder.direction(d) for d in (Direction.EGRESS, Direction.INGRESS)]
    agent_ports = [f"{p.protocol.value} . {_range(p.bounds)}" for p in policy.scope.agent_ports]
    return _template().render(
        policy=policy, table=table_name(policy), directions=directions, agent_ports=agent_ports,
        chains=[builder.chains[k] for k in sorted(builder.chains)], addr_type=ADDR_TYPE,
        fqdn_timeout=FQDN_SET_TIMEOUT)


class NftablesBackend:
    name: str = "nftables"
    summary: str = "an nftables ruleset (one inet table; verdict maps; log-only in shadow mode)"
    enforces: bool = True
    support: Mapping[Feature, Support] = {
        Feature.CIDR_PORT: Support(Level.YES, "interval verdict maps on address . protocol . port"),
        Feature.FQDN: Support(Level.PARTIAL, "address sets filled at run time by DNS "
                              "(empty until then: the names are denied)"),
        Feature.WILDCARD: Support(Level.PARTIAL, "address sets filled at run time by DNS"),
        Feature.EXPLICIT_DENY: Support(Level.YES, "deny maps are consulted before allow maps"),
        Feature.INGRESS: Support(Level.YES, "input chain"),
        Feature.USER_SCOPE: Support(Level.YES, "egress by meta skuid; ingress by the agent ports"),
        Feature.SOCKETS: Support(Level.NO, "a firewall sees packets, not socket() calls"),
        Feature.CAPABILITIES: Support(Level.NO, "a firewall cannot drop process capabilities"),
        Feature.SYSCALLS: Support(Level.NO, "a firewall sees packets, not system calls"),
        Feature.FILES: Support(Level.NO, "a firewall cannot see file access"),
        Feature.LOG_ONLY: Support(Level.YES, "log 'would-deny' and accept"),
    }

    def compile(self, policy: Policy, options: CompileOptions) -> BackendResult:
        text = render(policy, options)
        return BackendResult([Artifact("ruleset.nft", text.encode("utf-8"), "text/x-nftables")])


BACKEND = NftablesBackend()
