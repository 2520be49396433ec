"""`compile` and `ir`: policy files to artifacts, or to the IR every backend reads."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from clawpolicy import ir
from clawpolicy.backends.base import CompileOptions
from clawpolicy.backends.registry import BACKENDS, DEFAULT_TARGETS
from clawpolicy.commands import (
    HELP_FORMAT,
    Subparsers,
    add_config_arguments,
    positive_int,
    print_diagnostics,
    progress,
)
from clawpolicy.commands.compile_args import (
    dns_upstream,
    k8s_namespace,
    k8s_selector,
    systemd_unit,
)
from clawpolicy.compiler import CompileResult, compile_paths
from clawpolicy.errors import Diagnostic, ExitCode, Severity, printable
from clawpolicy.lower import load_policies
from clawpolicy.ruleids import WHAT_CHANGES_AN_ID
from clawpolicy.write import OutputError, apply, describe, plan

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
  clawpolicy compile examples/openclaw-k8s.claw --target k8s --k8s-flavor cilium -o out/
      Kubernetes manifests (kubectl apply -k out/openclaw-k8s/k8s/) for Cilium
  clawpolicy compile examples/x.claw --target k8s --k8s-selector app=openclaw --k8s-namespace ai
      a host policy's rules for the pods labelled app=openclaw in namespace ai
  clawpolicy compile examples/openclaw-k8s.claw -t k8s -o - | kubectl apply -f -
      one target to stdout (k8s: the manifests as one YAML stream); nothing is written
  clawpolicy compile policies/*.claw --config ci/clawpolicy.toml --check
      the project config (default: the nearest clawpolicy.toml or [tool.clawpolicy] in
      pyproject.toml) sets targets, flavour, output and options; the command line wins

With -t, rules that only other targets enforce are summed up in one line (-v lists them) and
do not fail --strict. Errors are printed first and never cut.

Nothing is written unless every policy compiles; changed files are replaced atomically, and
files a target no longer produces are removed from its directory (only files compile wrote
there, as its .clawpolicy-manifest lists; never through a symlink).

Includes must stay inside the policy repository of the file named on the command line (its
git work tree, else its directory; symlinks resolved first), or inside --include-root; they
must be regular policy files of at most 8 MiB.
"""


def _refusal(value: str | None) -> ir.Refusal | None:
    return None if value is None else ir.Refusal(value)


# Built-in defaults of the options a project config may set (config.py): the parser leaves
# them None, so "not given" is told apart from "given the default" (CLI > config > default).
DEFAULTS: dict[str, object] = {
    "output": Path("generated"), "apparmor_abi": "3.0", "seccomp_deny_action": "errno",
    "fqdn_timeout": 600, "k8s_flavor": "vanilla", "k8s_container": "openclaw",
    "systemd_unit": "openclaw-gateway.service", "strict": False, "lock": False, "validate": False,
}


def cmd_compile(args: argparse.Namespace) -> int:
    from clawpolicy import config

    try:
        project = config.resolve(args.config, args.no_config)
    except config.ConfigError as exc:
        print_diagnostics(exc.diagnostics, exc.sources)
        return ExitCode.POLICY_ERROR
    config.settle(args, project.compile, DEFAULTS)
    to_stdout = str(args.output) == "-"
    if to_stdout and args.check:
        print("clawpolicy: error: -o - writes to stdout; --check compares a directory",
              file=sys.stderr)
        return ExitCode.USAGE
    targets = args.target or list(DEFAULT_TARGETS)
    options = CompileOptions(apparmor_abi=args.apparmor_abi, fqdn_timeout=args.fqdn_timeout,
                             seccomp_deny_action=args.seccomp_deny_action,
                             k8s_flavor=args.k8s_flavor, k8s_selector=args.k8s_selector or (),
                             k8s_namespace=args.k8s_namespace, k8s_container=args.k8s_container,
                             dns_upstreams=tuple(args.dns_upstream or ()),
                             systemd_unit=args.systemd_unit or CompileOptions.systemd_unit)
    with progress.step(f"compiling for {', '.join(targets)}"):  # a spinner on a terminal only
        result = compile_paths(args.policies, targets, mode=ir.Mode(args.mode) if args.mode else None,
                               strict=args.strict, validate=args.validate, lock=args.lock,
                               options=options, explicit=bool(args.target),
                               include_root=args.include_root,
                               refusal=(_refusal(args.deny_action), _refusal(args.ingress_deny_action)))
    report_diagnostics(result.diagnostics, result.sources, verbose=args.verbose)
    for line in result.validations:
        print(f"validated {line}", file=sys.stderr)
    if not result.ok:
        print("clawpolicy: compile failed; nothing was written", file=sys.stderr)
        return ExitCode.POLICY_ERROR
    if to_stdout:
        return _to_stdout(result.outputs)
    return _write(args.output, result, check=args.check)


