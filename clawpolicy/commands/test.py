"""`test`: run the policies' own `test` blocks on the evaluator."""

from __future__ import annotations

import argparse
from pathlib import Path

from clawpolicy.commands import HELP_FORMAT, Subparsers, print_diagnostics
from clawpolicy.errors import ExitCode
from clawpolicy.evaluate import run_tests
from clawpolicy.lower import load_policies


def cmd_test(args: argparse.Namespace) -> int:
    loaded = load_policies(args.policies)
    print_diagnostics(loaded.diagnostics, loaded.sources)
    if not loaded.ok:
        return ExitCode.POLICY_ERROR
    failed = total = 0
    for policy in loaded.policies:
        for r in run_tests(policy):
            total += 1
            status = "ok  " if r.ok else "FAIL"
            failed += not r.ok
            print(f"{status} {policy.name}: {r.name}: expect {r.expected.value} {r.flow} -> {r.verdict}"
                  + ("" if r.ok else f"  [{r.where}]"))
    print(f"{total - failed} passed, {failed} failed")
    return ExitCode.POLICY_ERROR if failed else ExitCode.OK


def register(sub: Subparsers) -> None:
    p = sub.add_parser("test", help="run the policies' own `test` blocks",
                       description="Evaluate each `expect` of the policies' `test` blocks and "
                                   "report pass/fail; exit 1 if any fails.",
                       epilog="example:\n  clawpolicy test examples/openclaw-workstation.claw\n\n"
                              "a test block:\n  test \"providers reachable\" {\n"
                              "    expect allow egress api.anthropic.com port 443/tcp\n"
                              "    expect deny ingress from 192.168.1.20 port 18789/tcp\n  }",
                       formatter_class=HELP_FORMAT)
    p.add_argument("policies", nargs="+", type=Path, metavar="POLICY.claw")
    p.set_defaults(func=cmd_test)
