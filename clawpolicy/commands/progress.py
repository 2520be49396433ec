"""Progress on stderr for long commands: floor 4, the CLI's only progress display.

A spinner with what is being done (rich's status), only when stderr is a terminal: a CI log,
a pipe or a file gets nothing, so output stays byte-for-byte deterministic where it is read
by programs. Colour follows --color and NO_COLOR. On 100,000-network policies loading and comparing take seconds; a silent
terminal for that long reads as a hang.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def step(text: str) -> Iterator[None]:
    """Show `text` with a spinner while the block runs (terminal only); cleared after."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    from clawpolicy.commands import use_color

    with Console(stderr=True, no_color=not use_color(sys.stderr)).status(text):
        yield
