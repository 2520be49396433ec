"""`dns serve --workers N`: a supervisor that keeps N gate processes serving (floor 3, host I/O).

Why a supervisor: the workers share the listen addresses through SO_REUSEPORT, and the kernel
spreads queries over the sockets that are open. When the first worker forked the others and
served itself, a worker that died (a crash, the OOM killer, `kill -9`) was gone for good and
nobody said so; the agent's resolver quietly lost capacity, and with the first worker the
signal fan-out went too. Now the process systemd (or the shell) knows serves nothing: it forks
the workers (each binds its own sockets, then drops privileges, as a single gate does),
forwards SIGHUP, SIGTERM and SIGINT to them, and starts another worker when one dies of a signal
or of an unexpected error. It reads no query and no policy, so keeping the privileges it was
started with (to bind port 53 again for a new worker) exposes nothing to the network.

What is not restarted: a worker that exits with a status of its own (1: the address is taken,
the user does not exist, the policy's sets are not loaded) stops the whole gate with that
status, because another worker would fail the same way. And a worker that keeps dying is given
up on after RESTARTS restarts within WINDOW seconds (the gate stops, status 1), so a crash at
start-up cannot spin; systemd's `Restart=on-failure` takes over from there.
"""

from __future__ import annotations

import collections
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable

CRASHED = 70  # EX_SOFTWARE (sysexits.h): a worker's unexpected error; the supervisor restarts it
RESTARTS = 5
WINDOW = 60.0
_FORWARDED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
_WAITED = {*_FORWARDED, signal.SIGCHLD}


def _log(text: str) -> None:
    sys.stderr.write(f"clawpolicy-dns: {text}\n")  # one write: the workers share the stream
    sys.stderr.flush()


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


class Supervisor:
    """N workers, each running `work()` (which serves until told to stop and returns an exit
    status) in a forked process."""

    def __init__(self, count: int, work: Callable[[], int], *, restarts: int = RESTARTS,
                 window: float = WINDOW) -> None:
        self.count = count
        self.work = work
        self.restarts = restarts
        self.window = window
        self.workers: set[int] = set()
        self.recent: collections.deque[float] = collections.deque()
        self.stopping = False
        self.status = 0
        self._mask: set[int] = set()  # the signal mask the workers start with

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or a worker's own failure); the gate's exit status."""
        self._mask = set(signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED))
        try:
            for _ in range(self.count):
                self._start()
            while self.workers:
                sig = signal.sigwait(_WAITED)
                if sig == signal.SIGCHLD:
                    self._reap()
                    continue
                self._forward(sig)
                if sig != signal.SIGHUP:
                    self.stopping = True
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
        return self.status

    def _start(self) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: the signals it was started with, its own event loop
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
            code = CRASHED
            try:
                code = self.work()
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)  # never return into the supervisor's code
        self.workers.add(pid)

    def _forward(self, sig: int) -> None:
        for pid in self.workers:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.workers.discard(pid)
            if self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            if os.WIFEXITED(status) and code != CRASHED:
                # its own verdict (a start-up error, or 0): the others cannot do better
                self.status = code
                self._stop(f"worker pid={pid} {_describe(status)}: stopping the gate")
            elif self._may_restart():
                self._start()
                _log(f"worker pid={pid} {_describe(status)}: started another "
                     f"({len(self.recent)} of {self.restarts} restarts in {self.window:g} s)")
            else:
                self.status = 1
                self._stop(f"worker pid={pid} {_describe(status)}: {self.restarts} restarts in "
                           f"{self.window:g} s, giving up")

    def _may_restart(self) -> bool:
        now = time.monotonic()
        while self.recent and now - self.recent[0] > self.window:
            self.recent.popleft()
        if len(self.recent) >= self.restarts:
            return False
        self.recent.append(now)
        return True

    def _stop(self, why: str) -> None:
        _log(why)
        self.stopping = True
        self._forward(signal.SIGTERM)
