"""The gate's one write path into the kernel: libnftables transactions (floor 3, host I/O).

Through the Python bindings of libnftables (`pip-nftables`, a copy of Debian's
python3-nftables; it needs libnftables1), not by running `nft`: one netlink batch per call,
no process per answer. A buffer handed to `Nftables.cmd` is one transaction: either every
element of an answer is added or refreshed, or none is, and the caller answers SERVFAIL.
Needs CAP_NET_ADMIN in the network namespace of the sets, and nothing else (privileges.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol


class SetError(RuntimeError):
    """libnftables refused a transaction or a query (the message is its error output)."""


class SetWriter(Protocol):
    def apply(self, commands: str) -> None: ...

    def timeouts(self, table: str, set_names: Iterable[str]) -> dict[str, int]: ...


class Libnftables:
    """The real writer. One context, used from the event loop's thread only."""

    def __init__(self) -> None:
        try:
            import nftables
        except (ImportError, OSError) as exc:  # OSError: the bindings found no libnftables.so
            raise SetError(f"the libnftables Python bindings are missing ({exc}): install "
                           "libnftables1 (apt) and pip-nftables (clawpolicy[nftables])") from exc
        self._nft: Any = nftables.Nftables()
        self._nft.set_json_output(True)

    def apply(self, commands: str) -> None:
        if not commands:
            return
        rc, _out, err = self._nft.cmd(commands)
        if rc != 0:
            raise SetError(str(err).strip() or f"libnftables returned {rc}")

    def timeouts(self, table: str, set_names: Iterable[str]) -> dict[str, int]:
        """Each set's default timeout in seconds; SetError when one is missing (the ruleset
        is not loaded, or is another version of the policy)."""
        out: dict[str, int] = {}
        for name in set_names:
            rc, text, err = self._nft.cmd(f"list set inet {table} {name}")
            if rc != 0:
                raise SetError(f"set inet {table} {name}: {str(err).strip()}")
            for obj in json.loads(text).get("nftables", []):
                if "set" in obj:
                    out[name] = int(obj["set"].get("timeout", 0))
        return out


class MemoryWriter:
    """A writer for tests and benchmarks without a kernel: records every transaction."""

    def __init__(self, timeout: int = 600, fail: bool = False) -> None:
        self.transactions: list[str] = []
        self.timeout = timeout
        self.fail = fail

    def apply(self, commands: str) -> None:
        if self.fail:
            raise SetError("refused (test writer)")
        if commands:
            self.transactions.append(commands)

    def timeouts(self, table: str, set_names: Iterable[str]) -> dict[str, int]:
        return {name: self.timeout for name in set_names}
