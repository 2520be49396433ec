"""The evaluator, the reference semantics of DESIGN.md: default deny, deny overrides allow,
loopback and out-of-scope traffic pass, names and wildcards, ports, shadow mode."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from clawpolicy.errors import render
from clawpolicy.evaluate import Flow, evaluate, peer_matches, run_tests
from clawpolicy.ir import Action, Direction, Mode, Peers, Policy, Protocol, Scope

REPO = Path(__file__).resolve().parents[2]
TODAY = dt.date(2026, 11, 1)
E, I = Direction.EGRESS, Direction.INGRESS
TCP, UDP, ICMP = Protocol.TCP, Protocol.UDP, Protocol.ICMP
ALLOW, DENY = Action.ALLOW, Action.DENY


def load(tmp_path: Path, body: str, header: str = "applies-to host") -> Policy:
    from clawpolicy.lower import load_policies

    path = tmp_path / "p.claw"
    path.write_text(f"policy p {{\n  {header}\n{body}\n}}\n", encoding="utf-8")
    result = load_policies([path], today=TODAY)
    assert result.ok, render(result.diagnostics, result.sources)
    return result.policies[0]


HOST_POLICY = """
  allow egress to 10.0.0.0/8 port 443/tcp reason "internal https"
  deny egress to 10.1.0.0/16 reason "except this"
  allow egress to 192.0.2.0/24 port 8000-8100/tcp, any/udp, icmp reason "lab"
  allow egress to api.example.com, *.slack.com port 443/tcp reason "names"
  allow egress to 2001:db8::/32 port 443/tcp reason "v6"
  allow ingress from 100.64.0.0/10 port 22/tcp reason "ssh"
  deny egress to *.bad.slack.com reason "a denied subtree"
