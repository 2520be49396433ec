"""nft_layout: the address map and its chains decide exactly as the evaluator does, and stay
linear in what the policy names.

The emitted map and chains are run by a small interpreter of the nft statements they use
(interval lookup, `meta l4proto . th dport vmap`, `meta l4proto vmap`, `jump`) on every
edge of every network and port range, with readable ports and without (a packet whose port
cannot be read: IP protocol 253, a 1-byte payload), against a brute-force reference: the
lowest rule ID whose peers and ports cover the packet, as `evaluate` decides.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_snippets import snippet_policy

from clawpolicy.backends.base import CompileOptions
from clawpolicy.backends.nft_layout import Layout, address_layout
from clawpolicy.backends.nftables import render
from clawpolicy.ir import Action, Direction, Peers, PortRange, Protocol, Rule, Span
from clawpolicy.netspace import network_interval

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from overlap_shapes import SHAPES, needed  # noqa: E402

SPAN = Span(file="t.claw", line=1, col=1, end_line=1, end_col=1)
PROTO = {"tcp": 6, "udp": 17, "icmp": 1, "ipv6-icmp": 58}
OTHER = 253  # a protocol no rule names with ports
# output (base) -> goto egress (policy chain) -> vmap jump ...: 16 in all, with room to spare
MAX_DEPTH = 6


def _rule(rid: str, nets: Sequence[str], ports: Sequence[PortRange]) -> Rule:
    if "any" in nets:
        peers = Peers(any=True)
    else:
        parsed = [ipaddress.ip_network(n) for n in nets]
        peers = Peers(ipv4=tuple(n for n in parsed if isinstance(n, ipaddress.IPv4Network)),
                      ipv6=tuple(n for n in parsed if isinstance(n, ipaddress.IPv6Network)))
    return Rule(id=rid, action=Action.ALLOW, reason="r", span=SPAN, direction=Direction.EGRESS,
                peers=peers, ports=tuple(ports))


def _interval(text: str) -> tuple[int, int]:
    if "-" in text:
        lo, hi = text.split("-")
        return int(ipaddress.ip_address(lo)), int(ipaddress.ip_address(hi))
    return network_interval(ipaddress.ip_network(text))


class Interpreter:
    """Runs a Layout on one packet; `port=None` is a port the kernel cannot read."""

    def __init__(self, layout: Layout) -> None:
        """Reads the elements' text: `address : jump chain` in a verdict map, the address
        alone in a set (whose one rule jumps to `layout.target`)."""
        self.elements = []
        kind = layout.kind
        for e in layout.elements:
            if kind.verdicts:
                addr, target = re.fullmatch(r"(\S+) : jump (\S+)", e).groups()  # type: ignore[union-attr]
            else:
                addr, target = e, layout.target
            lo, hi = _interval(addr)
            assert kind.interval or lo == hi, f"a range {e} in a hash set"
            self.elements.append((lo, hi, target))
        self.chains = {c.name: c.statements for c in layout.chains}

    def run(self, address: int, proto: int, port: int | None) -> str | None:
        for lo, hi, target in self.elements:
            if lo <= address <= hi:
                return self._chain(target, proto, port, 1)
        return None

    def _chain(self, name: str, proto: int, port: int | None, depth: int) -> str | None:
        """`depth`: the chain's level below the policy chain. The kernel counts gotos as jumps
        when it validates a ruleset (and refuses more than 16 levels), so both add one."""
        assert depth <= MAX_DEPTH, f"{depth} nested jumps: nft allows 16, the base chains use some"
        if name.startswith("rule_"):
            return name  # a rule's chain: its verdict is final
        for st_ in self.chains[name]:
            target = None
            if st_.startswith("meta l4proto . th dport vmap {"):
                if port is None:
                    continue  # the payload expression breaks the rule
                for entry in st_[st_.index("{") + 1:-1].strip().split(", "):
                    key, verdict = entry.split(" : ")
                    p, rng = key.split(" . ")
                    lo, _, hi = rng.partition("-")
                    if PROTO.get(p, -1) == proto and int(lo) <= port <= int(hi or lo):
                        if verdict == "return":
                            return None
                        target = verdict.removeprefix("jump ")
            elif st_.startswith("meta l4proto vmap {"):
                for entry in st_[st_.index("{") + 1:-1].strip().split(", "):
                    p, verdict = entry.split(" : ")
                    if PROTO[p] == proto:
                        if verdict == "return":
                            return None
                        target = verdict.removeprefix("jump ")
            else:
                assert st_.startswith("jump "), st_
                target = st_.removeprefix("jump ")
            if target is not None:
                result = self._chain(target, proto, port, depth + 1)
                if result is not None:
                    return result
        return None


def _covers(rule: Rule, address: int, family: int, proto: int, port: int | None) -> bool:
    nets = [ipaddress.ip_network("0.0.0.0/0" if family == 4 else "::/0")] if rule.peers.any else (
        rule.peers.ipv4 if family == 4 else rule.peers.ipv6)
    if not any(lo <= address <= hi for lo, hi in map(network_interval, nets)):
        return False
    if not rule.ports:
        return True
    for p in rule.ports:
        number = PROTO["icmp" if family == 4 else "ipv6-icmp"] if p.protocol is Protocol.ICMP else PROTO[p.protocol.value]
        if number == proto and (p.first is None or (port is not None and p.bounds[0] <= port <= p.bounds[1])):
            return True
    return False


def _check(rules: list[Rule], family: int) -> None:
    rules = sorted(rules, key=lambda r: r.id)
    layout = address_layout(rules, family, "t", lambda r: "rule_" + r.id, lambda t: f'"{t}"')
    if layout is None:
        return
    vm = Interpreter(layout)
    top = (1 << (32 if family == 4 else 128)) - 1
    addresses: set[int] = {0, top}
    ports: set[int | None] = {None, 1, 65535}
    for r in rules:
        for net in (r.peers.ipv4 if family == 4 else r.peers.ipv6):
            lo, hi = network_interval(net)
            addresses |= {v for v in (lo - 1, lo, hi, hi + 1) if 0 <= v <= top}
        for p in r.ports:
            if p.first is not None and p.last is not None:
                ports |= {v for v in (p.first - 1, p.first, p.last, p.last + 1) if 1 <= v <= 65535}
    icmp = 1 if family == 4 else 58
    for address in sorted(addresses):
        for proto in (6, 17, icmp, OTHER):
            for port in sorted(ports, key=lambda p: -1 if p is None else p):
                if proto in (icmp, OTHER) and port is not None and port != 1:
                    continue
                expected = next((f"rule_{r.id}" for r in rules if _covers(r, address, family, proto, port)), None)
                got = vm.run(address, proto, port)
                assert got == expected, (address, proto, port, got, expected, layout)


NETS4 = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "10.1.2.128/25", "10.2.0.0/16",
         "10.1.3.0/24", "192.0.2.0/24", "any"]
NETS6 = ["2001:db8::/32", "2001:db8:1::/48", "2001:db8:1::/64", "2001:db8:1::7/128"]
PORTS = [PortRange(protocol=Protocol.TCP, first=443, last=443),
         PortRange(protocol=Protocol.TCP, first=8000, last=8100),
         PortRange(protocol=Protocol.TCP, first=22, last=443),
         PortRange(protocol=Protocol.UDP, first=53, last=53),
         PortRange(protocol=Protocol.UDP),
         PortRange(protocol=Protocol.TCP),
         PortRange(protocol=Protocol.ICMP)]

rule_sets = st.lists(
    st.tuples(st.integers(0, 99),
              st.lists(st.sampled_from(NETS4 + NETS6), min_size=1, max_size=3, unique=True),
              st.one_of(st.just([]), st.lists(st.sampled_from(PORTS), min_size=1, max_size=3, unique=True))),
    min_size=1, max_size=8, unique_by=lambda t: t[0])


@settings(max_examples=300, deadline=None)
@given(rule_sets)
def test_layout_decides_like_the_reference(given_rules: list[tuple[int, list[str], list[PortRange]]]) -> None:
    rules = []
    for rid, nets, ports in given_rules:
        if "any" not in nets:  # lowering merges a rule's own networks: no network inside another
            parsed = [ipaddress.ip_network(n) for n in nets]
            nets = [str(n) for n in parsed if not any(
                n != m and n.version == m.version and n.subnet_of(m) for m in parsed)]  # type: ignore[arg-type]
        rules.append(_rule(f"r{rid:02d}", nets, ports))
    for family in (4, 6):
        _check(rules, family)


def test_shapes_from_the_issue(subtests: pytest.Subtests) -> None:
    """Interleaved IDs, port-less rules cutting ancestors off, nested networks."""
    tcp = lambda a, b=None: PortRange(protocol=Protocol.TCP, first=a, last=b or a)  # noqa: E731
    cases = {
        "wide x narrow": [_rule(f"w{i}", ["10.0.0.0/8"], [tcp(1000 + i)]) for i in range(9)]
        + [_rule("w4n", [f"10.0.{i}.1/32" for i in range(5)], [])],
        "narrow port-less rules interleaved": [_rule(f"a{i}", ["10.0.0.0/8"], [tcp(1000 + i)]) for i in range(9)]
        + [_rule(f"a{i}x", [f"10.0.{i}.1/32"], []) for i in range(9)],
        "nested": [_rule(f"n{9 - i}", [f"10.{0}.0.0/{16 + i}"], [tcp(100 + i), tcp(1, 50 + i)]) for i in range(9)],
        "nested 26 deep": [_rule(f"d{i:02d}", [f"10.0.0.0/{7 + i}" if i else "any"], [tcp(100 + i)])
                           for i in range(26)],
        "nested 26 deep, port-less rules on the way": [
            _rule(f"d{(i * 7) % 26:02d}", [f"10.0.0.0/{7 + i}" if i else "any"],
                  [] if i % 5 == 4 else [tcp(100 + i)]) for i in range(26)],
        "nested 97 deep (IPv6)": [
            _rule(f"s{(i * 11) % 97:02d}", [f"2001:db8::/{32 + i}"], [] if i % 9 == 8 else [tcp(100 + i)])
            for i in range(97)],
    }
    for name, rules in cases.items():
        with subtests.test(msg=name):
            _check(rules, 6 if "IPv6" in name else 4)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_elements_grow_linearly(shape: str, tmp_path: Path) -> None:
    """The verdict elements (address map and port maps) of each pathological shape grow in
    proportion to what the policy names: doubling the shape doubles them, give or take a
    little, and they stay within a small factor of the policy's own size (the old partition
    grew with the square: 300 × 300 gave 90,300)."""
    counts = {}
    for n in (40, 80, 160):
        text = render(snippet_policy(tmp_path, _body(SHAPES[shape](n))), CompileOptions())
        counts[n] = text.count(" : jump ")
        assert counts[n] <= 4 * needed(n, shape), (shape, n, counts[n])
    assert counts[160] / counts[80] <= 2.2 and counts[80] / counts[40] <= 2.2, counts


def _body(policy_text: str) -> str:
    """The rules of a generated policy, for `snippet_policy`'s own header."""
    lines = policy_text.splitlines()
    return "\n".join(line for line in lines[1:-1] if not line.strip().startswith(("mode ", "applies-to ")))


