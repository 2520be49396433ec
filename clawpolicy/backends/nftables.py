"""IR to an nftables ruleset: floor 2, one backend, one entry point (`BACKEND.compile`).

Shape (see the nft wiki, "Sets", "Verdict maps", "Concatenations"):
- one `table inet clawpolicy_<policy>`, loaded atomically by `nft -f` (the file is one
  transaction);
- per direction and family, one address-only lookup for deny rules and one for allow rules
  (nft_layout.py): disjoint address regions (the kernel rejects overlaps), each jumping to
  the one rule that covers it without ports, or to small `l4proto . th dport` classifiers
  shared between regions (a segment tree over the rules' ID order). The lookup is a verdict
  map when regions lead to different chains, else a plain set and one `@set jump chain`
  rule; a hash of exact addresses when every region is one address, else an interval set
  (`LookupKind`: each kind has its own name, `egress_allow_hostset_v4` and so on). The
  lowest rule ID decides, as in `evaluate`; the lookup grows with the networks, never with
  the product of rules, and each rule's chain carries its counter, comment and log prefix.
  A rule without ports is matched on the address alone and a whole-protocol entry (`icmp`,
  `any/udp`) on `meta l4proto` alone, so a packet whose port cannot be read (IP protocol
  253, a 1-byte payload) meets every deny that covers it;
- FQDN peers become address sets, one per rule (`FqdnGroup`), jumping to the rule's own
  chain (its counter, comment and log prefix, as for address rules: two rules with the same
  ports never share a counter, so a counter or a log line names the rule that matched),
  filled at run time by the dnsmasq target's resolver (`nftset=`), so they are empty at load
  and never stop the ruleset loading. Elements expire `fqdn_timeout` seconds after DNS added
  them or the agent last opened a connection to them (`update` from the packet path: an
  address two names share, or one dnsmasq answers again from its cache, is not dropped while
  in use). With `compile --lock`, a static companion set holds the locked addresses;
- deny overrides allow because deny maps are consulted first; the default chain logs and
  drops (enforce) or logs `would-deny` and accepts (shadow);
- a deny that refuses by `reject` (its own word, or the policy's `--deny-action` for its
  direction, default deny included) answers TCP with a reset and everything else with
  ICMP/ICMPv6 administratively prohibited (`reject with icmpx admin-prohibited`, nft wiki
  "Rejecting traffic"): a local sender's connect() fails at once (ECONNREFUSED for TCP,
  EHOSTUNREACH or EACCES for the rest) instead of waiting for its timeout. Shadow mode
  rejects nothing.

Reloading (DESIGN.md: "Replacing a table destroys its dynamic sets"): the file never deletes
the table. It declares the DNS-filled sets (created on a first load, kept with their elements
afterwards; a changed `timeout` is updated in place), declares everything else it defines,
then `flush table` (every rule goes; set elements stay), deletes every map, static set and
chain it defines (every address lookup of every kind, whichever this file uses: an earlier
version may have used another), and defines them anew, so comments, elements and chains are exactly this
file's. A DNS set's name carries a hash of the names it serves: a policy change that adds or
removes a name starts a new, empty set, so a removed name's addresses are revoked at once.
Objects an earlier version defined and this one does not (a removed rule's chain, a set of
names no longer used) stay behind empty or unreferenced; `nft delete table inet <table>`
before loading clears them, and the DNS-filled addresses with them.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clawpolicy.backends import support_tables
from clawpolicy.backends.base import (
    Artifact,
    BackendResult,
    CompileOptions,
    Feature,
    Support,
)
from clawpolicy.backends.naming import NameClaim, rule_owner
from clawpolicy.backends.nft_layout import LOOKUP_KINDS, LookupKind, address_layout, port_keys, range_text
from clawpolicy.backends.nft_names import (
    FqdnGroup,
    chain_name,
    fqdn_groups,
    group_of,
    group_owner,
    line_comment,
    log_prefix,
    nft_string,
    port_signature,
    table_name,
)
from clawpolicy.backends.templating import load_template
from clawpolicy.ir import Action, Direction, LocalDns, Mode, Policy, Refusal, Rule

if TYPE_CHECKING:
    import jinja2

# The names other modules import from here (they live in nft_names.py since the split).
__all__ = ["BACKEND", "FqdnGroup", "chain_name", "fqdn_groups", "group_of", "group_owner",
           "line_comment", "log_prefix", "nft_string", "port_signature", "render", "table_name"]

FAMILY_KEYWORD = {4: "ip", 6: "ip6"}
ADDR_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
LOOKUP_SLOTS = tuple((d, a, f) for d in ("egress", "ingress") for a in ("deny", "allow") for f in (4, 6))


def lookup_name(direction: str, action: str, kind: LookupKind, family: int) -> str:
    return f"{direction}_{action}_{kind.suffix}_v{family}"


# Every address map and set a ruleset can define, whatever the policy, and the
# `addr . l4proto . th dport` maps of earlier versions (`egress_allow_v4`): a load declares
# them all with their own type and deletes them, so one an earlier version had and this one
# does not goes too (with the rule chains its elements jump to, and its memory).
ALL_LOOKUPS = tuple(
    [(f"{d}_{a}_v{f}", f"map {d}_{a}_v{f} {{ type {ADDR_TYPE[f]} . inet_proto . inet_service : verdict; "
      "flags interval; }", "map") for d, a, f in LOOKUP_SLOTS]
    + [(lookup_name(d, a, k, f), k.declaration(lookup_name(d, a, k, f), ADDR_TYPE[f]), k.keyword)
       for k in LOOKUP_KINDS for d, a, f in LOOKUP_SLOTS])
# ICMPv6 that IPv6 needs to work at all (RFC 4890 section 4.4.1): neighbour and router
# discovery, and multicast listener reports (the kernel sends MLDv2 reports for solicited-node
# groups; switches that snoop MLD stop forwarding neighbour solicitations without them).
ND_EGRESS = ("nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-solicit",
             "mld-listener-report", "mld2-listener-report")
ND_INGRESS = ("nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-advert",
              "mld-listener-query")


# ------------------------------------------------------------------------------- model


@dataclass
class AddressLookup:
    name: str
    family: int
    comment: str
    kind: LookupKind
    elements: str  # the element lines, joined (100,000 of them: no template loop)
    size: int


@dataclass
class FqdnSet:
    name: str
    family: int
    comment: str
    elements: list[str] = field(default_factory=list)  # locked sets only


@dataclass
class RuleChain:
    name: str
    comment: str
    statements: list[str]
    rule_id: str | None = None  # the rule it was made for (None: shared or built in)


@dataclass
class DirectionModel:
    direction: str  # egress | ingress
    hook_chain: str  # output | input
    policy: str  # drop | accept
    nd_types: tuple[str, ...]
    interface: str  # oifname | iifname
    scope_rule: str  # the rule that sends in-scope traffic to the policy chain
    maps: list[AddressLookup] = field(default_factory=list)
    fqdn_sets: list[FqdnSet] = field(default_factory=list)  # filled by DNS; kept across loads
    lock_sets: list[FqdnSet] = field(default_factory=list)  # a lock file's addresses; rebuilt
    lookups: list[str] = field(default_factory=list)  # the policy chain, in evaluation order
    default_statements: list[str] = field(default_factory=list)


def _range(bounds: tuple[int, int]) -> str:
    return range_text(bounds)


class _Builder:
    def __init__(self, policy: Policy, options: CompileOptions) -> None:
        self.policy = policy
        self.options = options
        self.shadow = policy.mode is Mode.SHADOW
        self.chains: dict[str, RuleChain] = {}
        self.table = table_name(policy)
        self.names: list[NameClaim] = [NameClaim("nftables table", self.table, f"policy {policy.name}")]

    def claim(self, kind: str, name: str, owner: str) -> None:
        """Report a name this table defines (`kind`: chain, or set, which nft shares between
        sets and maps) as standing for `owner`."""
        self.names.append(NameClaim(f"nftables {kind} in table {self.table}", name, owner))

    def log(self, verdict_label: str, owner: str) -> str:
        prefix = nft_string(log_prefix(self.policy, verdict_label) + " ")
        # host-wide: every table's log lines share the kernel log, and explain reads them back
        self.names.append(NameClaim("nftables log prefix", prefix, f"policy {self.policy.name} {owner}"))
        return (f"limit rate {self.options.nft_log_rate} burst {self.options.nft_log_burst} packets "
                f"log prefix {prefix} level warn")

    def rule_chain(self, rule: Rule) -> str:
        """The rule's chain, made on first use (once per partition element: claimed only when
        made, or when another rule asks for the same name)."""
        name = chain_name(rule.id)
        known = self.chains.get(name)
        if known is None:
            comment = nft_string(f"{rule.id} ({rule.span.file}:{rule.span.line}): {rule.reason}")
            label = ("would-deny" if self.shadow else "deny") + f":{rule.id}"
            self.chains[name] = RuleChain(name, comment, self.verdict_statements(
                rule.action, label, rule_owner(rule.id), self.policy.refusal(rule.direction, rule)),
                rule.id)
            self.claim("chain", name, rule_owner(rule.id))
        elif known.rule_id != rule.id:
            self.claim("chain", name, rule_owner(rule.id))
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
        groups = fqdn_groups(self.policy) if egress else []  # lowering keeps names out of ingress
        if egress and self.policy.local_dns is not None:  # before every deny, as in evaluate()
            model.lookups.append(self._local_dns(self.policy.local_dns))
        for action in (Action.DENY, Action.ALLOW):  # deny first: deny overrides allow
            rules = sorted((r for r in self.policy.rules
                            if r.direction is direction and r.action is action), key=lambda r: r.id)
            for family in (4, 6):
                self._address_lookup(model, rules, action, family, addr)
            for group in groups:
                if group.action is action:
                    self._fqdn_sets(model, group)
        label = "would-deny" if self.shadow else "deny"
        model.default_statements = self.verdict_statements(
            Action.DENY, f"{label}:default-{direction.value}", f"default {direction.value}",
            self.policy.refusal(direction))
        for chain in (f"{direction.value}_default", direction.value, model.hook_chain):
            self.claim("chain", chain, f"built-in chain {chain}")
        return model

    def _address_lookup(self, model: DirectionModel, rules: list[Rule], action: Action,
                     family: int, addr: str) -> None:
        stem = f"{model.direction}_{action.value}_v{family}"
        layout = address_layout(rules, family, stem, self.rule_chain, nft_string)
        if layout is None:
            return
        for chain in layout.chains:
            self.claim("chain", chain.name, f"address layout chain {chain.name}")
            self.chains[chain.name] = RuleChain(chain.name, chain.comment, chain.statements)
        kind = layout.kind
        name = lookup_name(model.direction, action.value, kind, family)
        self.claim("set", name, f"address {kind.keyword} {name}")
        comment = nft_string(f"{model.direction} {action.value} IPv{family}: " + ", ".join(layout.ids))
        texts = layout.elements
        elements = "\t\t\t" + ",\n\t\t\t".join(texts) + ",\n" if texts else ""
        model.maps.append(AddressLookup(name, family, comment, kind, elements, len(layout.regions)))
        verdict = f"vmap @{name}" if kind.verdicts else f"@{name} jump {layout.target}"
        model.lookups.append(f"{FAMILY_KEYWORD[family]} {addr} {verdict}")

    def _fqdn_sets(self, model: DirectionModel, group: FqdnGroup) -> None:
        direction, action, ports = group.direction, group.action, group.ports
        target = self.rule_chain(group.rule)
        locked = self._locked(group)
        for family in (4, 6):
            name = group.set_name(family)
            self.claim("set", name, f"{group_owner(group)}, IPv{family}")
            # No ports: the address alone. Whole protocols (icmp, any/udp) match on l4proto
            # alone, so a packet whose port cannot be read is not missed.
            ranged, whole = port_keys(ports, family)
            keys_list = [""] if not ports else (
                ([f" meta l4proto . th dport {{ {', '.join(ranged)} }}"] if ranged else [])
                + ([f" meta l4proto {{ {', '.join(whole)} }}"] if whole else []))
            who = " ".join(group.entries)
            comment = nft_string(f"{direction.value} {action.value} {group.rule.id} "
                                 f"{port_signature(ports)}, filled by DNS: {who}")
            model.fqdn_sets.append(FqdnSet(name, family, comment))
            # `update` restarts the element's timeout: an address in use is not dropped (it is
            # in the set already, or the lookup would not have matched: nothing is added here)
            fam = FAMILY_KEYWORD[family]
            model.lookups.extend(f"{fam} daddr @{name}{keys} update @{name} {{ {fam} daddr }} "
                                 f"jump {target}" for keys in keys_list)
            elements = [f"{address} comment {nft_string(', '.join(names))}"
                        for address, names in locked.items()
                        if ipaddress.ip_address(address).version == family]
            if elements:
                lock_name = group.set_name(family, locked=True)
                self.claim("set", lock_name, f"locked addresses of {group_owner(group)}, IPv{family}")
                model.lock_sets.append(FqdnSet(lock_name, family, nft_string(
                    f"{direction.value} {action.value} {group.rule.id} {port_signature(ports)}: "
                    f"locked addresses of {' '.join(group.names)}"), elements))
                model.lookups.extend(f"{fam} daddr @{lock_name}{keys} jump {target}"
                                     for keys in keys_list)

    def _local_dns(self, dns: LocalDns) -> str:
        """DNS to anything but loopback (accepted before this chain) is denied; in a host-wide
        policy the resolver's own queries (its socket owner) are exempt."""
        name = chain_name(dns.id)
        self.claim("chain", name, rule_owner(dns.id))
        label = ("would-deny" if self.shadow else "deny") + f":{dns.id}"
        self.chains[name] = RuleChain(name, nft_string(f"{dns.id}: {dns.reason}"), self.verdict_statements(
            Action.DENY, label, rule_owner(dns.id), self.policy.refusal(Direction.EGRESS)))
        keys = ", ".join(f"{p.protocol.value} . {_range(p.bounds)}" for p in dns.ports)
        owner = f" meta skuid != {nft_string(dns.resolver_user)}" if self.policy.scope.kind == "host" else ""
        return f"meta l4proto . th dport {{ {keys} }}{owner} jump {name}"

    def _locked(self, group: FqdnGroup) -> dict[str, list[str]]:
        """address -> the group's names locked to it, in address order (`compile --lock`)."""
        if self.options.lock is None:
            return {}
        by_address: dict[str, list[str]] = {}
        for name in group.names:  # wildcards have no locked addresses
            for address in self.options.lock.get(name, ()):
                by_address.setdefault(address, []).append(name)
        ordered = sorted(by_address, key=lambda a: (ipaddress.ip_address(a).version,
                                                    int(ipaddress.ip_address(a))))
        return {a: by_address[a] for a in ordered}

    def verdict_statements(self, action: Action, label: str, owner: str,
                           refusal: Refusal = Refusal.DROP) -> list[str]:
        """What a matched rule does: allow accepts; deny logs (rate-limited) and drops, or in
        shadow mode logs 'would-deny' and accepts. A deny that rejects counts every packet
        once, then answers TCP with a reset and the rest (UDP, ICMP, any other protocol) with
        ICMP or ICMPv6 administratively prohibited (`icmpx` picks the family)."""
        if action is Action.ALLOW:
            return ["counter accept"]
        if self.shadow or refusal is Refusal.DROP:
            return [self.log(label, owner), "counter " + ("accept" if self.shadow else "drop")]
        return [self.log(label, owner), "counter meta l4proto tcp reject with tcp reset",
                "reject with icmpx admin-prohibited"]


