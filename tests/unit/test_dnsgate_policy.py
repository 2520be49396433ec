"""The DNS gate's decisions (clawpolicy/dnsgate/policy.py), table-driven: which names reach the
upstream, which addresses go into which set, with which expiry, and `dns resolve` lowering."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawpolicy.backends.nftables import fqdn_groups
from clawpolicy.dnsgate.policy import (
    Element,
    GatePolicy,
    Ledger,
    Record,
    Verdict,
    follow_chain,
    nft_transaction,
    plan_answer,
)
from clawpolicy.evaluate import peer_matches
from clawpolicy.ir import Action, Mode, Policy
from clawpolicy.lower import load_policies

POLICY = """policy gate {
  dns local
  allow egress to api.llm.test port 443/tcp reason "model API" id llm
  allow egress to *.chat.test port 443/tcp reason "chat" id chat
  allow egress to *.cdn.test, static.test port 80/tcp, 443/tcp reason "cdn" id cdn
  deny egress to bad.chat.test, *.tracker.test reason "no trackers" id trackers
  dns resolve probe.test, *.corp.test reason "resolver checks" id checks
}
"""


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    path = tmp_path_factory.mktemp("gate") / "gate.claw"
    path.write_text(POLICY)
    loaded = load_policies([path])
    assert loaded.ok, loaded.diagnostics
    return loaded.policies[0]


def _sets(policy: Policy, rule_id: str) -> set[str]:
    return {g.set_name(f) for g in fqdn_groups(policy) for f in (4, 6)
            if any(r.id == rule_id for r in g.rules)}


DECISIONS = [  # name, verdict, rule ids
    ("api.llm.test", Verdict.ALLOW, ("llm",)),
    ("API.LLM.test.", Verdict.ALLOW, ("llm",)),  # case and the final dot do not matter
    ("x.api.llm.test", Verdict.REFUSE, ()),  # an exact name names nothing below it
    ("llm.test", Verdict.REFUSE, ()),
    ("files.chat.test", Verdict.ALLOW, ("chat",)),
    ("a.b.chat.test", Verdict.ALLOW, ("chat",)),  # one or more labels below
    ("chat.test", Verdict.REFUSE, ()),  # not the wildcard's apex
    ("xchat.test", Verdict.REFUSE, ()),  # a lookalike, not a subdomain
    ("chat.test.evil.test", Verdict.REFUSE, ()),
    ("bad.chat.test", Verdict.DENY, ("chat", "trackers")),  # deny and allow: deny decides
    ("t.tracker.test", Verdict.DENY, ("trackers",)),
    ("tracker.test", Verdict.REFUSE, ()),
    ("static.test", Verdict.ALLOW, ("cdn",)),
    ("img.cdn.test", Verdict.ALLOW, ("cdn",)),
    ("probe.test", Verdict.RESOLVE, ("checks",)),
    ("x.corp.test", Verdict.RESOLVE, ("checks",)),
    ("corp.test", Verdict.REFUSE, ()),
    ("secret-data.attacker.test", Verdict.REFUSE, ()),
    ("", Verdict.REFUSE, ()),  # the root
    # a dot inside a label (presentation format escapes it): x.chat is one label under test
    ("x\\.chat.test", Verdict.REFUSE, ()),
    ("api\\.llm.test", Verdict.REFUSE, ()),
    ("a\\.b.c.chat.test", Verdict.ALLOW, ("chat",)),  # a label "a.b" below c.chat.test
    ("a\\032b.chat.test", Verdict.ALLOW, ("chat",)),  # a space in a label below the wildcard
    ("x\\\\.chat.test", Verdict.ALLOW, ("chat",)),  # an escaped backslash, then a real dot
]


def test_decide(policy: Policy, subtests: pytest.Subtests) -> None:
    gate = GatePolicy(policy)
    for name, verdict, ids in DECISIONS:
        with subtests.test(name=name):
            d = gate.decide(name)
            assert (d.verdict, d.rule_ids) == (verdict, ids)
            want = set().union(*(_sets(policy, i) for i in ids)) if ids else set()
            assert {s for _, s in d.sets} == want  # the backend's own set names, no others
            assert d.verdict.forwards == (verdict is not Verdict.REFUSE)


def test_decide_agrees_with_the_evaluator(policy: Policy, subtests: pytest.Subtests) -> None:
    """An egress rule names a query name exactly when the evaluator's peer matching says so."""
    gate = GatePolicy(policy)
    names = [n for n, _, _ in DECISIONS if n and "\\" not in n] + ["a.api.llm.test", "z.static.test", "cdn.test",
                                                 "q.img.cdn.test", "tracker.test.x"]
    for name in names:
        with subtests.test(name=name):
            expected = sorted(r.id for r in policy.rules if peer_matches(r.peers, name.lower().rstrip(".")))
            got = [i for i in gate.decide(name).rule_ids if i != "checks"]
            assert got == expected


