"""`diff`: what a change to the policies means, for review in pull requests."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from clawpolicy.backends.registry import DEFAULT_TARGETS
from clawpolicy.commands import HELP_FORMAT, Subparsers, print_diagnostics, progress, use_color
from clawpolicy.compiler import compile_paths
from clawpolicy.errors import ExitCode, Severity
from clawpolicy.ir import Policy
from clawpolicy.lower import load_policies
from clawpolicy.review import gitrev
from clawpolicy.review.artifacts import ArtifactChange, artifact_changes, input_names
from clawpolicy.review.diff import Change, Ref, at_or_above, diff_policy_sets
from clawpolicy.review.render import to_json, to_markdown, to_text

DIFF_HELP = """\
examples:
  clawpolicy diff old.claw new.claw
      what the change means: reach widened/narrowed, capabilities, mode, ... with risk levels
  clawpolicy diff --git origin/main
      every policy file changed since origin/main (or including a changed file) vs the work tree
  clawpolicy diff --git HEAD~1 examples/openclaw-server.claw --format markdown > comment.md
      a pull-request comment: summary table, details, a Mermaid diagram, artifact diffs collapsed
  clawpolicy diff --git origin/main --fail-on high
      CI: exit 1 when a high-risk change (e.g. enforce -> shadow, gateway exposed) is made

Risk: high = e.g. enforce -> shadow, egress to a /8 or wider or any name, the gateway port open
beyond loopback/tailnet, mDNS or cloud metadata allowed, a dangerous capability kept, a
credential directory no longer denied, a policy removed; medium = other new reach or
privilege; low = narrowing, documentation, expiries added, tests.
Exit status: 1 if --fail-on finds a change at that risk or above, or a policy does not load.
"""


@dataclass
class Side:
    label: str
    policies: list[Policy] = field(default_factory=list)
    outputs: dict[str, bytes] = field(default_factory=dict)
    ok: bool = True


def _load(paths: Sequence[str], label: str, artifacts: bool) -> Side:
    existing = [Path(p) for p in paths if Path(p).is_file()]
    with progress.step(f"loading {label}"):
        loaded = load_policies(existing)
    errors = [d for d in loaded.diagnostics if d.severity is Severity.ERROR]
    if errors:
        print(f"clawpolicy: error: {label} does not load:", file=sys.stderr)
        print_diagnostics(errors, loaded.sources)
        return Side(label, ok=False)
    side = Side(label, list(loaded.policies))
    if artifacts and existing:
        with progress.step(f"compiling {label} (--no-artifacts skips this)"):
            side.outputs = compile_paths(existing, list(DEFAULT_TARGETS), loaded=loaded).outputs
    return side


def _git_paths(rev: str, paths: Sequence[str]) -> list[str]:
    """Given paths, or every policy file changed since `rev` or including a changed file."""
    if paths:
        return list(paths)
    changed = gitrev.changed_files(rev)
    chosen = []
    for path in gitrev.policy_files(rev):
        if path in changed:
            chosen.append(path)
        elif Path(path).is_file() and changed & set(load_policies([Path(path)]).sources):
            chosen.append(path)
    return chosen


def _label_old(changes: list[Change], rev: str) -> list[Change]:
    def ref(r: Ref) -> Ref:
        return dataclasses.replace(r, where=f"{rev}:{r.where}") if r.where else r
    return [dataclasses.replace(c, old=tuple(ref(r) for r in c.old)) for c in changes]


@progress.one_shot
def cmd_diff(args: argparse.Namespace) -> int:
    artifacts = not args.no_artifacts
    if args.git:
        try:
            paths = _git_paths(args.git, args.paths)
            with gitrev.checkout(args.git) as tree, contextlib.chdir(tree):
                old = _load(paths, args.git, artifacts)
        except gitrev.GitError as exc:
            print(f"clawpolicy: error: {exc}", file=sys.stderr)
            return ExitCode.POLICY_ERROR
        new = _load(paths, "work tree", artifacts)
    else:
        if len(args.paths) != 2:
            print("clawpolicy: error: give OLD.claw NEW.claw, or --git REV [PATH...]", file=sys.stderr)
            return ExitCode.USAGE
        missing = [p for p in args.paths if not Path(p).is_file()]
        if missing:
            print(f"clawpolicy: error: no such file: {', '.join(missing)}", file=sys.stderr)
            return ExitCode.POLICY_ERROR
        old = _load(args.paths[:1], args.paths[0], artifacts)
        new = _load(args.paths[1:], args.paths[1], artifacts)
    if not (old.ok and new.ok):
        return ExitCode.POLICY_ERROR
    with progress.step("comparing"):
        changes = diff_policy_sets(old.policies, new.policies)
    if args.git:
        changes = _label_old(changes, args.git)
    renames = {} if args.git else input_names(args.paths, old.policies, new.policies)
    files: list[ArtifactChange] = artifact_changes(old.outputs, new.outputs, renames=renames) if artifacts else []
    if args.format == "json":
        print(json.dumps(to_json(changes, files, old.label, new.label), indent=2, sort_keys=True))
    elif args.format == "markdown":
        print(to_markdown(changes, files, old.label, new.label), end="")
    else:
        print(to_text(changes, files, old.label, new.label, color=use_color(sys.stdout),
                      show_artifact_diffs=args.artifact_diffs), end="")
    return ExitCode.POLICY_ERROR if at_or_above(changes, args.fail_on) else ExitCode.OK


def register(sub: Subparsers) -> None:
    p = sub.add_parser("diff", help="what a policy change means, with risk levels",
                       description="Compare two versions of the policies semantically: reach "
                                   "widened or narrowed per direction (set algebra on addresses, "
                                   "names and ports), capabilities, sockets, files, syscalls, "
                                   "mode, scope, DNS, expiries and documentation, each with a "
                                   "risk level; then the generated artifacts that change.",
                       epilog=DIFF_HELP, formatter_class=HELP_FORMAT)
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="OLD.claw NEW.claw; with --git, the policy files to compare")
    p.add_argument("--git", metavar="REV",
                   help="compare the policies as of git revision REV with the work tree")
    p.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    p.add_argument("--fail-on", choices=["high", "medium", "any", "never"], default="never",
                   help="exit 1 when a change at this risk or above exists (default: never)")
    p.add_argument("--no-artifacts", action="store_true",
                   help="skip compiling both versions (no artifact section)")
    p.add_argument("--artifact-diffs", action="store_true",
                   help="text format: also print each artifact's unified diff")
    p.set_defaults(func=cmd_diff)
