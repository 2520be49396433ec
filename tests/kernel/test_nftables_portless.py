"""Deny wins for packets without a readable port: every kind of deny against every kind of
allow on one address, probed in a namespace with raw IP packets (protocol 253 with 0, 1 and 2
byte payloads, ICMP with 2 and 3: nothing where `th dport` would be) and ordinary flows.

The reference is the evaluator. DNS-filled sets are filled by hand with the probed address,
so an FQDN rule covers that address exactly as a rule naming it would: the evaluator decides
on the policy with the address added to those rules. A packet of IP protocol 253 matches only
rules without ports; the evaluator sees it as a flow that port-less rules alone can match.

One lab serves every pair, each pair with addresses of its own: a conntrack entry of a flow
one policy allowed (`ct state established` is accepted first) never meets another's probes.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

import pytest
from flows import AGENT_ADDRESSES
from netlab import PROBE, Lab, Probe, format_results

from clawpolicy.backends.base import CompileOptions
from clawpolicy.backends.nftables import fqdn_groups, render, table_name
from clawpolicy.evaluate import Flow, evaluate
from clawpolicy.ir import Direction, Policy, Protocol
from clawpolicy.lower import load_policies

pytestmark = pytest.mark.root
TCP_PORTS, UDP_PORTS = (22, 443), (53, 443)
# {a4}, {a6}: the pair's probed addresses; {n4}, {n6}: small networks around them
DENIES = {
    "address": "deny egress to {a4}, {a6}",
    "network": "deny egress to {n4}, {n6}",
    "address-ports": "deny egress to {a4}, {a6} port 443/tcp, 53/udp",
    "address-icmp": "deny egress to {a4}, {a6} port icmp",
    "fqdn": "deny egress to bad.example",
    "fqdn-ports": "deny egress to bad.example port 443/tcp, icmp",
    "wildcard": "deny egress to *.bad.example",
}
ALLOWS = {
    "address": "allow egress to {a4}, {a6}",
    "address-icmp": "allow egress to {a4}, {a6} port icmp, 22/tcp",
    "fqdn": "allow egress to good.example",
    "fqdn-ports": "allow egress to good.example port 22/tcp, icmp",
    "wildcard": "allow egress to *.good.example",
    "any": "allow egress to any",
}
INGRESS_DENIES = {
    "address": "deny ingress from {a4}, {a6}",
    "network": "deny ingress from {n4}, {n6}",
    "address-ports": "deny ingress from {a4}, {a6} port 22/tcp, 53/udp",
    "address-icmp": "deny ingress from {a4}, {a6} port icmp",
}
INGRESS_ALLOWS = {
    "address": "allow ingress from {a4}, {a6}",
    "network": "allow ingress from 192.0.2.0/24, 2001:db8::/32",
    "address-icmp": "allow ingress from {a4}, {a6} port icmp, 22/tcp",
    "any": "allow ingress from any",
}


def _pairs(denies: dict[str, str], allows: dict[str, str]) -> list[tuple[str, str, str, dict[str, str]]]:
    """(label, deny, allow, addresses) for every deny kind against every allow kind."""
    out = []
    for k, ((dname, deny), (aname, allow)) in enumerate(
            (d, a) for d in denies.items() for a in allows.items()):
        where = {"a4": f"192.0.2.{4 * k + 1}", "n4": f"192.0.2.{4 * k}/30",
                 "a6": f"2001:db8:77:{k:x}::7", "n6": f"2001:db8:77:{k:x}::/64"}
        out.append((f"deny {dname} / allow {aname}", deny.format(**where), allow.format(**where), where))
    return out


def _policy(tmp_path: Path, deny: str, allow: str) -> Policy:
    src = tmp_path / "portless.claw"
    src.write_text(f'policy portless {{\n mode enforce\n applies-to host\n {deny} reason "d" id d\n'
                   f' {allow} reason "a" id a\n}}\n')
    result = load_policies([src])
    assert result.ok, result.diagnostics
    return result.policies[0]


def _resolved(policy: Policy, peers: tuple[str, str]) -> Policy:
    """The policy as the kernel sees it once DNS put the peers into every name's set."""
    rules = []
    for r in policy.rules:
        if r.peers.has_fqdns:
            update = {"ipv4": (*r.peers.ipv4, ipaddress.IPv4Network(peers[0])),
                      "ipv6": (*r.peers.ipv6, ipaddress.IPv6Network(peers[1]))}
            r = r.model_copy(update={"peers": r.peers.model_copy(update=update)})
        rules.append(r)
    return policy.model_copy(update={"rules": tuple(rules)})


def _portless_only(policy: Policy) -> Policy:
    """What a packet of a protocol without ports can match: the rules without ports."""
    return policy.model_copy(update={"rules": tuple(r for r in policy.rules if not r.ports)})


def _load(lab: Lab, policy: Policy) -> None:
    lab.run(lab.agent_ns, ["nft", "delete", "table", "inet", table_name(policy)], check=False)
    lab.load_ruleset(render(policy, CompileOptions()))


def _raw(lab: Lab, probes: list[tuple[str, int, int]]) -> list[str]:
    """Send (address, IP protocol, payload length) raw datagrams from the agent namespace."""
    request = {"uid": 0, "timeout": 0.6, "probes": [
        {"protocol": "raw", "dst": a, "ipproto": proto, "payload": n} for a, proto, n in probes]}
    r = lab.run(lab.agent_ns, [lab.python, str(PROBE)], input=json.dumps(request), timeout=20)
    return [x["outcome"] if x["outcome"] in ("ok", "eperm") else f"{x['outcome']} {x['errno']}"
            for x in json.loads(r.stdout)]


