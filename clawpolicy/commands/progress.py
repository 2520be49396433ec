"""Progress on stderr for long commands: floor 4, the CLI's only progress display; and the
one setting every long one-shot command shares (`one_shot`: no cyclic garbage collection).

A spinner with what is being done (rich's status), only when stderr is a terminal: a CI log,
a pipe or a file gets nothing, so output stays byte-for-byte deterministic where it is read
by programs. Colour follows --color and NO_COLOR. On 100,000-network policies loading and
comparing take seconds; a silent terminal for that long reads as a hang.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import sys
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")


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


def one_shot(command: Callable[..., T]) -> Callable[..., T]:
    """Run a command with the cyclic collector off (as `compiler` does for compiling): a
    100,000-network policy is millions of long-lived objects, and every later allocation-
    heavy step (diff's sweep, simulate's flows) made the collector rescan them all, about half
    of those steps' time. The process ends after the command; reference counting frees
    everything else meanwhile.

    Afterwards the objects still alive (the run's caches of networks and intervals, some
    700,000 objects after a 100,000-network diff) are frozen (`gc.freeze`): otherwise the
    collections that follow, the last one at interpreter exit, scan them all again, 2 s CPU of
    a 6 s diff. A command leaves a few hundred objects of cyclic garbage (measured), which a
    process running many commands (the tests) then keeps: the cost of not scanning."""
    @functools.wraps(command)
    def run(*args: object, **kwargs: object) -> T:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return command(*args, **kwargs)
        finally:
            gc.freeze()
            if enabled:
                gc.enable()
    return run
