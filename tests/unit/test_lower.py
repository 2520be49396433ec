"""Lowering (resolve + lower): the language's features as they reach the IR, and every error
a user can make, each pointing at the offending word with a message and a hint.

Every case is a small .claw file written to a temporary directory (the working directory
during the test, so diagnostics name `main.claw`). An error case names the word it expects
the caret under (`at`, its `nth` occurrence in the file), so positions are checked exactly
without counting columns by hand.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from clawpolicy.errors import Diagnostic, Severity, render
from clawpolicy.ir import Action, Direction, Mode, Policy, PortRange, Protocol
from clawpolicy.lower import OPENCLAW_AGENT_PORTS, LoadResult, load_policies

REPO = Path(__file__).resolve().parents[2]
TODAY = dt.date(2026, 11, 1)
TCP, UDP, ICMP = Protocol.TCP, Protocol.UDP, Protocol.ICMP


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def policy(*lines: str, name: str = "p") -> str:
    return f"policy {name} {{\n" + "".join(f"  {line}\n" for line in lines) + "}\n"


def load(root: Path, files: dict[str, str], main: str = "main.claw") -> LoadResult:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return load_policies([Path(main)], today=TODAY)


def load_ok(root: Path, text: str, **files: str) -> Policy:
    result = load(root, {"main.claw": text, **files})
    assert result.ok, render(result.diagnostics, result.sources)
    assert [d for d in result.diagnostics if d.severity is not Severity.NOTE] == []
    assert len(result.policies) == 1
    return result.policies[0]


def position(text: str, at: str, nth: int = 1) -> tuple[int, int]:
    """1-based line and column of the nth occurrence of `at` in `text`."""
    index = -1
    for _ in range(nth):
        index = text.index(at, index + 1)
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


# ====================================================================== features

def test_include_shares_defines_relative_to_the_including_file(workdir: Path) -> None:
    p = load_ok(workdir, 'include "common/x.claw"\n' + policy(
        'allow egress to @shared, @deep reason "r"'),
        **{"common/x.claw": 'include "y.claw"   # relative to common/\n'
                            "define shared = 192.0.2.1\n",
           "common/y.claw": "define deep = 192.0.2.2\n"})
    assert [str(n) for n in p.rules[0].peers.ipv4] == ["192.0.2.1/32", "192.0.2.2/32"]
    assert p.rules[0].origin == ("@shared", "@deep")


def test_diamond_includes_are_fine(workdir: Path) -> None:
    p = load_ok(workdir, 'include "a.claw"\ninclude "b.claw"\n' + policy(
        'allow egress to @base reason "r"'),
        **{"a.claw": 'include "base.claw"\n', "b.claw": 'include "base.claw"\n',
           "base.claw": "define base = 192.0.2.0/24\n"})
    assert [str(n) for n in p.rules[0].peers.ipv4] == ["192.0.2.0/24"]


def test_several_policies_share_top_level_defines(workdir: Path) -> None:
    text = ("define dns = 10.0.0.53\n"
            + policy('allow egress to @dns port 53/udp reason "dns"', name="one")
            + policy('allow egress to @dns port 53/tcp reason "dns"', "applies-to user bob",
                     name="two"))
    result = load(workdir, {"main.claw": text})
    assert result.ok and [p.name for p in result.policies] == ["one", "two"]
    assert [str(result.policies[1].rules[0].ports[0])] == ["53/tcp"]


def test_a_file_named_twice_is_compiled_once(workdir: Path) -> None:
    (workdir / "main.claw").write_text(policy('allow egress to any reason "r"'), encoding="utf-8")
    result = load_policies([Path("main.claw"), Path("./main.claw")], today=TODAY)
    assert result.ok, render(result.diagnostics, result.sources)
    assert len(result.policies) == 1


def test_ports(workdir: Path, subtests: pytest.Subtests) -> None:
    cases = [
        ("single", "443/tcp", [PortRange(protocol=TCP, first=443, last=443)]),
        ("range", "8000-8100/tcp", [PortRange(protocol=TCP, first=8000, last=8100)]),
        ("any udp", "any/udp", [PortRange(protocol=UDP)]),
        ("whole protocol", "tcp", [PortRange(protocol=TCP)]),
        ("icmp", "icmp", [PortRange(protocol=ICMP)]),
        ("upper case", "443/TCP", [PortRange(protocol=TCP, first=443, last=443)]),
        ("merged", "53/tcp, 52-54/tcp", [PortRange(protocol=TCP, first=52, last=54)]),
        ("adjacent merged", "1-10/udp, 11/udp", [PortRange(protocol=UDP, first=1, last=11)]),
        ("any absorbs", "53/udp, any/udp", [PortRange(protocol=UDP)]),
        ("protocols kept apart", "53/udp, 53/tcp",
         [PortRange(protocol=TCP, first=53, last=53), PortRange(protocol=UDP, first=53, last=53)]),
        ("icmp sorts first", "22/tcp, icmp",
         [PortRange(protocol=ICMP), PortRange(protocol=TCP, first=22, last=22)]),
    ]
    for name, ports, expected in cases:
        with subtests.test(name):
            p = load_ok(workdir, policy(f'allow egress to 192.0.2.1 port {ports} reason "r"'))
            assert list(p.rules[0].ports) == expected
    with subtests.test("no port clause: every port"):
        assert load_ok(workdir, policy('allow egress to 192.0.2.1 reason "r"')).rules[0].ports == ()


def test_peers(workdir: Path, subtests: pytest.Subtests) -> None:
    v4, v6 = ipaddress.IPv4Network, ipaddress.IPv6Network
    cases: list[tuple[str, str, dict[str, object]]] = [
        ("host gets /32", "192.0.2.1", {"ipv4": (v4("192.0.2.1/32"),)}),
        ("cidr kept", "10.0.0.0/8", {"ipv4": (v4("10.0.0.0/8"),)}),
        ("halves merged", "10.0.0.0/25, 10.0.0.128/25", {"ipv4": (v4("10.0.0.0/24"),)}),
        ("contained merged", "10.0.0.0/8, 10.1.2.3", {"ipv4": (v4("10.0.0.0/8"),)}),
        ("v6 canonical", "2001:DB8:0:0::1", {"ipv6": (v6("2001:db8::1/128"),)}),
        ("v6 merged", "2001:db8::/33, 2001:db8:8000::/33", {"ipv6": (v6("2001:db8::/32"),)}),
        ("v4 and v6 apart", "10.0.0.0/8, fd00::/8",
         {"ipv4": (v4("10.0.0.0/8"),), "ipv6": (v6("fd00::/8"),)}),
        ("name lower-cased", "API.Example.COM", {"names": ("api.example.com",)}),
        ("trailing dot", "api.example.com.", {"names": ("api.example.com",)}),
        ("idna", "Bücher.example", {"names": ("xn--bcher-kva.example",)}),
        ("wildcard", "*.Slack.com", {"wildcards": ("slack.com",)}),
        ("names sorted and unique", "b.example, a.example, B.example",
         {"names": ("a.example", "b.example")}),
        ("any", "any", {"any": True}),
        ("any swallows the rest", "192.0.2.1, any", {"any": True}),
    ]
    for name, peers, expected in cases:
        with subtests.test(name):
            p = load_ok(workdir, policy(f'allow egress to {peers} reason "r"'))
            got = p.rules[0].peers.model_dump()
            assert {k: got[k] for k in expected} == expected
            assert all(not got[k] for k in got if k not in expected)


def test_catalog_groups(workdir: Path, subtests: pytest.Subtests) -> None:
    with subtests.test("directly, with the catalog's ports"):
        rule = load_ok(workdir, policy('allow egress to openai reason "r"')).rules[0]
        assert rule.peers.names == ("api.openai.com",)
        assert [str(p) for p in rule.ports] == ["443/tcp"]
        assert rule.origin == ("openai",)
    with subtests.test("a port clause replaces the catalog's ports"):
        rule = load_ok(workdir, policy('allow egress to openai port 8443/tcp reason "r"')).rules[0]
        assert [str(p) for p in rule.ports] == ["8443/tcp"]
    with subtests.test("through a define"):
        rule = load_ok(workdir, policy("define llm = openai, anthropic",
                                       'allow egress to @llm reason "r"')).rules[0]
        assert rule.peers.names == ("api.anthropic.com", "api.openai.com")
        assert rule.origin == ("@llm",)
    with subtests.test("different port sets split one rule, ids suffixed"):
        p = load_ok(workdir, policy('allow egress to openai, 192.0.2.1 reason "r"'))
        assert [r.id.rsplit(".", 1)[1] for r in p.rules] == ["1", "2"]
        assert len({r.id.rsplit(".", 1)[0] for r in p.rules}) == 1
        assert {r.ports: r.peers.describe()[0] for r in p.rules} == {
            (): "192.0.2.1/32", (PortRange(protocol=TCP, first=443, last=443),): "api.openai.com"}


def test_documentation_fields(workdir: Path) -> None:
    p = load_ok(workdir, policy(
        'description "d"', 'owner "team"',
        'allow egress to 192.0.2.1 reason "r" owner "o" ticket SEC-1 expires 2027-06-30',
        'allow egress to 192.0.2.2 reason "r2" ticket "T 2"'))
    first, second = sorted(p.rules, key=lambda r: r.reason)
    assert (p.description, p.owner) == ("d", "team")
    assert (first.owner, first.ticket, first.expires) == ("o", "SEC-1", dt.date(2027, 6, 30))
    assert (second.owner, second.ticket, second.expires) == (None, "T 2", None)


def test_owner_after_a_rule_belongs_to_the_rule(workdir: Path) -> None:
    # The documented LALR shift: `owner` right after a rule's attributes continues the rule,
    # even on the next line. Put the policy's owner before the rules.
    p = load_ok(workdir, policy('allow egress to 192.0.2.1 reason "r"', 'owner "o"'))
    assert p.owner is None and p.rules[0].owner == "o"


def test_expired_rule_is_a_warning(workdir: Path) -> None:
    text = policy('allow egress to 192.0.2.1 reason "r" expires 2020-01-01')
    result = load(workdir, {"main.claw": text})
    assert result.ok and len(result.policies) == 1
    [diag] = result.diagnostics
    assert (diag.severity, diag.code) == (Severity.WARNING, "expired")
    assert (diag.location.line, diag.location.col) == position(text, "2020-01-01")  # type: ignore[union-attr]
    assert "expired on 2020-01-01" in diag.message and "renew" in (diag.hint or "")


def test_stable_ids(workdir: Path, subtests: pytest.Subtests) -> None:
    rule_b = 'allow egress to 192.0.2.2 port 443/tcp reason "b"'
    alone = load_ok(workdir, policy(rule_b)).rules[0].id
    with subtests.test("inserting a rule before does not renumber"):
        p = load_ok(workdir, policy('deny egress to 192.0.2.1 reason "a"', rule_b))
        assert alone in [r.id for r in p.rules]
    with subtests.test("content, not docs or spelling of layout"):
        p = load_ok(workdir, policy('allow   egress to 192.0.2.2\n port 443/tcp reason "other"'))
        assert p.rules[0].id == alone
    with subtests.test("prefix says action and direction"):
        p = load_ok(workdir, policy('deny ingress from 192.0.2.2 reason "x"'))
        assert p.rules[0].id.startswith("di-")
    with subtests.test("explicit id"):
        p = load_ok(workdir, policy('allow egress to 192.0.2.2 reason "r" id my-rule'))
        assert p.rules[0].id == "my-rule"
        assert p.rule("my-rule") is p.rules[0]


def test_rules_are_order_independent(workdir: Path) -> None:
    a, b = 'allow egress to 192.0.2.1 reason "a"', 'deny egress to 192.0.2.2 reason "b"'
    assert load_ok(workdir, policy(a, b)) == load_ok(workdir, policy(b, a))


def test_scope_and_mode(workdir: Path, subtests: pytest.Subtests) -> None:
    rule = 'allow egress to 192.0.2.1 reason "r"'
    with subtests.test("defaults: host, enforce"):
        p = load_ok(workdir, policy(rule))
        assert (p.scope.kind, p.mode) == ("host", Mode.ENFORCE)
    with subtests.test("user by name, default agent ports"):
        p = load_ok(workdir, policy("applies-to user openclaw", "mode shadow", rule))
        assert (p.scope.kind, p.scope.user, p.scope.uid, p.mode) == (
            "user", "openclaw", None, Mode.SHADOW)
        assert p.scope.agent_ports == OPENCLAW_AGENT_PORTS
        assert [str(x) for x in p.scope.agent_ports] == ["18789-18793/tcp", "18800-18899/tcp"]
    with subtests.test("user by uid"):
        p = load_ok(workdir, policy("applies-to user 1001", rule))
        assert (p.scope.user, p.scope.uid) == ("1001", 1001)
    with subtests.test("explicit agent ports, merged"):
        p = load_ok(workdir, policy("applies-to user bob", "agent-ports 9001/tcp, 9000/tcp, 53/udp",
                                    rule))
        assert [str(x) for x in p.scope.agent_ports] == ["9000-9001/tcp", "53/udp"]


def test_confinement(workdir: Path) -> None:
    p = load_ok(workdir, policy(
        "capabilities drop all keep NET_BIND_SERVICE, cap_chown",
        "sockets allow inet6 dgram, unix, inet stream, inet6 dgram",
        'files deny ~/.ssh/, /etc/secrets, ~/.aws reason "credentials"',
        'files allow /tmp reason "scratch"'))
    assert p.capabilities is not None
    assert (p.capabilities.drop_all, p.capabilities.keep) == (True, ("chown", "net_bind_service"))
    assert p.sockets is not None
    assert [str(k) for k in p.sockets.allow] == ["unix", "inet stream", "inet6 dgram"]
    deny = next(f for f in p.files if f.action is Action.DENY)
    assert deny.paths == ("/etc/secrets", "~/.aws", "~/.ssh")
    assert deny.id.startswith("fd-")


def test_netlink_protocols(workdir: Path, subtests: Any) -> None:
    cases = {  # sockets allow ...: the kinds in canonical order, and the netlink-any warnings
        "netlink audit, unix, netlink route": (["unix", "netlink route", "netlink audit"], 0),
        "netlink sock_diag, netlink, netlink kobject_uevent": (
            ["netlink", "netlink sock_diag", "netlink kobject_uevent"], 1),
        "netlink dgram, netlink generic": (["netlink dgram", "netlink generic"], 1),
        "netlink route, netlink route": (["netlink route"], 0),
    }
    for body, (kinds, warnings) in cases.items():
        with subtests.test(msg=body):
            result = load(workdir, {"main.claw": policy(f"sockets allow {body}")})
            assert result.ok, result.diagnostics
            assert result.policies[0].sockets is not None
            assert [str(k) for k in result.policies[0].sockets.allow] == kinds
            found = [d for d in result.diagnostics if d.code == "netlink-any"]
            assert len(found) == warnings and all(d.severity is Severity.WARNING for d in found)
            assert all("netlink route" in (d.hint or "") for d in found)
    protocols = load(workdir, {"main.claw": policy("sockets allow netlink route, netlink audit")})
    assert [k.protocol for k in protocols.policies[0].sockets.allow] == ["route", "audit"]  # type: ignore[union-attr]


def test_canonical_paths_are_kept(workdir: Path) -> None:
    p = load_ok(workdir, policy('files deny /, ~/, ~/.ssh/, "/with space/x" reason "r"'))
    assert p.files[0].paths == ("/", "/with space/x", "~", "~/.ssh")


def test_includes_follow_the_path_as_given(workdir: Path) -> None:
    # main.claw is a symlink into another directory: includes are relative to the link's
    # directory (where the file was named), and their definitions are found there too.
    (workdir / "real").mkdir()
    (workdir / "real" / "main.claw").write_text(
        'include "defs.claw"\n' + policy('allow egress to @x reason "r"'), encoding="utf-8")
    (workdir / "defs.claw").write_text("define x = 192.0.2.1\n", encoding="utf-8")
    (workdir / "main.claw").symlink_to(workdir / "real" / "main.claw")
    result = load_policies([Path("main.claw")], today=TODAY)
    assert result.ok, render(result.diagnostics, result.sources)
    assert [str(n) for n in result.policies[0].rules[0].peers.ipv4] == ["192.0.2.1/32"]


def test_tests_blocks(workdir: Path) -> None:
    p = load_ok(workdir, policy(
        "applies-to user openclaw",
        'test "t" {',
        "  expect allow egress to api.example.com port 443/tcp",
        "  expect deny egress 192.0.2.1 port 53/udp as user 1002",
        "  expect deny ingress from 2001:db8::1 port 18789/tcp",
        "  expect allow ingress 192.0.2.9 port icmp",
        "  expect deny egress Bücher.example. port 443/tcp as user openclaw",
        "}"))
    got = [(t.verdict, t.direction, t.peer, t.protocol, t.port, t.user) for t in p.tests]
    assert got == [
        (Action.ALLOW, Direction.EGRESS, "api.example.com", TCP, 443, None),
        (Action.DENY, Direction.EGRESS, "192.0.2.1", UDP, 53, "1002"),
        (Action.DENY, Direction.INGRESS, "2001:db8::1", TCP, 18789, None),
        (Action.ALLOW, Direction.INGRESS, "192.0.2.9", ICMP, None, None),
        (Action.DENY, Direction.EGRESS, "xn--bcher-kva.example", TCP, 443, "openclaw"),
    ]
    assert all(t.name == "t" for t in p.tests)


def test_the_examples_compile_as_written(in_repo: Path) -> None:
    result = load_policies([Path("examples/openclaw-workstation.claw")], today=TODAY)
    loud = [d for d in result.diagnostics if d.severity is not Severity.NOTE]
    assert result.ok and not loud, render(loud, result.sources)
    [p] = result.policies
    assert (p.name, p.mode, p.scope.user) == ("openclaw-workstation", Mode.SHADOW, "openclaw")
    assert len(p.rules) == 6 and len(p.tests) == 3 and len(p.files) == 1
    assert p.local_dns is None  # its corporate resolver rule stands: no `dns local`


def test_string_escapes(workdir: Path, subtests: pytest.Subtests) -> None:
    cases = [('"tab\\there"', "tab\there"), ('"quote \\" in"', 'quote " in'),
             ('"\\u00e9"', "é"), ('"bad \\x escape"', "bad \\x escape"),
             ('"lone \\ud800 surrogate"', "lone \\ud800 surrogate")]
    for written, expected in cases:
        with subtests.test(written):
            p = load_ok(workdir, policy(f"allow egress to 192.0.2.1 reason {written}"))
            assert p.rules[0].reason == expected
            p.model_dump_json()  # encodable: no lone surrogate reaches the IR


def test_diagnostics_of_shared_defines_are_reported_once(workdir: Path) -> None:
    text = ('define bad = 10.0.0.1/8\n'
            + policy('allow egress to @bad reason "r"', 'allow egress to @bad port 1/tcp reason "r"',
                     name="one")
            + policy('allow egress to @bad reason "r"', name="two"))
    result = load(workdir, {"main.claw": text})
    assert [d.code for d in result.diagnostics] == ["cidr"]
    assert result.policies == []


# ====================================================================== errors

@dataclass(frozen=True)
class Bad:
    name: str
    text: str
    at: str  # the word the caret must be under
    message: str
    hint: str
    code: str
    nth: int = 1
    file: str = "main.claw"  # the file the diagnostic points into
    files: dict[str, str] = field(default_factory=dict)


def rule(peers: str, rest: str = 'reason "r"', head: str = "allow egress to") -> str:
    return policy(f"{head} {peers} {rest}")


ERRORS = [
    # addresses and names
    Bad("v4 host bits", rule("10.0.0.1/8"), "10.0.0.1/8", "10.0.0.1/8 has host bits set",
        "did you mean 10.0.0.0/8?", "cidr"),
    Bad("v6 host bits", rule("fd7a:115c:a1e0::1/48"), "fd7a:115c:a1e0::1/48", "host bits set",
        "did you mean fd7a:115c:a1e0::/48?", "cidr"),
    Bad("bad octet", rule("192.0.2.1, 300.1.1.1"), "300.1.1.1", "invalid address '300.1.1.1'",
        "does not appear to be an IPv4 or IPv6", "address"),
    Bad("prefix too long", rule("10.0.0.0/33"), "10.0.0.0/33", "invalid address", "10.0.0.0/33",
        "address"),
    Bad("interface zone", rule("fe80::1%eth0"), "fe80::1%eth0", "interface zones",
        "drop the zone: fe80::1", "address"),
    Bad("wildcard in the middle", rule("a.*.com"), "a.*.com", "invalid wildcard 'a.*.com'",
        "only a leading '*.'", "name"),
    Bad("bare star", rule("*"), "*", "invalid wildcard '*'", "use 'any'", "name"),
    Bad("bad wildcard suffix", rule("*.bad_label.com"), "*.bad_label.com", "invalid wildcard",
        "e.g. *.slack.com", "name"),
    Bad("underscore in a name", rule("bad_name.example"), "bad_name.example",
        "unknown peer 'bad_name.example'", "peers are addresses, CIDRs, domain names", "unknown-name"),
    Bad("label too long", rule("a" * 64 + ".example"), "a" * 64, "unknown peer", "domain names",
        "unknown-name"),
    Bad("catalog typo", rule("opnai"), "opnai", "unknown peer 'opnai'", "did you mean openai?",
        "unknown-name"),
    Bad("catalog typo in a define", policy("define llm = openai, antropic",
                                           'allow egress to @llm reason "r"'),
        "antropic", "unknown peer 'antropic'", "did you mean anthropic?", "unknown-name"),
    Bad("reference typo", policy("define tailnet = 100.64.0.0/10",
                                 'allow ingress from @tailnt reason "r"'),
        "@tailnt", "unknown definition '@tailnt'", "did you mean @tailnet?", "unknown-name"),
    Bad("catalog group written with @", rule("@openai"), "@openai", "unknown definition",
        "'openai' is a catalog group: write it without '@'", "unknown-name"),
    Bad("undefined reference", rule("@nothing"), "@nothing", "unknown definition '@nothing'",
        "define it first", "unknown-name"),
    Bad("definition cycle", policy("define s = @s", 'allow egress to 192.0.2.1 reason "r"'),
        "@s", "definition cycle: s -> s", "cannot refer to itself", "define-cycle"),
    Bad("unused define is checked", policy("define unused = 10.0.0.1/8",
                                           'allow egress to 192.0.2.1 reason "r"'),
        "10.0.0.1/8", "host bits set", "10.0.0.0/8", "cidr"),
    Bad("invalid define name", policy("define Bad = 192.0.2.1", 'allow egress to @Bad reason "r"'),
        "Bad", "invalid definition name 'Bad'", "lower-case", "name"),
    Bad("define redefined", "define x = 192.0.2.1\n" + policy(
        "define x = 192.0.2.2", 'allow egress to @x reason "r"'),
        "x", "'x' is already defined at main.claw:1", "another name", "redefined", nth=2),
    # direction keywords
    Bad("egress written with from", rule("192.0.2.1", head="allow egress from"), "from",
        "egress rules use 'to', not 'from'", "write 'allow egress to ...'", "syntax"),
    Bad("ingress written with to", rule("192.0.2.1", head="deny ingress to"), "to",
        "ingress rules use 'from', not 'to'", "write 'deny ingress from ...'", "syntax"),
    Bad("ingress from a name", rule("192.0.2.1, foo.example", head="allow ingress from"),
        "foo.example", "ingress peers must be addresses, but 'foo.example' names foo.example",
        "use addresses or CIDRs", "ingress-fqdn"),
    Bad("ingress from a catalog wildcard", rule("slack", head="allow ingress from"), "slack",
        "'slack' names", "not a name", "ingress-fqdn"),
    Bad("ingress bad address reported once", rule("10.0.0.1/8", head="allow ingress from"),
        "10.0.0.1/8", "host bits set", "10.0.0.0/8", "cidr"),
    # ports
    Bad("port out of range", rule("192.0.2.1", 'port 99999/tcp reason "r"'), "99999/tcp",
        "port out of range in '99999/tcp'", "ports are 1-65535", "port"),
    Bad("port zero", rule("192.0.2.1", 'port 0/tcp reason "r"'), "0/tcp", "port out of range",
        "1-65535", "port"),
    Bad("protocol typo", rule("192.0.2.1", 'port 53/tpc reason "r"'), "53/tpc",
        "unknown protocol 'tpc' in '53/tpc'", "did you mean tcp?", "port"),
    Bad("port without protocol", rule("192.0.2.1", 'port 443/tcp, 80 reason "r"'), "80",
        "invalid port '80'", "name the protocol: 80/tcp or 80/udp", "port"),
    Bad("reversed range", rule("192.0.2.1", 'port 9-3/tcp reason "r"'), "9-3/tcp",
        "empty port range '9-3/tcp'", "did you mean 3-9/tcp?", "port"),
    Bad("icmp with a port", rule("192.0.2.1", 'port 8/icmp reason "r"'), "8/icmp",
        "icmp has no ports", "write icmp alone", "port"),
    Bad("port in other digits", rule("192.0.2.1", 'port \u0664\u0664\u0663/tcp reason "r"'),
        "\u0664\u0664\u0663/tcp", "invalid port", "write ports as 443/tcp", "port"),
    Bad("port name", rule("192.0.2.1", 'port https reason "r"'), "https", "invalid port 'https'",
        "write ports as 443/tcp", "port"),
    # documentation
    Bad("missing reason", policy("allow egress to 192.0.2.1 owner \"o\""), "allow",
        "allow egress rule has no reason", 'add reason "..."', "missing-reason"),
    Bad("reason twice", rule("192.0.2.1", 'reason "a" reason "b"'), 'reason "b"',
        "'reason' is given twice", "keep one 'reason'", "duplicate"),
    Bad("empty reason", rule("192.0.2.1", 'reason " "'), '" "', "'reason' must be one non-empty line",
        "one line", "docs"),
    Bad("reason on two lines", rule("192.0.2.1", 'reason "a\\nb"'), '"a\\nb"',
        "must be one non-empty line", "without control characters", "docs"),
    Bad("invalid date", rule("192.0.2.1", 'reason "r" expires 2020-13-01'), "2020-13-01",
        "invalid date '2020-13-01'", "YYYY-MM-DD", "date"),
    Bad("date in another format", rule("192.0.2.1", 'reason "r" expires 30/06/2027'),
        "30/06/2027", "invalid date", "YYYY-MM-DD", "date"),
    Bad("date without dashes", rule("192.0.2.1", 'reason "r" expires 20270630'), "20270630",
        "invalid date", "YYYY-MM-DD", "date"),
    Bad("invalid id", rule("192.0.2.1", 'reason "r" id Foo_1'), "Foo_1", "invalid rule id 'Foo_1'",
        "lower-case letters, digits and '-'", "name"),
    Bad("same content twice", policy('allow egress to 192.0.2.1 reason "a"',
                                     'allow egress to 192.0.2.1 reason "b"'),
        "allow", "is used twice (first at line 2)", "give each an explicit id", "duplicate", nth=2),
    Bad("explicit id twice", policy('allow egress to 192.0.2.1 reason "a" id x',
                                    'deny egress to 192.0.2.2 reason "b" id x'),
        "deny", "rule id 'x' is used twice", "explicit id", "duplicate"),
    # policy level
    Bad("invalid policy name", policy(name="Bad_Name"), "Bad_Name", "invalid policy name",
        "lower-case letters", "name"),
    Bad("duplicate policy", policy(name="p") + policy(name="p"), "p {", "policy 'p' is already defined",
        "unique", "redefined", nth=2),
    Bad("mode typo", policy("mode shadw"), "shadw", "unknown mode 'shadw'", "did you mean shadow?",
        "mode"),
    Bad("mode twice", policy("mode shadow", "mode enforce"), "mode enforce",
        "'mode' is set twice (first at line 2)", "keep one 'mode'", "duplicate"),
    Bad("scope not supported", policy("applies-to service openclaw.service"), "service",
        "'applies-to service' is not supported yet", "applies-to user NAME", "scope"),
    Bad("scope unknown", policy("applies-to everything"), "everything", "invalid applies-to",
        "write 'applies-to host'", "scope"),
    Bad("invalid user name", policy("applies-to user Bob"), "Bob", "invalid user name 'Bob'",
        "or a uid", "scope"),
    Bad("uid out of range", policy("applies-to user 4294967295"), "4294967295",
        "uid 4294967295 is out of range", "0-4294967294", "scope"),
    Bad("uid in other digits", policy("applies-to user \u0661\u0660\u0660\u0661"),
        "\u0661\u0660", "invalid user name", "or a uid", "scope"),
    Bad("agent-ports on a host", policy("applies-to host", "agent-ports 18789/tcp"), "agent-ports",
        "agent-ports only applies to 'applies-to user ...'", "governs every port", "scope"),
    # confinement
    Bad("capability typo", policy("capabilities drop all keep net_bind_servce"), "net_bind_servce",
        "unknown capability 'net_bind_servce'", "did you mean net_bind_service?", "capability"),
    Bad("keep without drop all", policy("capabilities keep net_raw"), "capabilities",
        "'keep' needs 'drop all' first", "capabilities drop all keep NAME", "capability"),
    Bad("kept and dropped", policy("capabilities drop all, net_raw keep net_raw"), "net_raw",
        "capability 'net_raw' is both kept and dropped", "remove 'net_raw'", "capability"),
    Bad("expires on capabilities", policy('capabilities drop all reason "r" expires 2027-01-01'),
        "expires", "'capabilities' takes only a reason, not 'expires'", "remove 'expires'", "docs"),
    Bad("capabilities twice", policy("capabilities drop all", "capabilities drop net_raw"),
        "capabilities", "a policy has one 'capabilities' statement", "merge", "duplicate", nth=2),
    Bad("socket family typo", policy("sockets allow unix, inet5 stream"), "inet5",
        "unknown socket family 'inet5'", "did you mean inet?", "socket"),
    Bad("socket type typo", policy("sockets allow inet strem"), "strem",
        "unknown socket type 'strem'", "did you mean stream?", "socket"),
    Bad("unknown socket family", policy("sockets allow bluetooth"), "bluetooth",
        "unknown socket family", "families: unix, inet, inet6, netlink, packet", "socket"),
    Bad("netlink protocol typo", policy("sockets allow netlink rout"), "rout",
        "unknown socket type or netlink protocol 'rout'", "did you mean route?", "socket"),
    Bad("unknown netlink protocol", policy("sockets allow unix, netlink bluetooth"), "bluetooth",
        "unknown socket type or netlink protocol", "netlink protocols: route, usersock", "socket"),
    Bad("a protocol on another family", policy("sockets allow inet route"), "route",
        "unknown socket type 'route'", "types: stream, dgram, raw, seqpacket", "socket"),
    Bad("relative path", policy('files deny ~/.ssh, .aws reason "r"'), ".aws",
        "path '.aws' must be absolute or start with ~/", "e.g. ~/.aws or /.aws", "path"),
    Bad("path with ..", policy('files deny /etc/../root/.ssh reason "r"'), "/etc/../root/.ssh",
        "is not in canonical form", "write /root/.ssh", "path"),
    Bad("path with //", policy('files deny ~/.config//gcloud reason "r"'), "~/.config//gcloud",
        "is not in canonical form", "write ~/.config/gcloud", "path"),
    Bad("control character in a path", policy('files deny "/a\\u0001b" reason "r"'), '"/a',
        "contains a control character", "plain '/'-separated", "path"),
    Bad("files without a reason", policy("files deny ~/.ssh"), "files", "files deny rule has no reason",
        'add reason "..."', "missing-reason"),
    # tests
    Bad("test flow to a network", policy('test "t" { expect deny egress 10.0.0.0/8 port 1/tcp }'),
        "10.0.0.0/8", "a test flow names one host, not '10.0.0.0/8'", "a full domain name", "test"),
    Bad("test flow to a wildcard", policy('test "t" { expect deny egress *.x.com port 1/tcp }'),
        "*.x.com", "names one host", "use an address", "test"),
    Bad("test ingress from a name", policy('test "t" { expect deny ingress from a.example port 1/tcp }'),
        "a.example", "ingress flows come from an address", "not its name", "test"),
    Bad("test without a port", policy('test "t" { expect deny egress 192.0.2.1 }'), "192.0.2.1",
        "a test flow needs a port", "192.0.2.1 port 443/tcp", "test"),
    Bad("test with a range", policy('test "t" { expect deny egress 192.0.2.1 port 1-2/tcp }'),
        "1-2/tcp", "a test flow has one port, not '1-2/tcp'", "single port", "test"),
    Bad("test egress with from", policy('test "t" { expect deny egress from 192.0.2.1 port 1/tcp }'),
        "from", "egress flows use 'to', not 'from'", "egress to HOST", "syntax"),
    # includes
    Bad("missing include", 'include "common/nope.claw"\n' + policy(), '"common/nope.claw"',
        "no such file: common/nope.claw", "relative to the including file", "io"),
    Bad("include cycle", 'include "a.claw"\n' + policy(), '"main.claw"',
        "include cycle: main.claw -> a.claw -> main.claw", "cannot include itself", "include-cycle",
        file="a.claw", files={"a.claw": 'include "main.claw"\n'}),
    Bad("include itself", 'include "main.claw"\n' + policy(), '"main.claw"',
        "include cycle: main.claw -> main.claw", "cannot include itself", "include-cycle"),
    Bad("included file defines a policy", 'include "lib.claw"\n' + policy(), '"lib.claw"',
        "included file lib.claw defines policies", "compile policy files by naming them", "include",
        files={"lib.claw": policy(name="other")}),
    Bad("include with a NUL", 'include "a\\u0000b"\n' + policy(), '"a\\u0000b"',
        "invalid file name", "control characters", "io"),
]


def test_errors(workdir: Path, monkeypatch: pytest.MonkeyPatch, subtests: pytest.Subtests) -> None:
    for n, case in enumerate(ERRORS):
        with subtests.test(case.name):
            root = workdir / f"case{n}"
            root.mkdir()
            monkeypatch.chdir(root)
            result = load(root, {"main.claw": case.text, **case.files})
            errors = [d for d in result.diagnostics if d.severity is Severity.ERROR]
            assert len(errors) == 1, render(result.diagnostics, result.sources)
            _assert_diag(errors[0], case, ({"main.claw": case.text, **case.files})[case.file])
            assert not result.ok


def _assert_diag(diag: Diagnostic, case: Bad, text: str) -> None:
    assert diag.code == case.code
    assert diag.location is not None
    where = (diag.location.file, diag.location.line, diag.location.col)
    assert where == (case.file, *position(text, case.at, case.nth))
    assert case.message in diag.message
    assert case.hint in (diag.hint or "")


def test_rendered_diagnostic_shows_the_line_and_a_caret(workdir: Path) -> None:
    text = policy("define tailnet = 100.64.0.0/10", 'allow ingress from @tailnt reason "r"')
    result = load(workdir, {"main.claw": text})
    out = render(result.diagnostics, result.sources)
    line, col = position(text, "@tailnt")
    assert out.splitlines() == [
        f"main.claw:{line}:{col}: error: unknown definition '@tailnt'",
        f"  {line:>4} |   allow ingress from @tailnt reason \"r\"",
        "       | " + " " * (col - 1) + "^" * len("@tailnt"),
        "  hint: did you mean @tailnet?",
    ]


def test_all_errors_of_a_file_in_one_run(workdir: Path) -> None:
    result = load(workdir, {"main.claw": policy(
        'allow egress to 10.0.0.1/8 reason "r"', 'allow egress to opnai reason "r"',
        "mode shadw")})
    assert sorted(d.code for d in result.diagnostics) == ["cidr", "mode", "unknown-name"]


def test_ingress_outside_agent_ports_is_reported(tmp_path: Path) -> None:
    src = tmp_path / "p.claw"
    src.write_text("""policy p {
  applies-to user openclaw
  allow ingress from 10.0.0.0/8 port 22/tcp reason "ssh"
  allow ingress from 10.0.0.0/8 port 18789/tcp reason "gateway"
}""")
    result = load_policies([src])
    warnings = [d for d in result.diagnostics if d.code == "scope"]
    assert len(warnings) == 1 and warnings[0].location is not None
    assert warnings[0].location.line == 3 and "never applies" in warnings[0].message
    assert "agent-ports" in (warnings[0].hint or "")


def test_syscalls_and_executable(tmp_path: Path) -> None:
    src = tmp_path / "p.claw"
    src.write_text("""policy p {
  executable "/usr/bin/node"
  syscalls deny ptrace, bpf reason "no debugging or eBPF" ticket SEC-7
  syscalls allow io_uring_setup reason "the runtime needs it"
}""")
    result = load_policies([src])
    assert result.ok, result.diagnostics
    (policy,) = result.policies
    assert policy.executable == "/usr/bin/node"
    deny, allow = sorted(policy.syscalls, key=lambda s: s.action.value, reverse=True)
    assert (deny.action, deny.names, deny.ticket) == (Action.DENY, ("bpf", "ptrace"), "SEC-7")
    assert (allow.action, allow.names) == (Action.ALLOW, ("io_uring_setup",))
    assert deny.id.startswith("sd-") and allow.id.startswith("sa-")


def test_syscall_and_executable_errors(tmp_path: Path) -> None:
    src = tmp_path / "p.claw"
    src.write_text("""policy p {
  executable "node"
  syscalls deny PTRACE reason "x"
  syscalls deny mount
}""")
    errors = [(d.location.line, d.code) for d in load_policies([src]).diagnostics
              if d.location is not None]
    assert errors == [(2, "path"), (3, "syscall"), (4, "missing-reason")]


def test_dns_local_is_explicit(tmp_path: Path) -> None:
    src = tmp_path / "p.claw"
    body = 'allow egress to api.example.com port 443/tcp reason "api"'
    src.write_text(f"policy p {{\n  {body}\n}}")
    result = load_policies([src])
    assert result.ok and result.policies[0].local_dns is None
    (note,) = [d for d in result.diagnostics if d.code == "dns"]
    assert note.severity is Severity.NOTE and "dns local" in (note.hint or "")
    src.write_text(f"policy p {{\n  dns local\n  {body}\n}}")
    assert load_policies([src]).policies[0].local_dns is not None
    src.write_text(f"policy p {{\n  dns anywhere\n  {body}\n}}")
    (err,) = [d for d in load_policies([src]).diagnostics if d.severity is Severity.ERROR]
    assert err.location is not None and (err.location.line, err.location.col) == (2, 7)
