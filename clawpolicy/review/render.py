"""How `clawpolicy diff` shows its findings: a terminal table (rich), Markdown for a pull
request comment (summary table, details, a Mermaid diagram of added and removed flows, the
artifact diffs collapsed) and JSON. Floor 4's helper; nothing here decides anything.

Reasons, paths and names are user text: they go through `clawpolicy.markdown` (the escaping
the docs target uses), so a reason cannot close a table cell, a `<details>` block or a diagram.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

from clawpolicy.ir import Direction
from clawpolicy.markdown import md_text, mermaid_label
from clawpolicy.review.artifacts import ArtifactChange
from clawpolicy.review.diff import Change, Ref, Risk

MARKER = {Risk.HIGH: "🔴 high", Risk.MEDIUM: "🟠 medium", Risk.LOW: "🟢 low"}
MERMAID_LABEL_MAX = 60
MARKDOWN_MAX = 60_000  # characters: under GitHub's 65,536 per comment, with room for a header


def counts(changes: Sequence[Change]) -> dict[str, int]:
    return {r.value: sum(1 for c in changes if c.risk is r) for r in Risk}


def _refs(refs: Sequence[Ref]) -> str:
    return "; ".join(str(r) for r in refs)


# ------------------------------------------------------------------------------ JSON

def to_json(changes: Sequence[Change], artifacts: Sequence[ArtifactChange],
            old_label: str, new_label: str) -> dict[str, Any]:
    def ref(r: Ref) -> dict[str, str]:
        return {"rule": r.rule_id, "where": r.where, "reason": r.reason}
    return {
        "old": old_label, "new": new_label, "counts": counts(changes),
        "changes": [{"policy": c.policy, "category": c.category, "risk": c.risk.value,
                     "summary": c.summary, "why": c.why, "old": [ref(r) for r in c.old],
                     "new": [ref(r) for r in c.new], **({"peers": list(c.peers)} if c.peers else {})}
                    for c in changes],
        "artifacts": [{"path": a.path, "status": a.status, "added": a.added, "removed": a.removed,
                       "diff": a.diff} for a in artifacts],
    }


# ------------------------------------------------------------------------------ terminal

def to_text(changes: Sequence[Change], artifacts: Sequence[ArtifactChange], old_label: str,
            new_label: str, *, color: bool = False, width: int = 110,
            show_artifact_diffs: bool = False) -> str:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color,
                      highlight=False, emoji=False)
    n = counts(changes)
    console.print(Text(f"clawpolicy diff {old_label} → {new_label}: {n['high']} high, "
                       f"{n['medium']} medium, {n['low']} low", style="bold"))
    if changes:
        table = Table(show_lines=False, expand=False)
        for column in ("risk", "policy", "change", "why", "rules (before → now)"):
            table.add_column(column, overflow="fold")
        style = {Risk.HIGH: "bold red", Risk.MEDIUM: "yellow", Risk.LOW: "green"}
        for c in changes:
            rules = " → ".join(x for x in (_refs(c.old), _refs(c.new)) if x)
            table.add_row(Text(c.risk.value, style=style[c.risk]), Text(c.policy), Text(c.summary),
                          Text(c.why), Text(rules))
        console.print(table)
    else:
        console.print("no change in meaning")
    if artifacts:
        console.print(Text(f"generated artifacts that change ({len(artifacts)}):", style="bold"))
        for a in artifacts:
            console.print(Text(f"  {a.status:<8} {a.path} ({a.stat()})"))
            if show_artifact_diffs:
                console.print(Text(a.diff))
    return buffer.getvalue()


# ------------------------------------------------------------------------------ Markdown

def _md_refs(refs: Sequence[Ref]) -> str:
    parts = []
    for r in refs:
        where = f" ({md_text(r.where)})" if r.where else ""
        reason = f": “{md_text(r.reason)}”" if r.reason else ""
        parts.append(f"{md_text(r.rule_id)}{where}{reason}")
    return "; ".join(parts) or "—"


def _label(text: str) -> str:
    """A quoted Mermaid label, shortened: the details list holds the full text."""
    if len(text) > MERMAID_LABEL_MAX:
        text = text[:MERMAID_LABEL_MAX - 1] + "…"
    return mermaid_label(text)


def mermaid(changes: Sequence[Change]) -> str:
    """Added (green) and removed (red, dashed) flows between each policy's agent and its peers."""
    flows = [c for c in changes if c.flow is not None]
    agents = {p: f"agent{i}" for i, p in enumerate(sorted({c.policy for c in flows}))}
    lines = ["flowchart LR"] + [f"  {a}(({_label(p)}))" for p, a in agents.items()]
    styles: list[str] = []
    for i, c in enumerate(flows):
        assert c.flow is not None
        peer = f"peer{i}"
        lines.append(f"  {peer}[{_label(c.flow.peers)}]")
        arrow = "-->" if c.flow.added else "-.->"
        label = _label(("+ " if c.flow.added else "- ") + c.flow.ports)
        ends = (agents[c.policy], peer) if c.flow.direction is Direction.EGRESS else (peer, agents[c.policy])
        lines.append(f"  {ends[0]} {arrow}|{label}| {ends[1]}")
        colour = "#2da44e" if c.flow.added else "#cf222e"
        styles.append(f"  linkStyle {i} stroke:{colour},stroke-width:2px")
    return "\n".join(lines + styles)


