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


@dataclass
class TableStatus:
    table: str
    policy: str | None = None  # None: not loaded by apply (no stamp)
    mode: str | None = None
    sha256: str | None = None
    counters: list[Counter] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "policy": self.policy, "mode": self.mode, "sha256": self.sha256,
                "counters": [{"chain": c.chain, "packets": c.packets, "bytes": c.bytes}
                             for c in self.counters]}


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
    for obj in doc.get("nftables", []):
        if "chain" in obj and _counted(obj["chain"]["name"]):
            totals.setdefault(obj["chain"]["name"], [0, 0])
        rule = obj.get("rule")
        if rule and _counted(rule["chain"]):
            for expr in rule.get("expr", []):
                if isinstance(expr, dict) and "counter" in expr:
                    total = totals.setdefault(rule["chain"], [0, 0])
                    total[0] += int(expr["counter"].get("packets", 0))
                    total[1] += int(expr["counter"].get("bytes", 0))
    out.counters = [Counter(c, p, b) for c, (p, b) in sorted(totals.items())]
    return out


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
