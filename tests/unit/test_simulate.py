"""Flow files (flowfile), replay as if enforced (simulate) and proposals (suggest), with the
round trip: suggest's rules, added to the policy, leave nothing blocked for the same flows."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from clawpolicy.ir import Policy
from clawpolicy.lower import load_policies
from clawpolicy.operate import flowfile, simulate, suggest

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
