"""A list of address literals lowered in one pass (issue 14: `literals.address_keys`, then
`netspace.networks_of_keys`) gives the networks the per-item path gives (`parse_literal`,
`merge_networks`), and is refused (None: the per-item path decides and words any error)
whenever one item is not a literal the fast path takes."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path
from typing import Any

import pytest

from clawpolicy.errors import Diagnostics, Location
from clawpolicy.literals import _key, address_keys, parse_literal
from clawpolicy.lower import load_policies
from clawpolicy.netspace import merge_networks, networks_of_keys
from clawpolicy.syntax import Word


def _per_item(texts: list[str]) -> tuple[tuple[object, ...], tuple[object, ...]] | None:
    diag = Diagnostics()
    atoms = [parse_literal(Word(t, Location("t")), diag) for t in texts]
    if diag.items or any(a is None or a.net is None for a in atoms):
        return None
    nets = [a.net for a in atoms if a is not None]
    return (merge_networks([n for n in nets if isinstance(n, ipaddress.IPv4Network)]),
            merge_networks([n for n in nets if isinstance(n, ipaddress.IPv6Network)]))


LISTS = {
    "hosts": ["11.0.0.2", "11.0.0.8", "11.0.0.4"],
    "adjacent hosts": ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.0"],
    "duplicates": ["10.0.0.1", "10.0.0.1", "10.0.0.9"],
    "nested": ["10.0.0.0/8", "10.1.2.3", "11.0.0.0/24"],
    "touching cidrs": ["10.0.0.0/25", "10.0.0.128/25", "192.0.2.0/24"],
    "mixed families": ["2001:db8::/48", "11.0.0.0/24", "2001:db8:2::/64", "11.0.2.7"],
    "v6 nested": ["2001:db8::/32", "2001:db8:1::/48", "2001:db8:1::1"],
    "v6 touching": ["2001:db8::/49", "2001:db8:0:8000::/49"],
    "v6 non-canonical": ["2001:DB8::1", "2001:db8::2"],
    "v6 leading zeros": ["2001:0db8::1", "2001:db8::2"],
    "v6 below ::/64": ["::1", "2001:db8::2"],
    "v6 mapped": ["::ffff:1.2.3.4", "11.0.0.1"],
    "v6 zone": ["fe80::1%eth0", "11.0.0.1"],
    "host bits": ["10.0.0.1/24", "11.0.0.1"],
    "v6 host bits": ["2001:db8::1/48", "11.0.0.1"],
    "leading-zero prefix": ["10.0.0.0/08", "11.0.0.1"],
    "prefix too long": ["10.0.0.0/33", "2001:db8::/129"],
    "a name": ["11.0.0.1", "example.com"],
    "leading-zero octet": ["011.0.0.1", "11.0.0.2"],
    "every address": ["0.0.0.0/0", "::/0"],
}


def test_address_lists_agree_with_the_per_item_path(subtests: pytest.Subtests) -> None:
    rng = random.Random(1417)

    def network() -> str:  # near each other, so lists nest, touch and repeat
        if rng.random() < 0.6:
            value, prefix = (11 << 24) + rng.randrange(1 << 12), rng.choice([22, 24, 30, 31, 32, 32])
            net: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.IPv4Network(
                (value >> (32 - prefix) << (32 - prefix), prefix))
        else:
            value, prefix = (0x20010DB8 << 96) + (rng.randrange(8) << 80) + rng.randrange(4), \
                rng.choice([46, 48, 64, 127, 128])
            net = ipaddress.IPv6Network((value >> (128 - prefix) << (128 - prefix), prefix))
        return str(net) if rng.random() < 0.97 else rng.choice(LISTS["host bits"] + LISTS["v6 mapped"])

    drawn = {f"random {i}": [network() for _ in range(rng.randrange(2, 40))] for i in range(300)}
    accepted = 0
    for name, texts in {**LISTS, **drawn}.items():
        with subtests.test(list=name):
            keys = address_keys(texts)
            if keys is None:  # refused: fine, unless every item is one the fast path takes
                assert any(_key(t, 6 if ":" in t else 4) is None for t in texts)
                continue
            assert (networks_of_keys(keys[0], 4), networks_of_keys(keys[1], 6)) == _per_item(texts)
            accepted += 1
    assert accepted > 150  # the table exercises the one-pass path, not only its refusals


def test_refused_lists_include_every_item_the_per_item_path_refuses(subtests: pytest.Subtests) -> None:
    for name, texts in LISTS.items():
        if _per_item(texts) is None:
            with subtests.test(list=name):
                assert address_keys(texts) is None


def test_a_literal_list_lowers_as_the_same_words_one_by_one(tmp_path: Path) -> None:
    """The same peers through the one-pass path (one list) and the per-item path (a name
    added, which the fast path refuses): equal networks, origins in the order written."""
    texts = ["11.0.0.9", "10.0.0.0/8", "10.0.0.1", "2001:db8::/48", "11.0.0.8", "11.0.0.9"]

    def lowered(peers: list[str]) -> tuple[Any, Any, tuple[str, ...]]:
        path = tmp_path / "p.claw"
        path.write_text("policy p {\n  applies-to host\n  allow egress to " + ", ".join(peers)
                        + ' port 443/tcp reason "r"\n}\n')
        result = load_policies([path])
        assert result.ok, result.diagnostics
        (rule,) = result.policies[0].rules
        return rule.peers.ipv4, rule.peers.ipv6, rule.origin

    fast = lowered(texts)
    slow = lowered([*texts, "example.com"])
    assert fast[:2] == slow[:2] and slow[2] == (*fast[2], "example.com")
    assert fast[2] == ("11.0.0.9", "10.0.0.0/8", "10.0.0.1", "2001:db8::/48", "11.0.0.8")


def test_a_definition_of_literals_lowers_as_its_items_one_by_one(tmp_path: Path) -> None:
    """A definition whose items are all address literals is one `nets` atom; through a rule,
    a definition that refers to it, and next to other peers, the IR is what the per-item
    path gives (a name in the definition defeats the one-pass path)."""
    lists = "11.0.0.9, 10.0.0.0/8, 10.0.0.1, 2001:db8::/48, 11.0.0.8, 11.0.0.10"

    def lowered(extra: str) -> tuple[object, ...]:
        path = tmp_path / "p.claw"
        path.write_text(
            "policy p {\n  applies-to host\n"
            f"  define lits = {lists}{extra}\n"
            "  define outer = @lits, 192.0.2.0/24, 11.0.0.11\n"
            '  allow egress to @lits port 443/tcp reason "a"\n'
            '  allow egress to @outer, 11.0.0.12, example.org port 80/tcp reason "b"\n'
            '  deny egress to @lits, 11.0.0.0/29 reason "c"\n}\n')
        result = load_policies([path])
        assert result.ok, result.diagnostics
        return tuple((r.peers.ipv4, r.peers.ipv6, r.origin) for r in result.policies[0].rules)

    fast = lowered("")
    slow = lowered(", example.com")
    assert [f[:2] for f in fast] == [s[:2] for s in slow]
    assert [f[2] for f in fast] == [s[2] for s in slow]