def test_deny_wins_without_ports(tmp_path: Path, subtests: pytest.FixtureRequest) -> None:
    pairs = _pairs(DENIES, ALLOWS)
    peers = [w[k] for *_, w in pairs for k in ("a4", "a6")]
    with Lab(peer_addresses=peers, agent_addresses=AGENT_ADDRESSES,
             tcp_ports=TCP_PORTS, udp_ports=UDP_PORTS) as lab:
        for label, deny, allow, where in pairs:
            with subtests.test(msg=label):  # type: ignore[attr-defined]
                _egress_pair(lab, _policy(tmp_path, deny, allow), (where["a4"], where["a6"]),
                             f"{deny} / {allow}")


def _egress_pair(lab: Lab, policy: Policy, peers: tuple[str, str], what: str) -> None:
    _load(lab, policy)
    for group in fqdn_groups(policy):
        for family, peer in zip((4, 6), peers):
            lab.nft("add", "element", "inet", table_name(policy), group.set_name(family), f"{{ {peer} }}")
    resolved = _resolved(policy, peers)
    # ICMP needs its 2-byte type and code to leave the host; at 2 or 3 bytes the place of a
    # port (bytes 2-3) is still past the end of the packet
    raw = [(a, 253, n) for a in peers for n in (0, 1, 2)] + [(peers[0], 1, n) for n in (2, 3)]
    wrong = []
    for (addr, proto, n), outcome in zip(raw, _raw(lab, raw), strict=True):
        reference = _portless_only(resolved) if proto == 253 else resolved
        verdict = evaluate(reference, Flow(Direction.EGRESS, addr, Protocol.ICMP, None))
        assert outcome in ("ok", "eperm"), (addr, proto, n, outcome)
        if (outcome == "ok") != verdict.passes:
            wrong.append(f"  ip proto {proto}, {n}-byte payload -> {addr}: kernel {outcome}, "
                         f"evaluator {verdict}")
    probes = [Probe("egress", a, p, port) for a in peers
              for p, ports in (("tcp", TCP_PORTS), ("udp", UDP_PORTS)) for port in ports]
    probes += [Probe("egress", a, "icmp") for a in peers]
    for res in lab.probe_results(probes):
        p = res.probe
        verdict = evaluate(resolved, Flow(Direction.EGRESS, p.remote, Protocol(p.protocol), p.port))
        if res.ok != verdict.passes:
            wrong.append(format_results([res]) + f"  (evaluator: {verdict})")
    assert not wrong, f"{what}:\n" + "\n".join(wrong)


def _received(lab: Lab, sends: list[tuple[str, str, int]]) -> set[tuple[str, int]]:
    """Send (source, destination, payload length) datagrams of IP protocol 253 from the peer
    namespace; return the (source, length) pairs a raw socket in the agent namespace got."""
    listener = subprocess.Popen(["ip", "netns", "exec", lab.agent_ns, lab.python, str(PROBE)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert listener.stdin is not None and listener.stdout is not None
    listener.stdin.write(json.dumps({"listen": {"ipproto": 253, "seconds": 0.5}}))
    listener.stdin.close()
    assert listener.stdout.readline().strip() == "READY"
    request = {"uid": 0, "timeout": 0.6, "probes": [
        {"protocol": "raw", "src": src, "dst": dst, "ipproto": 253, "payload": n} for src, dst, n in sends]}
    lab.run(lab.peer_ns, [lab.python, str(PROBE)], input=json.dumps(request), timeout=20)
    out = listener.stdout.read()
    assert listener.wait(timeout=20) == 0
    return {(str(x["src"]), int(x["payload"])) for x in json.loads(out)}


def test_ingress_deny_wins_without_ports(tmp_path: Path, subtests: pytest.FixtureRequest) -> None:
    """The same for ingress, where no names exist: raw datagrams from the peer reach a raw
    socket in the agent namespace only if the input hook accepts them."""
    pairs = _pairs(INGRESS_DENIES, INGRESS_ALLOWS)
    peers = [w[k] for *_, w in pairs for k in ("a4", "a6")]
    with Lab(peer_addresses=peers, agent_addresses=AGENT_ADDRESSES) as lab:
        for label, deny, allow, where in pairs:
            with subtests.test(msg=label):  # type: ignore[attr-defined]
                policy = _policy(tmp_path, deny, allow)
                _load(lab, policy)
                sends = [(where[k], agent, n) for k, agent in zip(("a4", "a6"), AGENT_ADDRESSES)
                         for n in (0, 1, 2)]
                got = _received(lab, sends)
                wrong = []
                for peer, _, n in sends:
                    verdict = evaluate(_portless_only(policy), Flow(Direction.INGRESS, peer, Protocol.ICMP, None))
                    if ((peer, n) in got) != verdict.passes:
                        wrong.append(f"  ip proto 253, {n}-byte payload <- {peer}: kernel "
                                     f"{'delivered' if (peer, n) in got else 'dropped'}, evaluator {verdict}")
                assert not wrong, f"{deny} / {allow}:\n" + "\n".join(wrong)
