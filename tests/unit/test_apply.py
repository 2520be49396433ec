"""apply/status without a kernel: the stamp, listings compared without handles, sessions from
SSH_CONNECTION and /proc/net/tcp, which sessions a policy cuts, the confirmation files, the
counters status reads. The kernel side is tests/kernel/test_apply_kernel.py."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from clawpolicy.cli import main
from clawpolicy.errors import render
from clawpolicy.ir import Mode, Policy
from clawpolicy.lower import load_policies
from clawpolicy.operate.apply import (
    STAMP_CHAIN,
    Nft,
    State,
    comparable,
    cut_sessions,
    read_stamp,
    sessions,
    source_hash,
    stamped,
)
from clawpolicy.operate.status import render_prometheus, render_text, table_status

TCP = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
       "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11 1\n"
       "   1: 010200C0:0016 320200C0:82CC 01 00000000:00000000 00:00000000 00000000     0        0 12 1\n"
       "   2: 010200C0:0016 330200C0:82CD 05 00000000:00000000 00:00000000 00000000     0        0 0 1\n"
       "   3: 010200C0:01BB 340200C0:82CE 01 00000000:00000000 00:00000000 00000000     0        0 13 1\n"
       "   4: 010200C0:08AE 350200C0:82CF 01 00000000:00000000 00:00000000 00000000     0        0 14 1\n")


class FakeNft(Nft):
    def proc_net(self, name: str) -> str:
        return TCP if name == "tcp" else TCP.splitlines(keepends=True)[0]


def load(tmp_path: Path, body: str, header: str = "applies-to host") -> Policy:
    path = tmp_path / "p.claw"
    path.write_text(f"policy p {{\n  {header}\n{body}\n}}\n", encoding="utf-8")
    result = load_policies([path], today=dt.date(2026, 11, 1))
    assert result.ok, render(result.diagnostics, result.sources)
    return result.policies[0]


def test_sessions(subtests: pytest.Subtests) -> None:
    cases = [  # (environment, extra ports, (client, port, where) found)
        ({}, (22,), [("192.0.2.50", 22, "/proc/net/tcp")]),  # ESTAB only: not the FIN-WAIT row
        ({}, (22, 2222), [("192.0.2.50", 22, "/proc/net/tcp"), ("192.0.2.53", 2222, "/proc/net/tcp")]),
        ({"SSH_CONNECTION": "203.0.113.7 50022 192.0.2.1 443"}, (22,),
         [("192.0.2.50", 22, "/proc/net/tcp"), ("192.0.2.52", 443, "/proc/net/tcp"),
          ("203.0.113.7", 443, "SSH_CONNECTION")]),
        ({"SSH_CONNECTION": "garbage"}, (22,), [("192.0.2.50", 22, "/proc/net/tcp")]),
    ]
    for env, ports, expected in cases:
        with subtests.test(env=env, ports=ports):
            found = sessions(FakeNft(), env, ports)
            assert [(s.client, s.server_port, s.how) for s in found] == expected


def test_cut_sessions(tmp_path: Path) -> None:
    found = sessions(FakeNft(), {"SSH_CONNECTION": "203.0.113.7 50022 192.0.2.1 22"}, (22,))
    policy = load(tmp_path, '  allow ingress from 192.0.2.0/24 port 22/tcp reason "lab" id lab\n'
                            '  deny ingress from 192.0.2.50 reason "banned" id banned')
    cut = {(s.client, v.rule_id) for s, v in cut_sessions(policy, found)}
    assert cut == {("192.0.2.50", "banned"), ("203.0.113.7", None)}
    assert cut_sessions(policy.with_mode(Mode.SHADOW), found) == []
    user = load(tmp_path, '  allow egress to 192.0.2.9 reason "x"', "applies-to user openclaw")
    assert cut_sessions(user, found) == []


def test_stamp_round_trip() -> None:
    text = stamped("table inet clawpolicy_p {\n}\n", "clawpolicy_p", "policy=p mode=enforce sha256=ab12")
    assert f"chain {STAMP_CHAIN}" in text and 'counter comment "policy=p mode=enforce sha256=ab12"' in text
    doc = {"nftables": [{"metainfo": {"version": "1"}},
                        {"rule": {"chain": STAMP_CHAIN, "handle": 4, "comment": "policy=p mode=enforce sha256=ab12",
                                  "expr": [{"counter": {"packets": 0, "bytes": 0}}]}}]}
    assert read_stamp(doc) == "policy=p mode=enforce sha256=ab12"
    assert read_stamp({"nftables": [{"rule": {"chain": "rule_x", "comment": "policy=p mode=enforce sha256=ab"}}]}) is None
    assert comparable(doc) == [{"rule": {"chain": STAMP_CHAIN, "comment": "policy=p mode=enforce sha256=ab12",
                                         "expr": [{"counter": {"packets": 0, "bytes": 0}}]}}]


def test_source_hash_is_order_free_and_unambiguous() -> None:
    assert source_hash({"a": "x", "b": "y"}) == source_hash({"b": "y", "a": "x"})
    assert source_hash({"a": "xb"}) != source_hash({"a": "x", "b": ""})


def test_status_counts_rule_and_default_chains() -> None:
    doc = {"nftables": [
        {"chain": {"name": "rule_a"}}, {"chain": {"name": "egress_default"}}, {"chain": {"name": "output"}},
        {"chain": {"name": "rule_b"}},
        {"rule": {"chain": "rule_a", "expr": [{"counter": {"packets": 3, "bytes": 180}}]}},
        {"rule": {"chain": "rule_a", "expr": [{"reject": None}]}},
        {"rule": {"chain": "egress_default", "expr": [{"counter": {"packets": 1, "bytes": 60}}]}},
        {"rule": {"chain": "output", "expr": [{"counter": {"packets": 99, "bytes": 1}}]}},
        {"rule": {"chain": STAMP_CHAIN, "comment": "policy=p mode=shadow sha256=0123456789abcdef",
                  "expr": [{"counter": {"packets": 0, "bytes": 0}}]}}]}
    status = table_status("clawpolicy_p", doc)
    assert (status.policy, status.mode, status.sha256) == ("p", "shadow", "0123456789abcdef")
    assert [(c.chain, c.packets, c.bytes) for c in status.counters] == [
        ("egress_default", 1, 60), ("rule_a", 3, 180), ("rule_b", 0, 0)]
    assert "policy p, shadow mode" in render_text([status])
    assert "not loaded by clawpolicy apply" in render_text([table_status("clawpolicy_q", {"nftables": []})])


def test_state_confirm(tmp_path: Path) -> None:
    lines: list[str] = []
    state = State(tmp_path / "s", echo=lines.append)
    nonce = state.begin("clawpolicy_p", 0.0)
    assert not state.confirmed("clawpolicy_p", nonce)
    assert state.confirm("clawpolicy_q") == [] and state.confirm() == ["clawpolicy_p"]
    assert state.confirmed("clawpolicy_p", nonce) and not state.confirmed("clawpolicy_p", "other")
    state.end("clawpolicy_p")
    assert state.confirm() == []
    (tmp_path / "s" / "clawpolicy_z.pending").write_text('{"nonce": "n", "pid": 999999999}')
    assert state.confirm() == []  # a dead apply is not confirmed
    state.log("hello")
    assert lines[-1].endswith(" hello") and "hello" in (tmp_path / "s" / "log").read_text()


def test_cli_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apply"]) == 2
    assert main(["apply", "--confirm", "--state-dir", str(tmp_path)]) == 1
    assert main(["apply", "x.claw", "--confirm-within", "-1"]) == 2
    if os.geteuid() != 0:
        assert main(["apply", str(tmp_path / "p.claw")]) == 1


def test_prometheus_format_parses() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    doc = {"nftables": [
        {"chain": {"name": "rule_a"}}, {"chain": {"name": "egress_default"}}, {"chain": {"name": "rule_ok"}},
        {"rule": {"chain": "rule_a", "expr": [{"log": {"prefix": "clawpolicy:p:would-deny:a "}}]}},
        {"rule": {"chain": "rule_a", "expr": [{"counter": {"packets": 3, "bytes": 180}}, {"accept": None}]}},
        {"rule": {"chain": "egress_default", "expr": [{"counter": {"packets": 1, "bytes": 60}}, {"drop": None}]}},
        {"rule": {"chain": "rule_ok", "expr": [{"counter": {"packets": 7, "bytes": 70}}, {"accept": None}]}},
        {"rule": {"chain": STAMP_CHAIN, "comment": "policy=p mode=shadow sha256=0123456789abcdef",
                  "expr": [{"counter": {"packets": 0, "bytes": 0}}]}}]}
    tables = [table_status("clawpolicy_p", doc), table_status('odd"\\\nname', {"nftables": []})]
    families = {f.name: f for f in text_string_to_metric_families(render_prometheus(tables))}
    assert set(families) == {"clawpolicy_policy_info", "clawpolicy_rule_packets", "clawpolicy_rule_bytes"}
    packets = {(s.labels["rule"], s.labels["kind"]): s.value for s in families["clawpolicy_rule_packets"].samples}
    assert packets == {("a", "would-deny"): 3, ("default-egress", "deny"): 1, ("ok", "allow"): 7}
    info = {s.labels["table"]: s.labels for s in families["clawpolicy_policy_info"].samples}
    assert info["clawpolicy_p"]["sha256"] == "0123456789abcdef" and 'odd"\\\nname' in info
    assert render_prometheus([]).count("# TYPE") == 3


def test_example_alert_rules_use_the_metrics_status_writes() -> None:
    import yaml

    repo = Path(__file__).resolve().parents[2]
    doc = yaml.safe_load((repo / "examples/prometheus/clawpolicy-alerts.yml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert len({r["alert"] for r in rules}) == len(rules) >= 4
    written = {"clawpolicy_rule_packets_total", "clawpolicy_rule_bytes_total", "clawpolicy_policy_info"}
    import re

    for rule in rules:
        used = set(re.findall(r"clawpolicy_[a-z_]+", rule["expr"]))
        assert used and used <= written, rule["alert"]
        assert set(re.findall(r'kind="([a-z-]+)"', rule["expr"])) <= {"deny", "would-deny", "allow"}
