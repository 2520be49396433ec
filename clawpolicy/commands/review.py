"""Review in pull requests: `lint` (and, next, `diff` and `fmt`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clawpolicy.backends.registry import BACKENDS, DEFAULT_TARGETS
from clawpolicy.commands import (
    HELP_FORMAT,
    Subparsers,
    add_config_arguments,
    print_diagnostics,
    progress,
)
from clawpolicy.errors import ExitCode, Severity
from clawpolicy.lower import load_policies

LINT_HELP = """\
examples:
  clawpolicy lint examples/*.claw
      file:line:col: severity: [check] message (rule ID), then a fix hint
  clawpolicy lint examples/*.claw --format sarif > lint.sarif
      for code scanning (e.g. github/codeql-action/upload-sarif)
  clawpolicy lint examples/x.claw --target seccomp --require-owner --fail-on warning
      also report rules seccomp cannot enforce and rules without an owner; exit 1 on warnings

  # clawpolicy: ignore[wide-egress] web fetches need the whole internet (SEC-203)
      a comment on (or directly above) a rule accepts that check's findings for it; the
      project config accepts them with [[lint.ignore]] check/rule/file/reason. Suppressed
      findings are counted, not shown, in text; JSON and SARIF keep them, marked

Rules without an explicit `id` are one note per file in text (how many, the first IDs, and
`clawpolicy fmt --add-ids FILE` to pin them all); -v lists each, as JSON and SARIF always do.

Exit status: 1 if an unsuppressed finding at or above --fail-on (default: error) exists,
2 usage, else 0. Settings come from the command line, else the project config
(clawpolicy.toml [lint], see docs/config.md), else the defaults.
"""


LINT_DEFAULTS: dict[str, object] = {"fail_on": "error", "require_owner": False}


@progress.one_shot
def cmd_lint(args: argparse.Namespace) -> int:
    import datetime as dt

    from clawpolicy import config
    from clawpolicy.review import explicit_id, sarif, suppress
    from clawpolicy.review.lint import CHECKS, at_or_above, lint, render_text, to_json

    try:
        project = config.resolve(args.config, args.no_config)
    except config.ConfigError as exc:
        print_diagnostics(exc.diagnostics, exc.sources)
        return ExitCode.POLICY_ERROR
    config.settle(args, project.lint, LINT_DEFAULTS)
    today = dt.date.today()
    with progress.step("loading the policies"):
        loaded = load_policies(args.policies, today=today)
    print_diagnostics([d for d in loaded.diagnostics if d.severity is Severity.ERROR], loaded.sources)
    if not loaded.ok:
        return ExitCode.POLICY_ERROR
    known = [c.id for c in CHECKS]
    inline: dict[str, list[suppress.Inline]] = {}
    problems = []
    for file, text in loaded.sources.items():
        inline[file], errors = suppress.inline_suppressions(file, text, known)
        problems += errors
    if problems:
        print_diagnostics(problems, loaded.sources)
        return ExitCode.POLICY_ERROR
    targets = args.target or list(DEFAULT_TARGETS)
    with progress.step("linting"):
        findings = [f for p in loaded.policies
                    for f in lint(p, today=today, targets=targets, require_owner=args.require_owner,
                                  management_ports=args.management_port)]
    findings = suppress.apply(findings, inline, project.ignores)
    if args.format == "sarif":
        print(sarif.dumps(findings), end="")
    elif args.format == "json":
        print(json.dumps(to_json(findings), indent=2, sort_keys=True))
    elif findings:  # rules without an id: one note per file, unless -v (explicit_id.py)
        print(render_text(findings if args.verbose else explicit_id.summarise(findings)))
    failed = at_or_above(findings, Severity(args.fail_on))
    return ExitCode.POLICY_ERROR if failed else ExitCode.OK


def _tcp_port(text: str) -> int:
    number = text.removesuffix("/tcp")
    if not number.isdigit() or not 0 < int(number) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: a TCP port, 1-65535 (e.g. 2222)")
    return int(number)


def register(sub: Subparsers) -> None:
    p = sub.add_parser("lint", help="report risky, dead or expiring rules",
                       description="Check policies for risky reach (wide egress, exposed gateway, "
                                   "mDNS, metadata, DNS anywhere), dangerous capabilities, expiry, "
                                   "shadowed or redundant rules and rules the targets cannot enforce.",
                       epilog=LINT_HELP, formatter_class=HELP_FORMAT)
    p.add_argument("policies", nargs="+", type=Path, metavar="POLICY.claw")
    p.add_argument("--format", choices=["text", "json", "sarif"], default="text")
    p.add_argument("-t", "--target", action="append", choices=sorted(BACKENDS),
                   help="targets to check enforcement against (repeatable; default: all)")
    p.add_argument("--require-owner", action=argparse.BooleanOptionalAction,
                   help="org setting: report rules without an owner")
    p.add_argument("--management-port", action="append", type=_tcp_port, metavar="N",
                   help="TCP port operators log in on (repeatable; default 22): a host policy "
                        "that allows no ingress to it is a lockout; declaring ports makes that an "
                        "error (the host is run remotely), else it is a warning")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="text format: one explicit-id note per rule (default: one per file, "
                        "naming the first few; JSON and SARIF always list each rule)")
    p.add_argument("--fail-on", choices=[s.value for s in Severity],
                   help="exit 1 when a finding of this severity or worse exists (default: error)")
    add_config_arguments(p)
    p.set_defaults(func=cmd_lint)
