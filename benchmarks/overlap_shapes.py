"""Pathological overlap shapes for the nftables layout (issue 16, item 8), as .claw text.

Each shape is a function of a scale `n` whose policy *needs* O(n) elements (its networks
plus its port ranges) but whose naive disjoint partition of `address . protocol . port`
space is the product of its rules: the layout must stay close to linear. Used by
benchmarks/overlap_bench.py (figures) and tests/unit/test_nftables_scale.py (element
counts, never times). Deterministic: no randomness.
"""

from __future__ import annotations

from collections.abc import Callable


def _v4(value: int) -> str:
    return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


def _narrow(i: int) -> str:
    """The i-th /32 inside 10.0.0.0/8, none adjacent to another (so nothing merges)."""
    return _v4((10 << 24) + 1024 * i + 7)


def _policy(name: str, rules: list[str]) -> str:
    body = "\n".join(f"  {r}" for r in rules)
    return f"policy overlap-{name} {{\n  mode enforce\n  applies-to host\n{body}\n}}\n"


def wide_narrow(n: int) -> str:
    """The issue's reproducer: n rules `10.0.0.0/8 port N/tcp` and one rule of n /32s inside,
    without ports, its ID sorting first (so it wins its /32s outright). The old partition wrote
    n·(n+1) elements: every gap between two /32s repeated every port, 90,300 at n = 300."""
    rules = [f'allow egress to 10.0.0.0/8 port {1000 + i}/tcp reason "wide {i}" id w{i:05d}'
             for i in range(n)]
    rules.append(f'allow egress to {", ".join(_narrow(i) for i in range(n))} '
                 f'reason "narrow, every port" id a-narrow')
    return _policy("wide-narrow", rules)


def wide_narrow_rules(n: int) -> str:
    """n wide rules and n narrow rules of one /32 each, their IDs interleaved with the wide
    ones (every region has its own set of rules), the allows without ports: each narrow rule
    wins the ports of the wide rules after it, which the old partition wrote out per /32."""
    rules = [f'allow egress to 10.0.0.0/8 port {1000 + i}/tcp reason "wide {i}" id r{2 * i:05d}'
             for i in range(n)]
    rules += [f'deny egress to {_narrow(i)} port {1000 + (7 * i) % n}/tcp, 22/tcp reason "narrow {i}" '
              f'id r{2 * i + 1:05d}' for i in range(n)]
    rules += [f'allow egress to {_narrow(i)} reason "narrow allow {i}" id r{2 * i + 1:05d}u'
              for i in range(n)]
    return _policy("wide-narrow-rules", rules)


def nested(n: int) -> str:
    """n rules in chains of nested networks (10.g.0.0/16 ⊃ /17 ⊃ … ⊃ /32, 17 deep, IPv4;
    2001:db8:g::/48 ⊃ … in IPv6), each with a port range that overlaps those of the rules
    around it, inner rules with lower IDs: a region deep in a chain is covered by every rule
    above it, each winning a sliver of ports."""
    rules = []
    for i in range(n):
        group, depth = divmod(i, 17)
        v6 = f"2001:db8:{group:x}::/{48 + depth * 5}"
        rules.append(f'allow egress to 10.{group}.0.0/{16 + depth}, {v6} port {1000 + 7 * depth}-'
                     f'{1100 + 11 * depth}/tcp, {3000 + i}/udp reason "nested {i}" '
                     f'id n{group:03d}-{16 - depth:02d}')
    return _policy("nested", rules)


def port_ranges(n: int) -> str:
    """One wide rule with n port ranges, a second with n shifted ranges on n /24s inside it,
    and a deny of a range across all of them on every other /24."""
    wide = ", ".join(f"{10 * i + 1}-{10 * i + 6}/tcp" for i in range(n))
    shifted = ", ".join(f"{10 * i + 4}-{10 * i + 9}/tcp" for i in range(n))
    inner = ", ".join(_v4((10 << 24) + (i << 9)) + "/24" for i in range(n))
    deny = ", ".join(_v4((10 << 24) + (i << 9)) + "/24" for i in range(0, n, 2))
    return _policy("port-ranges", [
        f'allow egress to 10.0.0.0/8 port {wide} reason "wide ranges" id wide',
        f'allow egress to {inner} port {shifted} reason "shifted ranges" id inner',
        f'deny egress to {deny} port 5-{10 * n}/tcp reason "deny across" id across',
    ])


SHAPES: dict[str, Callable[[int], str]] = {
    "wide-narrow": wide_narrow,
    "wide-narrow-rules": wide_narrow_rules,
    "nested": nested,
    "port-ranges": port_ranges,
}


def needed(n: int, name: str) -> int:
    """What the policy itself names, in rule·network and rule·port-range terms (an upper
    bound on what a linear layout should need, up to a constant)."""
    return {"wide-narrow": 2 * n, "wide-narrow-rules": 6 * n, "nested": 6 * n,
            "port-ranges": 4 * n}[name]
