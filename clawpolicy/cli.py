"""Command line: floor 4. Parses arguments, calls the library, prints, sets the exit status.

Each command family lives in a module of ``clawpolicy.commands`` with a ``register(sub)``.
Only the family of the command being run is imported: the others cost start-up time (pydantic,
lark, jinja2, every backend) that a command which does not use them should not pay. So the
top-level help is built from ``COMMANDS``, a static table of every command's name, family and
one-line summary (a unit test checks it against what the families register).
Exit status: 0 success; 1 policy, validation, test or --check failures, and input files that
cannot be read; 2 usage errors. Errors without a source position are ``clawpolicy: error: ...``.
Global options (before or after the command): --color, and --version before it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from clawpolicy.commands import COLOR_CHOICES, HELP_FORMAT, set_color
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
Each command's --help has examples. Shell completion: clawpolicy completion bash|zsh|fish.
Colour: --color auto|always|never (auto: a terminal, unless NO_COLOR is set).
"""

# command -> (family module under clawpolicy.commands, one-line summary), in help order.
COMMANDS: dict[str, tuple[str, str]] = {
    "compile": ("compile", "compile policies into generated/<policy>/<target>/"),
    "ir": ("compile", "print the IR as JSON (or its JSON Schema)"),
    "test": ("test", "run the policies' own `test` blocks"),
    "resolve": ("resolve", "resolve the policies' names into a lock file"),
    "catalog": ("catalog", "list the built-in service groups"),
    "lint": ("review", "report risky, dead or expiring rules"),
    "diff": ("diff", "what a policy change means, with risk levels"),
    "fmt": ("fmt", "format policy files canonically (--check for CI)"),
    "explain": ("logs", "explain kernel denial log lines (nftables, seccomp, AppArmor)"),
    "simulate": ("logs", "replay recorded flows against a policy as if enforced"),
    "suggest": ("logs", "propose rules that would allow what was blocked"),
    "init": ("adopt", "write a starter policy from an OpenClaw configuration"),
    "observe": ("adopt", "judge the agent's live sockets against a policy"),
    "dns": ("dns", "the DNS gate: the agent's resolver that fills the FQDN sets"),
    "apply": ("apply", "load a policy's nftables ruleset with automatic rollback"),
    "status": ("apply", "what clawpolicy has loaded: policy, mode, hash, counters"),
    "completion": ("completion", "print a shell completion script (bash, zsh, fish)"),
}
FAMILIES = tuple(dict.fromkeys(family for family, _ in COMMANDS.values()))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"clawpolicy: error: {message}", file=sys.stderr)
        raise SystemExit(ExitCode.USAGE)


class _Version(argparse.Action):
    """--version: the distribution's version, looked up only when asked (start-up stays light)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        from clawpolicy.version import version

        print(f"clawpolicy {version()}")
        raise SystemExit(ExitCode.OK)


def _chosen(argv: Sequence[str]) -> str | None:
    """The command named on the command line (the first argument not an option nor the value
    of --color), if known."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--":
            return None
        elif arg == "--color":
            skip = True
        elif not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def _color_option(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--color", choices=COLOR_CHOICES, default=default, metavar="WHEN",
                        help="colour: auto (a terminal, unless NO_COLOR is set), always, never")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the family of the command it names is imported (every
    other command is a stub with its summary), without it every family is (the full parser)."""
    parser = _Parser(prog="clawpolicy", description=MAIN_HELP, formatter_class=HELP_FORMAT)
    parser.add_argument("--version", action=_Version)
    _color_option(parser, "auto")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    if argv is None:
        loaded = set(FAMILIES)
    else:
        command = _chosen(argv)
        loaded = {COMMANDS[command][0]} if command else set()
    registered: set[str] = set()
    for name, (family, summary) in COMMANDS.items():
        if family in loaded:
            if family not in registered:
                importlib.import_module(f"clawpolicy.commands.{family}").register(sub)
                registered.add(family)
        else:
            sub.add_parser(name, help=summary, add_help=False)
    for command_parser in sub.choices.values():  # after the command too; SUPPRESS keeps the global
        _color_option(command_parser, argparse.SUPPRESS)
    return parser


Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_in)
    try:
        args = parser.parse_args(args_in)
    except SystemExit as exc:  # --help exits 0, usage errors 2
        return int(exc.code or 0)
    set_color(args.color)
    func: Command = args.func
    try:
        return int(func(args))
    except BrokenPipeError:
        return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
