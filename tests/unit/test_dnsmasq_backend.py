"""The dnsmasq target: which lines each exact name and wildcard becomes, the warnings where
dnsmasq is wider than the policy, and agreement with the nftables target's set names.
(tests/kernel/test_dns_kernel.py runs the fragment in a real dnsmasq.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from policy_snippets import snippet_policy as _policy

from clawpolicy.backends import dnsmasq
from clawpolicy.backends.base import CompileOptions
from clawpolicy.backends.nftables import fqdn_groups
from clawpolicy.backends.nftables import render as render_nft
from clawpolicy.errors import Severity
from clawpolicy.ir import Policy


def _lines(policy: Policy, **options: int) -> list[str]:
    text, _ = dnsmasq.render(policy, CompileOptions(**options))  # type: ignore[arg-type]
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _sets(policy: Policy) -> dict[str, list[str]]:
    """domain -> the set names of its nftset line (IPv4 ones)."""
    out = {}
    for line in _lines(policy):
        m = re.fullmatch(r"nftset=/([^/]+)/(.*)", line)
        if m:
            out[m.group(1)] = [s.split("#")[-1] for s in m.group(2).split(",") if s.startswith("4#")]
    return out


def _routing(policy: Policy) -> list[str]:
    return [line for line in _lines(policy) if line.startswith(("address=", "server="))]


def test_exact_and_wildcard_together_need_no_tricks(tmp_path: Path) -> None:
    p = _policy(tmp_path, 'allow egress to slack.com, *.slack.com port 443/tcp reason "r"')
    (g,) = fqdn_groups(p)
    assert _sets(p) == {"slack.com": [g.set_name(4)]}
    assert _routing(p) == []
    line = next(x for x in _lines(p) if x.startswith("nftset="))
    assert line == (f"nftset=/slack.com/4#inet#clawpolicy_p#{g.set_name(4)},"
                    f"6#inet#clawpolicy_p#{g.set_name(6)}")


def test_exact_name_alone_refuses_the_names_below(tmp_path: Path) -> None:
    """dnsmasq would file x.chat.test's answers under chat.test: they get NXDOMAIN instead."""
    p = _policy(tmp_path, 'allow egress to chat.test port 443/tcp reason "r"')
    assert _routing(p) == ["address=/*.chat.test/"]


def test_wildcard_alone_refuses_its_suffix(tmp_path: Path) -> None:
    """*.chat.test is one or more labels below chat.test: chat.test itself gets NXDOMAIN, the
    names below are forwarded as usual."""
    p = _policy(tmp_path, 'allow egress to *.chat.test port 443/tcp reason "r"')
    assert list(_sets(p)) == ["chat.test"]
    assert _routing(p) == ["address=/chat.test/", "server=/*.chat.test/#"]


def test_names_inside_a_refused_subtree_are_reopened(tmp_path: Path) -> None:
    p = _policy(tmp_path, 'allow egress to chat.test, api.x.chat.test port 443/tcp reason "r"\n'
                          ' allow egress to *.y.chat.test port 80/tcp reason "s"')
    assert _routing(p) == [
        "address=/*.chat.test/",  # chat.test exact
        "server=/api.x.chat.test/#", "address=/*.api.x.chat.test/",  # exact, inside chat.test's
        "address=/y.chat.test/", "server=/*.y.chat.test/#",  # wildcard, inside too
    ]
    groups = {g.ports[0].first: g.set_name(4) for g in fqdn_groups(p)}
    assert _sets(p) == {"chat.test": [groups[443]], "api.x.chat.test": [groups[443]],
                        "y.chat.test": [groups[80]]}


def test_names_under_a_wildcard_get_the_wildcards_sets_too(tmp_path: Path) -> None:
    """The longest nftset entry is the only one applied: a deeper exact name must repeat the
    sets of the wildcards above it, or its answers would miss them."""
    p = _policy(tmp_path, 'allow egress to *.corp.test port 443/tcp reason "r"\n'
                          ' allow egress to *.corp.test, api.corp.test port 22/tcp reason "s"')
    by_port = {g.ports[0].first: g.set_name(4) for g in fqdn_groups(p)}
    sets = _sets(p)
    assert sorted(sets["api.corp.test"]) == sorted([by_port[22], by_port[443]])
    assert sorted(sets["corp.test"]) == sorted([by_port[22], by_port[443]])


@pytest.mark.parametrize("body, message", [
    ('allow egress to chat.test port 443/tcp reason "r"\n allow egress to *.chat.test port 80/tcp reason "s"',
     "chat.test itself also gets allow 80/tcp"),
    ('allow egress to *.corp.test port 443/tcp reason "r"\n allow egress to api.corp.test port 22/tcp reason "s"',
     "names below api.corp.test also get allow 22/tcp"),
    ('allow egress to *.corp.test reason "r"\n deny egress to bad.corp.test reason "s"',
     "names below bad.corp.test also get deny all ports"),
])
def test_what_dnsmasq_cannot_say_is_a_warning(tmp_path: Path, body: str, message: str) -> None:
    p = _policy(tmp_path, body)
    result = dnsmasq.BACKEND.compile(p, CompileOptions())
    (diag,) = result.diagnostics
    assert diag.severity is Severity.WARNING and diag.code == "dnsmasq-wider"
    assert message in diag.message and diag.location is not None and diag.location.line >= 3
    assert "WIDER than the policy" in result.artifacts[0].content.decode()


