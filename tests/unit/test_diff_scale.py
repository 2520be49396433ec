"""`diff` at scale and across file names: Markdown within a comment's size whatever the change
(summaries count what they cannot list; JSON keeps every peer), no artifact churn from the two
inputs' names, progress only on a terminal. Sizes are small here; benchmarks measure time."""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

import pytest
from policy_snippets import snippet_policy

from clawpolicy.cli import main
from clawpolicy.review.diff import diff_policies
from clawpolicy.review.render import to_markdown


def _networks(n: int, seed: int) -> list[str]:
    """n disjoint /24s, spread over the space (never adjacent: every other /24)."""
    return [str(ipaddress.IPv4Network((((10 + seed) << 24) + (2 * i << 8), 24))) for i in range(n)]


def _body(nets: list[str], rules: int = 1) -> str:
    size = max(1, len(nets) // rules)
    return "\n".join(f'allow egress to {", ".join(nets[i:i + size])} port {8000 + i // size}/tcp reason "r"'
                     for i in range(0, len(nets), size))


CASES = {
    "one rule of 3,000 networks removed": ("3000-1", 3000, 1, ""),
    "800 rules, every one changed": ("800-800", 800, 800, "more change"),
}


def test_markdown_stays_within_a_comment(tmp_path: Path, subtests: pytest.Subtests) -> None:
    for name, (folder, n, rules, words) in CASES.items():
        with subtests.test(msg=name):
            nets = _networks(n, 1)
            old = snippet_policy(_mk(tmp_path / folder / "o"), _body(nets, rules))
            new = snippet_policy(_mk(tmp_path / folder / "n"), 'allow egress to 192.0.2.1 port 443/tcp reason "x"'
                                 if rules == 1 else _body(_networks(n, 2), rules))
            changes = diff_policies(old, new)
            text = to_markdown(changes, [], "old", "new")
            assert len(text) <= 60_000 and words in text
            assert all(len(c.summary) < 400 for c in changes)
            assert sum(len(c.peers) for c in changes) >= n  # the JSON lists every network
            small = to_markdown(changes, [], "old", "new", budget=4_000)
            assert len(small) <= 4_000 and (len(text) <= 4_000 or "--format json" in small)


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"policy p {{\n  mode enforce\n  applies-to host\n{body}\n}}\n", encoding="utf-8")
    return path


# (old file, new file): names and folders differ; contents are equal or differ by one address
NAMES = [("old.claw", "new.claw"), ("a/policy.claw", "b/c/my_policy-v2.claw"), ("x_y.claw", "deep/x_y2.claw")]


def test_file_names_of_the_two_inputs_are_no_change(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     subtests: pytest.Subtests, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given relative to the working directory, or absolute from outside it (the artifacts then
    carry the file names alone), or with ./ in front: the names never make a difference."""
    body = ('allow egress to 198.51.100.0/24 port 443/tcp reason "svc"\n'
            'deny egress to 169.254.169.254 reason "metadata"')
    elsewhere = _mk(tmp_path / "elsewhere")
    spellings = {"relative": (tmp_path, str), "absolute, from another directory": (elsewhere, lambda p: str(tmp_path / p)),
                 "./relative": (tmp_path, lambda p: f"./{p}")}
    for n, (a, b) in enumerate(NAMES):
        for how, (cwd, spell) in spellings.items():
            with subtests.test(msg=f"{a} -> {b}, {how}"):
                monkeypatch.chdir(tmp_path)
                old = _write(Path(f"{n}") / a, body)
                same = _write(Path(f"{n}") / b, body)
                monkeypatch.chdir(cwd)
                assert main(["diff", spell(old), spell(same), "--format", "json"]) == 0
                doc = json.loads(capsys.readouterr().out)
                assert doc["changes"] == [] and doc["artifacts"] == []
                _write(tmp_path / same, body.replace("198.51.100.0/24", "198.51.101.0/24"))
                assert main(["diff", spell(old), spell(same), "--format", "json"]) == 0
                doc = json.loads(capsys.readouterr().out)
                assert doc["artifacts"], doc
                for artifact in doc["artifacts"]:
                    changed = [line for line in artifact["diff"].splitlines()[2:] if line[:1] in "+-"]
                    assert not any(Path(a).name in line for line in changed), changed


def test_names_that_are_not_file_names_are_not_rewritten(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`diff a b`: replacing every `a` with `b` in the artifacts would garble them (the reason
    "a database" would differ), so bare names stay as they are: the artifact diff then shows
    the lines that name the source, and nothing else."""
    monkeypatch.chdir(tmp_path)
    body = 'allow egress to 198.51.100.0/24 port 443/tcp reason "a database"'
    _write(Path("a"), body)
    _write(Path("b"), body)
    assert main(["diff", "a", "b", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["changes"] == []
    for artifact in doc["artifacts"]:
        lines = artifact["diff"].splitlines()[2:]
        removed, added = [x[1:] for x in lines if x[:1] == "-"], [x[1:] for x in lines if x[:1] == "+"]
        assert removed and len(removed) == len(added), lines
        for before, after in zip(removed, added, strict=True):  # each line differs in the name alone
            assert len(before) == len(after) and sum(x != y for x, y in zip(before, after, strict=True)) == 1, \
                (before, after)


def test_progress_only_on_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    old = _write(tmp_path / "o.claw", 'allow egress to 198.51.100.0/24 port 443/tcp reason "svc"')
    new = _write(tmp_path / "n.claw", 'allow egress to 198.51.0.0/16 port 443/tcp reason "svc"')
    assert main(["diff", str(old), str(new), "--no-artifacts"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["lint", str(new)]) in (0, 1)  # findings are not progress: only stderr matters
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    from clawpolicy.commands import progress
    with progress.step("comparing"):
        pass  # a terminal gets a spinner (rich); nothing is asserted about time


def test_compile_shows_progress_on_a_terminal_only(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    policy = _write(tmp_path / "p.claw", 'allow egress to 198.51.100.0/24 port 443/tcp reason "svc"')
    args = ["compile", str(policy), "-o", str(tmp_path / "out"), "--target", "nftables", "--no-config"]
    assert main(args) == 0
    assert "compiling" not in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(args) == 0
    assert "compiling for nftables" in capsys.readouterr().err


def test_one_shot_commands_leave_the_collector_as_found_and_their_objects_frozen(tmp_path: Path) -> None:
    """Review commands run without the cyclic collector and freeze what is alive after them,
    so no later collection (the last at interpreter exit) rescans a big policy's objects."""
    import gc
    policy = _write(tmp_path / "p.claw", 'allow egress to 198.51.100.0/24 port 443/tcp reason "svc"')
    gc.unfreeze()
    try:
        assert gc.isenabled()
        assert main(["lint", str(policy), "--no-config"]) in (0, 1)
        assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