def report_diagnostics(diagnostics: list[Diagnostic], sources: dict[str, str], *,
                       verbose: bool) -> None:
    """Errors first (never cut), then warnings; notes only with -v. Rules that only unselected
    targets enforce (registry.check_support, code "enforced-elsewhere") are one line unless -v:
    a single-target compile is a division of labour, not twelve problems."""
    elsewhere = [d for d in diagnostics if d.code == "enforced-elsewhere"]
    shown = [d for d in diagnostics if verbose or d.severity is not Severity.NOTE]
    print_diagnostics(shown, sources)
    if elsewhere and not verbose:
        rules = {d.message.partition(":")[0] for d in elsewhere}
        others = sorted({t for d in elsewhere
                         for t in d.message.rpartition("(")[2].rstrip(")").split(", ")})
        many = len(rules) != 1
        print(f"clawpolicy: {len(rules)} rule{'s' if many else ''} {'are' if many else 'is'} "
              f"enforced only by other targets ({', '.join(others)}): -v lists them",
              file=sys.stderr)


def _to_stdout(outputs: dict[str, bytes]) -> int:
    from clawpolicy.stream import StreamError, to_stream

    try:
        data = to_stream(outputs)
    except StreamError as exc:
        print(f"clawpolicy: error: {printable(str(exc))}", file=sys.stderr)
        return ExitCode.POLICY_ERROR
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return ExitCode.OK


def _write(root: Path, result: CompileResult, *, check: bool) -> int:
    try:
        changes = plan(root, result.outputs, result.owned_dirs)
    except (OutputError, OSError) as exc:
        print(f"clawpolicy: error: {printable(str(exc))}", file=sys.stderr)
        print("clawpolicy: nothing was written", file=sys.stderr)
        return ExitCode.POLICY_ERROR
    if check:
        if changes.stale:
            print(describe(root, result.outputs, changes), file=sys.stderr)
            print(f"clawpolicy: {root} is stale; run `clawpolicy compile` and commit the result",
                  file=sys.stderr)
            return ExitCode.POLICY_ERROR
        print(f"{root}: up to date ({len(changes.unchanged)} files)")
        return ExitCode.OK
    try:
        apply(root, result.outputs, changes)
    except (OutputError, OSError) as exc:  # the tree changed under us, or the disk refused
        print(f"clawpolicy: error: cannot write {printable(str(root))}: {printable(str(exc))}",
              file=sys.stderr)
        return ExitCode.POLICY_ERROR
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
        print("clawpolicy: error: give a policy file, or --schema", file=sys.stderr)
        return ExitCode.USAGE
    loaded = load_policies(args.policies, include_root=args.include_root)
    print_diagnostics(loaded.diagnostics, loaded.sources)
    if not loaded.ok:
        return ExitCode.POLICY_ERROR
    docs = [json.loads(p.model_dump_json()) for p in loaded.policies
            if not args.policy or p.name == args.policy]
    print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2, sort_keys=True))
    return ExitCode.OK