def test_deny_names_fill_the_deny_sets(tmp_path: Path) -> None:
    p = _policy(tmp_path, 'deny egress to evil.test reason "r"\n allow egress to 10.0.0.0/8 reason "s"')
    (g,) = fqdn_groups(p)
    assert g.set_name(4).startswith(f"egress_deny_fqdn4_{g.rule.id}_") and _sets(p) == {"evil.test": [g.set_name(4)]}


def test_ttl_caps_follow_the_set_timeout(tmp_path: Path) -> None:
    p = _policy(tmp_path, 'allow egress to a.test port 443/tcp reason "r"')
    assert _lines(p, fqdn_timeout=45)[:2] == ["max-ttl=45", "max-cache-ttl=45"]
    assert "timeout 45s" in render_nft(p, CompileOptions(fqdn_timeout=45))


def test_every_set_named_is_a_set_the_ruleset_declares(tmp_path: Path) -> None:
    p = _policy(tmp_path, 'allow egress to a.test, *.b.test port 443/tcp reason "r"\n'
                          ' deny egress to *.c.test reason "d"\n'
                          ' allow egress to b.test port 80/tcp reason "e"')
    text, _ = dnsmasq.render(p, CompileOptions())
    named = set(re.findall(r"[46]#inet#clawpolicy_p#([\w.-]+)", text))
    declared = set(re.findall(r"\n\tset (\w+_fqdn[46]_[\w.-]+) {", render_nft(p, CompileOptions())))
    assert named == declared and len(named) == 6


def test_no_names_no_fragment(tmp_path: Path) -> None:
    p = _policy(tmp_path, 'allow egress to 192.0.2.1 reason "r"')
    assert dnsmasq.BACKEND.compile(p, CompileOptions()).artifacts == []
    assert p.local_dns is None


def test_source_path_cannot_break_out_of_a_comment(tmp_path: Path) -> None:
    p = _policy(tmp_path, 'allow egress to a.test reason "r"').model_copy(
        update={"source": "x\nserver=/#/6.6.6.6"})
    assert not any(line.startswith("server=/#/") for line in _lines(p))


# ------------------------------------------------------------------ hardened (dns local)


def _hardened(tmp_path: Path, body: str, *upstreams: str) -> tuple[list[str], list[str]]:
    p = _policy(tmp_path, "dns local\n" + body)
    text, diags = dnsmasq.render(p, CompileOptions(dns_upstreams=upstreams))
    lines = [x for x in text.splitlines() if x and not x.startswith("#")]
    return lines, [d.code or "" for d in diags]


def test_dns_local_forwards_only_policy_names(tmp_path: Path, subtests: pytest.Subtests) -> None:
    """Each domain gets its own server= line to the upstreams; nothing else has a server, so
    dnsmasq refuses it. `#` is dnsmasq's syntax for a port."""
    cases = [  # body, upstreams, server/address lines
        ('allow egress to api.example port 443/tcp reason "r"', ("10.0.0.53",),
         ["server=/api.example/10.0.0.53", "address=/*.api.example/"]),
        ('allow egress to *.chat.example port 443/tcp reason "r"', ("10.0.0.53:5353", "[fd00::53]:53"),
         ["address=/chat.example/", "server=/*.chat.example/10.0.0.53#5353",
          "server=/*.chat.example/fd00::53#53"]),
        ('deny egress to bad.example reason "r"\n dns resolve probe.example, *.corp.example reason "x"',
         ("192.0.2.53",),
         ["server=/bad.example/192.0.2.53", "address=/*.bad.example/",
          "server=/*.corp.example/192.0.2.53", "server=/probe.example/192.0.2.53",
          "address=/*.probe.example/"]),
    ]
    for body, upstreams, want in cases:
        with subtests.test(body=body):
            lines, codes = _hardened(tmp_path, body, *upstreams)
            assert [x for x in lines if x.startswith(("server=", "address="))] == want
            assert "no-resolv" in lines and "cache-size=0" in lines and "dnsmasq-open" not in codes


def test_dns_local_without_upstreams_says_it_stays_open(tmp_path: Path) -> None:
    lines, codes = _hardened(tmp_path, 'allow egress to api.example port 443/tcp reason "r"')
    assert "server=/api.example/#" in lines and "no-resolv" not in lines and "cache-size=0" in lines
    assert codes == ["dnsmasq-open"]


def test_without_dns_local_nothing_changes(tmp_path: Path) -> None:
    p = _policy(tmp_path, 'allow egress to api.example port 443/tcp reason "r"')
    text, _ = dnsmasq.render(p, CompileOptions(dns_upstreams=("10.0.0.53",)))
    lines = [x for x in text.splitlines() if not x.startswith("#")]
    assert not [x for x in lines if x.startswith(("no-resolv", "cache-size", "server="))]
