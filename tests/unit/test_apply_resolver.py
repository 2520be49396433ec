"""apply's resolver step without a kernel or systemd: what `--start` runs and in which
order, and that a failed restart, or an undo, puts every file back as it was (bytes, or no
file). systemctl is a recording fake; the kernel side is tests/kernel/test_apply_resolver_kernel.py."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from clawpolicy.operate import resolver
from clawpolicy.operate.resolver import ResolverError, ResolverPlan, install, undo


class Systemctl:
    """Records each command; fails the ones named in `failing`."""

    def __init__(self, *failing: str) -> None:
        self.calls: list[str] = []
        self.failing = failing

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        cmd = " ".join(argv)
        self.calls.append(cmd)
        return subprocess.CompletedProcess(list(argv), 1 if cmd in self.failing else 0, "", "boom")


@pytest.fixture
def systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolver, "systemd_running", lambda: True)


def _plan(where: Path, kind: str = "gate") -> ResolverPlan:
    files = (("a.service", "new a\n"), ("b.conf", "new b\n"))
    return ResolverPlan(kind, where, files, "a.service" if kind == "gate" else "dnsmasq.service")


def test_start_then_undo(tmp_path: Path, systemd: None, subtests: pytest.Subtests) -> None:
    for kind, existed, after_undo in [
        ("gate", False, ["systemctl stop a.service", "systemctl daemon-reload"]),
        ("gate", True, ["systemctl daemon-reload", "systemctl restart a.service"]),
        ("dnsmasq", False, ["systemctl daemon-reload", "systemctl restart dnsmasq.service"]),
    ]:
        with subtests.test(kind=kind, existed=existed):
            where = tmp_path / f"{kind}-{existed}"
            where.mkdir()
            if existed:
                (where / "a.service").write_bytes(b"old a\xff\n")
            run, lines = Systemctl(), []
            done = install(_plan(where, kind), lines.append, start=True, run=run,
                           backup_dir=tmp_path / f"backup-{kind}-{existed}")
            assert run.calls == ["systemctl daemon-reload", f"systemctl restart {done.plan.service}"]
            assert (where / "b.conf").read_text() == "new b\n"
            run.calls.clear()
            undo(done, lines.append, run=run)
            assert run.calls == after_undo
            assert sorted(p.name for p in where.iterdir()) == (["a.service"] if existed else [])
            if existed:
                assert (where / "a.service").read_bytes() == b"old a\xff\n"


def test_failed_restart_puts_files_back(tmp_path: Path, systemd: None) -> None:
    (tmp_path / "b.conf").write_text("old b\n")
    run, lines = Systemctl("systemctl restart a.service"), []
    with pytest.raises(ResolverError, match="systemctl restart a.service failed: boom"):
        install(_plan(tmp_path), lines.append, start=True, run=run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.conf"]
    assert (tmp_path / "b.conf").read_text() == "old b\n"
    assert any("putting its files back" in line for line in lines)
    # systemd had read the new unit: the undo reloads it on the old files and stops the new one
    assert run.calls == ["systemctl daemon-reload", "systemctl restart a.service",
                         "systemctl stop a.service", "systemctl daemon-reload"]


def test_without_systemd_nothing_is_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolver, "systemd_running", lambda: False)
    run, lines = Systemctl(), []
    done = install(_plan(tmp_path), lines.append, start=True, run=run)
    assert run.calls == [] and not done.started
    assert any("systemd is not running here" in line for line in lines)


def test_interrupted_install_puts_files_back(tmp_path: Path, systemd: None) -> None:
    """A SIGTERM half-way (here, while systemctl restarts) leaves no new file behind."""
    def stopped(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        if "restart" in argv:
            raise KeyboardInterrupt
        return subprocess.CompletedProcess(list(argv), 0, "", "")
    (tmp_path / "a.service").write_text("old a\n")
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        install(_plan(tmp_path), lines.append, start=True, run=stopped)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.service"]
    assert (tmp_path / "a.service").read_text() == "old a\n"
    assert any("interrupted; putting its files back" in line for line in lines)
