"""Lint check `explicit-id`: floor 3, registered in review/lint.py's table.

Rule IDs name nft chains, log prefixes and counters, and so every dashboard and alert built on
them. An automatic ID survives most edits but not all (ruleids.WHAT_CHANGES_AN_ID: a new ticket,
a rule of the same handle inserted above), so lint notes each rule without an explicit `id` and
says which one to write: its current ID, so pinning renames nothing (`clawpolicy fmt --add-ids`
writes them all). A note, never a warning: a policy without dashboards is fine as it is.
"""

from __future__ import annotations

from collections.abc import Iterator

from clawpolicy.ir import Documented, Policy, Span

TITLE = "Rule without an explicit id"
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
