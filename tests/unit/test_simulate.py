"""Flow files (flowfile), replay as if enforced (simulate) and proposals (suggest), with the
round trip: suggest's rules, added to the policy, leave nothing blocked for the same flows."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import pytest

from clawpolicy.ir import Policy, PortRange, Protocol
from clawpolicy.lower import load_policies
from clawpolicy.operate import flowfile, simulate, suggest, textinput

POLICY = """policy sim {
  mode shadow
  applies-to host
  allow egress to 192.0.2.53 port 53/udp reason "resolver"
  allow egress to api.example.com port 443/tcp reason "api"
  allow egress to 10.1.0.0/16 port 22/tcp reason "legacy ssh"
  deny egress to 192.0.2.66 reason "exfil host" id no-exfil
  test "api" { expect allow egress api.example.com port 443/tcp }
}
"""


def _policy(tmp_path: Path, text: str = POLICY) -> Policy:
    path = tmp_path / "sim.claw"
    path.write_text(text)
    loaded = load_policies([path])
    assert loaded.ok, loaded.diagnostics
    return loaded.policies[0]


FORMATS: list[tuple[str, list[str], list[flowfile.FlowRecord], int]] = [
    ("jsonl", ['{"time": "t1", "dst": "192.0.2.53", "port": 53, "proto": "udp", "uid": 1000}',
               '{"direction": "ingress", "src": "2001:db8::9", "dst": "2001:db8::1", "port": 22}',
               '{"dst": "not-an-address"}', "nope"],
     [flowfile.FlowRecord("egress", "", "192.0.2.53", 53, "udp", "t1", "1000"),
      flowfile.FlowRecord("ingress", "2001:db8::9", "2001:db8::1", 22, "tcp")], 2),
    ("csv", ["time,direction,src,dst,port,proto,uid,name", "t,egress,10.0.0.5,198.51.100.7,443,tcp,,API.Example.com.",
             "t,sideways,1.1.1.1,2.2.2.2,1,tcp,,"],
     [flowfile.FlowRecord("egress", "10.0.0.5", "198.51.100.7", 443, "tcp", "t", None, "api.example.com")], 1),
    ("conntrack", ["tcp      6 431999 ESTABLISHED src=10.0.0.5 dst=140.82.112.3 sport=51234 dport=443 "
                   "src=140.82.112.3 dst=10.0.0.5 sport=443 dport=51234 [ASSURED] mark=0 use=1",
                   "udp      17 29 src=10.0.0.9 dst=10.0.0.5 sport=5000 dport=53 [UNREPLIED] src=10.0.0.5 dst=10.0.0.9 sport=53 dport=5000",
                   "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown."],
     [flowfile.FlowRecord("egress", "10.0.0.5", "140.82.112.3", 443, "tcp"),
      flowfile.FlowRecord("ingress", "10.0.0.9", "10.0.0.5", 53, "udp")], 1),
    ("ss", ["Netid State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process",
            "tcp   LISTEN 0      511    0.0.0.0:18789     0.0.0.0:*",
            'tcp   ESTAB  0      0      10.0.0.5:51234    140.82.112.3:443  users:(("node",pid=1,fd=20)) uid:1000',
            "tcp   ESTAB  0      0      [::ffff:10.0.0.5]:18789 [::ffff:100.64.0.7]:40000",
            "tcp   ESTAB  0      0      [2001:db8::1]%eth0:40001 [2001:db8::9]:443",
            "udp   ESTAB  0      0      garbage"],
     [flowfile.FlowRecord("egress", "10.0.0.5", "140.82.112.3", 443, "tcp", uid="1000"),
      flowfile.FlowRecord("ingress", "100.64.0.7", "10.0.0.5", 18789, "tcp"),
      flowfile.FlowRecord("egress", "2001:db8::1", "2001:db8::9", 443, "tcp")], 1),
]


def test_flow_formats(subtests: Any) -> None:
    import ipaddress
    for fmt, lines, expected, bad in FORMATS:
        with subtests.test(msg=fmt):
            local = [ipaddress.ip_network("10.0.0.5/32")]
            got = flowfile.parse_flows(lines, "auto", local)
            assert got.flows == expected
            assert got.unrecognised == bad


def test_simulate_counts_rules_blocked_and_unused(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    flows = [flowfile.FlowRecord("egress", "", "192.0.2.53", 53, "udp", "t1"),
             flowfile.FlowRecord("egress", "", "198.51.100.7", 443, "tcp", "t2", name="api.example.com"),
             flowfile.FlowRecord("egress", "", "192.0.2.66", 443, "tcp", "t3", name="api.example.com"),
             flowfile.FlowRecord("egress", "", "203.0.113.9", 443, "tcp", "t4", name="cdn.example.net"),
             flowfile.FlowRecord("egress", "", "203.0.113.9", 443, "tcp", "t5"),
             flowfile.FlowRecord("egress", "", "127.0.0.1", 8080, "tcp", "t6")]
    sim = simulate.simulate(policy, flows)
    ids = {r.reason: r.id for r in policy.rules}
    assert sim.allowed == {ids["api"]: 1, ids["resolver"]: 1}
    assert sim.denied == {"default-egress": 2, "no-exfil": 1}  # deny overrides the name's allow
    assert sim.passed == {"loopback": 1}
    top = sim.blocked[0]
    assert (top.peer, top.count, top.names, top.first, top.last) == ("203.0.113.9", 2, {"cdn.example.net"}, "t4", "t5")
    assert sim.unused == [ids["legacy ssh"]]
    assert json.loads(json.dumps(sim.to_json()))["blocked_flows"] == 3
    assert "would have been blocked: 3 flows" in simulate.render_text(sim)
    assert simulate.render_markdown(sim).count("\n| ") >= 4


def test_suggest_aggregates() -> None:
    obs = [suggest.Observation("egress", f"203.0.113.{i}", "tcp", 443, 1) for i in range(200)]
    obs += [suggest.Observation("egress", "198.51.100.7", "tcp", 443, 5),
            suggest.Observation("egress", "198.51.100.7", "tcp", 8443, 5)]
    obs += [suggest.Observation("egress", f"{n}.slack-edge.com", "tcp", 443, 1) for n in "abc"]
    obs += [suggest.Observation("egress", "one.example.org", "tcp", 443, 1)]
    obs += [suggest.Observation("egress", "192.0.2.66", "tcp", 443, 7, denied_by="no-exfil")]
    obs += [suggest.Observation("ingress", "100.64.0.7", "tcp", p, 1) for p in (8000, 8001, 8002, 9000)]
    text = suggest.suggest("sim", obs, [("bpf", 2)]).text
    assert "allow egress to one.example.org,\n    *.slack-edge.com,\n    203.0.113.0/24 port 443/tcp" in text
    assert "allow egress to 198.51.100.7 port 443/tcp, 8443/tcp" in text
    assert "allow ingress from 100.64.0.7 port 8000-8002/tcp, 9000/tcp" in text
    assert "syscalls allow bpf" in text and "denied by rule no-exfil" in text
    assert text.count('reason "TODO"') == 4
    assert "192.0.2.66" not in text


def test_suggest_never_widens_to_a_public_suffix(subtests: pytest.Subtests) -> None:
    """Three names under a public suffix stay three names (lint rates `*.co.uk` an error); a
    registrable parent one level further down is still aggregated."""
    for parent in ("co.uk", "github.io", "s3.amazonaws.com", "com"):
        with subtests.test(msg=parent):
            obs = [suggest.Observation("egress", f"{n}.{parent}", "tcp", 443, 1) for n in ("aa", "bb", "cc")]
            text = suggest.suggest("sim", obs).text
            assert f"*.{parent}" not in text
            assert all(f"{n}.{parent}" in text for n in ("aa", "bb", "cc"))
    obs = [suggest.Observation("egress", f"{n}.shop.co.uk", "tcp", 443, 1) for n in ("aa", "bb", "cc")]
    assert "*.shop.co.uk" in suggest.suggest("sim", obs).text


def _week(n: int, seed: int = 8) -> list[str]:
    rng = random.Random(seed)
    names = ["api.example.com", "hooks.slack.example", "a.cdn.example.net", "b.cdn.example.net", "c.cdn.example.net"]
    lines = []
    for i in range(n):
        roll = rng.random()
        t = f"2026-11-{16 + i * 7 // n:02d}T00:00:00Z"
        if roll < 0.5:
            doc: dict[str, Any] = {"dst": "198.51.100.7", "name": rng.choice(names), "port": 443}
        elif roll < 0.8:
            doc = {"dst": f"203.0.113.{rng.randrange(256)}", "port": rng.choice([443, 8443])}
        elif roll < 0.9:
            doc = {"dst": "192.0.2.53", "port": 53, "proto": "udp"}
        else:
            doc = {"direction": "ingress", "src": f"100.64.{rng.randrange(4)}.{rng.randrange(256)}", "port": 18789}
        lines.append(json.dumps({"time": t, **doc}))
    return lines


def test_round_trip_suggest_then_nothing_blocked(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    flows = flowfile.parse_flows(_week(3000)).flows
    before = simulate.simulate(policy, flows)
    assert before.blocked_flows > 1000
    proposal = suggest.suggest(policy.name, suggest.from_simulation(before))
    text = suggest.insert(POLICY, policy.name, proposal.text)
    after = simulate.simulate(_policy(tmp_path, text), flows)
    assert after.blocked == [] and after.blocked_flows == 0, simulate.render_text(after)
    assert "203.0.113.0/24" in proposal.text and "*.cdn.example.net" in proposal.text


# ------------------------------------------------------------------ hostile flow files (issue 16)

BAD_LINES: list[tuple[str, str, str]] = [  # (format, label, line): each one line, never fatal
    ("jsonl", "200k-deep nesting", "[" * 200_000),
    ("jsonl", "deep object value", '{"dst": "192.0.2.1", "x": ' + '{"a":' * 5000 + "1" + "}" * 5000 + "}"),
    ("jsonl", "5000-digit port", '{"dst": "192.0.2.1", "port": ' + "4" * 5000 + "}"),
    ("jsonl", "port 1e400", '{"dst": "192.0.2.1", "port": 1e400}'),
    ("jsonl", "port true", '{"dst": "192.0.2.1", "port": true}'),
    ("jsonl", "port 65536", '{"dst": "192.0.2.1", "port": 65536}'),
    ("jsonl", "name with a comma", '{"name": "api.example.com, any", "port": 443}'),
    ("jsonl", "name with a newline", '{"name": "a.example\\n}\\npolicy evil {", "port": 443}'),
    ("jsonl", "name any", '{"name": "any", "port": 443}'),
    ("jsonl", "catalog group name", '{"name": "openai", "port": 443}'),
    ("jsonl", "wildcard name", '{"name": "*.example.com", "port": 443}'),
    ("jsonl", "name as a list", '{"name": ["a.example"], "port": 443}'),
    ("jsonl", "uid with a newline", '{"dst": "192.0.2.1", "uid": "x\\ny"}'),
    ("jsonl", "uid as an object", '{"dst": "192.0.2.1", "uid": {"a": 1}}'),
    ("jsonl", "time of 1 KiB", '{"dst": "192.0.2.1", "time": "' + "t" * 1024 + '"}'),
    ("jsonl", "address with junk", '{"dst": "192.0.2.1/24"}'),
    ("jsonl", "lone surrogate", '{"dst": "\\ud800"}'),
    ("jsonl", "text after the object", '{"dst": "192.0.2.1"} x'),
    ("jsonl", "two objects", '{"dst": "192.0.2.1"}{"dst": "192.0.2.3"}'),
    ("jsonl", "byte order mark", '\ufeff{"dst": "192.0.2.1"}'),
    ("jsonl", "a list", '[{"dst": "192.0.2.1"}]'),
    ("csv", "field over 128 KiB", "t,egress,,192.0.2.1,443,tcp,," + "x" * (200 * 1024)),
    ("csv", "bare CR", "t,egress,,192.0.2.1,443,tcp,,\ra.example"),
    ("csv", "open quote", 't,egress,,"192.0.2.1,443,tcp,,'),
    ("csv", "NUL", "t,egress,,192.0.2.1,44\x003,tcp,,"),
    ("conntrack", "5000-digit dport", "tcp 6 1 src=10.0.0.5 dst=192.0.2.1 sport=1 dport=" + "4" * 5000),
    ("ss", "5000-digit port", "tcp ESTAB 0 0 10.0.0.5:1 192.0.2.1:" + "4" * 5000),
]
HEADERS = {"csv": "time,direction,src,dst,port,proto,uid,name", "ss": "Netid State Recv-Q Send-Q Local Peer",
           "jsonl": '{"dst": "192.0.2.9", "port": 1}', "conntrack": "tcp 6 1 src=10.0.0.5 dst=192.0.2.9 dport=1"}
GOOD = {"csv": "t,egress,,192.0.2.2,443,tcp,,", "jsonl": '{"dst": "192.0.2.2", "port": 443}',
        "conntrack": "tcp 6 1 src=10.0.0.5 dst=192.0.2.2 sport=1 dport=443",
        "ss": "tcp ESTAB 0 0 10.0.0.5:1 192.0.2.2:443"}


def test_hostile_flow_lines_are_positioned_problems(subtests: Any) -> None:
    """Each bad line is counted with file:line and why, and the next line is still read."""
    for fmt, label, line in BAD_LINES:
        with subtests.test(msg=f"{fmt}: {label}"):
            got = flowfile.parse_flows([HEADERS[fmt], line, GOOD[fmt]], fmt, (), None, "flows.x")
            assert [p.line for p in got.unreadable.first] == [2], got.unreadable.first
            assert str(got.unreadable.first[0]).startswith("flows.x:2: warning: ")
            assert got.flows[-1].dst == "192.0.2.2" and got.unrecognised == 1


def test_flow_fields_are_normalised_as_the_language_does() -> None:
    got = flowfile.parse_flows(['{"dst": "::ffff:192.0.2.7", "name": "API.Example.COM."}',
                                '{"direction": "ingress", "src": "fe80::1%eth0", "port": 22}'])
    assert [(f.dst, f.src, f.name) for f in got.flows] == [("192.0.2.7", "", "api.example.com"),
                                                          ("", "fe80::1", None)]


def test_overlong_flow_lines(tmp_path: Path) -> None:
    stream = io.BytesIO(b'{"dst": "192.0.2.1"}\n{"x": "' + b"y" * 4096 + b'"}\n{"dst": "192.0.2.2"}\n')
    got = flowfile.parse_flows(textinput.read_lines(stream, limit=1024), file="f")
    assert [f.dst for f in got.flows] == ["192.0.2.1", "192.0.2.2"]
    assert [(p.line, "longer" in p.message) for p in got.unreadable.first] == [(2, True)]


HOSTILE_TEXT = ["<img src=x onerror=alert(1)>", "a|b", "`code`", "[x](http://e)", "**b**", "x\ny",
                "\u202etxt", "$math$", "# h", "&amp;", "\x1b[31m", "\u2028"]


def test_markdown_report_keeps_flow_text_inert(tmp_path: Path, subtests: Any) -> None:
    """Times and names from a flow file stay text in their cells: no tag, link, code span,
    new row or new column, whatever they hold."""
    policy = _policy(tmp_path)
    for bad in HOSTILE_TEXT:
        with subtests.test(msg=repr(bad)):
            flows = [flowfile.FlowRecord("egress", "", "203.0.113.9", 443, "tcp", f"t{bad}"),
                     flowfile.FlowRecord("egress", "", "203.0.113.9", 443, "tcp", f"u{bad}", name="x.example")]
            sim = simulate.simulate(policy, flows)
            md = simulate.render_markdown(sim)
            (row,) = [r for r in md.splitlines() if "203.0.113.9" in r]
            header = next(r for r in md.splitlines() if r.startswith("| flows |"))
            assert row.count(" | ") == header.count(" | ") and "\\|" not in header
            assert "<img" not in md and "[x](" not in md and "\x1b" not in md
            assert all(c.isprintable() for c in md.replace("\n", ""))
            text = simulate.render_text(sim)
            assert all(c.isprintable() for c in text.replace("\n", ""))
            assert len(text.splitlines()) == len(simulate.render_text(simulate.simulate(policy, [
                flowfile.FlowRecord("egress", "", "203.0.113.9", 443, "tcp", "t")])).splitlines())


# Values that must never reach policy text: injection, keywords, groups, out-of-range.
HOSTILE_PEERS = ["api.example.com, any", "a.example\n}\npolicy evil {", "any", "openai", "@llm",
                 "*.example.com", "a.example reason \"x\"", "a.example#c", "10.0.0.0/8", "fe80::1%eth0",
                 "a..example", "-a.example", "a.example\u2028", "1.2.3.4.5", "", "x" * 300 + ".example",
                 "a.example port 22/tcp", "a.example\x00"]


def test_suggest_validates_every_value(tmp_path: Path, subtests: Any) -> None:
    """Hostile peers, protocols, ports, rule labels and syscall names are dropped and counted;
    what is left parses back to exactly the proposed rules (suggest checks it itself)."""
    good = suggest.Observation("egress", "api.example.com", "tcp", 443, 3)
    cases = [suggest.Observation("egress", p, "tcp", 443, 1) for p in HOSTILE_PEERS]
    cases += [suggest.Observation("ingress", "api.example.com", "tcp", 443, 1),
              suggest.Observation("egress", "192.0.2.1", "tcp,any", 443, 1),
              suggest.Observation("egress", "192.0.2.1", "tcp", 0, 1),
              suggest.Observation("egress", "192.0.2.1", "tcp", 65536, 1),
              suggest.Observation("egress", "192.0.2.1", "tcp", True, 1),
              suggest.Observation("sideways", "192.0.2.1", "tcp", 443, 1),
              suggest.Observation("egress", "192.0.2.1", "tcp", 443, 1, denied_by="r\n# x"),
              suggest.Observation("egress", "192.0.2.1", "tcp", 443, -1)]
    for bad in cases:
        with subtests.test(msg=repr(bad)):
            out = suggest.suggest("sim", [good, bad])
            assert len(out.dropped) == 1 and "1 observation dropped" in out.text
            assert out.proposed == [suggest.ProposedRule("egress", frozenset({"api.example.com"}),
                                                         (PortRange(protocol=Protocol.TCP, first=443, last=443),))]
            assert "any" not in out.text.replace("any/", "") and "evil" not in out.text
    for call in ["reason", "any", "Bind", "no_such_call", "bpf\nx", "connect;"]:
        with subtests.test(msg=f"syscall {call!r}"):
            out = suggest.suggest("sim", [], [(call, 1), ("bpf", 1)])
            assert out.syscalls == ["bpf"] and len(out.dropped) == 1


def test_suggest_normalises_peers(tmp_path: Path) -> None:
    obs = [suggest.Observation("egress", "API.Example.COM.", "tcp", 443, 1),
           suggest.Observation("egress", "::ffff:192.0.2.9", "udp", 53, 1),
           suggest.Observation("egress", "2001:0db8:0:0::1", "icmp", 8, 1)]
    out = suggest.suggest("sim", obs)
    assert {p for r in out.proposed for p in r.peers} == {"api.example.com", "192.0.2.9/32", "2001:db8::1/128"}
    assert "allow egress to 2001:db8::1 port icmp" in out.text and not out.dropped


def test_suggest_refuses_text_that_does_not_parse_back(monkeypatch: Any) -> None:
    """The self-check is real: a proposal whose text says something else is an error."""
    monkeypatch.setattr(suggest, "_ports_text", lambda ports: "1-65535/tcp")
    with pytest.raises(suggest.SuggestError):
        suggest.suggest("sim", [suggest.Observation("egress", "192.0.2.1", "tcp", 443, 1)])


def test_suggest_merges_repeated_syscalls() -> None:
    """Found by the fuzzer: the same syscall twice must be one rule (two would share an ID)."""
    out = suggest.suggest("sim", [], [("bpf", 1), ("ptrace", 2), ("bpf", 3)])
    assert out.syscalls == ["bpf", "ptrace"] and out.text.count("syscalls allow bpf") == 1
    assert "# 4 calls outside the seccomp baseline\nsyscalls allow bpf" in out.text


USER_POLICY = """policy agent {{
  mode shadow
  applies-to user {who}
  allow egress to 192.0.2.53 port 53/udp reason "resolver"
}}
"""

# (scope, host database name -> uid, --user, record spellings of the policy's user, others,
#  words of the note)
IDENTITIES: list[tuple[str, dict[str, int], dict[str, int], list[str], list[str], str]] = [
    ("agentx", {"agentx": 1234}, {}, ["agentx", "1234"], ["1235", "root"], "is uid 1234 on this host"),
    ("2345", {"svc": 2345}, {}, ["2345", "svc"], ["svc2", "2346"], "uid 2345 is user svc on this host"),
    ("ghost", {}, {"ghost": 777}, ["ghost", "777"], ["778"], "from --user"),
    ("ghost", {"ghost": 10}, {"ghost": 777}, ["777"], ["10"], "from --user"),  # --user wins
    ("ghost", {}, {}, ["ghost"], ["777"], "does not exist on this host"),
    ("3456", {}, {}, ["3456"], ["svc"], "has no user name"),
]


def test_simulate_matches_the_user_by_name_and_uid(tmp_path: Path, subtests: Any) -> None:
    for n, (who, host, given, own, others, note) in enumerate(IDENTITIES):
        with subtests.test(msg=f"{who} #{n}"):
            (tmp_path / str(n)).mkdir()
            policy = _policy(tmp_path / str(n), USER_POLICY.format(who=who))
            ident = simulate.identity(policy, given, uid_of=host.get,
                                      name_of=lambda uid, h=host: next((k for k, v in h.items() if v == uid), None))
            assert ident is not None and note in ident.note, ident
            flows = [flowfile.FlowRecord("egress", "", "203.0.113.9", 443, "tcp", f"t{i}", uid)
                     for i, uid in enumerate(own + others)]
            sim = simulate.simulate(policy, flows, who=ident)
            assert sim.denied == {"default-egress": len(own)}, (sim.denied, sim.passed)
            assert sim.passed == {"out-of-scope": len(others)}
            assert note in simulate.render_text(sim) and sim.to_json()["user"] == ident.note


def test_simulate_cli_takes_the_uid_of_a_user_this_host_lacks(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from clawpolicy.cli import main
    policy = tmp_path / "agent.claw"
    policy.write_text(USER_POLICY.format(who="nosuchuser-17"))
    flows = tmp_path / "flows.jsonl"
    flows.write_text("".join(json.dumps({"dst": "203.0.113.9", "port": 443, "uid": u}) + "\n"
                             for u in (4242, 4242, "nosuchuser-17", 1)))
    assert main(["simulate", str(policy), str(flows), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)["policies"][0]
    assert doc["denied"] == {"default-egress": 1} and "does not exist" in doc["user"]
    assert main(["simulate", str(policy), str(flows), "--format", "json", "--user", "nosuchuser-17=4242"]) == 0
    doc = json.loads(capsys.readouterr().out)["policies"][0]
    assert doc["denied"] == {"default-egress": 3} and doc["passed"] == {"out-of-scope": 1}
    assert main(["simulate", str(policy), str(flows), "--user", "nosuchuser-17"]) == 2
    assert "give NAME=UID" in capsys.readouterr().err


INDEX_POLICIES = {
    "overlapping networks, denies, any": """policy ix {
  applies-to host
  dns local
  allow egress to 10.0.0.0/8 port 443/tcp reason "a"
  allow egress to 10.1.0.0/16, 192.0.2.0/24, 2001:db8::/32 reason "b"
  deny egress to 10.1.2.0/24 port 443/tcp reason "c"
  allow egress to any port 8080/tcp reason "d"
  allow egress to api.example.com, *.cdn.example port 443/tcp reason "e"
  allow ingress from 100.64.0.0/10 port 22/tcp reason "f"
  deny ingress from 100.64.1.0/24 reason "g"
}
""",
    "no address rules": """policy ix {
  applies-to user openclaw
  dns local
  allow egress to api.example.com port 443/tcp reason "e"
}
""",
}


def test_the_rule_index_decides_as_the_evaluator(tmp_path: Path, subtests: Any) -> None:
    from clawpolicy.evaluate import Flow, evaluate, rule_matches
    from clawpolicy.ir import Direction
    from clawpolicy.operate.ruleindex import RuleIndex
    rng = random.Random(17)
    peers = ["10.0.0.1", "10.1.2.3", "10.1.3.4", "10.255.255.255", "11.0.0.0", "192.0.2.200", "127.0.0.1",
             "2001:db8::5", "2001:db9::1", "::1", "100.64.1.9", "100.64.2.9", "api.example.com",
             "x.cdn.example", "other.example"]
    for name, text in INDEX_POLICIES.items():
        with subtests.test(msg=name):
            (tmp_path / name).mkdir()
            policy = _policy(tmp_path / name, text)
            index = RuleIndex(policy)
            for _ in range(400):
                flow = Flow(rng.choice(list(Direction)), rng.choice(peers), rng.choice(list(Protocol)),
                            rng.choice([22, 53, 443, 8080, None]), rng.choice([None, "openclaw", "root"]))
                assert index.evaluate(flow) == evaluate(policy, flow), flow
                assert index.matching_ids(flow) == [r.id for r in policy.rules if rule_matches(r, flow)]


def test_addresses_of_one_kind_decide_alike(tmp_path: Path, subtests: Any) -> None:
    """`simulate` decides each `RuleIndex.kind` once: every address of a kind must get the
    evaluator's verdict of every other, and match the same rules, for any flow shape."""
    from clawpolicy.evaluate import Flow, evaluate, rule_matches
    from clawpolicy.ir import Direction
    from clawpolicy.operate.ruleindex import RuleIndex
    rng = random.Random(1717)
    addresses = ["10.0.0.1", "10.0.0.2", "10.1.2.3", "10.1.3.4", "10.255.255.255", "11.0.0.0", "192.0.2.200",
                 "192.0.2.201", "127.0.0.1", "127.9.9.9", "128.0.0.1", "2001:db8::5", "2001:db8::6",
                 "2001:db9::1", "::1", "::2", "::ffff:127.0.0.1", "100.64.1.9", "100.64.2.9", "0.0.0.0"]
    for name, text in INDEX_POLICIES.items():
        with subtests.test(msg=name):
            (tmp_path / name).mkdir()
            policy = _policy(tmp_path / name, text)
            index = RuleIndex(policy)
            kinds: dict[object, list[str]] = {}
            for address in addresses:
                kinds.setdefault(index.kind(address), []).append(address)
            assert index.kind("api.example.com") == "api.example.com"
            for _ in range(300):
                shape = (rng.choice(list(Direction)), rng.choice(list(Protocol)), rng.choice([22, 53, 443, None]),
                         rng.choice([None, "openclaw", "root"]))
                for same in kinds.values():
                    flows = [Flow(shape[0], a, shape[1], shape[2], shape[3]) for a in same]
                    assert len({evaluate(policy, f) for f in flows}) == 1, flows
                    assert len({tuple(r.id for r in policy.rules if rule_matches(r, f)) for f in flows}) == 1


