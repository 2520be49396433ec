"""Rule IDs: floor 1, used by lowering (`confine`, `lower`) to name every rule of a policy.

Rule IDs reach every artifact (nft chains, log prefixes and counters, comments, annotations) and
so every dashboard and alert built on them: an ID must survive the edits a rule lives through.
A rule's ID is its explicit `id`, or an automatic one built from what names the rule's purpose,
never from its content or its position (issue 17, item 9):

    <kind>-<handle>[-<n>][.<part>]          e.g. ae-sec-201, de-169-254-169-254, fd-ssh-2

- kind: two letters, action and direction (`ae` allow egress, `di` deny ingress) or the
  statement (`fd` files deny, `sa` syscalls allow, `dr` dns resolve);
- handle: the rule's `ticket`; without a ticket, its first peer (path, syscall, name) as
  written (`@llm` gives `llm`); lower-cased, other characters runs of '-', at most
  HANDLE_WIDTH characters;
- n: rules of one kind and handle are numbered in source order (the first keeps the bare
  handle, then -2, -3, ...), skipping any ID an explicit `id` or another handle takes;
- part: a rule whose peers bring different ports becomes parts `.1`, `.2` (lowering).

So ports, reason, owner, expiry and peers (with a ticket; without one, all but the first) can
change without renaming the rule; what does rename it is listed in `WHAT_CHANGES_AN_ID` (also in
`clawpolicy ir --help` and the README). An automatic ID fits the explicit-id syntax, so
`clawpolicy fmt --add-ids` can pin it. Two rules of the same kind with the same content (the same
rule written twice) get one ID, which lowering reports as used twice.

The names the artifacts use for things that are not rules are reserved here: the local-DNS rule,
the default verdicts' log labels (`default-egress`, ...) and the Kubernetes cluster-DNS rule.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from clawpolicy.ir import LOCAL_DNS_ID

HANDLE_WIDTH = 24  # characters of a handle: kind + handle + ordinal fit an explicit id (32)
CLUSTER_DNS_ID = "cluster-dns"  # the Kubernetes targets' DNS rule
RESERVED = {LOCAL_DNS_ID: "a policy with `dns local` gets a rule of that name (DNS only "
                              "through the local resolver)",
            CLUSTER_DNS_ID: "the Kubernetes targets add a rule of that name (egress to the "
                           "cluster DNS)"}
RESERVED_PREFIX = ("default-", "log labels that start with 'default-' name the default verdicts "
                             "(default-egress, default-ingress)")
WHAT_CHANGES_AN_ID = (
    "An automatic rule ID is KIND-HANDLE[-N][.PART] (ae-sec-201, de-169-254-169-254.2). It changes "
    "only when: the ticket changes (or, for a rule without a ticket, its first peer, path, "
    "syscall or name as written); the action or direction changes; a rule of the same kind and "
    "handle is inserted above it or moved below it (N counts them in source order); an explicit "
    "id elsewhere takes it; or a split rule's ports regroup (PART). Editing ports, reason, owner, "
    "expires or (with a ticket) peers keeps it. An explicit `id NAME` never changes: pin the "
    "automatic ones with `clawpolicy fmt --add-ids FILE`.")


def content_digest(*parts: object) -> str:
    """A SHA-256 (hex) of a rule's content: tells the same rule written twice from two rules
    that share a handle; never part of an ID."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def handle(text: str, width: int | None = None) -> str:
    """The readable handle of a ticket or first peer: `SEC-201` -> `sec-201`, `@llm` -> `llm`,
    `*.slack.com` -> `slack-com`; `rule` when nothing is left."""
    cut = HANDLE_WIDTH if width is None else width
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower(), flags=re.ASCII).strip("-")[:cut].strip("-")
    return slug or "rule"


@dataclass(frozen=True)
class IdRequest:
    """One rule declaration's ID: `explicit`, or automatic from `prefix` (the kind) and
    `handle`; `digest` (its content) only tells a repeated rule apart from a sibling."""

    explicit: str | None
    prefix: str = ""
    handle: str = ""
    digest: str = ""

    @property
    def base(self) -> str:
        return self.explicit or f"{self.prefix}-{self.handle}"


def assign(requests: Sequence[IdRequest]) -> list[str]:
    """The ID of each request, in the same order. Explicit IDs are kept. Automatic ones are
    grouped by kind and handle; within a group, distinct contents are numbered in request
    (source) order, the first taking the bare handle where it is free. Numbers skip explicit
    IDs and the other groups' bare handles (an `N` suffix never makes one group's ID equal
    another's numbered one), so a group's IDs do not depend on the order of the others. The same
    content of one kind is one rule (the first one's group): its repeats get its ID."""
    explicit = {r.explicit for r in requests if r.explicit}
    group_of: dict[tuple[str, str], str] = {}  # (kind, content) -> the bare handle it went to
    groups: dict[str, list[str]] = {}  # bare handle -> its distinct contents, in order
    for r in requests:
        if not r.explicit and (r.prefix, r.digest) not in group_of:
            group_of[(r.prefix, r.digest)] = r.base
            groups.setdefault(r.base, []).append(r.digest)
    ids: dict[tuple[str, str], str] = {}
    for base, digests in groups.items():
        n = 0
        for digest in digests:
            while True:
                n += 1
                candidate = base if n == 1 else f"{base}-{n}"
                if candidate not in explicit and (n == 1 or candidate not in groups):
                    break
            ids[(base, digest)] = candidate
    return [r.explicit or ids[(group_of[(r.prefix, r.digest)], r.digest)] for r in requests]


def reserved(rule_id: str) -> str | None:
    """Why an explicit ID cannot be used, or None."""
    if rule_id in RESERVED:
        return RESERVED[rule_id]
    if rule_id.startswith(RESERVED_PREFIX[0]):
        return RESERVED_PREFIX[1]
    return None
