"""Host operations: `apply` (load with automatic rollback) and `status` (what is loaded)."""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from clawpolicy import ir
from clawpolicy.commands import HELP_FORMAT, Subparsers, print_diagnostics
from clawpolicy.errors import ExitCode, Severity
from clawpolicy.printable import shown

if TYPE_CHECKING:
    from clawpolicy.operate.apply import Plan
    from clawpolicy.operate.resolver import ResolverPlan

APPLY_HELP = """\
examples:
  sudo clawpolicy apply examples/openclaw-server.claw
      check, remember the loaded table, load atomically; roll back after 60 s unless confirmed
  sudo clawpolicy apply --confirm
      (from any session) keep what the waiting apply loaded
  sudo clawpolicy apply agent.claw --mode shadow --confirm-within 300 --deny-action reject
  sudo clawpolicy apply agent.claw --resolver gate --dns-upstream 192.0.2.53 --start
      also install the DNS gate's unit (after the ruleset, which creates its sets) and start it
  sudo clawpolicy status
      policy, mode, source hash and per-rule counters of each loaded table

Before loading an enforcing host policy, apply checks the SSH session it runs in
(SSH_CONNECTION) and every established connection to a management port against the
policy, and refuses, naming the rule, when the policy would refuse that client; --force
loads anyway. Each step is logged to stderr and to STATE_DIR/log.

A policy with names needs a resolver that fills its sets: --resolver gate writes the
DNS gate's systemd unit (the dnsgate target) into --resolver-dir (/etc/systemd/system),
--resolver dnsmasq the dnsmasq fragment (/etc/dnsmasq.d); --start restarts the service.
The files are written after the ruleset is loaded and put back as they were (kept under
STATE_DIR) before a rollback restores the table. resolv.conf is never rewritten: apply
prints the line. The default, none, installs nothing and says so when the policy has names.
Exit status: 0 kept, 1 refused, failed or rolled back (the host has what it had), 2 usage.
"""


def _plan(args: argparse.Namespace) -> tuple[Plan, ResolverPlan | None] | int:
    """The policy compiled in memory (nftables, and the resolver's target when one is
    asked for), stamped; or an exit status."""
    from clawpolicy.backends.base import CompileOptions
    from clawpolicy.backends.nftables import fqdn_groups, table_name
    from clawpolicy.compiler import compile_paths
    from clawpolicy.operate.apply import Plan, source_hash, stamped

    refusal = (ir.Refusal(args.deny_action) if args.deny_action else None, None)
    target = {"gate": "dnsgate", "dnsmasq": "dnsmasq"}.get(args.resolver)
    options = CompileOptions(dns_upstreams=tuple(args.dns_upstream or ()))
    result = compile_paths([args.policy], ["nftables", *([target] if target else [])],
                           mode=ir.Mode(args.mode) if args.mode else None, options=options,
                           explicit=True, include_root=args.include_root, refusal=refusal)
    print_diagnostics([d for d in result.diagnostics if d.severity is Severity.ERROR], result.sources)
    if not result.ok:
        return ExitCode.POLICY_ERROR
    policies = [p for p in result.policies if args.name in (None, p.name)]
    if len(policies) != 1:
        names = ", ".join(p.name for p in result.policies)
        print(shown(f"clawpolicy: error: {args.policy} holds {names or 'no policy'}: name one with "
                    "--name"), file=sys.stderr)
        return ExitCode.USAGE
    policy = policies[0]
    text = result.outputs[f"{policy.name}/nftables/ruleset.nft"].decode("utf-8")
    bare = Plan(policy, table_name(policy), text, source_hash(result.sources))
    plan = Plan(policy, bare.table, stamped(text, bare.table, bare.stamp), bare.sha256)
    has_names = bool(fqdn_groups(policy) or policy.resolve)
    if not has_names:
        if target:
            print(f"clawpolicy: warning: policy {policy.name} names no hosts: no resolver to install",
                  file=sys.stderr)
        return plan, None
    if not target:
        print(f"clawpolicy: warning: policy {policy.name} allows names: their sets stay empty until a "
              "resolver fills them (--resolver gate or --resolver dnsmasq, or install one yourself)",
              file=sys.stderr)
        return plan, None
    return plan, _resolver_plan(args, policy, {k.split("/", 2)[2]: v.decode("utf-8")
                                               for k, v in result.outputs.items()
                                               if k.startswith(f"{policy.name}/{target}/")})


