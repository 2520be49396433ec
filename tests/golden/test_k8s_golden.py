"""Golden files of the k8s target: every example in every flavour and both modes, under
tests/golden/expected-k8s/<flavour>-<mode>/<policy>/k8s/ (generated/ holds the default,
vanilla in the policy's own mode). Host and user examples are compiled for the pods
app=openclaw in namespace openclaw (`--k8s-selector`). Regenerate with CLAWPOLICY_REGENERATE=1,
then read the diff."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
from regenerate import regenerate
from test_golden import _compare

from clawpolicy.backends.base import CompileOptions
from clawpolicy.compiler import compile_paths
from clawpolicy.ir import Mode
from clawpolicy.write import apply, plan

FLAVOURS = ("vanilla", "cilium", "calico")


@pytest.mark.parametrize(("flavour", "mode"), list(itertools.product(FLAVOURS, Mode)),
                         ids=lambda v: getattr(v, "value", v))
def test_k8s_flavours(flavour: str, mode: Mode, in_repo: Path, subtests: pytest.FixtureRequest) -> None:
    own = CompileOptions(k8s_flavor=flavour)  # type: ignore[arg-type]
    given = dataclasses.replace(own, k8s_selector=(("app", "openclaw"),), k8s_namespace="openclaw")
    examples = sorted(Path("examples").glob("*.claw"))
    pods = [p for p in examples if "applies-to pods" in p.read_text(encoding="utf-8")]
    outputs: dict[str, bytes] = {}
    owned: set[str] = set()
    names: list[str] = []
    for paths, options in ((pods, own), ([p for p in examples if p not in pods], given)):
        result = compile_paths(paths, ["k8s"], mode=mode, options=options, explicit=True)
        assert result.ok, result.diagnostics
        outputs.update(result.outputs)
        names += [p.name for p in result.policies]
        owned |= result.owned_dirs
    expected = in_repo / "tests/golden/expected-k8s" / f"{flavour}-{mode.value}"
    if regenerate():
        apply(expected, outputs, plan(expected, outputs, owned))
    _compare(outputs, expected, subtests, names)
