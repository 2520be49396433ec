"""IR to a dnsmasq configuration fragment: floor 2, one backend, one entry point (`BACKEND.compile`).

The nftables target declares one DNS-filled set per family for each group of FQDN peers
(`nftables.fqdn_groups`). This target writes the other half: `nftset=` lines that make the
agent's own resolver (dnsmasq >= 2.87 built with nftset, on the same host and in the same
network namespace as the ruleset) add every address it answers for an allowed or denied name
to that name's sets. The agent may use no other resolver (`Policy.local_dns`).

dnsmasq's matching is not the policy's (dnsmasq(8), `--server`, `--address`, `--nftset`; and
`domain_find_sets` in src/forward.c, measured with dnsmasq 2.90):
- `nftset=/d/` matches d and every name below it, and only the longest matching entry applies
  (the later one on a tie). A leading `*.` is not understood there: `nftset=/*.d/` matches
  nothing. So one entry gives d and the names below d the same sets.
- The policy's `d` is d alone and `*.d` is one or more labels below d, not d itself (ir.Peers).
When the sets d itself needs differ from the sets the names below d need, and one side needs
none, that side is answered NXDOMAIN by the resolver, which `--address` can aim precisely:
`address=/*.d/` refuses only the names below d, `address=/d/` plus `server=/*.d/#` refuses d
alone and forwards the rest as usual, and `server=/e/#` reopens an allowed name e inside a
refused subtree (the longest match wins). When both sides need sets and they differ, dnsmasq
cannot say it: the entry gets both sides' sets and compile warns that the target is wider.

Timing: dnsmasq adds elements without the answer's TTL, so they take the set's `timeout`
(`fqdn_timeout`), and adding an element that exists does not restart its timeout. The
fragment caps every TTL the resolver hands out or caches at that same timeout (`max-ttl`,
`max-cache-ttl`), so an answer never outlives the elements it created; the ruleset restarts
an element's timeout whenever the agent opens a connection to it (see nftables.py), so an
address two names share, or one dnsmasq answers again from its cache, stays while in use.
Short TTLs are not stretched (`min-cache-ttl` is left alone): the floor is the set timeout.

With `dns local` the fragment also closes DNS itself (`hardened`): dnsmasq 2.90 ignores a
catch-all `address=/#/` (or `local=/#/`, `server=/#/`) while it has default upstreams
(measured: unlisted names were still forwarded), so the fragment gives it none (`no-resolv`)
and names the upstreams per policy name and `dns resolve` name (`server=/d/IP`, from
`compile --dns-upstream`); every other name has no server and is answered REFUSED, so it
never leaves the host. `cache-size=0` makes every answer a forwarded one, since dnsmasq adds
to sets only for forwarded replies (a cache hit added nothing). What it
still cannot do: refresh an element that exists (dnsmasq 2.90 sends no `expires`; a re-add
leaves the old expiry), so an answer can outlive its address by up to the set timeout minus
the TTL. The DNS gate (`clawpolicy dns serve`, backends/dnsgate.py) closes that race.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clawpolicy.backends import support_tables
from clawpolicy.backends.base import (
    Artifact,
    BackendResult,
    CompileOptions,
    Feature,
    Support,
)
from clawpolicy.backends.naming import NameClaim
from clawpolicy.backends.nftables import FqdnGroup, fqdn_groups, group_owner, line_comment, table_name
from clawpolicy.backends.templating import load_template
from clawpolicy.errors import Diagnostic, Location, Severity
from clawpolicy.ir import Policy, Rule

if TYPE_CHECKING:
    import jinja2


@dataclass
class Entry:
    """The lines for one domain the policy names (exactly, or as a wildcard's suffix)."""

    domain: str
    sets: list[str]  # nftset specs: 4#inet#table#set, 6#inet#table#set
    why: list[str]  # comment lines
    refuse_self: bool = False  # the domain itself is answered NXDOMAIN
    refuse_below: bool = False  # names below it (not covered by deeper entries) are NXDOMAIN
    reopen: bool = False  # it lies in a refused subtree: forward it as usual
    forward: bool = False  # hardened: the domain (and what is below it) goes upstream


def _label_key(domain: str) -> tuple[str, ...]:
    """Parents before children, siblings alphabetical: reversed labels."""
    return tuple(reversed(domain.split(".")))


def _under(name: str, suffix: str) -> bool:
    return name.endswith("." + suffix)


def _describe(groups: Sequence[FqdnGroup], domain: str, *, itself: bool) -> str:
    """What the groups make of `domain` (itself) or of the names below it, naming the rules."""
    def relevant(rule: Rule) -> bool:
        wild = any(domain == w or _under(domain, w) for w in rule.peers.wildcards)
        if itself:
            return domain in rule.peers.names or any(_under(domain, w) for w in rule.peers.wildcards)
        return wild
    parts = []
    for g in groups:
        ports = ", ".join(str(p) for p in g.ports) or "all ports"
        ids = ", ".join(r.id for r in g.rules if relevant(r))
        parts.append(f"{g.action.value} {ports} ({ids})")
    return "; ".join(parts) or "nothing"


def plan(policy: Policy) -> tuple[list[Entry], list[Diagnostic]]:
    groups = fqdn_groups(policy)
    exact: dict[str, list[FqdnGroup]] = {}
    wild: dict[str, list[FqdnGroup]] = {}
    for g in groups:
        for n in g.names:
            exact.setdefault(n, []).append(g)
        for w in g.wildcards:
            wild.setdefault(w, []).append(g)
    order = {id(g): i for i, g in enumerate(groups)}
    table = table_name(policy)
    domains = sorted({*exact, *wild}, key=_label_key)
    entries: list[Entry] = []
    diagnostics: list[Diagnostic] = []
    for d in domains:
        above = [g for a in domains if _under(d, a) for g in wild.get(a, [])]
        own = _unique(exact.get(d, []) + above, order)  # what d itself belongs to
        below = _unique(above + wild.get(d, []), order)  # what the names below d belong to
        entry = Entry(d, [], [])
        if own == below:
            chosen = own
            entry.why.append(f"{d} and every name below it: {_describe(own, d, itself=True)}")
        elif not own:
            chosen, entry.refuse_self = below, True
            entry.why.append(f"names below {d}: {_describe(below, d, itself=False)}")
            entry.why.append(f"{d} itself is not named (*.{d} is one or more labels below it): NXDOMAIN")
        elif not below:
            chosen, entry.refuse_below = own, True
            entry.why.append(f"{d}: {_describe(own, d, itself=True)}")
            entry.why.append("the names below it are not named: NXDOMAIN")
        else:
            chosen = _unique(own + below, order)
            entry.why.append(f"{d}: {_describe(own, d, itself=True)}")
            entry.why.append(f"names below it: {_describe(below, d, itself=False)}")
            entry.why.append("dnsmasq cannot tell them apart: both get both (WIDER than the policy)")
            diagnostics.append(_wider(policy, d, own, below))
        entry.sets = [f"{fam}#inet#{table}#{g.set_name(fam)}" for g in chosen for fam in (4, 6)]
        entries.append(entry)
    refused_below = [e.domain for e in entries if e.refuse_below]
    for e in entries:
        e.reopen = not e.refuse_self and any(_under(e.domain, r) for r in refused_below)
    return entries, diagnostics


def _unique(groups: Sequence[FqdnGroup], order: Mapping[int, int]) -> list[FqdnGroup]:
    seen = {id(g): g for g in groups}
    return [seen[k] for k in sorted(seen, key=lambda k: order[k])]


def _wider(policy: Policy, domain: str, own: Sequence[FqdnGroup], below: Sequence[FqdnGroup]) -> Diagnostic:
    rules: list[Rule] = sorted({r for g in (*own, *below) for r in g.rules}, key=lambda r: r.span.line)
    first = rules[0].span
    extra_self = [g for g in below if g not in own]
    extra_below = [g for g in own if g not in below]
    parts = []
    if extra_self:
        parts.append(f"{domain} itself also gets {_describe(extra_self, domain, itself=False)}")
    if extra_below:
        parts.append(f"names below {domain} also get {_describe(extra_below, domain, itself=True)}")
    return Diagnostic(
        Severity.WARNING, f"dnsmasq target is wider than the policy for {domain}: "
        + "; ".join(parts), Location(first.file, first.line, first.col),
        "dnsmasq applies one nftset entry to a name and every name below it; give the exact "
        "name and the wildcard the same ports and action, or accept the wider rule",
        code="dnsmasq-wider")


TEMPLATE = "dnsmasq/fragment.conf.j2"  # and its filters: test_templating.py compiles it ahead of time
TEMPLATE_FILTERS: Mapping[str, Callable[[Any], str]] = {"line_comment": line_comment}


@functools.cache
def _template() -> jinja2.Template:
    return load_template(TEMPLATE, TEMPLATE_FILTERS)


def resolve_only(policy: Policy, entries: Sequence[Entry]) -> list[tuple[str, bool]]:
    """`dns resolve` names no rule names: (domain, wildcard), forwarded without a set. An
    exact name refuses the names below it (`address=/*.d/`), as for rules."""
    taken = {e.domain for e in entries}
    out: dict[tuple[str, bool], None] = {}
    for r in policy.resolve:
        out.update({(n, False): None for n in r.names if n not in taken})
        out.update({(w, True): None for w in r.wildcards if w not in taken})
    return sorted(out, key=lambda k: (_label_key(k[0]), k[1]))


def render(policy: Policy, options: CompileOptions) -> tuple[str, list[Diagnostic]]:
    entries, diagnostics = plan(policy)
    dns = policy.local_dns
    hardened = dns is not None
    for e in entries:
        e.forward = hardened and not e.refuse_self and not e.reopen
    upstreams = [_server(u) for u in options.dns_upstreams]
    if hardened and not upstreams:
        diagnostics.append(Diagnostic(
            Severity.NOTE, f"{policy.name}: the dnsmasq fragment cannot refuse unlisted names "
            "without the upstream servers", Location(policy.source, policy.span.line, policy.span.col),
            "pass --dns-upstream IP (repeatable) so that only the policy's names are forwarded, "
            "or run the DNS gate (clawpolicy dns serve)", code="dnsmasq-open"))
    text = _template().render(policy=policy, table=table_name(policy), entries=entries,
                              timeout=options.fqdn_timeout, hardened=hardened,
                              upstreams=upstreams, servers=upstreams or ["#"],
                              resolve_only=resolve_only(policy, entries) if hardened else [],
                              resolver_user=dns.resolver_user if dns else "dnsmasq")
    return text, diagnostics


# dnsmasq's config reader takes a line in chunks of MAXDNAME - 1 = 1,024 bytes (option.c,
# read_file): the rest of a longer line is parsed as a new option.
LINE_MAX_BYTES = 1024


def _server(address: str) -> str:
    """`IP` or `IP:PORT` / `[IPv6]:PORT` as dnsmasq writes a server: `IP#PORT`."""
    if address.startswith("["):
        host, _, port = address[1:].partition("]")
        return f"{host}#{port[1:]}" if port.startswith(":") else host
    if address.count(":") == 1:
        host, _, port = address.partition(":")
        return f"{host}#{port}"
    return address


def artifact_name(policy: Policy) -> str:
    return f"clawpolicy-{policy.name}.conf"


class DnsmasqBackend:
    name: str = "dnsmasq"
    summary: str = ("a dnsmasq fragment (nftset=) that fills the nftables FQDN sets from the "
                    "agent's resolver")
    enforces: bool = False  # it feeds the nftables target's sets; alone it blocks nothing
    support: Mapping[Feature, Support] = support_tables.DNSMASQ

    def compile(self, policy: Policy, options: CompileOptions) -> BackendResult:
        if not fqdn_groups(policy) and not policy.resolve:  # no domain: nothing to resolve
            return BackendResult()
        text, diagnostics = render(policy, options)
        longest = max(text.splitlines(), key=lambda line: len(line.encode("utf-8")))
        if len(longest.encode("utf-8")) >= LINE_MAX_BYTES:
            return BackendResult([], [*diagnostics, Diagnostic(
                Severity.ERROR, f"{policy.name}: dnsmasq would misread the fragment: a line of "
                f"{len(longest.encode('utf-8'))} bytes ({longest[:40]}...); dnsmasq reads "
                f"{LINE_MAX_BYTES - 1} bytes of a line and parses the rest as another option",
                Location(policy.source), "a name needs one nftset= line for the sets of every rule "
                "that names it (one set per rule and family): name it in fewer rules", code="dnsmasq")])
        # one conf-dir holds every policy's fragment; the sets are the nftables target's names
        names = [NameClaim("dnsmasq fragment", artifact_name(policy), f"policy {policy.name}")]
        names += [NameClaim(f"nftables set in table {table_name(policy)}", g.set_name(family),
                            f"{group_owner(g)}, IPv{family}")
                  for g in fqdn_groups(policy) for family in (4, 6)]
        return BackendResult([Artifact(artifact_name(policy), text.encode("utf-8"), "text/plain")],
                             diagnostics, names)


BACKEND = DnsmasqBackend()
