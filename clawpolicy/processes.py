"""Whether a process still exists: floor 1, one answer for `apply` (is the waiting `apply` that
wrote a pending file still there to confirm?) and the kernel lab (is the run that created a
namespace gone, so the namespace is stale?)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while `pid` names a process, ours or another user's (signal 0 checks without
    sending: kill(2)). Zero and negative numbers name process groups, never one process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone we may not signal
        return True
    return True
