"""scripts/setup.sh chooses the Debian packages to install by whole names (issue 18: a pattern
substitution turned python3-venv into `-venv`). Run for real in a copy of the repository with
stand-ins for dpkg-query (nothing installed), apt-get (records its arguments) and python3 (its
venv module present or not); a stamped .venv ends the script before any pip run."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APT = ["nftables", "libnftables1", "iproute2", "dnsmasq-base", "python3", "python3-venv", "util-linux",
       "apparmor", "libseccomp2", "systemd"]


def _stub(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)


def _installed(tmp: Path, *, venv_works: bool) -> list[str] | None:
    """The package names setup.sh asks apt-get to install (None: it did not call apt-get)."""
    repo = tmp / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    shutil.copy2(REPO / "pyproject.toml", repo / "pyproject.toml")
    (repo / ".venv" / "bin").mkdir(parents=True)
    _stub(repo / ".venv" / "bin" / "python", "exit 0")
    stamp = hashlib.sha256((repo / "pyproject.toml").read_bytes()).hexdigest()
    (repo / ".venv" / ".clawpolicy-setup").write_text(stamp + "\n", encoding="utf-8")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    log = tmp / "apt.log"
    _stub(bin_dir / "dpkg-query", "exit 1")
    _stub(bin_dir / "apt-get", f'[ "$1" = install ] && printf "%s\\n" "$@" > {log}; exit 0')
    _stub(bin_dir / "id", "echo 0")
    _stub(bin_dir / "python3", f"exit {0 if venv_works else 1}")
    r = subprocess.run(["bash", str(repo / "scripts" / "setup.sh")], capture_output=True, text=True,
                       env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp)}, timeout=60)
    assert r.returncode == 0, r.stderr
    if not log.exists():
        return None
    return [a for a in log.read_text(encoding="utf-8").splitlines() if not a.startswith("-") and a != "install"]


def test_setup_installs_whole_package_names(tmp_path: Path, subtests: pytest.Subtests) -> None:
    for venv_works, expected in ((True, [p for p in APT if p not in ("python3", "python3-venv")]),
                                 (False, [p for p in APT if p != "python3"])):
        with subtests.test(venv_works=venv_works):
            got = _installed(tmp_path / str(venv_works), venv_works=venv_works)
            assert got == expected  # never "-venv" nor an empty name


def test_setup_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "setup.sh")]).returncode == 0
