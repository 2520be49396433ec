"""Lint checks about rules that overlap: shadowed allows, cancelled allows, idle denies.

Containment is decided on sorted address intervals (netspace) and port bounds; the
cancelled-allow question is review/reach.py's region-by-region walk.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from clawpolicy.evaluate import peer_matches
from clawpolicy.ir import Action, Peers, PortRange
from clawpolicy.netspace import intervals
from clawpolicy.review.exposure import allows
from clawpolicy.review.finding import Context, Hit
from clawpolicy.review.protected import protected_by
from clawpolicy.review.reach import cancelled_allows

_MAX = 1 << 129  # above every address, for bisecting (lo, hi) pairs


def _interval_covered(lo: int, hi: int, cover: Sequence[tuple[int, int]]) -> bool:
    """Whether [lo, hi] lies inside the union of `cover` (sorted, disjoint intervals)."""
    i = bisect.bisect_right(cover, (lo, _MAX)) - 1
    while 0 <= i < len(cover) and cover[i][0] <= lo <= cover[i][1]:
        lo = cover[i][1] + 1
        if lo > hi:
            return True
        i += 1
    return False


def _peers_contain(outer: Peers, inner: Peers) -> bool:
    if outer.any:
        return True
    if inner.any:
        return False
    cover4, cover6 = intervals(outer.ipv4), intervals(outer.ipv6)  # sorted, once per run
    if not (all(_interval_covered(lo, hi, cover4) for lo, hi in intervals(inner.ipv4))
            and all(_interval_covered(lo, hi, cover6) for lo, hi in intervals(inner.ipv6))):
        return False
    return (all(peer_matches(outer, n) for n in inner.names)
            and all(any(w == v or w.endswith("." + v) for v in outer.wildcards) for w in inner.wildcards))


def _ports_contain(outer: Sequence[PortRange], inner: Sequence[PortRange]) -> bool:
    if not outer:
        return True
    if not inner:
        return False
    return all(any(o.protocol is i.protocol and o.bounds[0] <= i.bounds[0] and i.bounds[1] <= o.bounds[1]
                   for o in outer) for i in inner)


def check_shadowed(ctx: Context) -> Iterator[Hit]:
    rules = [r for r in ctx.policy.rules if r.action is Action.ALLOW]
    for rule in rules:
        for other in rules:
            if other is rule or other.direction is not rule.direction:
                continue
            if _peers_contain(other.peers, rule.peers) and _ports_contain(other.ports, rule.ports):
                mutual = (_peers_contain(rule.peers, other.peers)
                          and _ports_contain(rule.ports, other.ports))
                if mutual and rule.id < other.id:
                    continue  # equal rules: report only one of the pair
                yield Hit(f"everything this rule allows is already allowed by {other.id} "
                          f"(line {other.span.line})", rule.id, rule.span,
                          "remove it, or narrow the other rule")
                break


def check_cancelled_allow(ctx: Context) -> Iterator[Hit]:
    """Allows that denies cancel everywhere: decided region by region (review/reach.py), the
    evaluator's deny-overrides-allow on every address, name and port the allow names."""
    for rule, denies in cancelled_allows(ctx.policy):
        yield Hit(f"a deny cancels everything this allow names: {', '.join(denies)}", rule.id,
                  rule.span, "remove the allow, or narrow the deny if the allow is meant to work")


def _peers_overlap(a: Peers, b: Peers) -> bool:
    if a.any or b.any:
        return True
    if (any(n.overlaps(m) for n in a.ipv4 for m in b.ipv4)
            or any(n.overlaps(m) for n in a.ipv6 for m in b.ipv6)):
        return True
    if (a.ipv4 or a.ipv6) and b.has_fqdns or (b.ipv4 or b.ipv6) and a.has_fqdns:
        return True  # an FQDN set may hold any address at run time
    if any(peer_matches(b, n) for n in a.names) or any(peer_matches(a, n) for n in b.names):
        return True
    return any(v == w or v.endswith("." + w) or w.endswith("." + v)
               for v in a.wildcards for w in b.wildcards)


def _ports_overlap(a: Sequence[PortRange], b: Sequence[PortRange]) -> bool:
    if not a or not b:
        return True
    return any(p.protocol is q.protocol and p.bounds[0] <= q.bounds[1] and q.bounds[0] <= p.bounds[1]
               for p in a for q in b)


def check_redundant_deny(ctx: Context) -> Iterator[Hit]:
    for rule in ctx.policy.rules:
        if rule.action is not Action.DENY or protected_by(rule):
            continue  # an explicit deny of a dangerous destination is defence in depth
        if not any(_peers_overlap(rule.peers, a.peers) and _ports_overlap(rule.ports, a.ports)
                   for a in allows(ctx.policy.rules, rule.direction)):
            yield Hit("no allow rule overlaps this deny, so default deny already refuses what it "
                      "names", rule.id, rule.span,
                      "keep it only as documentation of intent; it changes no decision")