"""


def test_host_policy(tmp_path: Path, subtests: pytest.Subtests) -> None:
    policy = load(tmp_path, HOST_POLICY)
    cases: list[tuple[str, Flow, Action, str]] = [
        ("default deny egress", Flow(E, "203.0.113.9", TCP, 443), DENY, "default"),
        ("default deny ingress", Flow(I, "203.0.113.9", TCP, 22), DENY, "default"),
        ("allowed cidr", Flow(E, "10.2.3.4", TCP, 443), ALLOW, "rule"),
        ("wrong port", Flow(E, "10.2.3.4", TCP, 80), DENY, "default"),
        ("wrong protocol", Flow(E, "10.2.3.4", UDP, 443), DENY, "default"),
        ("deny overrides allow", Flow(E, "10.1.2.3", TCP, 443), DENY, "rule"),
        ("loopback v4", Flow(E, "127.0.0.53", UDP, 53), ALLOW, "loopback"),
        ("loopback v6", Flow(E, "::1", TCP, 1), ALLOW, "loopback"),
        ("loopback ingress", Flow(I, "127.0.0.1", TCP, 9999), ALLOW, "loopback"),
        ("range low end", Flow(E, "192.0.2.7", TCP, 8000), ALLOW, "rule"),
        ("range high end", Flow(E, "192.0.2.7", TCP, 8100), ALLOW, "rule"),
        ("past the range", Flow(E, "192.0.2.7", TCP, 8101), DENY, "default"),
        ("any/udp", Flow(E, "192.0.2.7", UDP, 5), ALLOW, "rule"),
        ("icmp", Flow(E, "192.0.2.7", ICMP), ALLOW, "rule"),
        ("icmp elsewhere", Flow(E, "10.2.3.4", ICMP), DENY, "default"),
        ("exact name", Flow(E, "api.example.com", TCP, 443), ALLOW, "rule"),
        ("name is case-insensitive", Flow(E, "API.Example.COM.", TCP, 443), ALLOW, "rule"),
        ("a subdomain of an exact name", Flow(E, "x.api.example.com", TCP, 443), DENY, "default"),
        ("wildcard one label", Flow(E, "a.slack.com", TCP, 443), ALLOW, "rule"),
        ("wildcard two labels", Flow(E, "a.b.slack.com", TCP, 443), ALLOW, "rule"),
        ("wildcard not the apex", Flow(E, "slack.com", TCP, 443), DENY, "default"),
        ("wildcard not a suffix of a label", Flow(E, "xslack.com", TCP, 443), DENY, "default"),
        ("wildcard deny overrides", Flow(E, "x.bad.slack.com", TCP, 443), DENY, "rule"),
        ("address does not match a name rule", Flow(E, "198.51.100.1", TCP, 443), DENY, "default"),
        ("ipv6", Flow(E, "2001:db8::1", TCP, 443), ALLOW, "rule"),
        ("ipv4 rule does not admit ipv6", Flow(E, "2001:db9::1", TCP, 443), DENY, "default"),
        ("ingress rule", Flow(I, "100.100.1.1", TCP, 22), ALLOW, "rule"),
        ("ingress rule is not egress", Flow(E, "100.100.1.1", TCP, 22), DENY, "default"),
        ("egress rule is not ingress", Flow(I, "10.2.3.4", TCP, 443), DENY, "default"),
    ]
    for name, flow, action, cause in cases:
        with subtests.test(name):
            verdict = evaluate(policy, flow)
            assert (verdict.action, verdict.cause) == (action, cause)
            assert verdict.enforced and verdict.passes is (action is ALLOW)
            if cause == "rule":
                rule = policy.rule(verdict.rule_id or "")
                assert rule is not None and rule.action is action


def test_deny_overrides_allow_in_any_order(tmp_path: Path) -> None:
    allow = 'allow egress to 10.0.0.0/8 reason "a"'
    deny = 'deny egress to 10.0.0.1 port 443/tcp reason "d"'
    flow = Flow(E, "10.0.0.1", TCP, 443)
    one = load(tmp_path, f"{allow}\n{deny}")
    two = load(tmp_path, f"{deny}\n{allow}")
    assert one == two  # order does not reach the IR
    assert evaluate(one, flow).action is DENY
    assert evaluate(one, Flow(E, "10.0.0.1", TCP, 80)).action is ALLOW


def test_any_peer(tmp_path: Path) -> None:
    policy = load(tmp_path, 'allow egress to any port 53/udp reason "dns anywhere"')
    assert evaluate(policy, Flow(E, "8.8.8.8", UDP, 53)).action is ALLOW
    assert evaluate(policy, Flow(E, "dns.example", UDP, 53)).action is ALLOW
    assert evaluate(policy, Flow(E, "2001:db8::1", UDP, 53)).action is ALLOW
    assert evaluate(policy, Flow(E, "8.8.8.8", TCP, 53)).action is DENY


def test_user_scope(tmp_path: Path, subtests: pytest.Subtests) -> None:
    policy = load(tmp_path, 'allow egress to 192.0.2.1 port 443/tcp reason "x"',
                  header="applies-to user openclaw")
    cases = [
        ("own egress, implicit user", Flow(E, "192.0.2.1", TCP, 443), ALLOW, "rule"),
        ("own egress, named", Flow(E, "192.0.2.1", TCP, 443, "openclaw"), ALLOW, "rule"),
        ("own egress denied", Flow(E, "192.0.2.2", TCP, 443, "openclaw"), DENY, "default"),
        ("another user's egress", Flow(E, "192.0.2.2", TCP, 443, "alice"), ALLOW, "out-of-scope"),
        ("a user literally named None", Flow(E, "192.0.2.2", TCP, 443, "None"), ALLOW,
         "out-of-scope"),
        ("ingress outside the agent ports", Flow(I, "192.0.2.9", TCP, 22), ALLOW, "out-of-scope"),
        ("ingress to the gateway", Flow(I, "192.0.2.9", TCP, 18789), DENY, "default"),
        ("ingress to a helper port", Flow(I, "192.0.2.9", TCP, 18850), DENY, "default"),
        ("ingress udp on an agent port number", Flow(I, "192.0.2.9", UDP, 18789), ALLOW,
         "out-of-scope"),
    ]
    for name, flow, action, cause in cases:
        with subtests.test(name):
            verdict = evaluate(policy, flow)
            assert (verdict.action, verdict.cause) == (action, cause)


def test_user_scope_by_uid(tmp_path: Path) -> None:
    policy = load(tmp_path, 'allow egress to 192.0.2.1 reason "x"', header="applies-to user 1001")
    assert policy.scope == Scope(kind="user", user="1001", uid=1001,
                                 agent_ports=policy.scope.agent_ports)
    assert evaluate(policy, Flow(E, "192.0.2.2", TCP, 1, "1001")).cause == "default"
    assert evaluate(policy, Flow(E, "192.0.2.2", TCP, 1, "1002")).cause == "out-of-scope"


def test_shadow_mode(tmp_path: Path, subtests: pytest.Subtests) -> None:
    policy = load(tmp_path, HOST_POLICY, header="mode shadow")
    assert policy.mode is Mode.SHADOW
    enforcing = policy.with_mode(Mode.ENFORCE)
    flows = [Flow(E, "203.0.113.9", TCP, 443), Flow(E, "10.1.2.3", TCP, 443),
             Flow(E, "10.2.3.4", TCP, 443), Flow(E, "127.0.0.1", TCP, 1)]
    for flow in flows:
        with subtests.test(str(flow)):
            shadow, enforce = evaluate(policy, flow), evaluate(enforcing, flow)
            assert (shadow.action, shadow.cause, shadow.rule_id) == (
                enforce.action, enforce.cause, enforce.rule_id)
            assert shadow.enforced is False and shadow.passes is True
            assert enforce.enforced is True and enforce.passes is (enforce.action is ALLOW)
            if shadow.action is DENY:
                assert str(shadow).startswith("would-deny")


def test_peer_matches(subtests: pytest.Subtests) -> None:
    import ipaddress

    peers = Peers(ipv4=(ipaddress.IPv4Network("10.0.0.0/8"),),
                  ipv6=(ipaddress.IPv6Network("fd00::/8"),), names=("a.example",),
                  wildcards=("slack.com",))
    cases = [("10.9.9.9", True), ("11.0.0.1", False), ("fd12::1", True), ("fe80::1", False),
             ("a.example", True), ("b.example", False), ("x.slack.com", True),
             ("slack.com", False), ("x.y.slack.com", True), ("slack.com.evil", False)]
    for peer, expected in cases:
        with subtests.test(peer):
            assert peer_matches(peers, peer) is expected
    assert peer_matches(Peers(any=True), "anything.example")


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.claw")), ids=lambda p: p.stem)
def test_examples_pass_their_own_tests(example: Path) -> None:
    from clawpolicy.lower import load_policies

    result = load_policies([example], today=TODAY)
    assert result.ok, render(result.diagnostics, result.sources)
    for policy in result.policies:
        results = run_tests(policy)
        assert results, f"{policy.name} has no tests"
        failed = [f"{r.where}: {r.name}: {r.flow} -> {r.verdict}" for r in results if not r.ok]
        assert not failed


def test_run_tests_reports_failures(tmp_path: Path) -> None:
    policy = load(tmp_path, 'allow egress to 192.0.2.1 port 443/tcp reason "x"\n'
                  '  test "t" { expect deny egress 192.0.2.1 port 443/tcp\n'
                  '             expect deny egress 192.0.2.2 port 443/tcp }')
    results = run_tests(policy)
    assert [r.ok for r in results] == [False, True]
    assert results[0].verdict.action is ALLOW and results[0].expected is DENY
    assert results[0].where.endswith("p.claw:4:14")


def test_fqdn_rules_keep_dns_on_the_local_resolver(tmp_path: Path) -> None:
    """A policy with FQDN rules gets `local-dns-only`: DNS anywhere but loopback is denied,
    over any allow rule; a host-wide policy exempts the resolver's own user."""
    body = ('  allow egress to api.example.com port 443/tcp reason "api"\n'
            '  allow egress to 10.0.0.53 port 53/udp, 53/tcp reason "site resolver"')
    assert load(tmp_path, body).local_dns is None  # only with `dns local`
    host = load(tmp_path, body, "applies-to host\n  dns local")
    assert host.local_dns is not None and host.local_dns.id == "local-dns-only"
    dns = Flow(E, "10.0.0.53", UDP, 53)
    assert (evaluate(host, dns).action, evaluate(host, dns).rule_id) == (DENY, "local-dns-only")
    assert evaluate(host, Flow(E, "10.0.0.53", TCP, 853)).rule_id == "local-dns-only"  # DoT
    assert evaluate(host, Flow(E, "127.0.0.1", UDP, 53)).cause == "loopback"
    resolver = Flow(E, "10.0.0.53", UDP, 53, user="dnsmasq")
    verdict = evaluate(host, resolver)  # the other rules still decide for the resolver
    assert (verdict.action, verdict.cause) == (ALLOW, "rule") and verdict.rule_id != "local-dns-only"
    assert evaluate(host, Flow(E, "203.0.113.9", UDP, 53, user="dnsmasq")).cause == "default"
    user = load(tmp_path, body, "applies-to user 1001\n  dns local")
    assert evaluate(user, Flow(E, "10.0.0.53", UDP, 53, user="dnsmasq")).cause == "out-of-scope"
    assert evaluate(user, Flow(E, "10.0.0.53", UDP, 53)).rule_id == "local-dns-only"
    shadow = evaluate(host.with_mode(Mode.SHADOW), dns)
    assert shadow.action is DENY and shadow.passes  # logged as would-deny
    assert load(tmp_path, '  allow egress to 10.0.0.53 port 53/udp reason "dns"').local_dns is None