def register(sub: Subparsers) -> None:
    p = sub.add_parser("compile", help="compile policies into generated/<policy>/<target>/",
                       description="Compile policy files into artifacts for every target.",
                       epilog=COMPILE_HELP, formatter_class=HELP_FORMAT)
    p.add_argument("policies", nargs="+", type=Path, metavar="POLICY.claw")
    p.add_argument("-o", "--output", type=Path,
                   help="output root (default: generated/); `-o -`: one policy's one target to "
                        "stdout (k8s: its manifests as one YAML stream, for kubectl apply -f -)")
    p.add_argument("-t", "--target", action="append", choices=sorted(BACKENDS),
                   help="target to build (repeatable; default: all)")
    p.add_argument("--mode", choices=[m.value for m in ir.Mode],
                   help="override the policies' mode (e.g. a log-only dry run: --mode shadow)")
    p.add_argument("--deny-action", choices=[r.value for r in ir.Refusal],
                   help="how egress denies without their own `reject`/`drop` refuse, the default "
                        "deny included: drop (default: silence, the agent waits for its timeout) "
                        "or reject (TCP reset, ICMP administratively prohibited: it fails at once)")
    p.add_argument("--ingress-deny-action", choices=[r.value for r in ir.Refusal],
                   help="the same for ingress (default drop: a scanner learns nothing)")
    p.add_argument("--include-root", type=Path, metavar="DIR",
                   help="directory tree includes must stay in (default: the git work tree of "
                        "each policy file named here, else its directory)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if the output is stale, showing what differs")
    p.add_argument("--apparmor-abi", choices=["3.0", "4.0"],
                   help="feature ABI the AppArmor profile is written against (default 3.0: "
                        "parses with Debian 12's apparmor_parser)")
    p.add_argument("--seccomp-deny-action", choices=["errno", "kill"],
                   help="what enforce-mode seccomp refusals do: fail with EPERM (default) or "
                        "kill the process (calls outside the baseline still get ENOSYS)")
    p.add_argument("--fqdn-timeout", type=positive_int, metavar="SECONDS",
                   help="how long an address DNS put into an FQDN set stays without a new "
                        "answer or connection (default 600; dnsmasq TTLs are capped to it)")
    p.add_argument("--dns-upstream", action="append", type=dns_upstream, metavar="IP[:PORT]",
                   help="the agent resolver's upstream servers (repeatable): the dnsmasq fragment "
                        "forwards only the policy's names there; the gate's unit passes them on")
    p.add_argument("--k8s-flavor", choices=["vanilla", "cilium", "calico"],
                   help="which network policy the k8s target writes: vanilla NetworkPolicy "
                        "(any cluster; no names, no logging), cilium CiliumNetworkPolicy (toFQDNs, "
                        "deny rules), calico projectcalico.org/v3 (ordered Log/Deny/Allow; shadow "
                        "mode as StagedNetworkPolicy). Default: vanilla")
    p.add_argument("--k8s-selector", type=k8s_selector, metavar="KEY=VALUE[,KEY=VALUE]",
                   help="pods the k8s target fences (e.g. app=openclaw); overrides the policy's "
                        "`applies-to pods`, and lets a host or user policy compile to k8s")
    p.add_argument("--k8s-namespace", type=k8s_namespace, metavar="NAME",
                   help="namespace of those pods (default: the policy's, else `default`)")
    p.add_argument("--k8s-container", type=k8s_namespace, metavar="NAME",
                   help="container the pod hardening patch merges into (default: openclaw)")
    # No string default: argparse would pass it through systemd_unit, importing the systemd
    # backend (and the nftables one it uses) on every compile.
    p.add_argument("--systemd-unit", type=systemd_unit, default=None,
                   metavar="NAME.service", help="the agent's unit the systemd target writes a "
                   "drop-in for (default: openclaw-gateway.service; the target is built only "
                   "with -t systemd)")
    p.add_argument("--strict", action=argparse.BooleanOptionalAction,
                   help="treat warnings (expired rules, rules no target enforces) as errors")
    p.add_argument("--validate", action=argparse.BooleanOptionalAction,
                   help="check each nftables ruleset with libnftables (dry run) and `nft -c`, "
                   "each AppArmor profile with apparmor_parser, each dnsmasq fragment with "
                   "`dnsmasq --test`")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also show notes, and each rule only other targets enforce")
    add_config_arguments(p)
    p.add_argument("--lock", action=argparse.BooleanOptionalAction,
                   help="put each policy file's locked addresses (<file>.lock.json, written by "
                        "`clawpolicy resolve`) into the FQDN sets")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("ir", help="print the IR as JSON (or its JSON Schema)",
                       description="Print the lowered policy (the IR every backend reads) as JSON.\n\n"
                                   + textwrap.fill(WHAT_CHANGES_AN_ID, 78),
                       epilog="examples:\n  clawpolicy ir examples/openclaw-workstation.claw\n"
                              "  clawpolicy ir --schema > clawpolicy-ir.schema.json",
                       formatter_class=HELP_FORMAT)
    p.add_argument("policies", nargs="*", type=Path, metavar="POLICY.claw")
    p.add_argument("--schema", action="store_true", help="print the IR's JSON Schema instead")
    p.add_argument("--policy", help="only the policy with this name")
    p.add_argument("--include-root", type=Path, metavar="DIR",
                   help="directory tree includes must stay in (default: each file's git work "
                        "tree, else its directory)")
    p.set_defaults(func=cmd_ir)
