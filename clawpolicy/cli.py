"""Command line: floor 4. Parses arguments, calls the library, prints, sets the exit status.

Each command family lives in a module of ``clawpolicy.commands`` with a ``register(sub)``.
Exit status: 0 success; 1 policy, validation, test or --check failures; 2 usage errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from clawpolicy.commands import (
    HELP_FORMAT, adopt, apply, catalog, compile, diff, dns, fmt, logs, resolve, review, test,
)
from clawpolicy.errors import ExitCode

MAIN_HELP = """\
clawpolicy compiles one egress/ingress policy for an AI agent (OpenClaw and the like) into
every enforcement point: nftables, dnsmasq, seccomp, AppArmor, Kubernetes (NetworkPolicy,
Cilium, Calico) and Markdown rule documentation.

Start:    clawpolicy init --from-openclaw        a starter policy from your OpenClaw config
Build:    clawpolicy compile policy.claw         artifacts under generated/<policy>/<target>/
Dry run:  mode shadow, then clawpolicy explain / simulate / suggest on what it logged
Review:   clawpolicy diff --git origin/main      what a change means, with risk levels
Run:      clawpolicy dns serve policy.claw       the DNS gate that fills the FQDN sets
Load:     sudo clawpolicy apply policy.claw      load with automatic rollback; status shows it
Each command's --help has examples.
"""

COMMAND_MODULES = (compile, test, resolve, catalog, review, diff, fmt, logs, adopt, dns, apply)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(ExitCode.USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="clawpolicy", description=MAIN_HELP, formatter_class=HELP_FORMAT)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in COMMAND_MODULES:
        module.register(sub)
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