def test_local_dns_id_is_reserved(tmp_path: Path) -> None:
    from clawpolicy.lower import load_policies

    path = tmp_path / "p.claw"
    path.write_text('policy p {\n  allow egress to 192.0.2.1 reason "r" id local-dns-only\n}\n')
    result = load_policies([path], today=TODAY)
    assert not result.ok and "reserved" in result.diagnostics[0].message


def test_allow_rules_on_dns_ports_are_flagged_when_names_are_used(tmp_path: Path) -> None:
    from clawpolicy.errors import Severity
    from clawpolicy.lower import load_policies

    body = ('  allow egress to api.example.com port 443/tcp reason "api"\n'
            '  allow egress to 10.0.0.53 port 53/udp reason "resolver"\n'
            '  allow egress to 10.0.0.0/8 reason "all ports: not flagged"')
    for header, severity in (("applies-to user 1001", Severity.WARNING), ("applies-to host", Severity.NOTE)):
        path = tmp_path / "p.claw"
        path.write_text(f"policy p {{\n  {header}\n  dns local\n{body}\n}}\n")
        result = load_policies([path], today=TODAY)
        (diag,) = [d for d in result.diagnostics if d.code == "dns"]
        assert diag.severity is severity and "53/udp" in diag.message and diag.location.line == 5
