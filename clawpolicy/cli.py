"""Command line: floor 4. Parses arguments, calls the library, prints, sets the exit status.

Exit status: 0 success; 1 policy, validation, test or --check failures; 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from clawpolicy import ir
from clawpolicy.backends.base import CompileOptions
from clawpolicy.backends.registry import BACKENDS, DEFAULT_TARGETS
from clawpolicy.catalog import load_catalog
from clawpolicy.compiler import compile_paths
from clawpolicy.errors import Diagnostic, ExitCode, Severity, render
from clawpolicy.evaluate import run_tests
from clawpolicy.lockfile import LockError
from clawpolicy.lower import load_policies
from clawpolicy.write import apply, describe, plan

MAIN_HELP = """\
clawpolicy compiles one egress/ingress policy for an AI agent (OpenClaw and the like) into
every enforcement point: nftables rulesets and rule documentation today.

Start with:  clawpolicy compile examples/openclaw-workstation.claw
Then review generated/<policy>/ and load the ruleset with `nft -f`.
"""

COMPILE_HELP = """\
examples:
  clawpolicy compile examples/openclaw-workstation.claw
      writes generated/openclaw-workstation/{nftables,docs}/...
  clawpolicy compile examples/*.claw --check
      CI: exit 1 if generated/ is stale, and show what differs
  clawpolicy compile examples/x.claw --mode enforce -o out/
      override the file's mode; write under out/
  clawpolicy compile examples/x.claw --target nftables --validate
      check the ruleset with libnftables (dry run) before writing
  clawpolicy compile examples/x.claw --lock
      also put the addresses of examples/x.lock.json (`clawpolicy resolve`) into the FQDN sets

Nothing is written unless every policy compiles; changed files are replaced atomically, and
files a target no longer produces are removed from its directory.
"""


def _print_diagnostics(diags: Sequence[Diagnostic], sources: dict[str, str]) -> None:
    if diags:
        print(render(diags, sources), file=sys.stderr)


def _failed(diags: Sequence[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diags)


def cmd_compile(args: argparse.Namespace) -> int:
    targets = args.target or list(DEFAULT_TARGETS)
    options = CompileOptions(apparmor_abi=args.apparmor_abi, fqdn_timeout=args.fqdn_timeout,
                             seccomp_deny_action=args.seccomp_deny_action)
    result = compile_paths(args.policies, targets, mode=ir.Mode(args.mode) if args.mode else None,
                           strict=args.strict, validate=args.validate, lock=args.lock,
                           options=options)
    shown = [d for d in result.diagnostics if d.severity is not Severity.NOTE or args.verbose]
    _print_diagnostics(shown, result.sources)
    for line in result.validations:
        print(f"validated {line}", file=sys.stderr)
    if not result.ok:
        print("clawpolicy: compile failed; nothing was written", file=sys.stderr)
        return ExitCode.POLICY_ERROR
    root: Path = args.output
    changes = plan(root, result.outputs, result.owned_dirs)
    if args.check:
        if changes.stale:
            print(describe(root, result.outputs, changes), file=sys.stderr)
            print(f"clawpolicy: {root} is stale; run `clawpolicy compile` and commit the result",
                  file=sys.stderr)
            return ExitCode.POLICY_ERROR
        print(f"{root}: up to date ({len(changes.unchanged)} files)")
        return ExitCode.OK
    apply(root, result.outputs, changes)
    for rel in changes.added + changes.changed:
        print(f"wrote {root / rel}")
    for rel in changes.removed:
        print(f"removed {root / rel}")
    if not changes.stale:
        print(f"{root}: up to date ({len(changes.unchanged)} files)")
    return ExitCode.OK


def cmd_ir(args: argparse.Namespace) -> int:
    if args.schema:
        print(json.dumps(ir.json_schema(), indent=2, sort_keys=True))
        return ExitCode.OK
    if not args.policies:
        print("clawpolicy ir: give a policy file, or --schema", file=sys.stderr)
        return ExitCode.USAGE
    loaded = load_policies(args.policies)
    _print_diagnostics(loaded.diagnostics, loaded.sources)
    if not loaded.ok:
        return ExitCode.POLICY_ERROR
    docs = [json.loads(p.model_dump_json()) for p in loaded.policies
            if not args.policy or p.name == args.policy]
    print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2, sort_keys=True))
    return ExitCode.OK


def cmd_test(args: argparse.Namespace) -> int:
    loaded = load_policies(args.policies)
    _print_diagnostics(loaded.diagnostics, loaded.sources)
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


def cmd_resolve(args: argparse.Namespace) -> int:
    # Imported here: only this command needs dnspython.
    from clawpolicy import lockfile
    from clawpolicy.write import atomic_write

    failed = False
    resolver = lockfile.DnsResolver(args.resolver)
    for path in args.policies:
        loaded = load_policies([path])
        _print_diagnostics(loaded.diagnostics, loaded.sources)
        if not loaded.ok:
            return ExitCode.POLICY_ERROR
        target = lockfile.lock_path(path)
        names, wildcards = lockfile.names_of(loaded.policies)
        for w in wildcards:
            print(f"note: {w}: {lockfile.WILDCARD_NOTE}", file=sys.stderr)
        try:
            old = lockfile.load(target) if target.exists() else None
            if args.check:
                if old is None:
                    print(f"{target}: missing; run `clawpolicy resolve {path}`", file=sys.stderr)
                    failed = True
                    continue
                changes = lockfile.check(loaded.policies, resolver, old)
            else:
                resolution = lockfile.resolve(loaded.policies, resolver, old, update=args.update)
                changes = resolution.changes
                for name in resolution.empty:
                    print(f"warning: {name} resolves to no address: the lock admits nothing for it",
                          file=sys.stderr)
        except LockError as exc:
            print(f"clawpolicy resolve: {exc}", file=sys.stderr)
            return ExitCode.POLICY_ERROR
        for change in changes:
            for line in change.lines():
                print(line)
        if args.check:
            if changes:
                print(f"{target}: DNS via {resolver.description} no longer matches the lock; "
                      f"run `clawpolicy resolve --update {path}` and review the diff", file=sys.stderr)
                failed = True
            else:
                print(f"{target}: matches DNS ({len(names)} names)")
        elif old is None or changes:
            atomic_write(target, lockfile.dumps(resolution.lock).encode("utf-8"))
            print(f"wrote {target} ({len(names)} names)")
        else:
            print(f"{target}: up to date ({len(names)} names)")
    return ExitCode.POLICY_ERROR if failed else ExitCode.OK


def cmd_catalog(args: argparse.Namespace) -> int:
    catalog = load_catalog()
    names = args.groups or sorted(catalog)
    unknown = [n for n in names if n not in catalog]
    if unknown:
        print(f"clawpolicy catalog: unknown group(s): {', '.join(unknown)}", file=sys.stderr)
        return ExitCode.POLICY_ERROR
    if args.json:
        out = {n: {"description": g.description, "source": g.source, "fqdns": list(g.fqdns),
                   "wildcards": [f"*.{w}" for w in g.wildcards], "addresses": list(g.addresses),
                   "ports": list(g.ports)} for n in names for g in [catalog[n]]}
        print(json.dumps(out, indent=2, sort_keys=True))
        return ExitCode.OK
    for n in names:
        g = catalog[n]
        peers = [*g.fqdns, *(f"*.{w}" for w in g.wildcards), *g.addresses]
        print(f"{n:<20} {', '.join(g.ports):<16} {g.description}")
        print(f"{'':<20} {', '.join(peers)}")
        if args.groups:
            print(f"{'':<20} source: {g.source}")
    return ExitCode.OK


LINT_HELP = """\
examples:
  clawpolicy lint examples/*.claw
      file:line:col: severity: [check] message (rule ID), then a fix hint
  clawpolicy lint examples/*.claw --format sarif > lint.sarif
      for code scanning (e.g. github/codeql-action/upload-sarif)
  clawpolicy lint examples/x.claw --target seccomp --require-owner --fail-on warning
      also report rules seccomp cannot enforce and rules without an owner; exit 1 on warnings

Exit status: 1 if a finding at or above --fail-on (default: error) exists, 2 usage, else 0.
"""


def cmd_lint(args: argparse.Namespace) -> int:
    import datetime as dt

    from clawpolicy.review import sarif
    from clawpolicy.review.lint import at_or_above, lint, render_text, to_json

    today = dt.date.today()
    loaded = load_policies(args.policies, today=today)
    _print_diagnostics([d for d in loaded.diagnostics if d.severity is Severity.ERROR], loaded.sources)
    if not loaded.ok:
        return ExitCode.POLICY_ERROR
    targets = args.target or list(DEFAULT_TARGETS)
    findings = [f for p in loaded.policies
                for f in lint(p, today=today, targets=targets, require_owner=args.require_owner)]
    if args.format == "sarif":
        print(sarif.dumps(findings), end="")
    elif args.format == "json":
        print(json.dumps(to_json(findings), indent=2, sort_keys=True))
    elif findings:
        print(render_text(findings))
    failed = at_or_above(findings, Severity(args.fail_on))
    return ExitCode.POLICY_ERROR if failed else ExitCode.OK


def _positive_int(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(ExitCode.USAGE)


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="clawpolicy", description=MAIN_HELP, formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("compile", help="compile policies into generated/<policy>/<target>/",
                       description="Compile policy files into artifacts for every target.",
                       epilog=COMPILE_HELP, formatter_class=fmt)
    p.add_argument("policies", nargs="+", type=Path, metavar="POLICY.claw")
    p.add_argument("-o", "--output", type=Path, default=Path("generated"),
                   help="output root (default: generated/)")
    p.add_argument("-t", "--target", action="append", choices=sorted(BACKENDS),
                   help="target to build (repeatable; default: all)")
    p.add_argument("--mode", choices=[m.value for m in ir.Mode],
                   help="override the policies' mode (e.g. a log-only dry run: --mode shadow)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if the output is stale, showing what differs")
    p.add_argument("--apparmor-abi", choices=["3.0", "4.0"], default="3.0",
                   help="feature ABI the AppArmor profile is written against (default 3.0: "
                        "parses with Debian 12's apparmor_parser)")
    p.add_argument("--seccomp-deny-action", choices=["errno", "kill"], default="errno",
                   help="what enforce-mode seccomp refusals do: fail with EPERM (default) or "
                        "kill the process (calls outside the baseline still get ENOSYS)")
    p.add_argument("--fqdn-timeout", type=_positive_int, default=600, metavar="SECONDS",
                   help="how long an address DNS put into an FQDN set stays without a new "
                        "answer or connection (default 600; dnsmasq TTLs are capped to it)")
    p.add_argument("--strict", action="store_true",
                   help="treat warnings (expired rules, rules no target enforces) as errors")
    p.add_argument("--validate", action="store_true",
                   help="check each nftables ruleset with libnftables (dry run) or `nft -c`")
    p.add_argument("-v", "--verbose", action="store_true", help="also show notes")
    p.add_argument("--lock", action="store_true",
                   help="put each policy file's locked addresses (<file>.lock.json, written by "
                        "`clawpolicy resolve`) into the FQDN sets")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("ir", help="print the IR as JSON (or its JSON Schema)",
                       description="Print the lowered policy (the IR every backend reads) as JSON.",
                       epilog="examples:\n  clawpolicy ir examples/openclaw-workstation.claw\n"
                              "  clawpolicy ir --schema > clawpolicy-ir.schema.json",
                       formatter_class=fmt)
    p.add_argument("policies", nargs="*", type=Path, metavar="POLICY.claw")
    p.add_argument("--schema", action="store_true", help="print the IR's JSON Schema instead")
    p.add_argument("--policy", help="only the policy with this name")
    p.set_defaults(func=cmd_ir)

    p = sub.add_parser("test", help="run the policies' own `test` blocks",
                       description="Evaluate each `expect` of the policies' `test` blocks and "
                                   "report pass/fail; exit 1 if any fails.",
                       epilog="example:\n  clawpolicy test examples/openclaw-workstation.claw\n\n"
                              "a test block:\n  test \"providers reachable\" {\n"
                              "    expect allow egress api.anthropic.com port 443/tcp\n"
                              "    expect deny ingress from 192.168.1.20 port 18789/tcp\n  }",
                       formatter_class=fmt)
    p.add_argument("policies", nargs="+", type=Path, metavar="POLICY.claw")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("resolve", help="resolve the policies' names into a lock file",
                       description="Resolve every domain name of the policies' egress rules (A and "
                                   "AAAA) and record the addresses in <file>.lock.json beside each "
                                   "policy file, for `compile --lock`. Names already locked keep "
                                   "their addresses unless --update; wildcards cannot be locked "
                                   "(the dnsmasq target fills their sets at run time).",
                       epilog="examples:\n  clawpolicy resolve examples/openclaw-server.claw\n"
                              "  clawpolicy resolve --update --resolver 10.20.0.53 examples/x.claw\n"
                              "  clawpolicy resolve --check examples/x.claw   # CI: exit 1 if DNS moved",
                       formatter_class=fmt)
    p.add_argument("policies", nargs="+", type=Path, metavar="POLICY.claw")
    p.add_argument("--resolver", metavar="IP", help="ask this nameserver (default: the system's)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--update", action="store_true",
                     help="ask DNS again for every name, not only for names the lock lacks")
    how.add_argument("--check", action="store_true",
                     help="write nothing; exit 1 if DNS no longer matches the lock")
    p.set_defaults(func=cmd_resolve)

    p = sub.add_parser("catalog", help="list the built-in service groups",
                       description="List the catalog groups a policy can name (e.g. `define llm = "
                                   "openai, anthropic`), with their names, ports and sources.",
                       epilog="examples:\n  clawpolicy catalog\n  clawpolicy catalog telegram\n"
                              "  clawpolicy catalog --json", formatter_class=fmt)
    p.add_argument("groups", nargs="*", metavar="GROUP")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_catalog)

    p = sub.add_parser("lint", help="report risky, dead or expiring rules",
                       description="Check policies for risky reach (wide egress, exposed gateway, "
                                   "mDNS, metadata, DNS anywhere), dangerous capabilities, expiry, "
                                   "shadowed or redundant rules and rules the targets cannot enforce.",
                       epilog=LINT_HELP, formatter_class=fmt)
    p.add_argument("policies", nargs="+", type=Path, metavar="POLICY.claw")
    p.add_argument("--format", choices=["text", "json", "sarif"], default="text")
    p.add_argument("-t", "--target", action="append", choices=sorted(BACKENDS),
                   help="targets to check enforcement against (repeatable; default: all)")
    p.add_argument("--require-owner", action="store_true",
                   help="org setting: report rules without an owner")
    p.add_argument("--fail-on", choices=[s.value for s in Severity], default="error",
                   help="exit 1 when a finding of this severity or worse exists (default: error)")
    p.set_defaults(func=cmd_lint)
    return parser


Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help exits 0, usage errors 2
        return int(exc.code or 0)
    func: Command = args.func
    try:
        return int(func(args))
    except BrokenPipeError:
        return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
