"""Start-up: a command imports only what it needs (issue 14). Behaviour, not timing: which
modules a fresh interpreter has loaded after `clawpolicy --help` or one command's parse."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from clawpolicy import cli

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("pydantic", "lark", "jinja2", "rich", "yaml", "clawpolicy.ir", "clawpolicy.backends",
         "clawpolicy.compiler", "clawpolicy.lower", "clawpolicy.parse")


def _modules_after(argv: list[str]) -> set[str]:
    """The module names loaded by `clawpolicy ARGV` in a fresh interpreter (exit ignored)."""
    code = ("import sys, json\nfrom clawpolicy.cli import main\n"
            "try:\n    main(json.loads(sys.argv[1]))\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)))\n")
    r = subprocess.run([sys.executable, "-c", code, json.dumps(argv)], capture_output=True,
                       text=True, cwd=REPO, timeout=60)
    tail = r.stderr.rsplit("MODULES ", 1)
    assert len(tail) == 2, r.stderr
    return set(json.loads(tail[1]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY))


def test_help_imports_no_command_family_and_no_heavy_library() -> None:
    modules = _modules_after(["--help"])
    assert _heavy(modules) == []
    assert not [m for m in modules if m.startswith("clawpolicy.commands.")]


def test_usage_error_imports_no_command_family() -> None:
    modules = _modules_after(["no-such-command"])
    assert not [m for m in modules if m.startswith("clawpolicy.commands.")]


def test_a_command_imports_its_family_only(subtests: pytest.Subtests) -> None:
    for command, other in (("catalog", "diff"), ("fmt", "logs"), ("explain", "compile")):
        with subtests.test(command=command):
            modules = _modules_after([command, "--help"])
            assert f"clawpolicy.commands.{cli.COMMANDS[command][0]}" in modules
            assert f"clawpolicy.commands.{other}" not in modules


def _registered() -> dict[str, str | None]:
    full = cli.build_parser()
    sub = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    return {c.dest: c.help for c in sub._choices_actions}


def test_static_command_table_matches_the_families() -> None:
    """COMMANDS (what --help lists without importing anything) is what the families register,
    in the same order: a new command must be added to the table."""
    assert _registered() == {name: summary for name, (_, summary) in cli.COMMANDS.items()}


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, summary in _registered().items():
        assert f"{name} " in out and str(summary) in out


def test_every_command_parses_as_with_the_full_parser(subtests: pytest.Subtests) -> None:
    """The lazily built parser gives the same namespace as the full one."""
    for argv in (["compile", "x.claw", "-t", "nftables"], ["fmt", "--check", "a.claw"],
                 ["catalog", "--json"], ["lint", "p.claw"], ["dns", "serve", "p.claw"]):
        with subtests.test(argv=argv):
            lazy = vars(cli.build_parser(argv).parse_args(argv))
            full = vars(cli.build_parser().parse_args(argv))
            assert json.dumps(lazy, default=str, sort_keys=True) == json.dumps(full, default=str, sort_keys=True)


def test_compile_imports_only_the_targets_it_builds(tmp_path: Path) -> None:
    """`compile -t nftables` of the bundled example loads the nftables backend and none of the
    others (the registry imports a target's module on first lookup), nor the lock and
    validation machinery. The example has rules only other targets enforce (sockets,
    capabilities, files): the support check judges those from `support_tables`, and still
    names the targets that would enforce them."""
    out = tmp_path / "out"
    argv = ["compile", "examples/openclaw-workstation.claw", "-t", "nftables", "-o", str(out)]
    modules = _modules_after(argv)
    assert "clawpolicy.backends.nftables" in modules
    others = ("apparmor", "dnsgate", "dnsmasq", "docs", "k8s", "seccomp", "systemd")
    assert [m for m in modules if m.split(".")[-1].startswith(others)] == []
    assert not {"yaml", "rich", "clawpolicy.lockfile", "clawpolicy.validate"} & modules
    assert not [m for m in modules if m.startswith("clawpolicy.review")]  # no lint ignores here
    assert (out / "openclaw-workstation" / "nftables" / "ruleset.nft").is_file()
    r = subprocess.run([sys.executable, "-m", "clawpolicy.cli", *argv], capture_output=True,
                       text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "enforced only by other targets (apparmor, seccomp, systemd)" in r.stderr


def test_backend_table_names_each_module_by_its_target() -> None:
    from clawpolicy.backends import registry

    assert list(registry.BACKENDS) == list(registry.TARGET_MODULES) == list(registry.DEFAULT_TARGETS)
    for name, backend in registry.BACKENDS.items():
        assert backend.name == name
        assert backend is sys.modules[registry.TARGET_MODULES[name]].BACKEND  # type: ignore[attr-defined]
