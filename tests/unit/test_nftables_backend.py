"""The nftables backend's text: structure, determinism, escaping, scale (no kernel needed;
tests/kernel/ loads the same output into namespaces)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from policy_snippets import snippet_policy as _policy

from clawpolicy.backends.base import CompileOptions
from clawpolicy.backends.nftables import fqdn_groups, nft_string, port_signature, render
from clawpolicy.ir import Mode, PortRange, Protocol

REPO = Path(__file__).resolve().parents[2]




def _chain(text: str, name: str) -> list[str]:
    m = re.search(rf"\n\tchain {name} {{\n(.*?)\n\t}}", text, re.S)
    assert m, f"no chain {name}"
    return [line.strip() for line in m.group(1).splitlines()]


@pytest.mark.parametrize("text", [
    'plain', 'a "quoted" word', 'line\nbreak', 'tab\tand\rcr', '} ; flush ruleset ; {',
    '# not a comment', 'x' * 300, 'é' * 200, '\x00\x1b[31m', '\\"'])
def test_nft_string_is_one_closed_string(text: str) -> None:
    out = nft_string(text)
    assert out.startswith('"') and out.endswith('"')
    inner = out[1:-1]
    assert '"' not in inner and "\n" not in inner and "\r" not in inner and "\x00" not in inner
    assert len(out[1:-1].encode()) <= 127


def test_port_signature_is_readable_and_bounded() -> None:
    tcp = Protocol.TCP
    assert port_signature(()) == "all"
    assert port_signature((PortRange(protocol=tcp, first=443, last=443),)) == "tcp443"
    assert port_signature((PortRange(protocol=tcp, first=8000, last=8100),)) == "tcp8000to8100"
    many = tuple(PortRange(protocol=tcp, first=p, last=p) for p in range(1000, 1020))
    assert len(port_signature(many)) <= 32


def test_rule_count_is_constant_in_addresses(tmp_path: Path) -> None:
    """Adding addresses adds set elements, never rules: the per-packet path stays the same
    (one address element per network, in one set whose one rule jumps to one port classifier
    of one element: every network leads to the same chain, so no verdict is repeated)."""
    def shape(n: int) -> tuple[int, int, int]:
        # every other /24, so lowering cannot merge them into larger networks
        nets = ", ".join(f"10.{i // 128}.{(i % 128) * 2}.0/24" for i in range(n))
        text = render(_policy(tmp_path, f'allow egress to {nets} port 443/tcp reason "r"'),
                      CompileOptions())
        body = _sets(text)["egress_allow_addrset_v4"]
        assert "flags interval" in body
        return (len(_chain(text, "egress")) + len(_chain(text, "output")),
                len(re.findall(r"^\t\t\t10\.[0-9.]+/24,$", body, re.M)), text.count(" : jump "))
    small, large = shape(2), shape(2000)
    assert small[0] == large[0]
    assert (small[1:], large[1:]) == ((2, 1), (2000, 1))


def test_overlapping_rules_become_disjoint_elements(tmp_path: Path) -> None:
    policy = _policy(tmp_path, """
      allow egress to 10.0.0.0/8 port 443/tcp reason "wide" id wide
      allow egress to 10.1.0.0/16 reason "narrow, all ports" id narrow""")
    text = render(policy, CompileOptions())
    elements = re.findall(r"^\t\t\t(.*) : jump (\S+),$", text, re.M)
    # "narrow" sorts first and has no ports: inside it, the address alone decides
    assert elements == [
        ("10.0.0.0/16", "egress_allow_v4_c0"),
        ("10.1.0.0/16", "rule_narrow"),
        ("10.2.0.0-10.255.255.255", "egress_allow_v4_c0"),
    ]
    assert _chain(text, "egress_allow_v4_c0")[1:] == [
        "meta l4proto . th dport vmap { tcp . 443 : jump rule_wide }"]
    swapped = render(_policy(tmp_path, """
      allow egress to 10.0.0.0/8 port 443/tcp reason "wide" id a-wide
      allow egress to 10.1.0.0/16 reason "narrow, all ports" id b-narrow"""), CompileOptions())
    # now the wide rule's lower ID decides its port first, then the narrow rule everything else
    assert "10.1.0.0/16 : jump egress_allow_v4_c1," in swapped
    assert _chain(swapped, "egress_allow_v4_c1")[1:] == ["jump egress_allow_v4_c0", "jump rule_b-narrow"]


def test_modes(tmp_path: Path) -> None:
    body = 'allow egress to 192.0.2.1 port 443/tcp reason "r"\n deny egress to 192.0.2.9 reason "d"'
    enforce = render(_policy(tmp_path, body), CompileOptions())
    shadow = render(_policy(tmp_path, body).with_mode(Mode.SHADOW), CompileOptions())
    rules = [line for line in shadow.splitlines() if not line.lstrip().startswith(("#", "comment"))]
    assert "policy drop;" in enforce and not any(re.search(r"\bdrop\b", line) for line in rules)
    assert 'log prefix "clawpolicy:p:deny:default-egress "' in enforce
    assert 'log prefix "clawpolicy:p:would-deny:default-egress "' in shadow
    assert enforce.count("limit rate") == shadow.count("limit rate")  # same structure
    for text in (enforce, shadow):  # IPv6 control traffic and loopback always pass
        assert "nd-neighbor-solicit" in text and 'oifname "lo" accept' in text
        assert "ct state established,related accept" in text


def _sets(text: str) -> dict[str, str]:
    return dict(re.findall(r"\n\tset (\S+) {\n(.*?)\n\t}", text, re.S))


def test_fqdn_sets_are_declared_empty(tmp_path: Path) -> None:
    policy = _policy(tmp_path, 'allow egress to api.example.com, *.cdn.example port 443/tcp reason "r"')
    text = render(policy, CompileOptions())
    (group,) = fqdn_groups(policy)
    for fam, typ in ((4, "ipv4_addr"), (6, "ipv6_addr")):
        body = _sets(text)[group.set_name(fam)]
        assert f"type {typ}" in body and "flags dynamic,timeout" in body and "timeout 600s" in body
        assert "elements" not in body
        assert "*.cdn.example api.example.com" in body
        # the packet path refreshes an element in use, never adds one (the lookup came first)
        assert re.search(rf"daddr @{group.set_name(fam)} meta l4proto . th dport {{ tcp . 443 }} "
                         rf"update @{group.set_name(fam)} {{ ip6? daddr }} jump rule_", text)
    assert re.fullmatch(rf"egress_allow_fqdn4_{group.rule.id}_[0-9a-f]{{8}}", group.set_name(4))


def test_fqdn_set_names_follow_the_names_only(tmp_path: Path) -> None:
    """A set keeps its name (and so its DNS-filled elements across reloads) while its rule
    serves the same names, whatever its ports and reason; other names, or another rule, get
    another set (one set per rule: its addresses lead to that rule's counter)."""
    def names(body: str) -> list[str]:
        return [g.set_name(4) for g in fqdn_groups(_policy(tmp_path, body))]
    base = names('allow egress to a.example, *.b.example port 443/tcp reason "r" id one')
    assert names('allow egress to *.b.example, a.example port 80/tcp, 8443/tcp reason "x" id one\n'
                 ' allow egress to 192.0.2.1 reason "y"') == base
    assert names('allow egress to a.example, b.example port 443/tcp reason "r" id one') != base
    assert names('allow egress to a.example, *.b.example port 443/tcp reason "r" id two') != base
    split = names('allow egress to *.b.example port 443/tcp reason "r" id one\n'
                  ' allow egress to a.example port 443/tcp reason "r" id three')
    assert len(split) == 2 and base[0] not in split


def test_reload_keeps_dns_sets_and_rebuilds_the_rest(tmp_path: Path) -> None:
    """Never `delete table`; every map, static set and chain this file defines is declared,
    deleted after `flush table`, and defined again (tests/kernel proves it in the kernel)."""
    policy = _policy(tmp_path, 'allow egress to a.example port 443/tcp reason "r" id a\n'
                               ' allow egress to 192.0.2.1 port 22/tcp reason "s" id b',
                     "mode enforce\n applies-to user 1001")
    text = render(policy, CompileOptions(lock={"a.example": ("192.0.2.7", "2001:db8::7")}))
    assert "delete table" not in text
    persistent, rebuilt = text.split("flush table inet clawpolicy_p\n")
    defined_chains = set(re.findall(r"\n\tchain (\S+) {\n", rebuilt))
    assert defined_chains == set(re.findall(r"\n\tchain (\S+) { }", persistent))
    assert defined_chains == set(re.findall(r"^delete chain inet clawpolicy_p (\S+)$", rebuilt, re.M))
    deleted_sets = set(re.findall(r"^delete set inet clawpolicy_p (\S+)$", rebuilt, re.M))
    lookups = {f"{d}_{a}_{k}_v{f}" for d in ("egress", "ingress") for a in ("deny", "allow")
               for f in (4, 6) for k in ("addr", "host", "addrset", "hostset")}
    assert deleted_sets == {"agent_ports", "egress_allow_lock4_a", "egress_allow_lock6_a"} | {
        n for n in lookups if "set_" in n}
    # every address map there can be, and those of the earlier `addr . proto . port` layout
    deleted_maps = set(re.findall(r"^delete map inet clawpolicy_p (\S+)$", rebuilt, re.M))
    assert deleted_maps == {n for n in lookups if "set_" not in n} | {
        f"{d}_{a}_v{f}" for d in ("egress", "ingress") for a in ("deny", "allow") for f in (4, 6)}
    # each declared with the type and flags it is defined with (the kernel refuses others)
    assert "\tset egress_allow_hostset_v4 { type ipv4_addr; }\n" in persistent
    assert "\tmap ingress_deny_host_v6 { type ipv6_addr : verdict; }\n" in persistent
    assert "\tset egress_allow_addrset_v6 { type ipv6_addr; flags interval; }\n" in persistent
    (group,) = fqdn_groups(policy)
    assert f"set {group.set_name(4)} {{" in persistent and group.set_name(4) not in rebuilt.split(
        "\ntable inet")[0]


def test_locked_addresses_fill_a_static_companion_set(tmp_path: Path) -> None:
    policy = _policy(tmp_path, 'allow egress to a.example, b.example, *.c.example port 443/tcp '
                               'reason "r" id r')
    lock = {"a.example": ("192.0.2.7", "2001:db8::7"), "b.example": ("192.0.2.7", "192.0.2.8")}
    text = render(policy, CompileOptions(lock=lock))
    sets = _sets(text)
    assert re.findall(r"^\t\t\t(.*),$", sets["egress_allow_lock4_r"], re.M) == [
        '192.0.2.7 comment "a.example, b.example"', '192.0.2.8 comment "b.example"']
    assert "flags" not in sets["egress_allow_lock4_r"]  # no timeout: rebuilt by every load
    assert '2001:db8::7 comment "a.example"' in sets["egress_allow_lock6_r"]
    assert "ip daddr @egress_allow_lock4_r meta l4proto . th dport { tcp . 443 } jump rule_r" in text
    assert "_lock4_" not in render(policy, CompileOptions())  # only with a lock


def test_output_is_deterministic(tmp_path: Path) -> None:
    body = """
      allow egress to 10.0.0.0/8 port 443/tcp reason "a"
      allow egress to 2001:db8::/32 reason "b"
      deny egress to 10.1.1.1 reason "c"
      allow ingress from 192.0.2.0/24 port 22/tcp reason "d" """
    reordered = "\n".join(reversed(body.strip().splitlines()))
    a = render(_policy(tmp_path, body), CompileOptions())
    b = render(_policy(tmp_path, reordered), CompileOptions())
    def no_lines(text: str) -> str:  # comments cite source lines, which moved
        return re.sub(r"p\.claw:\d+", "p.claw:N", text)
    assert no_lines(a) == no_lines(b)  # rule order never changes the rules (deny overrides allow)


def test_user_scope(tmp_path: Path) -> None:
    named = render(_policy(tmp_path, 'allow egress to 192.0.2.1 reason "r"',
                           "mode enforce\n applies-to user openclaw"), CompileOptions())
    numeric = render(_policy(tmp_path, 'allow egress to 192.0.2.1 reason "r"',
                             "mode enforce\n applies-to user 1001"), CompileOptions())
    assert 'meta skuid "openclaw" goto egress' in named
    assert "meta skuid 1001 goto egress" in numeric
    assert "policy drop" not in named  # other users are not fenced
    assert "tcp . 18789-18793" in named  # ingress scoped to the agent ports


def test_fqdn_whole_protocols_match_without_a_port(tmp_path: Path) -> None:
    """A name rule's whole-protocol entries (`icmp`, `any/udp`) match on the protocol alone:
    `th dport` of a short packet cannot be read, and a deny must still see it."""
    policy = _policy(tmp_path, 'deny egress to bad.example port 443/tcp, icmp, any/udp reason "d" id d')
    text = render(policy, CompileOptions())
    (group,) = fqdn_groups(policy)
    for fam, icmp in ((4, "icmp"), (6, "ipv6-icmp")):
        name = group.set_name(fam)
        assert f"daddr @{name} meta l4proto . th dport {{ tcp . 443 }} update" in text
        assert f"daddr @{name} meta l4proto {{ {icmp}, udp }} update" in text
    portless = render(_policy(tmp_path, 'deny egress to bad.example reason "d" id d'), CompileOptions())
    assert re.search(r"ip daddr @egress_deny_fqdn4_d_\w+ update @\S+ \{ ip daddr \} jump rule_d", portless)


def test_fqdn_rules_with_the_same_ports_count_and_log_apart(tmp_path: Path, subtests: Any) -> None:
    """Each FQDN rule has its own set and jumps to its own chain (counter, comment, log prefix),
    whatever other rules share its ports, action or names (issue 17, item 5)."""
    cases = [
        ('allow egress to a.example port 8443/tcp reason "x"\n'
         ' allow egress to b.example port 8443/tcp reason "y"', "allow"),
        ('deny egress to *.bad.example reason "x"\n deny egress to worse.example reason "y"', "deny"),
        ('deny egress to same.example port 53/udp reason "x" id one\n'
         ' deny egress to same.example, other.example port 53/udp reason "y" id two', "deny"),
    ]
    for body, action in cases:
        with subtests.test(body=body):
            policy = _policy(tmp_path, body)
            text = render(policy, CompileOptions())
            groups = fqdn_groups(policy)
            assert [g.rule.id for g in groups] == sorted(r.id for r in policy.rules)
            assert len({g.set_name(fam) for g in groups for fam in (4, 6)}) == 2 * len(groups)
            for g in groups:
                for fam in (4, 6):
                    assert re.search(rf"daddr @{re.escape(g.set_name(fam))}\b[^\n]* jump "
                                     rf"rule_{re.escape(g.rule.id)}\n", text)
                chain = re.search(rf"\n\tchain rule_{re.escape(g.rule.id)} {{\n(.*?)\n\t}}", text, re.S)
                assert chain is not None and "counter" in chain.group(1)
                if action == "deny":
                    assert f'log prefix "clawpolicy:p:deny:{g.rule.id} "' in chain.group(1)
            assert "_fqdn_" not in " ".join(re.findall(r"\n\tchain (\S+)", text))
