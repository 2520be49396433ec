"""What clawpolicy has loaded: floor 3, `clawpolicy status` (reads the kernel, changes nothing).

Every `table inet clawpolicy_*` in the namespace, with what `apply` stamped into it (policy,
mode, source hash: operate/apply.py says why a chain carries it, not the table comment) and
the counters of each rule's chain (`rule_<id>`), the shared FQDN chains and the default-deny
chains, in packets and bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clawpolicy.operate.apply import STAMP_RE, Nft, read_stamp


@dataclass(frozen=True)
class Counter:
    chain: str
    packets: int
    bytes: int
    kind: str = "allow"  # deny | would-deny | allow: what the chain does with what it counts

    @property
    def rule(self) -> str:
        """The rule ID (`rule_<id>`), `default-egress`/`default-ingress`, or the shared chain."""
        if self.chain.startswith("rule_"):
            return self.chain[len("rule_"):]
        if self.chain.endswith("_default"):
            return "default-" + self.chain[: -len("_default")]
        return self.chain


@dataclass
class TableStatus:
    table: str
    policy: str | None = None  # None: not loaded by apply (no stamp)
    mode: str | None = None
    sha256: str | None = None
    counters: list[Counter] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "policy": self.policy, "mode": self.mode, "sha256": self.sha256,
                "counters": [{"chain": c.chain, "rule": c.rule, "kind": c.kind, "packets": c.packets,
                              "bytes": c.bytes} for c in self.counters]}


def _counted(chain: str) -> bool:
    return chain.startswith("rule_") or chain.endswith("_default") or "_fqdn_" in chain


def table_status(table: str, doc: dict[str, Any]) -> TableStatus:
    out = TableStatus(table)
    stamp = read_stamp(doc)
    if stamp is not None:
        m = STAMP_RE.match(stamp)
        if m:
            out.policy, out.mode, out.sha256 = m["policy"], m["mode"], m["sha"]
    totals: dict[str, list[int]] = {}
    kinds: dict[str, str] = {}
    for obj in doc.get("nftables", []):
        if "chain" in obj and _counted(obj["chain"]["name"]):
            totals.setdefault(obj["chain"]["name"], [0, 0])
        rule = obj.get("rule")
        if rule and _counted(rule["chain"]):
            for expr in rule.get("expr", []):
                if not isinstance(expr, dict):
                    continue
                if "counter" in expr:
                    total = totals.setdefault(rule["chain"], [0, 0])
                    total[0] += int(expr["counter"].get("packets", 0))
                    total[1] += int(expr["counter"].get("bytes", 0))
                kind = _kind(expr)
                if kind is not None and kinds.get(rule["chain"]) != "would-deny":
                    kinds[rule["chain"]] = kind
    out.counters = [Counter(c, p, b, kinds.get(c, "allow")) for c, (p, b) in sorted(totals.items())]
    return out


def _kind(expr: dict[str, Any]) -> str | None:
    """What a statement says about its chain: drop/reject deny; a `would-deny` log prefix
    marks shadow mode (the chain then accepts what it counts)."""
    if "drop" in expr or "reject" in expr:
        return "deny"
    log = expr.get("log")
    if isinstance(log, dict) and ":would-deny:" in str(log.get("prefix", "")):
        return "would-deny"
    return None


def status(nft: Nft) -> list[TableStatus]:
    out = []
    for table in nft.tables():
        doc = nft.table_json(table)
        if doc is not None:
            out.append(table_status(table, doc))
    return out


def render_text(tables: list[TableStatus]) -> str:
    if not tables:
        return "no clawpolicy table loaded"
    lines = []
    for t in tables:
        if t.policy:
            lines.append(f"table inet {t.table}: policy {t.policy}, {t.mode} mode, source sha256 {t.sha256}")
        else:
            lines.append(f"table inet {t.table}: not loaded by clawpolicy apply (no stamp)")
        width = max((len(c.chain) for c in t.counters), default=0)
        lines += [f"  {c.chain.ljust(width)}  {c.packets:>10} packets  {c.bytes:>12} bytes"
                  for c in t.counters]
    return "\n".join(lines)


# ---------------------------------------------------------------------- Prometheus


def _label(value: str) -> str:
    """A label value in the text exposition format: backslash, quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def render_prometheus(tables: list[TableStatus]) -> str:
    """The text exposition format, for node_exporter's textfile collector (write it to
    `<dir>/clawpolicy.prom` through a temporary file and a rename). Counters per rule chain
    (packets and bytes; `kind` says deny, would-deny in shadow mode, or allow) and one info
    metric per loaded table."""
    out = ["# HELP clawpolicy_policy_info A clawpolicy table loaded in the kernel (1 per table).",
           "# TYPE clawpolicy_policy_info gauge"]
    for t in tables:
        out.append(f'clawpolicy_policy_info{{table="{_label(t.table)}",policy="{_label(t.policy or "")}",'
                   f'mode="{_label(t.mode or "")}",sha256="{_label(t.sha256 or "")}"}} 1')
    for unit, help_text in (("packets", "Packets"), ("bytes", "Bytes")):
        name = f"clawpolicy_rule_{unit}_total"
        out += [f"# HELP {name} {help_text} counted by a rule's chain (kind: deny, would-deny or allow).",
                f"# TYPE {name} counter"]
        for t in tables:
            for c in t.counters:
                value = c.packets if unit == "packets" else c.bytes
                out.append(f'{name}{{table="{_label(t.table)}",policy="{_label(t.policy or "")}",'
                           f'rule="{_label(c.rule)}",kind="{c.kind}"}} {value}')
    return "\n".join(out) + "\n"