def _resolver_plan(args: argparse.Namespace, policy: ir.Policy, files: dict[str, str]) -> ResolverPlan:
    """What `--resolver` installs: the gate's unit (its resolv.conf line is printed, not
    written), or the dnsmasq fragment."""
    from clawpolicy.backends import dnsgate, dnsmasq
    from clawpolicy.operate.resolver import DEFAULT_DIRS, ResolverPlan

    directory = args.resolver_dir or DEFAULT_DIRS[args.resolver]
    if args.resolver == "gate":
        unit = dnsgate.unit_name(policy)
        resolv = " / ".join(line for line in files.get("resolv.conf", "").splitlines()
                            if line and not line.startswith("#"))
        upstreams = "" if args.dns_upstream else f", its upstreams in {dnsgate.UPSTREAMS_FILE}"
        note = (f"the unit reads {dnsgate.INSTALL_DIR}/{policy.name}.claw{upstreams}; "
                f"enable it (systemctl enable {unit}) and point /etc/resolv.conf at it: {resolv}")
        return ResolverPlan("gate", directory, ((unit, files[unit]),), unit, note)
    name = dnsmasq.artifact_name(policy)
    return ResolverPlan("dnsmasq", directory, ((name, files[name]),), "dnsmasq.service",
                        "dnsmasq must be the host's resolver (resolv.conf: nameserver 127.0.0.1)")


def _terminal_wait(deadline: float, confirmed: Callable[[], bool]) -> bool:
    """Poll the confirm file, and accept `yes` typed on the terminal."""
    print(f"type 'yes' within {max(0, int(deadline - time.monotonic()))} s to keep it "
          "(or run `clawpolicy apply --confirm` from another session)", file=sys.stderr)
    while time.monotonic() < deadline:
        if confirmed():
            return True
        ready, _, _ = select.select([sys.stdin], [], [], 0.1)
        if ready and sys.stdin.readline().strip().lower() in ("yes", "y"):
            return True
    return confirmed()


def cmd_apply(args: argparse.Namespace) -> int:
    from clawpolicy.operate.apply import (
        DEFAULT_WINDOW,
        ApplyError,
        Nft,
        State,
        apply,
        cut_sessions,
        poll_until,
        sessions,
    )

    state = State(args.state_dir, echo=lambda line: print(shown(line), file=sys.stderr))
    if args.confirm:
        done = state.confirm(None if args.name is None else "clawpolicy_" + args.name.replace("-", "_"))
        if not done:
            print(f"clawpolicy: error: nothing awaits confirmation in {args.state_dir}", file=sys.stderr)
            return ExitCode.POLICY_ERROR
        for table in done:
            print(f"confirmed table inet {table}")
        return ExitCode.OK
    if args.policy is None:
        print("clawpolicy: error: name a policy file (or --confirm)", file=sys.stderr)
        return ExitCode.USAGE
    if args.start and args.resolver == "none":
        print("clawpolicy: error: --start needs --resolver gate or --resolver dnsmasq", file=sys.stderr)
        return ExitCode.USAGE
    if os.geteuid() != 0:
        print("clawpolicy: error: needs root (it loads an nftables ruleset)", file=sys.stderr)
        return ExitCode.POLICY_ERROR
    planned = _plan(args)
    if isinstance(planned, int):
        return planned
    plan, resolver = planned
    nft = Nft(args.netns)
    ports = tuple(dict.fromkeys((22, *(args.management_port or ()))))
    live = sessions(nft, os.environ, ports)
    cut = cut_sessions(plan.policy, live)
    level = "warning" if args.force else "error"
    for session, verdict in cut:
        by = f"rule {verdict.rule_id}" if verdict.rule_id else "the default ingress deny"
        where = ""
        if verdict.rule_id and (rule := plan.policy.rule(verdict.rule_id)) is not None:
            where = f" ({rule.span.where()})"
        print(shown(f"clawpolicy: {level}: {by}{where} would refuse SSH from {session.client} to port "
                    f"{session.server_port}/tcp (found in {session.how}): this session, or the next "
                    "login"), file=sys.stderr)
    if cut and not args.force:
        print("clawpolicy: error: refused; nothing loaded (allow that client, or --force)", file=sys.stderr)
        return ExitCode.POLICY_ERROR
    window = DEFAULT_WINDOW if args.confirm_within is None else args.confirm_within
    wait = _terminal_wait if sys.stdin.isatty() else poll_until
    try:
        outcome = apply(plan, nft, state, window=window, wait=wait, loaded=lambda: print(
            f"loaded {plan.stamp}; confirm within {window} s: clawpolicy apply --confirm",
            file=sys.stderr, flush=True), resolver=resolver, start=args.start)
    except ApplyError as exc:
        print(shown(f"clawpolicy: error: {exc}"), file=sys.stderr)
        return ExitCode.POLICY_ERROR
    return ExitCode.OK if outcome.kept else ExitCode.POLICY_ERROR


