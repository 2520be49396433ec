"""CLI conventions across commands (issue 18): --version, colour (--color, NO_COLOR), --format
json where output is tabular, one exit status per failure class, one error prefix, and shell
completion. Table-driven: one subtest per command, so one disagreeing command shows alone."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clawpolicy import __version__
from clawpolicy import version as version_module
from clawpolicy.cli import COMMANDS, main
from clawpolicy.commands import set_color, use_color

REPO = Path(__file__).resolve().parents[2]
POLICY = str(REPO / "examples" / "openclaw-workstation.claw")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# An error line: `clawpolicy: error: ...`, or positioned, `FILE[:LINE:COL]: error: ...`.
ERROR_LINE = re.compile(r"^(?:clawpolicy|[^\s:][^:]*(?::\d+:\d+)?): error: \S", re.M)


def test_version_is_the_distribution_metadata(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"clawpolicy {version_module.version()}\n"
    assert version_module.version() == __version__  # the editable install's metadata
    monkeypatch.setattr(version_module, "DISTRIBUTION", "clawpolicy-not-installed-anywhere")
    assert version_module.version() == __version__  # no metadata: the package's own


def test_version_from_the_console_script() -> None:
    r = subprocess.run([str(Path(sys.executable).parent / "clawpolicy"), "--version"],
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, f"clawpolicy {__version__}\n")


# (argv with MISSING for a path that does not exist) -> every command that reads a named file
MISSING_INPUT = {
    "compile": ["compile", "MISSING.claw"],
    "ir": ["ir", "MISSING.claw"],
    "test": ["test", "MISSING.claw"],
    "resolve": ["resolve", "MISSING.claw"],
    "lint": ["lint", "MISSING.claw"],
    "diff": ["diff", "MISSING.claw", POLICY],
    "fmt": ["fmt", "--check", "MISSING.claw"],
    "explain (policy)": ["explain", "-p", "MISSING.claw", "MISSING.log"],
    "explain (log)": ["explain", "-p", POLICY, "MISSING.log"],
    "simulate (policy)": ["simulate", "MISSING.claw", "MISSING.jsonl"],
    "simulate (flows)": ["simulate", POLICY, "MISSING.jsonl"],
    "simulate (dns log)": ["simulate", POLICY, "--dns-log", "MISSING.log"],
    "suggest (flows)": ["suggest", POLICY, "--flows", "MISSING.jsonl"],
    "suggest (log)": ["suggest", POLICY, "--log", "MISSING.log"],
    "init": ["init", "--from-openclaw", "MISSING.json", "-o", "OUT.claw"],
    "observe": ["observe", "MISSING.claw", "--pid", "1"],
    "dns serve": ["dns", "serve", "MISSING.claw", "--upstream", "192.0.2.53"],
    "apply": ["apply", "MISSING.claw", "--netns", "clawpolicy-never-created"],
}


def _in(tmp: Path, argv: list[str]) -> list[str]:
    return [a.replace("MISSING", str(tmp / "missing")).replace("OUT", str(tmp / "out")) for a in argv]


def test_a_missing_input_file_is_1_with_one_error_prefix(tmp_path: Path, subtests: pytest.Subtests,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert {argv[0] for argv in MISSING_INPUT.values()} >= set(COMMANDS) - {
        "catalog", "status", "completion"}  # the commands that read no named file
    for name, argv in MISSING_INPUT.items():
        with subtests.test(command=name):
            code = main(_in(tmp_path, argv))
            err = capsys.readouterr().err
            assert code == 1, err
            assert ERROR_LINE.search(err), err
            assert "Traceback" not in err


# usage errors: 2 everywhere, with the same prefix
USAGE = {
    "no command": [],
    "unknown command": ["no-such-command"],
    "unknown option": ["compile", "--no-such-option", POLICY],
    "bad choice": ["diff", "--format", "yaml", POLICY, POLICY],
    "simulate without flows": ["simulate", POLICY],
    "suggest without input": ["suggest", POLICY],
    "ir without input": ["ir"],
    "diff without input": ["diff"],
    "init without a source": ["init"],
    "completion for no shell": ["completion", "tcsh"],
    "bad --color": ["--color", "sometimes", "catalog"],
}


def test_usage_errors_are_2_with_the_same_prefix(subtests: pytest.Subtests,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    for name, argv in USAGE.items():
        with subtests.test(case=name):
            code = main(argv)
            err = capsys.readouterr().err
            assert code == 2, err
            assert re.search(r"^clawpolicy: error: \S", err, re.M), err


def test_use_color(subtests: pytest.Subtests, monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    for mode, no_color, tty, expected in (
            ("auto", "", True, True), ("auto", "", False, False), ("auto", "1", True, False),
            ("always", "1", False, True), ("never", "", True, False), ("always", "", False, True)):
        with subtests.test(mode=mode, no_color=no_color, tty=tty):
            monkeypatch.setenv("NO_COLOR", no_color)
            set_color(mode)
            assert use_color(Tty() if tty else io.StringIO()) is expected
    set_color("auto")


def test_diff_colours_only_when_asked(tmp_path: Path, subtests: pytest.Subtests,
                                      capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    new = tmp_path / "new.claw"
    new.write_text(Path(POLICY).read_text(encoding="utf-8").replace("mode shadow", "mode enforce"))
    for env, argv, coloured in (
            ("", ["diff", POLICY, str(new)], False),  # auto, not a terminal
            ("", ["--color", "always", "diff", POLICY, str(new)], True),
            ("", ["diff", POLICY, str(new), "--color", "always"], True),  # after the command too
            ("1", ["--color", "always", "diff", POLICY, str(new)], True),  # the flag beats NO_COLOR
            ("1", ["diff", POLICY, str(new)], False),
            ("", ["--color", "never", "diff", POLICY, str(new)], False)):
        with subtests.test(no_color=env, argv=argv[:2]):
            monkeypatch.setenv("NO_COLOR", env)
            assert main(argv) == 0
            out = capsys.readouterr().out
            assert bool(ANSI.search(out)) is coloured
            assert "policy openclaw-workstation" in ANSI.sub("", out) or "openclaw-workstation" in out


def test_format_json_on_tabular_commands(tmp_path: Path, subtests: pytest.Subtests,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Every command whose text output is a table or a list of results also speaks JSON."""
    flows = tmp_path / "flows.jsonl"
    flows.write_text('{"dst": "203.0.113.9", "port": 443}\n', encoding="utf-8")
    cases = {
        "test": ["test", POLICY, "--format", "json"],
        "catalog": ["catalog", "--format", "json"],
        "lint": ["lint", POLICY, "--format", "json"],
        "diff": ["diff", POLICY, POLICY, "--format", "json"],
        "simulate": ["simulate", POLICY, str(flows), "--format", "json"],
        "suggest": ["suggest", POLICY, "--flows", str(flows), "--format", "json"],
    }
    for name, argv in cases.items():
        with subtests.test(command=name):
            code = main(argv)
            out = capsys.readouterr().out
            assert code in (0, 1), out
            json.loads(out)