def test_shadow_forwards_unlisted_names(policy: Policy) -> None:
    gate = GatePolicy(policy, Mode.SHADOW)
    d = gate.decide("exfil.attacker.test")
    assert d.verdict is Verdict.WOULD_REFUSE and d.verdict.forwards and d.sets == ()
    assert gate.decide("api.llm.test").verdict is Verdict.ALLOW


def A(name: str, addr: str, ttl: int = 60) -> Record:  # noqa: N802 - reads like the record type
    return Record(name, "AAAA" if ":" in addr else "A", ttl, addr)


def CNAME(name: str, target: str, ttl: int = 60) -> Record:  # noqa: N802
    return Record(name, "CNAME", ttl, target)


CHAINS = [  # query, records, chain
    ("a.test", [A("a.test", "192.0.2.1")], ("a.test",)),
    ("a.test", [CNAME("a.test", "b.test"), CNAME("b.test", "c.test"), A("c.test", "192.0.2.1")],
     ("a.test", "b.test", "c.test")),
    ("a.test", [CNAME("b.test", "a.test"), CNAME("a.test", "b.test")], ()),  # a loop
    ("a.test", [CNAME(f"n{i}.test" if i else "a.test", f"n{i + 1}.test") for i in range(20)], ()),
]


def test_follow_chain(subtests: pytest.Subtests) -> None:
    for qname, records, chain in CHAINS:
        with subtests.test(qname=qname, n=len(records)):
            assert follow_chain(qname, records) == chain


def test_plan_answer(policy: Policy, subtests: pytest.Subtests) -> None:
    gate = GatePolicy(policy)
    llm, chat, cdn, trackers = (_sets(policy, i) for i in ("llm", "chat", "cdn", "trackers"))
    cases = [  # query, records, {(set, address): expires}, addresses
        ("api.llm.test", [A("api.llm.test", "192.0.2.1", 30), A("api.llm.test", "2001:db8::1", 30)],
         {(s, a): 100 for s in llm for a in ("192.0.2.1", "2001:db8::1")
          if ("fqdn6" in s) == (":" in a)}, ("192.0.2.1", "2001:db8::1")),
        # TTL above the cap: capped; between floor and cap: kept
        ("files.chat.test", [A("files.chat.test", "192.0.2.2", 100_000)],
         {(s, "192.0.2.2"): 300 for s in chat if "fqdn4" in s}, ("192.0.2.2",)),
        ("files.chat.test", [A("files.chat.test", "192.0.2.2", 200)],
         {(s, "192.0.2.2"): 200 for s in chat if "fqdn4" in s}, ("192.0.2.2",)),
        # a CNAME to an unlisted name: the queried name's sets get the target's address
        ("api.llm.test", [CNAME("api.llm.test", "edge.cdnprovider.test"),
                          A("edge.cdnprovider.test", "192.0.2.3")],
         {(s, "192.0.2.3"): 100 for s in llm if "fqdn4" in s}, ("192.0.2.3",)),
        # a record outside the chain is ignored
        ("api.llm.test", [A("api.llm.test", "192.0.2.4"), A("other.test", "192.0.2.5")],
         {(s, "192.0.2.4"): 100 for s in llm if "fqdn4" in s}, ("192.0.2.4",)),
        # a CNAME through a denied name: the deny sets get the address too
        ("static.test", [CNAME("static.test", "x.tracker.test"), A("x.tracker.test", "192.0.2.6")],
         {(s, "192.0.2.6"): 100 for s in cdn | trackers if "fqdn4" in s}, ("192.0.2.6",)),
        # dns resolve: forwarded, no set
        ("probe.test", [A("probe.test", "192.0.2.7")], {}, ("192.0.2.7",)),
        # a CNAME loop admits nothing
        ("api.llm.test", [CNAME("api.llm.test", "b.test"), CNAME("b.test", "api.llm.test"),
                          A("b.test", "192.0.2.8")], {}, ()),
    ]
    for qname, records, want, addresses in cases:
        with subtests.test(qname=qname, records=len(records)):
            plan = plan_answer(gate, gate.decide(qname), records, cap=300, floor=100)
            assert {(e.set_name, e.address): e.expires for e in plan.elements} == want
            assert all(e.timeout == 300 for e in plan.elements)  # what connections restart
            assert plan.addresses == addresses and plan.ttl_cap == 300


