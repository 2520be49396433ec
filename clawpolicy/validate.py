"""Check generated rulesets with the real nftables parser, AppArmor profiles with
apparmor_parser and dnsmasq fragments with `dnsmasq --test`: floor 2.

libnftables (through its Python bindings) is run in dry-run mode, which parses and evaluates
the ruleset as `nft -c` does without committing. The bindings have no dry-run setter, so
`nft_ctx_set_dry_run` is called on the binding's context through ctypes. User names in
`meta skuid "NAME"` are resolved by nft at load time on the machine that loads them; a build
machine may not have the agent's user, so the check substitutes uid 0 for names and says so.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Validation:
    ok: bool
    tool: str  # which checker ran: "libnftables", "nft -c", "apparmor_parser", or "none"
    message: str = ""


def _substitute_users(text: str) -> tuple[str, list[str]]:
    names: list[str] = []

    def repl(m: re.Match[str]) -> str:
        names.append(m.group(2))
        return f"meta skuid {m.group(1) or ''}0"

    return re.sub(r'meta skuid (!= )?"([^"]*)"', repl, text), names


def validate_nft(text: str) -> list[Validation]:
    """Check `text` with every checker installed: libnftables through its Python bindings,
    and the `nft -c` command. An empty check list is reported as one failed 'none' entry
    only when neither exists, so callers can say plainly that nothing was validated."""
    text, names = _substitute_users(text)
    note = f" (user {', '.join(sorted(set(names)))} checked as uid 0)" if names else ""
    results = [r for r in (_with_bindings(text), _with_command(text)) if r is not None]
    if not results:
        return [Validation(True, "none", "neither the libnftables bindings nor nft are "
                           "installed: ruleset NOT validated")]
    return [Validation(r.ok, r.tool, r.message + note) for r in results]


def _with_bindings(text: str) -> Validation | None:
    try:
        import nftables
    except ImportError:
        return None
    try:
        nft = nftables.Nftables()
        lib = ctypes.CDLL("libnftables.so.1")
        lib.nft_ctx_set_dry_run.argtypes = [ctypes.c_void_p, ctypes.c_bool]
        lib.nft_ctx_set_dry_run(nft._Nftables__ctx, True)  # see the module docstring
        rc, _out, err = nft.cmd(text)
    except OSError as exc:
        return Validation(False, "libnftables", f"libnftables could not run: {exc}")
    return Validation(rc == 0, "libnftables", err.strip() or "ok")


def _with_command(text: str) -> Validation | None:
    nft_bin = shutil.which("nft")
    if nft_bin is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as fh:
        fh.write(text)
        fh.flush()
        proc = subprocess.run([nft_bin, "-c", "-f", fh.name], capture_output=True, text=True,
                              check=False)
    return Validation(proc.returncode == 0, "nft -c", proc.stderr.strip() or "ok")


def validate_apparmor(text: str, profile: str) -> list[Validation]:
    """Check a generated AppArmor profile with `apparmor_parser`: it must compile (-QK: parse
    and build the binary policy, load nothing) and define exactly `profile` (-N), since a
    syntax check alone accepts an injected second profile (DESIGN.md). --config-file=/dev/null
    keeps the host's parser.conf out. No securityfs is needed."""
    parser = shutil.which("apparmor_parser") or next(
        (p for p in ("/usr/sbin/apparmor_parser", "/sbin/apparmor_parser") if Path(p).exists()), None)
    if parser is None:
        return [Validation(True, "none", "apparmor_parser is not installed: profile NOT validated")]
    base = [parser, "--config-file=/dev/null"]
    compiled = subprocess.run([*base, "-QK"], input=text.encode("utf-8"), capture_output=True, check=False)
    if compiled.returncode != 0:
        errors = [line for line in compiled.stderr.decode("utf-8", "replace").splitlines()
                  if not line.startswith("Cache read/write disabled")]
        return [Validation(False, "apparmor_parser", "\n".join(errors) or f"exit {compiled.returncode}")]
    named = subprocess.run([*base, "-N"], input=text.encode("utf-8"), capture_output=True, check=False)
    names = named.stdout.decode("utf-8", "replace").split()
    if names != [profile]:
        return [Validation(False, "apparmor_parser", f"the file defines {names}, not [{profile!r}]")]
    return [Validation(True, "apparmor_parser", "ok")]


def validate_dnsmasq(text: str) -> list[Validation]:
    """Check a generated dnsmasq fragment with `dnsmasq --test` (reads the file, starts
    nothing): a line it splits, or an option it does not know (nftset= needs >= 2.87), fails."""
    dnsmasq = shutil.which("dnsmasq") or next(
        (p for p in ("/usr/sbin/dnsmasq", "/sbin/dnsmasq") if Path(p).exists()), None)
    if dnsmasq is None:
        return [Validation(True, "none", "dnsmasq is not installed: fragment NOT validated")]
    with tempfile.NamedTemporaryFile("w", suffix=".conf", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        proc = subprocess.run([dnsmasq, "--test", f"--conf-file={fh.name}"], capture_output=True,
                              text=True, check=False)
    message = proc.stderr.replace(fh.name, "the fragment").strip()
    return [Validation(proc.returncode == 0, "dnsmasq --test", "ok" if proc.returncode == 0 else message)]