def cmd_status(args: argparse.Namespace) -> int:
    from clawpolicy.operate.apply import ApplyError, Nft
    from clawpolicy.operate.status import render_prometheus, render_text, status

    try:
        tables = status(Nft(args.netns))
    except ApplyError as exc:
        print(shown(f"clawpolicy: error: {exc}"), file=sys.stderr)
        return ExitCode.POLICY_ERROR
    if args.format == "json":
        print(json.dumps([t.to_json() for t in tables], indent=2, sort_keys=True))
    elif args.format == "prometheus":
        sys.stdout.write(render_prometheus(tables))
    else:
        print(shown(render_text(tables)))
    return ExitCode.OK


def _window(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"seconds, 0 or more, not {text!r}")
    return int(text)


def _dns_upstream(text: str) -> str:
    from clawpolicy.commands.compile_args import dns_upstream as check
    return check(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"a TCP port, not {text!r}")
    return int(text)


def register(sub: Subparsers) -> None:
    p = sub.add_parser("apply", help="load a policy's nftables ruleset with automatic rollback",
                       description="Compile in memory, check with the kernel, remember the loaded "
                                   "table, load atomically, and roll back unless confirmed.",
                       epilog=APPLY_HELP, formatter_class=HELP_FORMAT)
    p.add_argument("policy", nargs="?", type=Path, metavar="POLICY.claw")
    p.add_argument("--confirm", action="store_true",
                   help="confirm the load another `clawpolicy apply` is waiting on")
    p.add_argument("--name", help="the policy to apply (or confirm) when a file holds several")
    p.add_argument("--mode", choices=[m.value for m in ir.Mode], help="override the policy's mode")
    p.add_argument("--deny-action", choices=[r.value for r in ir.Refusal],
                   help="how egress denies refuse (see compile --deny-action)")
    p.add_argument("--confirm-within", type=_window, metavar="SECONDS",
                   help="roll back unless confirmed within this many seconds (default 60; 0: "
                        "keep at once, no rollback)")
    p.add_argument("--force", action="store_true",
                   help="load even when the policy would refuse the SSH session apply runs in")
    p.add_argument("--management-port", action="append", type=_port, metavar="N",
                   help="another TCP port operators log in on (22 is always checked)")
    p.add_argument("--resolver", choices=["none", "gate", "dnsmasq"], default="none",
                   help="also install what fills the policy's name sets, after the ruleset: "
                        "the DNS gate's systemd unit or the dnsmasq fragment (default none)")
    p.add_argument("--resolver-dir", type=Path, metavar="DIR",
                   help="where the resolver's file goes (default /etc/systemd/system for the "
                        "gate, /etc/dnsmasq.d for dnsmasq)")
    p.add_argument("--start", action="store_true",
                   help="with --resolver: systemctl daemon-reload and restart the service")
    p.add_argument("--dns-upstream", action="append", type=_dns_upstream, metavar="IP[:PORT]",
                   help="the resolver's upstream (as compile --dns-upstream)")
    p.add_argument("--netns", metavar="NAME", help="act in this network namespace (ip netns)")
    p.add_argument("--state-dir", type=Path, default=Path("/run/clawpolicy"),
                   help="where a pending load and the log are kept (default /run/clawpolicy)")
    p.add_argument("--include-root", type=Path, metavar="DIR",
                   help="directory tree includes must stay in (as compile)")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("status", help="what clawpolicy has loaded: policy, mode, hash, counters",
                       description="Show every clawpolicy table loaded in the kernel.",
                       formatter_class=HELP_FORMAT)
    p.add_argument("--netns", metavar="NAME", help="look in this network namespace (ip netns)")
    p.add_argument("--format", choices=["text", "json", "prometheus"], default="text",
                   help="prometheus: the text format for node_exporter's textfile collector "
                        "(examples/prometheus/)")
    p.set_defaults(func=cmd_status)
