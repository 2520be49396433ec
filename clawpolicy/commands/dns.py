"""`dns serve`: run the DNS gate for one policy, in the foreground (floor 4: arguments,
start-up checks, exit status; the gate itself is clawpolicy/dnsgate/)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from clawpolicy.commands import HELP_FORMAT, Subparsers, positive_int, print_diagnostics
from clawpolicy.errors import ExitCode
from clawpolicy.ir import Mode, Policy
from clawpolicy.lower import load_policies

DESCRIPTION = """\
The agent's resolver, in front of the policy's FQDN sets. It forwards only the names the
policy names (allow and deny rules, `dns resolve`), answers every other name REFUSED itself
(shadow mode: forwards it and logs would-refuse), and puts every address an answer gives for
a policy name into that rule's nftables sets, in one transaction, before the answer leaves.
If that update fails, the client gets SERVFAIL. One log line per query on stderr (journald).
SIGHUP reloads the policy file. Load the policy's ruleset first: the sets must exist."""

EPILOG = """\
examples:
  clawpolicy dns serve examples/openclaw-server.claw
  clawpolicy dns serve agent.claw --listen 127.0.0.1:53 --upstream 10.0.0.53 --user clawdns
  clawpolicy dns serve agent.claw --mode shadow      # forward everything, log would-refuse
  systemctl reload clawpolicy-dns-agent              # (SIGHUP) after reloading the ruleset"""


def _load(path: Path, name: str | None) -> Policy | None:
    """The one policy of `path` (or the one called `name`); None after printing why not."""
    loaded = load_policies([path])
    print_diagnostics([d for d in loaded.diagnostics if d.severity.value == "error"], loaded.sources)
    if not loaded.ok:
        return None
    chosen = [p for p in loaded.policies if name is None or p.name == name]
    if len(chosen) != 1:
        names = ", ".join(p.name for p in loaded.policies) or "none"
        print(f"clawpolicy: error: {path} defines {names}: name one with --policy",
              file=sys.stderr)
        return None
    return chosen[0]


