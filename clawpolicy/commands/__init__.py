"""The subcommands, one module per family; each module's ``register`` adds its parsers.

Shared here: how diagnostics are printed and the argument types more than one command uses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

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
