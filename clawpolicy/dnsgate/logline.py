"""The gate's log line, written and read back: floor 3 (pure).

One line per decision, `key=value` pairs after a fixed tag, so journald, grep and `explain`
read it alike:

    clawpolicy-dns: policy=P verdict=refuse name=x.example type=A rcode=REFUSED rule=- client=127.0.0.1

`verdict` is `policy.Verdict` (allow, deny, resolve, refuse, would-refuse); `rcode` what the
client got (SERVFAIL when the upstream failed or the set update did, fail closed); `rule` the
IDs that name the query (comma-separated, `-` for none); `sets` the number of elements
written; `addresses` what went into them. Values never contain spaces: query names come
from dnspython's presentation format, which escapes them (`\\032`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

TAG = "clawpolicy-dns:"
_PAIR = re.compile(r"(\w+)=(\S*)")
_LINE = re.compile(re.escape(TAG) + r"\s+(.*)$")


@dataclass(frozen=True)
class GateLogLine:
    policy: str
    verdict: str
    name: str
    qtype: str
    rcode: str
    rule_ids: tuple[str, ...]
    client: str = ""
    addresses: tuple[str, ...] = ()
    elements: int = 0
    note: str = ""

    def render(self) -> str:
        parts = [f"policy={self.policy}", f"verdict={self.verdict}", f"name={_clean(self.name)}",
                 f"type={self.qtype}", f"rcode={self.rcode}",
                 f"rule={','.join(self.rule_ids) or '-'}", f"client={self.client or '-'}"]
        if self.elements:
            parts.append(f"sets={self.elements}")
        if self.addresses:
            parts.append(f"addresses={','.join(self.addresses)}")
        if self.note:
            parts.append(f"note={_clean(self.note)}")
        return f"{TAG} " + " ".join(parts)


def _clean(text: str) -> str:
    return re.sub(r"\s", "_", text) or "-"


def parse(line: str) -> GateLogLine | None:
    """A gate line anywhere in `line` (a journald or syslog prefix is skipped), or None."""
    m = _LINE.search(line)
    if m is None:
        return None
    fields = dict(_PAIR.findall(m.group(1)))
    if "policy" not in fields or "verdict" not in fields or "name" not in fields:
        return None
    rules = fields.get("rule", "-")
    addresses = fields.get("addresses", "")
    return GateLogLine(
        policy=fields["policy"], verdict=fields["verdict"], name=fields["name"],
        qtype=fields.get("type", "A"), rcode=fields.get("rcode", ""),
        rule_ids=() if rules in ("", "-") else tuple(rules.split(",")),
        client="" if fields.get("client", "-") == "-" else fields["client"],
        addresses=tuple(a for a in addresses.split(",") if a),
        elements=int(fields["sets"]) if fields.get("sets", "").isdigit() else 0,
        note=fields.get("note", ""))


def parse_lines(lines: Iterable[str]) -> Iterator[GateLogLine]:
    for line in lines:
        parsed = parse(line)
        if parsed is not None:
            yield parsed