def test_floor_never_exceeds_cap(policy: Policy) -> None:
    gate = GatePolicy(policy)
    plan = plan_answer(gate, gate.decide("api.llm.test"), [A("api.llm.test", "192.0.2.1", 5)],
                       cap=20, floor=3600)
    assert {e.expires for e in plan.elements} == {20} and plan.ttl_cap == 20


def test_ledger_never_shortens_a_promise() -> None:
    ledger = Ledger()
    first = (Element("s4", 4, "192.0.2.1", 300, 600),)
    ledger.commit(ledger.extend(first, now=1000.0), now=1000.0)
    # 100 s later an answer with TTL 10: the element must still last until 1300 (200 s more)
    later = ledger.extend((Element("s4", 4, "192.0.2.1", 10, 600),), now=1100.0)
    assert later[0].expires == 200
    # much later the earlier promise has passed: the new TTL decides
    assert ledger.extend((Element("s4", 4, "192.0.2.1", 10, 600),), now=2000.0)[0].expires == 10
    ledger.prune(2000.0)
    assert len(ledger) == 0


def test_nft_transaction_refreshes_with_expires(policy: Policy) -> None:
    text = nft_transaction("clawpolicy_gate", [Element("s4", 4, "192.0.2.1", 30, 600),
                                               Element("s4", 4, "192.0.2.2", 40, 600),
                                               Element("s6", 6, "2001:db8::1", 30, 600)])
    assert text == ("add element inet clawpolicy_gate s4 { 192.0.2.1 timeout 600s expires 30s, "
                    "192.0.2.2 timeout 600s expires 40s }\n"
                    "add element inet clawpolicy_gate s6 { 2001:db8::1 timeout 600s expires 30s }\n")
    assert nft_transaction("t", []) == ""


def test_dns_resolve_lowering(tmp_path: Path, subtests: pytest.Subtests) -> None:
    cases = [  # statement, error substring or None, (names, wildcards)
        ('dns resolve a.test, *.b.test reason "x"', None, (("a.test",), ("b.test",))),
        ('dns resolve A.Test reason "x" id named', None, (("a.test",), ())),
        ('dns resolve 192.0.2.1 reason "x"', "takes domain names", None),
        ("dns resolve a.test", "has no reason", None),
        ('dns resolve *.x* reason "x"', "invalid wildcard", None),
    ]
    for statement, error, want in cases:
        with subtests.test(statement=statement):
            path = tmp_path / "p.claw"
            path.write_text(f"policy p {{\n  {statement}\n}}\n")
            loaded = load_policies([path])
            if error:
                assert not loaded.ok and any(error in d.message for d in loaded.diagnostics)
                continue
            (rule,) = loaded.policies[0].resolve
            assert (rule.names, rule.wildcards) == want and rule.action is Action.ALLOW
            assert loaded.policies[0].rule(rule.id) is rule


def test_dns_local_still_parses(tmp_path: Path) -> None:
    path = tmp_path / "p.claw"
    path.write_text('policy p {\n  dns local\n  allow egress to a.test reason "x"\n}\n')
    loaded = load_policies([path])
    assert loaded.ok and loaded.policies[0].local_dns is not None
