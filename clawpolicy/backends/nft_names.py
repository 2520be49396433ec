"""Names and strings of the nftables ruleset that other targets share: floor 2.

The table, rule chains, log prefixes and the DNS-filled FQDN sets are named here, once, because
the dnsmasq target and the DNS gate fill those sets, `explain`/`status` read those chains,
counters and log prefixes back, and docs quote them (nftables.py builds the ruleset around
them). Quoting of user text for nft (`nft_string`, `line_comment`) lives here for the same
reason: systemd and dnsmasq comments use it too.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from clawpolicy.backends.base import clip
from clawpolicy.ir import Action, Direction, Policy, PortRange, Refusal, Rule

COMMENT_MAX_BYTES = 127  # the kernel keeps 128 bytes of user data, NUL included


def table_name(policy: Policy) -> str:
    return "clawpolicy_" + policy.name.replace("-", "_")


def chain_name(rule_id: str) -> str:
    """The chain of one rule: its ID verbatim. Rule IDs are `[a-z][a-z0-9-]*` plus a split
    rule's `.N`, and nft's scanner reads `-` and `.` inside an identifier (`{string}` in
    scanner.l), so nothing is replaced: replacing `.` and `-` by `_` once gave a split rule's
    `ax.1` and a user's `ax-1` one chain, and a deny accepted (issue 16). Never shared: every
    name is reported to `naming.collisions`."""
    return "rule_" + rule_id


_CONTROL_TO_SPACE = {c: " " for c in (*range(32), 127)}
_NFT_STRING_MAP = {**_CONTROL_TO_SPACE, ord('"'): "'"}


def log_prefix(policy: Policy, label: str) -> str:
    """The kernel log prefix: `clawpolicy:<policy>:<deny|would-deny>:<rule>`. Policy names
    and rule IDs are restricted to [a-z0-9-] while lowering, so the prefix needs no escaping."""
    return f"clawpolicy:{policy.name}:{label}"


def nft_string(text: str, limit: int = COMMENT_MAX_BYTES) -> str:
    """A double-quoted nft string. nft's scanner has no escapes inside quotes, so a quote
    or a line break in user text would end the string: replace them, cap the length."""
    return f'"{clip(text.translate(_NFT_STRING_MAP), limit)}"'


def line_comment(text: str) -> str:
    """Text for a `#` comment line (nftables, dnsmasq): one line of bounded length, whatever
    the user wrote (base.COMMENT_LINE_MAX_BYTES says why). The parsers end a line only at
    '\n', but editors and `str.splitlines` also break at U+0085, U+2028 and U+2029: those
    become spaces too, so no reader sees a line the file does not have."""
    return clip("".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text))


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


def fqdn_set_name(direction: Direction, action: Action, family: int, rule_id: str,
                  entries: Sequence[str], *, locked: bool = False,
                  refusal: Refusal = Refusal.DROP) -> str:
    """The set DNS fills for one rule's names (`entries`: exact names and `*.suffix`
    wildcards); the dnsmasq target and the DNS gate write the same names. One set per rule,
    so its addresses lead to the rule's own chain and counter. The name carries the rule ID
    (rule IDs are nft identifiers: see `chain_name`) and a hash of the names, so a set serves
    exactly one rule's list of names: a changed list starts an empty set (see the module
    docstring), while an edit of the rule's ports or reason keeps it. `locked`: the static
    companion set that holds a lock file's addresses (rebuilt on every load, so no hash).
    Denies that reject have their own kind (`fqdnr`), so a rule that changes how it refuses
    starts another set."""
    kind = ("lock" if locked else "fqdn") + ("r" if refusal is Refusal.REJECT else "")
    stem = f"{direction.value}_{action.value}_{kind}{family}_{rule_id}"
    if locked:
        return stem
    return stem + "_" + hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class FqdnGroup:
    """The egress FQDN peers of one rule: one DNS-filled set per family. (Rules with the same
    ports once shared a set and a chain, and so a counter and a log prefix: nothing could
    tell which rule matched.) `rules` is that one rule, for the callers that index by rule."""

    direction: Direction
    action: Action
    ports: tuple[PortRange, ...]
    rules: tuple[Rule, ...]
    names: tuple[str, ...]  # exact names, sorted
    wildcards: tuple[str, ...]  # suffixes: "slack.com" for *.slack.com, sorted
    refusal: Refusal = Refusal.DROP  # how its denies refuse (allow groups: drop, unused)

    @property
    def rule(self) -> Rule:
        return self.rules[0]

    @property
    def entries(self) -> tuple[str, ...]:
        return tuple(sorted([*self.names, *(f"*.{w}" for w in self.wildcards)]))

    def set_name(self, family: int, *, locked: bool = False) -> str:
        return fqdn_set_name(self.direction, self.action, family, self.rule.id, self.entries,
                             locked=locked, refusal=self.refusal)


def fqdn_groups(policy: Policy) -> list[FqdnGroup]:
    """Every egress rule with FQDN peers, deny before allow, then by rule ID (the order of the
    lookups: the lowest ID decides, as in `evaluate`)."""
    out = []
    for action in (Action.DENY, Action.ALLOW):
        for rule in sorted(policy.rules, key=lambda r: r.id):
            if rule.direction is Direction.EGRESS and rule.action is action and rule.peers.has_fqdns:
                how = policy.refusal(rule.direction, rule) if action is Action.DENY else Refusal.DROP
                out.append(FqdnGroup(Direction.EGRESS, action, rule.ports, (rule,),
                                     tuple(sorted(set(rule.peers.names))),
                                     tuple(sorted(set(rule.peers.wildcards))), how))
    return out


def group_owner(group: FqdnGroup) -> str:
    """The identity of a DNS-filled set: its rule."""
    return f"FQDN peers of {group.direction.value} {group.action.value} rule {group.rule.id}"


def group_of(policy: Policy, rule: Rule) -> FqdnGroup | None:
    return next((g for g in fqdn_groups(policy) if rule in g.rules), None)