def test_simulate_by_kind_reports_as_per_flow_evaluation(tmp_path: Path) -> None:
    """The report of many flows to distinct addresses is what deciding each flow alone gives."""
    from clawpolicy.evaluate import Flow, evaluate
    from clawpolicy.ir import Direction, Mode
    rng = random.Random(7)
    policy = _policy(tmp_path, INDEX_POLICIES[next(iter(INDEX_POLICIES))]).with_mode(Mode.ENFORCE)
    records = [flowfile.FlowRecord(rng.choice(["egress", "ingress"]), f"10.1.{rng.randrange(4)}.{rng.randrange(256)}",
                                   rng.choice(["10.0.0.1", "10.1.2.3", "127.0.0.1", "2001:db8::5", "8.8.8.8",
                                               f"10.1.{rng.randrange(4)}.{rng.randrange(256)}"]),
                                   rng.choice([22, 53, 443]), rng.choice(["tcp", "udp"]), f"t{i:04}")
               for i in range(2000)]
    sim = simulate.simulate(policy, records)
    allowed: dict[str, int] = {}
    denied: dict[str, int] = {}
    for r in records:
        v = evaluate(policy, Flow(Direction(r.direction), r.peer, Protocol(r.proto), r.port))
        if v.cause in ("out-of-scope", "loopback"):
            continue
        label = v.rule_id or f"default-{r.direction}"
        into = allowed if v.action.value == "allow" else denied
        into[label] = into.get(label, 0) + 1
    assert sim.allowed == dict(sorted(allowed.items())) and sim.denied == dict(sorted(denied.items()))
    assert sim.flows == 2000 and sim.blocked_flows == sum(denied.values())


def test_json_lines_take_whitespace_around_the_object() -> None:
    got = flowfile.parse_flows(['  {"dst": "192.0.2.1"}\t ', '\t{"dst": "192.0.2.2", "port": 443}'], "jsonl")
    assert [(f.dst, f.port) for f in got.flows] == [("192.0.2.1", None), ("192.0.2.2", 443)]
    assert got.unrecognised == 0
