"""`init --from-openclaw` on the sample configurations of tests/data/openclaw/: the starter
policies are golden files (tests/golden/adopt/<sample>.claw), and each one parses, passes its
own tests and compiles for every target. Regenerate with CLAWPOLICY_REGENERATE=1, then read
the diff.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from regenerate import regenerate

from clawpolicy.adopt import deployment, openclaw_config, starter
from clawpolicy.backends.registry import DEFAULT_TARGETS
from clawpolicy.compiler import compile_paths
from clawpolicy.evaluate import run_tests
from clawpolicy.lower import load_policies

DATA = Path("tests/data/openclaw")
GOLDEN = Path("tests/golden/adopt")
# sample -> (how the file is found, the agent's user or None for the host, resolvers)
SAMPLES = {
    "workstation": ("workstation/openclaw.json", "openclaw", ()),
    "tailnet-server": ("tailnet-server/openclaw.json", None, ("10.20.0.53", "10.20.1.53")),
    "lan-mdns": ("lan-mdns/openclaw.json", "openclaw", ()),
    "legacy": ("$HOME=legacy", None, ()),
    "hostile": ("hostile/openclaw.json", None, ("10.0.0.53",)),
}


def _starter(sample: str) -> str:
    where, user, resolvers = SAMPLES[sample]
    if where.startswith("$HOME="):  # found the way OpenClaw finds it: ~/.clawdbot/clawdbot.json
        path = openclaw_config.locate(None, env={"HOME": str(DATA / where[6:])})
    else:
        path = openclaw_config.locate(DATA / where)
    config = openclaw_config.load(path)
    return starter.render(deployment.read_deployment(config.data), name=f"starter-{sample}",
                          user=user, config_files=config.files, resolvers=resolvers)


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_starter_policy(sample: str, in_repo: Path, tmp_path: Path,
                        subtests: pytest.FixtureRequest) -> None:
    text = _starter(sample)
    golden = GOLDEN / f"{sample}.claw"
    if regenerate():
        golden.write_text(text)
    with subtests.test(msg="golden"):  # type: ignore[attr-defined]
        diff = "\n".join(difflib.unified_diff(golden.read_text().splitlines(), text.splitlines(),
                                              f"{golden} (golden)", "init output", lineterm=""))
        assert not diff, f"starter policy differs; review, then regenerate:\n{diff}"
    with subtests.test(msg="tests pass"):  # type: ignore[attr-defined]
        loaded = load_policies([golden])
        assert loaded.ok, loaded.diagnostics
        results = run_tests(loaded.policies[0])
        assert results and all(r.ok for r in results), [r for r in results if not r.ok]
    with subtests.test(msg="compiles for every target"):  # type: ignore[attr-defined]
        result = compile_paths([golden], DEFAULT_TARGETS)
        assert result.ok, result.diagnostics
        assert {rel.split("/")[1] for rel in result.outputs} >= {"nftables", "docs", "seccomp"}
