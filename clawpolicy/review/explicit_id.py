"""Lint check `explicit-id`: floor 3, registered in review/lint.py's table.

Rule IDs name nft chains, log prefixes and counters, and so every dashboard and alert built on
them. An automatic ID survives most edits but not all (ruleids.WHAT_CHANGES_AN_ID: a new ticket,
a rule of the same handle inserted above), so lint notes each rule without an explicit `id` and
says which one to write: its current ID, so pinning renames nothing (`clawpolicy fmt --add-ids`
writes them all). A note, never a warning: a policy without dashboards is fine as it is.

On a real policy nearly every rule lacks an `id`, so one note per rule buries the findings that
matter. Text output therefore gets one note per file (`summarise`: how many, the first few, the
command that pins them all); `lint -v` and the JSON and SARIF outputs keep one per rule, where
code scanning annotates each line and a script can read the ID to write.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

from clawpolicy.ir import Documented, Policy, Span
from clawpolicy.review.finding import Finding

CHECK = "explicit-id"
TITLE = "Rule without an explicit id"
NAMED = 3  # IDs a summary names
HELP = ("The rule's ID is automatic (its kind and ticket or first peer): editing the ticket, or "
        "inserting a rule of the same handle above it, renames its chains, log prefixes and "
        "counters. Write the suggested `id` (or run `clawpolicy fmt --add-ids FILE`).")


def unpinned_rules(policy: Policy) -> Iterator[tuple[str, str, Span, str]]:
    """(message, rule ID, span, hint) for each rule declaration without an `id`, once per
    declaration (a split rule's parts share one)."""
    seen: set[tuple[str, int, int]] = set()
    items: list[Documented] = [*policy.rules, *policy.files, *policy.syscalls, *policy.resolve]
    for item in items:
        where = (item.span.file, item.span.line, item.span.col)
        if item.id_pinned or where in seen:
            continue
        seen.add(where)
        base = item.id.split(".")[0]
        yield ("rule has no explicit id", base, item.span,
               f"add `id {base}` to keep this ID whatever is edited later "
               "(clawpolicy fmt --add-ids FILE pins them all)")


def summarise(findings: Sequence[Finding]) -> list[Finding]:
    """`findings` with the unsuppressed explicit-id notes of each file replaced by one, at the
    first of them, when there are several: the count, the first IDs and `fmt --add-ids`."""
    notes: dict[str, list[Finding]] = {}
    for f in findings:
        if f.check == CHECK and f.suppression is None:
            notes.setdefault(f.location.file, []).append(f)
    out = []
    for f in findings:
        group = notes.get(f.location.file, []) if f.check == CHECK and f.suppression is None else []
        if len(group) < 2:
            out.append(f)
        elif f is group[0]:
            named = ", ".join(g.rule_id or "" for g in group[:NAMED])
            more = f" and {len(group) - NAMED} more" if len(group) > NAMED else ""
            out.append(dataclasses.replace(
                f, rule_id=None, message=f"{len(group)} rules have no explicit id ({named}{more})",
                hint=f"clawpolicy fmt --add-ids {f.location.file} pins each rule's current ID "
                     "(renames nothing); lint -v, --format json or sarif list each rule"))
    return out
