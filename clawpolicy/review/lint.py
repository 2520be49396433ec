"""Lint: floor 3. Findings about a lowered policy, for reviewers and CI.

Each check is one small function registered in `CHECKS` (id, severity, title, help): the
table is data, shared by the text/JSON output and SARIF's rule list. Checks read the IR only
and live by theme: exposure.py (what the agent reaches), overlap.py (rules that overlap),
lockout.py (host dependencies); the hygiene checks (expiry, owner, enforcement) are here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

from clawpolicy.backends.registry import check_support, targets_for
from clawpolicy.errors import Location, Severity
from clawpolicy.ir import Policy, Span
from clawpolicy.review import explicit_id, lockout
from clawpolicy.review.exposure import (
    CREDENTIAL_DIRS,
    DANGEROUS_CAPS,
    WIDE_PREFIX,
    check_credentials,
    check_dangerous_capabilities,
    check_dns_any_resolver,
    check_fqdn_without_dns,
    check_gateway_exposed,
    check_mdns,
    check_metadata,
    check_netlink_any,
    check_public_suffix_wildcard,
    check_wide_egress,
)
from clawpolicy.review.finding import (
    SEVERITY_RANK,
    Check,
    Context,
    Finding,
    Hit,
    at_or_above,
    render_text,
    to_json,
)
from clawpolicy.review.overlap import check_cancelled_allow, check_redundant_deny, check_shadowed
from clawpolicy.review.protected import GATEWAY_PORT, METADATA

__all__ = ["CHECKS", "CREDENTIAL_DIRS", "DANGEROUS_CAPS", "SEVERITY_RANK", "WIDE_PREFIX", "Check",
           "Context", "Finding", "Hit", "at_or_above", "lint", "render_text", "to_json"]

EXPIRY_WARNING_DAYS = 30


def check_expired(ctx: Context) -> Iterator[Hit]:
    for item in (*ctx.policy.rules, *ctx.policy.syscalls, *ctx.policy.files):
        if item.expires is not None and item.expires < ctx.today:
            yield Hit(f"rule expired on {item.expires.isoformat()}", item.id, item.span,
                      "renew it with a new 'expires' date after review, or remove the rule")


def check_expiring(ctx: Context) -> Iterator[Hit]:
    horizon = ctx.today + dt.timedelta(days=EXPIRY_WARNING_DAYS)
    for item in (*ctx.policy.rules, *ctx.policy.syscalls, *ctx.policy.files):
        if item.expires is not None and ctx.today <= item.expires <= horizon:
            days = (item.expires - ctx.today).days
            yield Hit(f"rule expires on {item.expires.isoformat()} (in {days} days)", item.id,
                      item.span, "ask the owner whether it is still needed; renew or remove it")

def _support(ctx: Context, code: str) -> Iterator[Hit]:
    for d in check_support(ctx.policy, targets_for(ctx.policy, ctx.targets)[0]):
        if d.code == code and d.location is not None:
            rule_id, _, message = d.message.partition(": ")
            loc = d.location
            yield Hit(message, rule_id, Span(file=loc.file, line=loc.line, col=loc.col,
                                             end_line=loc.line, end_col=loc.col), d.hint or "")


def check_unenforced(ctx: Context) -> Iterator[Hit]:
    return _support(ctx, "unenforced")  # partial support is compile's (verbose) note, not lint's


def check_owner(ctx: Context) -> Iterator[Hit]:
    if not ctx.require_owner:
        return
    for item in (*ctx.policy.rules, *ctx.policy.syscalls, *ctx.policy.files):
        if item.owner is None:
            yield Hit("rule has no owner", item.id, item.span,
                      "add owner \"team@example.com\": someone must answer for it")


def _host_check(spec: lockout.Spec) -> Check:
    """A lockout/dependency check (review/lockout.py) as a lint check."""
    def run(ctx: Context) -> Iterator[Hit]:
        for f in spec.run(ctx.policy, ctx.management_ports):
            yield Hit(f.message, f.rule_id, f.span, f.hint)
    return Check(spec.id, spec.severity, spec.title, spec.help, run)


HOST_CHECKS: tuple[Check, ...] = tuple(_host_check(spec) for spec in lockout.SPECS)

CHECKS: tuple[Check, ...] = (
    Check("expired", Severity.ERROR, "Expired rule",
          "The rule's 'expires' date has passed: renew it after review, or remove it.", check_expired),
    Check("expiring", Severity.WARNING, "Rule expires soon",
          f"The rule expires within {EXPIRY_WARNING_DAYS} days.", check_expiring),
    Check("wide-egress", Severity.WARNING, "Egress to everything or a wide range",
          "Egress to 0.0.0.0/0, ::/0 or any, or to a /8 (IPv6 /32) or wider without ports, "
          "defeats an allowlist.", check_wide_egress),
    Check("gateway-exposed", Severity.ERROR, "Gateway reachable beyond loopback/tailnet",
          f"Ingress to the OpenClaw gateway port {GATEWAY_PORT} from outside loopback and the "
          "Tailscale ranges exposes the agent's control plane.", check_gateway_exposed),
    Check("mdns-allowed", Severity.WARNING, "mDNS allowed",
          "udp 5353 to 224.0.0.251/ff02::fb lets the gateway announce itself on the LAN.", check_mdns),
    Check("dns-any-resolver", Severity.WARNING, "DNS to any resolver",
          "DNS allowed to any or a wide range is an exfiltration channel.", check_dns_any_resolver),
    Check("metadata-reachable", Severity.ERROR, "Cloud metadata reachable",
          f"{METADATA}, fd00:ec2::254 and other metadata endpoints hand out credentials; the "
          "agent must not reach them.", check_metadata),
    Check("public-suffix-wildcard", Severity.ERROR, "Wildcard over a public suffix",
          "*.com, *.co.uk or *.github.io (any Public Suffix List entry) match names anyone can "
          "register.", check_public_suffix_wildcard),
    Check("dangerous-capability", Severity.WARNING, "Dangerous capability kept",
          f"{', '.join(DANGEROUS_CAPS)} give raw network or system control.",
          check_dangerous_capabilities),
    Check("netlink-any", Severity.WARNING, "Every netlink protocol allowed",
          "A netlink socket of any protocol reaches the kernel's audit, sock_diag, netfilter "
          "and xfrm interfaces; name the protocols (netlink route).", check_netlink_any),
    Check("credentials-not-denied", Severity.NOTE, "Credential directories not denied",
          f"A policy that confines the process should deny {', '.join(CREDENTIAL_DIRS)}.",
          check_credentials),
    Check("fqdn-without-dns", Severity.WARNING, "FQDN rule without a DNS path",
          "Names need DNS: add 'dns local' or an allow rule to port 53.", check_fqdn_without_dns),
    Check("shadowed", Severity.NOTE, "Allow rule shadowed",
          "Another allow rule of the same direction already allows everything this one does.",
          check_shadowed),
    Check("cancelled-allow", Severity.WARNING, "Allow rule cancelled by a deny",
          "Deny overrides allow: deny rules (or 'dns local') refuse everything this allow names, "
          "so it never lets anything through.", check_cancelled_allow),
    Check("redundant-deny", Severity.NOTE, "Deny rule never matches",
          "No allow rule overlaps the deny, so default deny already covers it.",
          check_redundant_deny),
    Check("unenforced", Severity.WARNING, "Not enforced by the selected targets",
          "No selected enforcing target enforces this part of the policy.", check_unenforced),
    Check("missing-owner", Severity.WARNING, "Rule without owner",
          "Org setting (--require-owner): every rule names an owner.", check_owner),
    Check("explicit-id", Severity.NOTE, explicit_id.TITLE, explicit_id.HELP,
          lambda ctx: (Hit(*h) for h in explicit_id.unpinned_rules(ctx.policy))),
    *HOST_CHECKS,
)


# Checks that are errors once the operator declared management ports (the host is run
# remotely, so a lockout cuts them off), warnings otherwise (a workstation needs no SSH).
ERROR_WHEN_REMOTE = frozenset({"no-management-ingress"})


def lint(policy: Policy, *, today: dt.date, targets: Sequence[str],
         require_owner: bool = False, management_ports: Sequence[int] | None = None
         ) -> list[Finding]:
    """Run every check on `policy`; findings sorted by position, then check id.
    `management_ports`: the TCP ports operators log in on (the lockout check); None means
    the default, 22, without declaring the host remote."""
    remote = management_ports is not None
    ctx = Context(policy, today, tuple(targets), require_owner, tuple(management_ports or (22,)))
    out = [Finding(check.id, Severity.ERROR if remote and check.id in ERROR_WHEN_REMOTE
                   else check.severity, hit.message, hit.rule_id,
                   Location(hit.span.file, hit.span.line, hit.span.col), hit.hint)
           for check in CHECKS for hit in check.run(ctx)]
    return sorted(out, key=Finding.sort_key)
