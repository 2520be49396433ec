"""`fmt`: canonical formatting of policy files (whitespace only; comments kept)."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from clawpolicy.commands import HELP_FORMAT, Subparsers, print_diagnostics
from clawpolicy.errors import ExitCode, PolicyError, printable
from clawpolicy.fmt import format_text
from clawpolicy.includes import display_path
from clawpolicy.pinids import add_ids
from clawpolicy.sources import SourceError, read_policy
from clawpolicy.write import atomic_write

FMT_HELP = """\
examples:
  clawpolicy fmt examples/*.claw            rewrite the files in place (only those that change)
  clawpolicy fmt --check examples/*.claw    CI: exit 1 and show the diff if a file is not formatted
  clawpolicy fmt - < x.claw                 format standard input to standard output
  clawpolicy fmt --add-ids policy.claw      pin every rule's current automatic ID as `id NAME`

Formatting moves whitespace only, so the policy means exactly what it meant: one statement
per line, two-space indentation, the author's line breaks inside a statement kept, defines and
one-line tests aligned, comments kept. Files that do not parse are reported and left alone.
--add-ids is the one change of content fmt makes: it writes the IDs the rules already have, so
artifacts stay byte-identical apart from source positions, and later edits cannot rename them.
"""


def cmd_fmt(args: argparse.Namespace) -> int:
    failed = False
    if args.add_ids and "-" in args.paths:
        print("clawpolicy: error: --add-ids needs files (includes are found beside them), not -",
              file=sys.stderr)
        return ExitCode.USAGE
    for name in args.paths:
        if name == "-":
            text = sys.stdin.read()
            label = "<stdin>"
        else:
            path = Path(name)
            label = display_path(path)
            try:
                text = read_policy(path)  # regular files, capped, never quoted unless a policy
            except (OSError, SourceError) as exc:
                why = f"it {exc.message}" if isinstance(exc, SourceError) else exc.strerror or exc
                print(f"clawpolicy: error: {printable(label)}: {why}", file=sys.stderr)
                failed = True
                continue
        try:
            formatted = (add_ids(Path(name), text, label, args.include_root) if args.add_ids
                         else format_text(text, label))
        except PolicyError as exc:
            print_diagnostics(exc.diagnostics, {label: text})
            failed = True
            continue
        if name == "-":
            sys.stdout.write(formatted)
        elif formatted == text:
            continue
        elif args.check:
            failed = True
            print(f"{label}: not formatted", file=sys.stderr)
            sys.stdout.writelines(difflib.unified_diff(text.splitlines(keepends=True),
                                                       formatted.splitlines(keepends=True),
                                                       f"a/{label}", f"b/{label}"))
        else:
            atomic_write(Path(name), formatted.encode("utf-8"))
            print(f"formatted {label}")
    return ExitCode.POLICY_ERROR if failed else ExitCode.OK


def register(sub: Subparsers) -> None:
    p = sub.add_parser("fmt", help="format policy files canonically (--check for CI)",
                       description="Rewrite policy files in their canonical layout.",
                       epilog=FMT_HELP, formatter_class=HELP_FORMAT)
    p.add_argument("paths", nargs="+", metavar="POLICY.claw", help="files, or - for stdin")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if a file would change, printing the diff")
    p.add_argument("--add-ids", action="store_true",
                   help="write each rule's automatic ID into the file as an explicit `id` "
                        "(files only, not stdin)")
    p.add_argument("--include-root", type=Path, metavar="DIR",
                   help="with --add-ids: directory tree includes must stay in")
    p.set_defaults(func=cmd_fmt)
