"""The subcommands, one module per family; each module's ``register`` adds its parsers.

Shared here: how diagnostics are printed, whether to colour, and the argument types
more than one command uses.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from clawpolicy.errors import Diagnostic, render

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction

HELP_FORMAT = argparse.RawDescriptionHelpFormatter


def print_diagnostics(diags: Sequence[Diagnostic], sources: dict[str, str]) -> None:
    if diags:
        print(render(diags, sources), file=sys.stderr)


def positive_int(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return value



def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """--config/--no-config, for the commands a project config (clawpolicy.toml) feeds."""
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="project config to use (default: the nearest clawpolicy.toml, or "
                        "pyproject.toml with [tool.clawpolicy], from the working directory up); "
                        "command-line options win over it")
    p.add_argument("--no-config", action="store_true", help="ignore any project config")


# ------------------------------------------------------------------------------ colour

COLOR_CHOICES = ("auto", "always", "never")
_color = ["auto"]  # set once per run by cli.main (--color); a list, so no `global` is needed


def set_color(mode: str) -> None:
    _color[0] = mode


def use_color(stream: TextIO) -> bool:
    """Whether to colour `stream`: --color always/never decide; auto colours a terminal unless
    NO_COLOR is set to anything non-empty (https://no-color.org: a command-line flag wins)."""
    if _color[0] != "auto":
        return _color[0] == "always"
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
