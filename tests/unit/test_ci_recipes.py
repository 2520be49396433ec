"""The CI recipes in examples/ci/ and .pre-commit-hooks.yaml: valid YAML, and every
clawpolicy command they run is one the CLI accepts and that succeeds on a policy repository
laid out as they expect (policies/*.claw, generated/ committed)."""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from clawpolicy.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "examples" / "ci").glob("*.yml"))


def _commands(text: str) -> list[list[str]]:
    """Every `clawpolicy ...` invocation, with CI variables replaced by a revision name."""
    out = []
    for line in text.splitlines():
        m = re.search(r"(?:^|[\s;|&-]\s*)(clawpolicy (?:[^>|&]|\|\|)+?)(?:\s*(?:>|\|\||$))", line.strip())
        if m and not line.strip().startswith("#") and "description" not in line:
            cmd = re.sub(r"\$\{\{[^}]*\}\}|\$[A-Z_]+", "main", m.group(1))
            out.append(shlex.split(cmd.replace('"origin/main"', "origin/main")))
    return out


def test_recipes_are_yaml_and_their_commands_parse(subtests: pytest.Subtests) -> None:
    assert len(RECIPES) == 2
    seen: set[str] = set()
    for recipe in RECIPES:
        text = recipe.read_text(encoding="utf-8")
        assert isinstance(yaml.safe_load(text), dict)
        for argv in _commands(text):
            with subtests.test(msg=f"{recipe.name}: {' '.join(argv)}"):
                assert argv[0] == "clawpolicy"
                build_parser().parse_args(argv[1:])  # SystemExit(2) on an unknown flag
                seen.add(argv[1])
    assert seen >= {"fmt", "lint", "test", "compile", "diff"}


def test_pre_commit_hooks(subtests: pytest.Subtests) -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    for hook in hooks:
        with subtests.test(msg=hook["id"]):
            assert {"id", "name", "entry", "language", "files"} <= hook.keys()
            assert re.search(hook["files"], "policies/agent.claw")
            build_parser().parse_args([*shlex.split(hook["entry"])[1:], "policies/agent.claw"])


def test_the_github_steps_pass_on_a_policy_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "policies-repo"
    shutil.copytree(REPO / "examples", repo / "policies")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e.x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e.x"}
    monkeypatch.chdir(repo)
    assert main(["compile", *sorted(glob.glob("policies/*.claw"))]) == 0
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "policies"],
                 ["update-ref", "refs/remotes/origin/main", "HEAD"]):
        subprocess.run(["git", *args], check=True, capture_output=True, env=env)
    recipe = (REPO / "examples" / "ci" / "github-actions.yml").read_text(encoding="utf-8")
    for argv in _commands(recipe):
        expanded = [x for a in argv[1:] for x in (sorted(glob.glob(a)) if "*" in a else [a])]
        code = main(expanded)
        assert code == 0, (argv, capsys.readouterr())
