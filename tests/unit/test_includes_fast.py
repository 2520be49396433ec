"""The IPv4 fast path of includes.parse_literal (issue 14) accepts only what `ipaddress` accepts,
with the same network; everything else takes the slow path, whose diagnostics are unchanged."""

from __future__ import annotations

import ipaddress
import random

import pytest

from clawpolicy.errors import Diagnostics, Location
from clawpolicy.literals import _fast_ipv4, parse_literal
from clawpolicy.syntax import Word


def _slow(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        return None


def test_fast_path_agrees_with_ipaddress(subtests: pytest.Subtests) -> None:
    fixed = ["192.0.2.7", "0.0.0.0/0", "100.64.0.0/10", "198.51.100.1/31", "8.8.8.0/24",
             "010.1.1.1", "1.2.3.4/033", "300.1.1.1", "4.3.2", "4.3.2.1/16", "4.3.2.1/07",
             "4.3.2.1/", "0x7f.0.0.1", " 4.3.2.1", "4.3.2.1/+8", "٤.3.2.1", "4.3.2.1/٨", "4.3.2.1/-0"]
    rng = random.Random(1414)
    drawn = []
    for _ in range(3000):
        octets = [str(rng.choice([0, 7, 10, 127, 255, 256, rng.randrange(256)])) for _ in range(4)]
        if rng.random() < 0.05:
            octets[rng.randrange(4)] = "0" + octets[0]
        text = ".".join(octets)
        if rng.random() < 0.7:
            text += "/" + rng.choice([str(rng.randrange(0, 36)), f"0{rng.randrange(10)}", ""])
        drawn.append(text)
    for text in fixed + drawn:
        with subtests.test(text=text):
            fast = _fast_ipv4(text)
            if fast is not None:
                slow = _slow(text)
                assert isinstance(fast, ipaddress.IPv4Network) and isinstance(slow, ipaddress.IPv4Network)
                assert (fast, hash(fast), str(fast), repr(fast)) == (slow, hash(slow), str(slow), repr(slow))
                assert fast.prefixlen == slow.prefixlen and fast.netmask == slow.netmask
                if fast.prefixlen >= 24:  # hosts(): the stdlib special-cases /31 and /32
                    assert list(fast.hosts()) == list(slow.hosts())


def test_slow_path_diagnostics_unchanged(subtests: pytest.Subtests) -> None:
    for text, message in (("10.1.2.3/8", "has host bits set"), ("010.0.0.1", "invalid address"),
                          ("10.0.0.0/33", "invalid address")):
        with subtests.test(text=text):
            diag = Diagnostics()
            assert parse_literal(Word(text, Location("f.claw", 3, 5, 5 + len(text))), diag) is None
            assert len(diag.items) == 1 and message in diag.items[0].message
            assert diag.items[0].location == Location("f.claw", 3, 5, 5 + len(text))