def test_portless_rules_need_no_port(tmp_path: Path) -> None:
    """A rule without ports is reached on the address alone, a whole-protocol entry on the
    protocol alone: neither reads `th dport`, which a short packet does not have."""
    text = render(snippet_policy(tmp_path, """
      deny egress to 192.0.2.7, 2001:db8::7 reason "d" id d
      deny egress to 192.0.2.8 port icmp, any/udp reason "w" id w
      allow egress to any reason "a" id a
      allow ingress from 192.0.2.0/24 reason "i" id i"""), CompileOptions())
    # hosts to two chains: a hash verdict map; one chain: a set and one rule jumping to it
    assert "ip daddr vmap @egress_deny_host_v4" in text
    assert "map egress_deny_host_v4 {\n\t\ttype ipv4_addr : verdict\n\t\tsize 2\n" in text
    assert "\t\t\t192.0.2.7 : jump rule_d,\n\t\t\t192.0.2.8 : jump egress_deny_v4_c0,\n" in text
    for lookup in ("ip6 daddr @egress_deny_hostset_v6 jump rule_d", "ip daddr @egress_allow_addrset_v4 jump rule_a",
                   "ip saddr @ingress_allow_addrset_v4 jump rule_i"):
        assert lookup in text
    assert "\t\t\t2001:db8::7,\n" in text and "\t\t\t0.0.0.0/0,\n" in text and "\t\t\t192.0.2.0/24,\n" in text
    assert re.search(r"meta l4proto vmap \{ icmp : jump rule_w, udp : jump rule_w \}", text)
