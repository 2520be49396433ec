"""Reject instead of drop: the grammar's trailing `reject`/`drop`, its checks while lowering,
the IR and evaluator carrying the refusal, the nftables statements and the docs' wording.
The kernel side (what a sender sees) is tests/kernel/test_reject_kernel.py."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from clawpolicy.backends.base import CompileOptions
from clawpolicy.backends.docs import render as render_docs
from clawpolicy.backends.nftables import fqdn_groups, render
from clawpolicy.cli import main
from clawpolicy.errors import render as render_diagnostics
from clawpolicy.evaluate import Flow, evaluate
from clawpolicy.ir import Direction, Mode, Policy, Protocol, Refusal
from clawpolicy.lower import load_policies

TODAY = dt.date(2026, 11, 1)
E, I = Direction.EGRESS, Direction.INGRESS
RESET = "counter meta l4proto tcp reject with tcp reset"
ICMPX = "reject with icmpx admin-prohibited"


def _load(tmp_path: Path, body: str) -> tuple[Policy | None, str]:
    path = tmp_path / "p.claw"
    path.write_text(f"policy p {{\n  applies-to host\n{body}\n}}\n", encoding="utf-8")
    result = load_policies([path], today=TODAY)
    text = render_diagnostics(result.diagnostics, result.sources)
    return (result.policies[0] if result.ok else None), text


def load(tmp_path: Path, body: str) -> Policy:
    policy, text = _load(tmp_path, body)
    assert policy is not None, text
    return policy


# (rule as written, the refusal the IR keeps)
WRITTEN = [
    ('deny egress to 10.0.0.0/8 reason "r" reject', Refusal.REJECT),
    ('deny egress to 10.0.0.0/8 reason "r" drop', Refusal.DROP),
    ('deny egress to 10.0.0.0/8 reason "r"', None),
    ('deny egress to 10.0.0.0/8 port 443/tcp, 53/udp reason "r" owner "o" ticket T-9 expires 2027-01-01 id x reject',
     Refusal.REJECT),
    ('deny ingress from 2001:db8::/32 port 22/tcp reason "r" ticket "SEC 1" reject', Refusal.REJECT),
    ('deny egress to openai reason "r" reject', Refusal.REJECT),  # a catalog group: split rules
]


def test_refusal_as_written(tmp_path: Path, subtests: pytest.SubTests) -> None:
    for rule, refusal in WRITTEN:
        with subtests.test(rule=rule):
            policy = load(tmp_path, rule)
            assert policy.rules and {r.refusal for r in policy.rules} == {refusal}


def test_the_word_does_not_change_the_rule_id(tmp_path: Path) -> None:
    plain = load(tmp_path, 'deny egress to 10.9.0.0/16 port 22/tcp reason "r"')
    rejecting = load(tmp_path, 'deny egress to 10.9.0.0/16 port 22/tcp reason "r" reject')
    assert plain.rules[0].id == rejecting.rules[0].id


# (rule, a fragment of the error)
REFUSED = [
    ('allow egress to 10.0.0.0/8 reason "r" reject', "an allow rule refuses nothing"),
    ('allow ingress from 10.0.0.0/8 port 22/tcp reason "r" drop', "an allow rule refuses nothing"),
    ('deny egress to 10.0.0.0/8 reject reason "r"', "error"),  # the word comes last
    ('deny egress to 10.0.0.0/8 reason "r" reject drop', "error"),
    ('deny egress to 10.0.0.0/8 reason "r" refuse', "error"),
]


def test_misplaced_words_are_errors(tmp_path: Path, subtests: pytest.SubTests) -> None:
    for rule, fragment in REFUSED:
        with subtests.test(rule=rule):
            policy, text = _load(tmp_path, rule)
            assert policy is None
            assert fragment in text and ":3:" in text


def test_evaluator_carries_the_refusal(tmp_path: Path) -> None:
    policy = load(tmp_path, '\n'.join([
        '  deny egress to 10.1.0.0/16 port 443/tcp reason "r" id a reject',
        '  deny egress to 10.2.0.0/16 reason "r" id b drop',
        '  deny egress to 10.3.0.0/16 reason "r" id c',
        '  deny ingress from 10.4.0.0/16 reason "r" id d reject',
        '  allow egress to 10.0.0.0/8 reason "r" id e']))
    cases = [  # (policy-wide egress refusal, flow, rule, refusal)
        (None, Flow(E, "10.1.2.3", Protocol.TCP, 443), "a", Refusal.REJECT),
        (None, Flow(E, "10.3.2.3", Protocol.UDP, 53), "c", Refusal.DROP),
        (Refusal.REJECT, Flow(E, "10.3.2.3", Protocol.UDP, 53), "c", Refusal.REJECT),
        (Refusal.REJECT, Flow(E, "10.2.0.1", Protocol.TCP, 80), "b", Refusal.DROP),
        (Refusal.REJECT, Flow(E, "192.0.2.1", Protocol.TCP, 80), None, Refusal.REJECT),
        (Refusal.REJECT, Flow(I, "192.0.2.1", Protocol.TCP, 22), None, Refusal.DROP),
        (None, Flow(I, "10.4.0.9", Protocol.TCP, 22), "d", Refusal.REJECT),
        (Refusal.REJECT, Flow(E, "10.5.0.1", Protocol.TCP, 80), "e", None),
    ]
    for egress, flow, rule_id, refusal in cases:
        verdict = evaluate(policy.with_refusal(egress=egress), flow)
        assert (verdict.rule_id, verdict.refusal) == (rule_id, refusal), flow
    shown = str(evaluate(policy, Flow(E, "10.1.2.3", Protocol.TCP, 443)))
    assert shown == "deny (rule a, reject)"
    assert str(evaluate(policy.with_mode(Mode.SHADOW), Flow(E, "10.1.2.3", Protocol.TCP, 443))) == \
        "would-deny (rule a)"


def _chain(text: str, name: str) -> list[str]:
    body = text.split(f"\tchain {name} {{\n", 1)[1].split("\t}\n", 1)[0]
    return [line.strip() for line in body.splitlines()]


def test_nftables_statements(tmp_path: Path) -> None:
    policy = load(tmp_path, '\n'.join([
        '  deny egress to 10.1.0.0/16 reason "r" id a reject',
        '  deny egress to 10.2.0.0/16 reason "r" id b',
        '  deny ingress from 10.4.0.0/16 reason "r" id d reject',
        '  deny ingress from 10.5.0.0/16 reason "r" id f']))
    text = render(policy, CompileOptions())
    assert _chain(text, "rule_a")[-2:] == [RESET, ICMPX]
    assert _chain(text, "rule_d")[-2:] == [RESET, ICMPX]
    assert _chain(text, "rule_b")[-1] == "counter drop"
    assert _chain(text, "egress_default")[-1] == "counter drop"
    wide = render(policy.with_refusal(egress=Refusal.REJECT), CompileOptions())
    assert _chain(wide, "rule_b")[-2:] == [RESET, ICMPX]
    assert _chain(wide, "egress_default")[-2:] == [RESET, ICMPX]
    assert _chain(wide, "ingress_default")[-1] == "counter drop"  # ingress keeps drop
    assert _chain(wide, "rule_f")[-1] == "counter drop"
    both = render(policy.with_refusal(Refusal.REJECT, Refusal.REJECT), CompileOptions())
    assert _chain(both, "ingress_default")[-2:] == [RESET, ICMPX]
    shadow = render(policy.with_refusal(Refusal.REJECT, Refusal.REJECT).with_mode(Mode.SHADOW),
                    CompileOptions())
    assert " reject with " not in shadow and _chain(shadow, "rule_a")[-1] == "counter accept"


def test_local_dns_follows_the_policy(tmp_path: Path) -> None:
    policy = load(tmp_path, '  dns local\n  allow egress to api.example.com port 443/tcp reason "r"')
    assert _chain(render(policy, CompileOptions()), "rule_local-dns-only")[-1] == "counter drop"
    wide = render(policy.with_refusal(egress=Refusal.REJECT), CompileOptions())
    assert _chain(wide, "rule_local-dns-only")[-2:] == [RESET, ICMPX]


def test_fqdn_denies_of_each_refusal_never_share_a_set(tmp_path: Path) -> None:
    policy = load(tmp_path, '\n'.join([
        '  deny egress to bad.example, *.worse.example reason "r" id a reject',
        '  deny egress to bad.example reason "r" id b',
        '  deny egress to other.example reason "r" id c reject']))
    groups = fqdn_groups(policy)
    by_rule = {g.rule.id: g for g in groups}  # one set per rule: each refuses its own way
    assert {k: g.refusal for k, g in by_rule.items()} == {
        "a": Refusal.REJECT, "b": Refusal.DROP, "c": Refusal.REJECT}
    names = {g.set_name(4) for g in groups}
    assert len(names) == 3 and "_fqdnr4_a_" in by_rule["a"].set_name(4)
    text = render(policy, CompileOptions())
    for rule_id in ("a", "c"):
        assert _chain(text, f"rule_{rule_id}")[-2:] == [RESET, ICMPX]
    assert _chain(text, "rule_b")[-1] == "counter drop"


def test_docs_say_which_denies_reject(tmp_path: Path) -> None:
    policy = load(tmp_path, '  deny egress to 10.1.0.0/16 reason "r" id a reject\n'
                            '  deny egress to 10.2.0.0/16 reason "r" id b')
    text = render_docs(policy, CompileOptions())
    assert "| a | egress, reject |" in text and "| b | egress |" in text
    assert "except where it is rejected: rules a." in text and "scanner" in text
    plain = render_docs(load(tmp_path, '  deny egress to 10.2.0.0/16 reason "r" id b'), CompileOptions())
    assert "reject" not in plain


def test_cli_deny_action(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "p.claw"
    src.write_text('policy p {\n  applies-to host\n  deny egress to 10.2.0.0/16 reason "r" id b\n'
                   '  deny ingress from 10.3.0.0/16 reason "r" id c\n}\n')
    out = tmp_path / "out"
    assert main(["compile", str(src), "-t", "nftables", "-o", str(out), "--deny-action", "reject"]) == 0
    text = (out / "p" / "nftables" / "ruleset.nft").read_text()
    assert _chain(text, "rule_b")[-2:] == [RESET, ICMPX] and _chain(text, "rule_c")[-1] == "counter drop"
    assert main(["compile", str(src), "-t", "nftables", "-o", str(out), "--ingress-deny-action",
                 "reject"]) == 0
    text = (out / "p" / "nftables" / "ruleset.nft").read_text()
    assert _chain(text, "rule_b")[-1] == "counter drop" and _chain(text, "rule_c")[-2:] == [RESET, ICMPX]
    capsys.readouterr()
    assert main(["ir", str(src)]) == 0
    ir = json.loads(capsys.readouterr().out)
    assert ir["egress_refusal"] == "drop" and ir["rules"][0]["refusal"] is None
    assert main(["compile", str(src), "--deny-action", "tarpit"]) == 2


def test_diff_sees_refusal_changes(tmp_path: Path) -> None:
    from clawpolicy.review.diff import Risk, diff_policies

    old = load(tmp_path, '  deny egress to 10.1.0.0/16 reason "r" id a\n'
                         '  deny ingress from 10.2.0.0/16 reason "r" id b reject\n'
                         '  deny ingress from 10.3.0.0/16 reason "r" id c')
    new = load(tmp_path, '  deny egress to 10.1.0.0/16 reason "r" id a reject\n'
                         '  deny ingress from 10.2.0.0/16 reason "r" id b\n'
                         '  deny ingress from 10.3.0.0/16 reason "r" id c reject')
    found = {c.summary: c.risk for c in diff_policies(old, new) if c.category == "mode"}
    assert found == {"rule a: drop → reject": Risk.LOW, "rule b: reject → drop": Risk.LOW,
                     "rule c: drop → reject": Risk.MEDIUM}
    wide = {c.summary for c in diff_policies(old, old.with_refusal(egress=Refusal.REJECT))}
    assert wide == {"the default egress deny: drop → reject", "rule a: drop → reject"}
    assert diff_policies(old, old) == []
