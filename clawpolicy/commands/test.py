"""`test`: run the policies' own `test` blocks on the evaluator, and with --kernel in the kernel."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clawpolicy.commands import HELP_FORMAT, Subparsers, print_diagnostics, progress
from clawpolicy.errors import ExitCode
from clawpolicy.lower import load_policies
from clawpolicy.operate import junit, kerneltest
from clawpolicy.printable import shown
from clawpolicy.write import atomic_write

TEST_HELP = """\
examples:
  clawpolicy test examples/openclaw-workstation.claw
  sudo clawpolicy test --kernel --junit report.xml examples/*.claw

a test block:
  test "providers reachable" {
    expect allow egress api.anthropic.com port 443/tcp
    expect deny ingress from 192.168.1.20 port 18789/tcp
  }

--kernel (root): also load the enforce-mode nftables ruleset into a throwaway network
namespace and probe each expectation with real packets (names are skipped: their sets are
filled by the resolver at run time), and load the seccomp filter in a child to check each
socket kind against the policy's `sockets` statement. Without root it stops with exit 2.
Exit status: 0 all passed, 1 a failure, 2 usage (including --kernel without root).
"""


def _print_text(results: list[kerneltest.CaseResult], *, kernel: bool) -> None:
    for r in results:
        status = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip", "error": "ERR "}[r.status]
        layer = f"[{r.layer}] " if kernel else ""
        detail = f"  ({r.message})" if r.message and r.status == "skipped" else (
            f"  -> {r.message}  [{r.where}]" if r.message else "")
        print(shown(f"{status} {layer}{r.policy}: {r.name}{detail}"))  # a name holds any text


@progress.one_shot
def cmd_test(args: argparse.Namespace) -> int:
    if args.kernel and (why := kerneltest.can_run()) is not None:
        print(f"clawpolicy: error: {why}", file=sys.stderr)
        return ExitCode.USAGE
    with progress.step("loading the policies"):
        loaded = load_policies(args.policies)
    print_diagnostics(loaded.diagnostics, loaded.sources)
    if not loaded.ok:
        return ExitCode.POLICY_ERROR
    with progress.step("running the tests" + (" in the kernel" if args.kernel else "")):
        results = kerneltest.run(loaded.policies, kernel=args.kernel)
    failed = sum(r.status in ("failed", "error") for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    if args.format == "json":  # no durations: the same policies give the same bytes
        print(json.dumps({"passed": len(results) - failed - skipped, "failed": failed, "skipped": skipped,
                          "results": [{"policy": r.policy, "layer": r.layer, "name": r.name,
                                       "status": r.status, "message": r.message, "file": r.file,
                                       "line": r.line, "col": r.col} for r in results]},
                         indent=2, sort_keys=True))
    else:
        _print_text(results, kernel=args.kernel)
        print(f"{len(results) - failed - skipped} passed, {failed} failed"
              + (f", {skipped} skipped" if skipped else ""))
    if args.junit:
        atomic_write(args.junit, junit.to_xml(results))
    return ExitCode.POLICY_ERROR if failed else ExitCode.OK


def register(sub: Subparsers) -> None:
    p = sub.add_parser("test", help="run the policies' own `test` blocks",
                       description="Evaluate each `expect` of the policies' `test` blocks and "
                                   "report pass/fail; exit 1 if any fails.",
                       epilog=TEST_HELP, formatter_class=HELP_FORMAT)
    p.add_argument("policies", nargs="+", type=Path, metavar="POLICY.claw")
    p.add_argument("--kernel", action="store_true",
                   help="also check the compiled nftables ruleset and seccomp filter in the kernel (root)")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="json: every result with its status and source position, and the counts")
    p.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML results for CI")
    p.set_defaults(func=cmd_test)