TEMPLATE = "nftables/ruleset.nft.j2"  # and its filters: test_templating.py compiles it ahead of time
TEMPLATE_FILTERS: Mapping[str, Callable[[Any], str]] = {
    "nft_string": nft_string,
    "line_comment": line_comment,
}


@functools.cache
def _template() -> jinja2.Template:
    return load_template(TEMPLATE, TEMPLATE_FILTERS)


def render(policy: Policy, options: CompileOptions) -> str:
    return _render(policy, options)[0]


def _render(policy: Policy, options: CompileOptions) -> tuple[str, list[NameClaim]]:
    builder = _Builder(policy, options)
    directions = [builder.direction(d) for d in (Direction.EGRESS, Direction.INGRESS)]
    agent_ports = [f"{p.protocol.value} . {_range(p.bounds)}" for p in policy.scope.agent_ports]
    chains = [builder.chains[k] for k in sorted(builder.chains)]
    chain_names = [c.name for c in chains] + [
        name for d in directions for name in (f"{d.direction}_default", d.direction, d.hook_chain)]
    builder.claim("set", "agent_ports", "the agent ports")
    return _template().render(
        policy=policy, table=table_name(policy), directions=directions, agent_ports=agent_ports,
        chains=chains, chain_names=chain_names, lookups=ALL_LOOKUPS, addr_type=ADDR_TYPE,
        fqdn_timeout=f"{options.fqdn_timeout}s"), builder.names


class NftablesBackend:
    name: str = "nftables"
    summary: str = "an nftables ruleset (one inet table; verdict maps; log-only in shadow mode)"
    enforces: bool = True
    support: Mapping[Feature, Support] = support_tables.NFTABLES

    def compile(self, policy: Policy, options: CompileOptions) -> BackendResult:
        text, names = _render(policy, options)
        return BackendResult([Artifact("ruleset.nft", text.encode("utf-8"), "text/x-nftables")],
                             names=names)


BACKEND = NftablesBackend()
