"""The review commands' fast paths against the evaluator, on the generated scale policy of
benchmarks/review_shapes.py (1,000 networks here; the benchmark runs 100,000): simulate's rule
index and diff's reach must decide every flow as `evaluate` does. No timing is asserted."""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

import pytest

from clawpolicy.evaluate import Flow, evaluate
from clawpolicy.ir import Action, Direction, Protocol
from clawpolicy.lower import load_policies
from clawpolicy.operate.ruleindex import RuleIndex
from clawpolicy.review.diff import diff_policies
from clawpolicy.review.reach import reach_changes
from clawpolicy.review.render import to_markdown

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from review_shapes import CHANGES, write  # noqa: E402


@pytest.fixture(scope="module")
def shape(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write(tmp_path_factory.mktemp("scale"), 1_000, 1_500)


def _flows(path: Path) -> list[Flow]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        peer = doc.get("dst") or doc.get("src") or doc.get("name")
        direction = Direction(doc.get("direction", "egress"))
        out.append(Flow(direction, peer, Protocol(doc.get("proto", "tcp")), doc.get("port")))
        if doc.get("name") and doc.get("dst"):
            out.append(Flow(direction, doc["name"], Protocol(doc.get("proto", "tcp")), doc.get("port")))
    return out


def _policy(path: Path):  # type: ignore[no-untyped-def]
    loaded = load_policies([path])
    assert loaded.ok, loaded.diagnostics
    return loaded.policies[0]


def test_rule_index_decides_every_flow_as_the_evaluator(shape: dict[str, Path]) -> None:
    for role in ("old", "widen-all", "ports"):
        policy = _policy(shape[role])
        index = RuleIndex(policy)
        for flow in _flows(shape["flows"]):
            assert index.evaluate(flow) == evaluate(policy, flow), (role, flow)


def test_reach_changes_are_where_the_evaluator_changes_its_mind(shape: dict[str, Path],
                                                                subtests: pytest.Subtests) -> None:
    old = _policy(shape["old"])
    flows = [f for f in _flows(shape["flows"]) if f.port is not None]
    for change in CHANGES:
        with subtests.test(msg=change):
            new = _policy(shape[change])
            changes = reach_changes(old, new)
            for flow in flows:
                try:
                    address = ipaddress.ip_address(flow.peer)
                except ValueError:
                    continue
                assert flow.port is not None
                moved = ((evaluate(old, flow).action is Action.ALLOW)
                         != (evaluate(new, flow).action is Action.ALLOW))
                covered = any(c.direction is flow.direction and c.family == address.version
                              and c.covers_address(flow.peer) and c.covers_port(flow.protocol, flow.port)
                              for c in changes)
                assert covered == moved, (change, flow)


def test_markdown_within_a_comment_for_every_change(shape: dict[str, Path], subtests: pytest.Subtests) -> None:
    old = _policy(shape["old"])
    for change in CHANGES:
        with subtests.test(msg=change):
            found = diff_policies(old, _policy(shape[change]))
            assert found and len(to_markdown(found, [], "old", "new")) <= 60_000
            assert all(len(c.summary) < 600 for c in found)