def _fence(text: str, info: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{info}\n{text.rstrip()}\n{ticks}"


def to_markdown(changes: Sequence[Change], artifacts: Sequence[ArtifactChange],
                old_label: str, new_label: str, budget: int = MARKDOWN_MAX) -> str:
    """The comment, within `budget` characters whatever the change (GitHub caps a comment at
    65,536): artifact diffs are dropped first (their list stays), then changes past the
    first ones (the JSON output has them all), the riskiest first since they sort first."""
    for lines in (None, 400, 100, 25):  # artifact diffs shortened first
        text = _markdown(changes, artifacts, old_label, new_label, lines, len(changes))
        if len(text) <= budget:
            return text
    text = _markdown(changes, artifacts, old_label, new_label, 0, len(changes))
    shown = len(changes)
    while len(text) > budget and shown > 0:
        shown = shown // 2
        text = _markdown(changes, artifacts, old_label, new_label, False, shown)
    if len(text) > budget:  # artifact list alone too long: keep the head
        text = text[:budget - 80].rsplit("\n", 1)[0] + "\n\n… cut to fit a comment: see `--format json`.\n"
    return text


def _markdown(changes: Sequence[Change], artifacts: Sequence[ArtifactChange], old_label: str,
              new_label: str, lines: int | None, shown: int) -> str:
    """`lines`: at most this many lines of each artifact diff (None: all; 0: none)."""
    n = counts(changes)
    rest = len(changes) - shown
    more = ["", f"… and {rest:,} more change{'s' if rest != 1 else ''}: see "
            "`clawpolicy diff --format json` for all of them."] if rest > 0 else []
    every = changes
    changes = every[:shown]
    out = [f"## clawpolicy diff: {md_text(old_label)} → {md_text(new_label)}", ""]
    if not changes:
        out += ["No change in what the policies allow or deny.", ""]
    else:
        out += [f"**{n['high']} high**, {n['medium']} medium, {n['low']} low risk "
                f"change{'s' if len(every) != 1 else ''}.", "",
                "| risk | policy | change | why |", "|---|---|---|---|"]
        out += [f"| {MARKER[c.risk]} | {md_text(c.policy)} | {md_text(c.summary)} | "
                f"{md_text(c.why) or '—'} |" for c in changes]
        out += more
        out += ["", "### Details", ""]
        for c in changes:
            out.append(f"- **{c.risk.value}** · {md_text(c.policy)} · {c.category}: "
                       f"{md_text(c.summary)}")
            if c.old:
                out.append(f"  - before: {_md_refs(c.old)}")
            if c.new:
                out.append(f"  - now: {_md_refs(c.new)}")
        if any(c.flow for c in changes):
            out += ["", "### Flows added and removed", "", _fence(mermaid(changes), "mermaid")]
    if artifacts:
        out += ["", f"### Generated artifacts that change ({len(artifacts)})", ""]
        for a in artifacts:
            if lines == 0:
                out.append(f"- {md_text(a.path)} ({a.status}, {a.stat()})")
                continue
            body = a.diff.splitlines()
            if lines is not None and len(body) > lines:
                body = [*body[:lines], f"… {len(body) - lines:,} more lines"]
            out += ["<details>", f"<summary>{md_text(a.path)} ({a.status}, {a.stat()})</summary>",
                    "", _fence("\n".join(body), "" if a.binary else "diff"), "", "</details>"]
        if lines is not None:
            out += ["", "Artifact diffs are shortened to fit a comment: run `clawpolicy diff "
                    "--artifact-diffs` to read them whole."]
    return "\n".join(out).rstrip() + "\n"