def test_test_json_counts_and_positions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", POLICY, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["failed"] == 0 and doc["passed"] == len(doc["results"]) > 0
    first = doc["results"][0]
    assert first["file"].endswith("openclaw-workstation.claw") and first["line"] > 0
    assert main(["test", POLICY, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == doc  # deterministic: no durations


def test_catalog_json_alias(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "--json"]) == 0
    alias = capsys.readouterr().out
    assert main(["catalog", "--format", "json"]) == 0
    assert capsys.readouterr().out == alias and "openai" in json.loads(alias)


def _bash_complete(script: str, words: list[str]) -> list[str]:
    driver = (f"{script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)}); "
              f"COMP_CWORD={len(words) - 1}; COMPREPLY=(); _clawpolicy; printf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
    r = subprocess.run(["bash", "--norc", "-c", driver], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.splitlines() if w]


def test_bash_completion(subtests: pytest.Subtests, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    r = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for words, expected in (
            (["clawpolicy", "co"], ["compile", "completion"]),
            (["clawpolicy", "--color", "never", "di"], ["diff"]),
            (["clawpolicy", "diff", "--fo"], ["--format"]),
            (["clawpolicy", "diff", "--format", ""], ["text", "markdown", "json"]),
            (["clawpolicy", "compile", "--k8s-flavor", "c"], ["cilium", "calico"]),
            (["clawpolicy", "dns", ""], ["serve"]),
            (["clawpolicy", "compile", "policy.claw", ""], [])):  # positional: the shell's files
        with subtests.test(words=words):
            assert _bash_complete(script, words) == expected
    every = _bash_complete(script, ["clawpolicy", ""])
    assert set(COMMANDS) <= set(every) and {"--version", "--color"} <= set(every)


def test_zsh_and_fish_scripts_parse(subtests: pytest.Subtests, capsys: pytest.CaptureFixture[str]) -> None:
    for shell in ("zsh", "fish"):
        with subtests.test(shell=shell):
            assert main(["completion", shell]) == 0
            script = capsys.readouterr().out
            assert "clawpolicy" in script and "compile" in script
            if shutil.which(shell) is None:
                pytest.skip(f"{shell} is not installed: only generated, not parsed")
            r = subprocess.run([shell, "-n", "/dev/stdin"], input=script, capture_output=True,
                               text=True, timeout=60)
            assert r.returncode == 0, r.stderr


def test_fish_completes_subcommands() -> None:
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed")
    script = subprocess.run([sys.executable, "-m", "clawpolicy.cli", "completion", "fish"],
                            capture_output=True, text=True, check=True, timeout=60, cwd=REPO).stdout
    r = subprocess.run(["fish", "--no-config", "-c", f"{script}\ncomplete -C 'clawpolicy co'"],
                       capture_output=True, text=True, timeout=60)
    assert [line.split("\t")[0] for line in r.stdout.splitlines()] == ["compile", "completion"]


def test_no_command_prints_its_own_error_prefix() -> None:
    """Messages printed by the command modules use the shared prefixes, never the older
    `clawpolicy diff: ...` / `clawpolicy dns serve: error: ...` forms."""
    old = re.compile(r"""["']clawpolicy [a-z]+(?: [a-z-]+)?: """)
    for module in sorted((REPO / "clawpolicy" / "commands").glob("*.py")):
        for n, line in enumerate(module.read_text(encoding="utf-8").splitlines(), 1):
            assert not (old.search(line) and "print(" in line), f"{module.name}:{n}: {line.strip()}"
