"""The project config (config.py): where it is found, what it may say, how it ranks against
the command line, and that every mistake points at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawpolicy import config
from clawpolicy.cli import main

REPO = Path(__file__).resolve().parents[2]
POD = """policy pod {
  applies-to pods app=openclaw in namespace ai
  allow egress to api.example.com port 443/tcp reason "api"
}
"""

# (case, config text, line, col, fragment of the message)
BAD = [
    ("unknown key", '[compile]\noutput = "o"\ntarget = ["k8s"]\n', 3, 1, "unknown key 'target'"),
    ("unknown table", '[compiler]\noutput = "o"\n', 1, 1, "'compiler'"),
    ("unknown top-level key", 'targets = ["k8s"]\n', 1, 1, "'targets'"),
    ("wrong type", '[compile]\n\nfqdn-timeout = "ten"\n', 3, 1, "positive integer"),
    ("unknown choice", '[k8s]\nflavor = "weave"\n', 2, 1, "'vanilla', 'cilium', 'calico'"),
    ("bad selector", '[k8s]\nselector = "app"\n', 2, 1, "selector"),
    ("unknown target", '[compile]\ntargets = ["nft"]\n', 2, 1, "'nftables'"),
    ("indented key", '[seccomp]\n  deny-action = "trap"\n', 2, 3, "'errno', 'kill'"),
    ("bad toml", '[compile]\noutput = \n', 2, 10, "not valid TOML"),
    ("ignore without reason", '[lint]\nignore = [\n  {check = "wide-egress"},\n]\n', 3, 12,
     "a reason is required"),
    ("ignore of an unknown check", '[[lint.ignore]]\ncheck = "wide"\nreason = "r"\n', 2, 9,
     "unknown check 'wide'"),
    ("ignore with an unknown key", '[lint]\nignore = [{check = "shadowed", reason = "r", rules = "x"}]\n',
     2, 1, "unknown key 'rules'"),
]


def test_mistakes_point_at_their_line(tmp_path: Path, subtests: pytest.Subtests) -> None:
    for case, text, line, col, fragment in BAD:
        with subtests.test(case=case):
            path = tmp_path / "clawpolicy.toml"
            path.write_text(text)
            with pytest.raises(config.ConfigError) as info:
                config.load(path)
            diag = info.value.diagnostics[0]
            assert diag.location is not None
            assert (diag.location.line, diag.location.col) == (line, col), diag
            assert fragment in diag.message + (diag.hint or ""), diag


def test_pyproject_table_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.clawpolicy.compile]\noutput = "out"\n'
        '[tool.clawpolicy.k8s]\nflavor = "cilium"\nnamespac = "ai"\n')
    with pytest.raises(config.ConfigError) as info:
        config.load(tmp_path / "pyproject.toml")
    loc = info.value.diagnostics[0].location
    assert loc is not None and loc.line == 8 and "[tool.clawpolicy.k8s]" in info.value.diagnostics[0].message
    (tmp_path / "pyproject.toml").write_text('[tool.clawpolicy.compile]\noutput = "out"\n')
    loaded = config.load(tmp_path / "pyproject.toml")
    assert loaded.compile == {"output": tmp_path / "out"}  # the config's directory, not the cwd


def test_discovery_walks_up_and_prefers_clawpolicy_toml(tmp_path: Path, subtests: pytest.Subtests) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    with subtests.test("nothing"):
        found = config.find(deep)
        assert found is None or not found.is_relative_to(tmp_path)
    (tmp_path / "a" / "pyproject.toml").write_text('[project]\nname = "x"\n')
    with subtests.test("a pyproject without [tool.clawpolicy] is not a config"):
        assert config.find(deep) != tmp_path / "a" / "pyproject.toml"
    (tmp_path / "pyproject.toml").write_text('[tool.clawpolicy.lint]\nfail-on = "note"\n')
    with subtests.test("pyproject with the table"):
        assert config.find(deep) == tmp_path / "pyproject.toml"
    (tmp_path / "a" / "clawpolicy.toml").write_text("")
    with subtests.test("the nearest wins"):
        assert config.find(deep) == tmp_path / "a" / "clawpolicy.toml"
    with subtests.test("--no-config"):
        assert config.resolve(None, True, cwd=deep) == config.Config()


def _compile(tmp_path: Path, *extra: str) -> int:
    return main(["compile", str(tmp_path / "pod.claw"), "-t", "k8s", *extra])


def test_precedence_cli_over_config_over_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  subtests: pytest.Subtests) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pod.claw").write_text(POD)
    with subtests.test("defaults"):
        assert _compile(tmp_path) == 0
        assert (tmp_path / "generated/pod/k8s/networkpolicy.yaml").exists()
    (tmp_path / "clawpolicy.toml").write_text('[compile]\noutput = "built"\n[k8s]\nflavor = "cilium"\n')
    with subtests.test("config"):
        assert _compile(tmp_path) == 0
        assert (tmp_path / "built/pod/k8s/ciliumnetworkpolicy.yaml").exists()
    with subtests.test("command line wins"):
        assert _compile(tmp_path, "--k8s-flavor", "calico", "-o", "cli") == 0
        assert (tmp_path / "cli/pod/k8s/calico-networkpolicy.yaml").exists()
    with subtests.test("--no-config"):
        assert _compile(tmp_path, "--no-config", "-o", "plain") == 0
        assert (tmp_path / "plain/pod/k8s/networkpolicy.yaml").exists()
    with subtests.test("--check compares what the config builds"):
        assert _compile(tmp_path, "--check") == 0  # built/ holds cilium manifests
        assert _compile(tmp_path, "--check", "--k8s-flavor", "vanilla") == 1
    with subtests.test("--config FILE"):
        other = tmp_path / "sub" / "other.toml"
        other.parent.mkdir()
        other.write_text('[compile]\noutput = "elsewhere"\n')
        assert _compile(tmp_path, "--config", str(other)) == 0
        assert (tmp_path / "sub/elsewhere/pod/k8s/networkpolicy.yaml").exists()
    with subtests.test("--no-strict beats strict = true"):
        (tmp_path / "clawpolicy.toml").write_text('[compile]\nstrict = true\noutput = "s"\n')
        (tmp_path / "pod.claw").write_text(POD.replace('"api"', '"api" expires 2020-01-01'))
        assert _compile(tmp_path) == 1
        assert _compile(tmp_path, "--no-strict") == 0


def test_a_bad_config_fails_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pod.claw").write_text(POD)
    (tmp_path / "clawpolicy.toml").write_text('[k8s]\nflavour = "cilium"\n')
    for command in (["compile", "pod.claw"], ["lint", "pod.claw"]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert "clawpolicy.toml:2:1: error: unknown key 'flavour' in [k8s]" in err
        assert "did you mean 'flavor'?" in err and "^" in err
    assert not (tmp_path / "generated").exists()


def test_the_example_config_reproduces_generated(monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/clawpolicy.toml is what `make check` uses: it must build the committed tree."""
    monkeypatch.chdir(REPO)
    examples = sorted(str(p.relative_to(REPO)) for p in (REPO / "examples").glob("*.claw"))
    assert main(["compile", *examples, "--config", "examples/clawpolicy.toml", "--check"]) == 0
