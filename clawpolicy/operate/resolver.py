"""The FQDN resolver side of `clawpolicy apply`: floor 3, beside operate/apply.py, which
calls it after the ruleset is loaded (the ruleset creates the sets the resolver fills, so the
sets come first) and undoes it before the ruleset is rolled back (the reverse order).

Two resolvers feed the sets: the DNS gate (`clawpolicy dns serve`, the `dnsgate` target: a
systemd unit) and dnsmasq (the `dnsmasq` target: a conf fragment). Installing one means
writing its file into a directory (the gate's unit: /etc/systemd/system by default; the
fragment: /etc/dnsmasq.d) and, when asked (`--start`) and systemd runs, reloading systemd and
restarting the service. Before a file is written its current content (or its absence) is
kept, in memory and under the state directory, so a rollback or a failure half-way puts
back exactly what was there. resolv.conf is not rewritten: pointing the host's DNS at the
gate is the operator's step, and apply prints the line (a wrong resolv.conf breaks every
lookup on the host, which a rollback window over SSH may not survive to undo).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RESOLVERS = ("none", "gate", "dnsmasq")
DEFAULT_DIRS = {"gate": Path("/etc/systemd/system"), "dnsmasq": Path("/etc/dnsmasq.d")}


class ResolverError(RuntimeError):
    """Installing the resolver failed; what was written so far has been put back."""


@dataclass(frozen=True)
class ResolverPlan:
    """What to install: files (name in `directory`, content), the service to restart, and
    what the operator still has to do (printed)."""

    kind: str  # gate | dnsmasq
    directory: Path
    files: tuple[tuple[str, str], ...]
    service: str  # the systemd unit `--start` restarts
    note: str = ""


@dataclass
class Installed:
    """What was there before (None: no such file), in the order written, for `undo`."""

    plan: ResolverPlan
    before: list[tuple[Path, bytes | None]] = field(default_factory=list)
    started: bool = False


def systemd_running() -> bool:
    """systemd(1)'s own test (sd_booted): /run/systemd/system exists."""
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def _write(path: Path, data: bytes) -> None:
    """Write beside, then rename: a reader (systemd, dnsmasq) never sees half a file."""
    tmp = path.with_name(f".{path.name}.clawpolicy-tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _save_backup(backup_dir: Path | None, path: Path, old: bytes | None) -> None:
    if backup_dir is None:
        return
    backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in (".orig", ".absent"):  # an older apply's backup of the same file
        (backup_dir / (path.name + stale)).unlink(missing_ok=True)
    target = backup_dir / (path.name + (".orig" if old is not None else ".absent"))
    target.write_bytes(old or b"")


def install(plan: ResolverPlan, log: Callable[[str], None], *, start: bool,
            backup_dir: Path | None = None, run: Runner = _run) -> Installed:
    """Write the files (keeping what was there), then restart the service when asked; on any
    failure put the files back and raise ResolverError."""
    done = Installed(plan)
    try:
        if not plan.directory.is_dir():
            raise ResolverError(f"{plan.directory} is not a directory")
        for name, text in plan.files:
            path = plan.directory / name
            old = path.read_bytes() if path.exists() else None
            _save_backup(backup_dir, path, old)
            done.before.append((path, old))
            _write(path, text.encode("utf-8"))
            log(f"resolver ({plan.kind}): wrote {path}" + (" (kept the old one)" if old is not None else ""))
        if start:
            _restart(done, log, run)
    except (OSError, ResolverError) as exc:
        log(f"resolver ({plan.kind}) failed: {exc}; putting its files back")
        undo(done, log, run=run)
        raise ResolverError(str(exc)) from exc
    except BaseException:  # a stop (SIGTERM) half-way: the caller never sees `done`
        log(f"resolver ({plan.kind}) interrupted; putting its files back")
        undo(done, log, run=run)
        raise
    if plan.note:
        log(f"resolver ({plan.kind}): {plan.note}")
    return done


def _restart(done: Installed, log: Callable[[str], None], run: Runner) -> None:
    """daemon-reload and restart. `started` is set once systemd has seen the new files, so
    an undo after a failed restart reloads (and restarts or stops) on the old ones."""
    plan = done.plan
    if not systemd_running():
        log(f"resolver ({plan.kind}): systemd is not running here; start {plan.service} yourself")
        return
    for argv in (["systemctl", "daemon-reload"], ["systemctl", "restart", plan.service]):
        r = run(argv)
        if r.returncode != 0:
            raise ResolverError(f"{' '.join(argv)} failed: {r.stderr.strip()}")
        done.started = True
        log(f"resolver ({plan.kind}): {' '.join(argv)}")


def undo(done: Installed, log: Callable[[str], None], *, run: Runner = _run) -> None:
    """Put the files back as they were (newest first) and, when the service was restarted,
    restart it on them (stop it when its unit is gone). Best effort: every file is tried."""
    errors = []
    for path, old in reversed(done.before):
        try:
            if old is None:
                path.unlink(missing_ok=True)
                log(f"resolver ({done.plan.kind}): removed {path} (it was not there before)")
            else:
                _write(path, old)
                log(f"resolver ({done.plan.kind}): put back the previous {path}")
        except OSError as exc:
            errors.append(f"{path}: {exc}")
    done.before.clear()
    if done.started and systemd_running():
        gone = done.plan.kind == "gate" and not (done.plan.directory / done.plan.service).exists()
        for argv in (["systemctl", "stop", done.plan.service], ["systemctl", "daemon-reload"]) if gone else (
                ["systemctl", "daemon-reload"], ["systemctl", "restart", done.plan.service]):
            r = run(argv)
            log(f"resolver ({done.plan.kind}): {' '.join(argv)}"
                + ("" if r.returncode == 0 else f" failed: {r.stderr.strip()}"))
    if errors:
        raise ResolverError("could not put back " + "; ".join(errors))
