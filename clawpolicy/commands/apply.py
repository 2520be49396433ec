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

APPLY_HELP = """\
examples:
  sudo clawpolicy apply examples/openclaw-server.claw
      check, remember the loaded table, load atomically; roll back after 60 s unless confirmed
  sudo clawpolicy apply --confirm
      (from any session) keep what the waiting apply loaded
  sudo clawpolicy apply agent.claw --mode shadow --confirm-within 300 --deny-action reject
  sudo clawpolicy status
      policy, mode, source hash and per-rule counters of each loaded table

Before loading an enforcing host policy, apply checks the SSH session it runs in
(SSH_CONNECTION) and every established connection to a management port against the
policy, and refuses, naming the rule, when the policy would refuse that client; --force
loads anyway. Each step is logged to stderr and to STATE_DIR/log.
Exit status: 0 kept, 1 refused, failed or rolled back (the host has what it had), 2 usage.
"""


def _plan(args: argparse.Namespace) -> Plan | int:
    """The policy compiled in memory (nftables only), stamped; or an exit status."""
    from clawpolicy.backends.nftables import table_name
    from clawpolicy.compiler import compile_paths
    from clawpolicy.operate.apply import Plan, source_hash, stamped

    refusal = (ir.Refusal(args.deny_action) if args.deny_action else None, None)
    result = compile_paths([args.policy], ["nftables"], mode=ir.Mode(args.mode) if args.mode else None,
                           explicit=True, include_root=args.include_root, refusal=refusal)
    print_diagnostics([d for d in result.diagnostics if d.severity is Severity.ERROR], result.sources)
    if not result.ok:
        return ExitCode.POLICY_ERROR
    policies = [p for p in result.policies if args.name in (None, p.name)]
    if len(policies) != 1:
        names = ", ".join(p.name for p in result.policies)
        print(shown(f"clawpolicy apply: {args.policy} holds {names or 'no policy'}: name one with "
                    "--name"), file=sys.stderr)
        return ExitCode.USAGE
    policy = policies[0]
    text = result.outputs[f"{policy.name}/nftables/ruleset.nft"].decode("utf-8")
    bare = Plan(policy, table_name(policy), text, source_hash(result.sources))
    return Plan(policy, bare.table, stamped(text, bare.table, bare.stamp), bare.sha256)


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
        DEFAULT_WINDOW, ApplyError, Nft, State, apply, cut_sessions, poll_until, sessions,
    )

    state = State(args.state_dir, echo=lambda line: print(shown(line), file=sys.stderr))
    if args.confirm:
        done = state.confirm(None if args.name is None else "clawpolicy_" + args.name.replace("-", "_"))
        if not done:
            print(f"clawpolicy apply: nothing awaits confirmation in {args.state_dir}", file=sys.stderr)
            return ExitCode.POLICY_ERROR
        for table in done:
            print(f"confirmed table inet {table}")
        return ExitCode.OK
    if args.policy is None:
        print("clawpolicy apply: name a policy file (or --confirm)", file=sys.stderr)
        return ExitCode.USAGE
    if os.geteuid() != 0:
        print("clawpolicy apply: needs root (it loads an nftables ruleset)", file=sys.stderr)
        return ExitCode.POLICY_ERROR
    plan = _plan(args)
    if isinstance(plan, int):
        return plan
    nft = Nft(args.netns)
    ports = tuple(dict.fromkeys((22, *(args.management_port or ()))))
    live = sessions(nft, os.environ, ports)
    cut = cut_sessions(plan.policy, live)
    for session, verdict in cut:
        by = f"rule {verdict.rule_id}" if verdict.rule_id else "the default ingress deny"
        where = ""
        if verdict.rule_id and (rule := plan.policy.rule(verdict.rule_id)) is not None:
            where = f" ({rule.span.where()})"
        print(shown(f"clawpolicy apply: {by}{where} would refuse SSH from {session.client} to port "
                    f"{session.server_port}/tcp (found in {session.how}): this session, or the next "
                    "login"), file=sys.stderr)
    if cut and not args.force:
        print("clawpolicy apply: refused; nothing loaded (allow that client, or --force)", file=sys.stderr)
        return ExitCode.POLICY_ERROR
    window = DEFAULT_WINDOW if args.confirm_within is None else args.confirm_within
    wait = _terminal_wait if sys.stdin.isatty() else poll_until
    try:
        outcome = apply(plan, nft, state, window=window, wait=wait, loaded=lambda: print(
            f"loaded {plan.stamp}; confirm within {window} s: clawpolicy apply --confirm",
            file=sys.stderr, flush=True))
    except ApplyError as exc:
        print(shown(f"clawpolicy apply: {exc}"), file=sys.stderr)
        return ExitCode.POLICY_ERROR
    return ExitCode.OK if outcome.kept else ExitCode.POLICY_ERROR


def cmd_status(args: argparse.Namespace) -> int:
    from clawpolicy.operate.apply import ApplyError, Nft
    from clawpolicy.operate.status import render_prometheus, render_text, status

    try:
        tables = status(Nft(args.netns))
    except ApplyError as exc:
        print(shown(f"clawpolicy status: {exc}"), file=sys.stderr)
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