def cmd_serve(args: argparse.Namespace) -> int:
    from clawpolicy.dnsgate import privileges
    from clawpolicy.dnsgate.nftset import Libnftables, SetError
    from clawpolicy.dnsgate.server import Gate, GateOptions, serve
    from clawpolicy.dnsgate.upstreams import parse_address, resolv_conf_upstreams

    policy = _load(args.policy, args.policy_name)
    if policy is None:
        return ExitCode.POLICY_ERROR
    try:
        listen = tuple(parse_address(a) for a in args.listen or ["127.0.0.1:53"])
        upstreams = tuple(parse_address(a) for a in args.upstream or [])
    except ValueError as exc:
        print(f"clawpolicy: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if not upstreams:
        upstreams = resolv_conf_upstreams(args.resolv_conf, listen)
    if not upstreams:
        print(f"clawpolicy: error: no upstream: pass --upstream IP or list a "
              f"nameserver other than the gate in {args.resolv_conf}", file=sys.stderr)
        return ExitCode.USAGE
    if args.workers > 1 and args.min_ttl:
        print("clawpolicy: error: --min-ttl needs --workers 1: each worker remembers "
              "only the expiries it promised, so another could shorten them", file=sys.stderr)
        return ExitCode.USAGE
    options = GateOptions(upstreams=upstreams, floor=args.min_ttl or args.fqdn_timeout,
                          default_cap=args.fqdn_timeout, upstream_timeout=args.upstream_timeout)
    mode = Mode(args.mode) if args.mode else None
    try:
        writer = Libnftables()
    except SetError as exc:
        print(f"clawpolicy: error: {exc}", file=sys.stderr)
        return ExitCode.POLICY_ERROR
    try:
        gate = Gate(policy, writer, options, mode=mode)
    except SetError as exc:
        print(f"clawpolicy: error: {exc}\n  hint: load the policy's ruleset first "
              f"(nft -f generated/{policy.name}/nftables/ruleset.nft)", file=sys.stderr)
        return ExitCode.POLICY_ERROR

    dns = policy.local_dns
    if dns is not None and policy.scope.kind == "host" and args.user not in (None, dns.resolver_user):
        print(f"clawpolicy: warning: policy {policy.name} fences the whole host and lets "
              f"only user {dns.resolver_user} send DNS off it (rule {dns.id}): as {args.user} the "
              f"gate's own queries are dropped; use --user {dns.resolver_user}", file=sys.stderr)

    def after_bind() -> None:
        if args.user:
            privileges.drop_to(args.user)
        else:
            privileges.narrow()

    def ready() -> None:
        caps = privileges.effective_capabilities()
        where = " ".join(f"{h}:{p}" for h, p in listen)
        ups = " ".join(f"{h}:{p}" for h, p in upstreams)
        gate.log(f"clawpolicy-dns: serving policy={policy.name} mode={gate.gate.mode.value} "
                 f"pid={os.getpid()} "
                 f"listen={where} upstream={ups} ttl-cap={gate.cap} uid={os.getuid()} "
                 f"capeff={caps:#x}")

    def run(gate: Gate) -> int:
        try:
            asyncio.run(serve(gate, listen, reload=lambda: _load(args.policy, args.policy_name),
                              after_bind=after_bind, ready=ready, reuse_port=args.workers > 1))
        except (OSError, privileges.PrivilegeError, SetError) as exc:
            print(f"clawpolicy: error: {exc}", file=sys.stderr)
            return ExitCode.POLICY_ERROR
        return ExitCode.OK

    if args.workers == 1:
        return run(gate)
    from clawpolicy.dnsgate.workers import Supervisor

    # every worker builds its own Gate after the fork: no event loop, socket or netlink
    # handle is shared; the supervisor's own `gate` above only proved the sets are there
    return Supervisor(args.workers, lambda: run(Gate(policy, Libnftables(), options, mode=mode))).run()


def register(sub: Subparsers) -> None:
    p = sub.add_parser("dns", help="the DNS gate: the agent's resolver that fills the FQDN sets",
                       description="DNS for the agent, held to the policy.",
                       formatter_class=HELP_FORMAT)
    dsub = p.add_subparsers(dest="dns_command", metavar="COMMAND")
    dsub.required = True
    s = dsub.add_parser("serve", help="run the gate in the foreground", description=DESCRIPTION,
                        epilog=EPILOG, formatter_class=HELP_FORMAT)
    s.add_argument("policy", type=Path, metavar="POLICY.claw")
    s.add_argument("--policy", dest="policy_name", metavar="NAME",
                   help="the policy to serve when the file defines several")
    s.add_argument("--listen", action="append", metavar="IP[:PORT]",
                   help="where to answer, UDP and TCP (repeatable; default 127.0.0.1:53)")
    s.add_argument("--upstream", action="append", metavar="IP[:PORT]",
                   help="where to forward, tried in order (repeatable; default: the "
                        "nameservers of --resolv-conf but the gate's own)")
    s.add_argument("--resolv-conf", type=Path, default=Path("/etc/resolv.conf"),
                   help="upstreams when no --upstream is given (default /etc/resolv.conf)")
    s.add_argument("--mode", choices=[m.value for m in Mode],
                   help="override the policy's mode: shadow forwards unlisted names and logs them")
    s.add_argument("--user", metavar="USER",
                   help="after binding, become USER keeping only CAP_NET_ADMIN")
    s.add_argument("--fqdn-timeout", type=positive_int, default=600, metavar="SECONDS",
                   help="the TTL cap when the kernel reports no set timeout (default 600, as compile)")
    s.add_argument("--min-ttl", type=positive_int, default=None, metavar="SECONDS",
                   help="the least an admitted address stays in its set (default: the sets' "
                        "timeout; never more)")
    s.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="processes sharing the listen addresses (SO_REUSEPORT; default 1); with "
                        "more than 1, a supervisor passes signals on and restarts a worker that dies")
    s.add_argument("--upstream-timeout", type=float, default=2.0, metavar="SECONDS",
                   help="per upstream and transport before the next one; all silent: SERVFAIL")
    s.set_defaults(func=cmd_serve)
