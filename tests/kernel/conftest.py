"""Kernel-level tests: real network namespaces and nftables (root only)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import netlab  # noqa: E402

ROOT_SKIP_REASON = "needs root (network namespaces, nft)"


def _root_capable() -> bool:
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("ip", "nft", "unshare"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _root_capable():
        return
    skip = pytest.mark.skip(reason=ROOT_SKIP_REASON)
    for item in items:
        if item.get_closest_marker("root") is not None:
            item.add_marker(skip)


def pytest_sessionstart(session: pytest.Session) -> None:
    # Namespaces left behind by an earlier run that was SIGKILLed (only those whose
    # owning pid is gone; see netlab.cleanup_stale_namespaces).
    if _root_capable():
        netlab.cleanup_stale_namespaces()


@pytest.fixture
def lab_factory() -> Iterator[Callable[..., netlab.Lab]]:
    """``lab_factory(peer_addresses=[...], **kw)`` -> an entered Lab, closed at teardown."""
    labs: list[netlab.Lab] = []

    def make(*, peer_addresses: Sequence[str], **kw: Any) -> netlab.Lab:
        lab = netlab.Lab(peer_addresses=peer_addresses, **kw)
        lab.__enter__()
        labs.append(lab)
        return lab

    yield make
    errors = []
    for lab in reversed(labs):
        try:
            lab.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    if errors:
        raise errors[0]
