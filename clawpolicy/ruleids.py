"""Rule IDs: floor 1, used by lowering (`confine`, `lower`) to name every rule of a policy.

A rule's ID is its explicit `id`, or an automatic one derived from its content (`ae-3f2a9b1c`:
the kind, then a prefix of a SHA-256 of what the rule says), never from its position, so
inserting or moving other rules renames nothing. Eight hex digits keep the common case short,
but 32 bits collide by chance in policies of ~100,000 rules (issue 16, item 17). So an automatic
ID is widened, four digits at a time up to the whole digest, exactly where it would otherwise
equal another rule's ID (automatic or explicit). The widths depend only on the set of rules,
never on their order, and a full-width ID (67 characters) is longer than any explicit ID may be
(32), so two different rules always end with two different IDs; only two rules with the same
content (the same rule written twice) or the same explicit ID keep one, which lowering reports.

Rule IDs reach every artifact (nft chains and log prefixes, comments, annotations), so the names
the artifacts use for things that are not rules are reserved here: the local-DNS rule, the
default verdicts' log labels (`default-egress`, ...) and the Kubernetes cluster-DNS rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from clawpolicy.ir import LOCAL_DNS_ID

SHORT_WIDTH = 8  # hex digits of an automatic ID, unless that would collide
WIDEN_STEP = 4
FULL_WIDTH = 64
CLUSTER_DNS_ID = "cluster-dns"  # the Kubernetes targets' DNS rule
RESERVED = {LOCAL_DNS_ID: "a policy with `dns local` gets a rule of that name (DNS only "
                              "through the local resolver)",
            CLUSTER_DNS_ID: "the Kubernetes targets add a rule of that name (egress to the "
                           "cluster DNS)"}
RESERVED_PREFIX = ("default-", "log labels that start with 'default-' name the default verdicts "
                             "(default-egress, default-ingress)")


def content_digest(*parts: object) -> str:
    """The whole SHA-256 (hex) of a rule's content, the source of its automatic ID."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def stable_id(prefix: str, *parts: object) -> str:
    """The short automatic ID of this content (what `assign` starts from)."""
    return f"{prefix}-{content_digest(*parts)[:SHORT_WIDTH]}"


@dataclass(frozen=True)
class IdRequest:
    """One rule declaration's ID: `explicit`, or automatic from `prefix` and `digest`."""

    explicit: str | None
    prefix: str = ""
    digest: str = ""

    def at(self, width: int) -> str:
        return self.explicit or f"{self.prefix}-{self.digest[:width]}"


def assign(requests: Sequence[IdRequest]) -> list[str]:
    """The ID of each request, in the same order. An automatic ID is widened while it equals
    the ID of a request of another identity (explicit IDs are each their own identity; equal
    automatic content is one identity, so a rule written twice stays one ID and is reported as
    used twice). Each round decides from the IDs of the previous one only: order-independent."""
    identity = [f"explicit#{n}" if r.explicit else r.prefix + r.digest for n, r in enumerate(requests)]
    widths = [SHORT_WIDTH] * len(requests)
    while True:
        ids = [r.at(w) for r, w in zip(requests, widths)]
        owners: dict[str, set[str]] = {}
        for rule_id, who in zip(ids, identity):
            owners.setdefault(rule_id, set()).add(who)
        widen = [n for n, r in enumerate(requests)
                 if not r.explicit and widths[n] < FULL_WIDTH and len(owners[ids[n]]) > 1]
        if not widen:
            return ids
        for n in widen:
            widths[n] = min(FULL_WIDTH, widths[n] + WIDEN_STEP)


def reserved(rule_id: str) -> str | None:
    """Why an explicit ID cannot be used, or None."""
    if rule_id in RESERVED:
        return RESERVED[rule_id]
    if rule_id.startswith(RESERVED_PREFIX[0]):
        return RESERVED_PREFIX[1]
    return None
