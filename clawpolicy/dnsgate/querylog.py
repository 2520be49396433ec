"""DNS logs for `explain` and `simulate`: floor 3 (pure; the commands pass lines in).

- `explain` gets the gate's refusals (and deny-rule names, and SERVFAILs) from its log lines
  (`logline`), each led back to the rule that names the query (or to the policy: no rule
  does) with its source line and reason, re-decided against the policy as given (a
  difference is noted: the policy changed since the log was written).
- `simulate --dns-log` replays a DNS query log as if the gate enforced the policy: which
  queries it would refuse (never forwarded), which it would forward and for which rules. Read:
  the gate's own lines (a shadow-mode week is the natural input) and dnsmasq's `--log-queries`
  lines (`query[A] name from 10.0.0.5`), so a host that runs dnsmasq today can be checked
  before switching.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from clawpolicy.dnsgate import logline
from clawpolicy.dnsgate.policy import GatePolicy, Verdict
from clawpolicy.ir import Mode, Policy
from clawpolicy.markdown import md_cell
from clawpolicy.operate.explain import Explanation, Finding
from clawpolicy.operate.textinput import Line

_DNSMASQ = re.compile(r"dnsmasq\[\d+\]: query\[(\w+)\] (\S+) from (\S+)")
EXPLAINED = ("refuse", "would-refuse", "deny")


@dataclass(frozen=True)
class Query:
    qtype: str
    name: str
    client: str = ""
    policy: str = ""  # the gate's lines name it; dnsmasq's do not


def parse_queries(lines: Iterable[Line]) -> Iterator[Query]:
    """Queries from gate lines and dnsmasq `--log-queries` lines; anything else (and lines
    too long to read, `Overlong`) is skipped."""
    for line in lines:
        if not isinstance(line, str):
            continue
        gate = logline.parse(line)
        if gate is not None:
            yield Query(gate.qtype, gate.name, gate.client, gate.policy)
            continue
        m = _DNSMASQ.search(line)
        if m:
            yield Query(m.group(1), m.group(2).rstrip(".").lower(), m.group(3))


# ------------------------------------------------------------------------------ explain


class GateLines:
    """Collects the gate's lines from a stream that another parser also reads (`watch`), then
    adds their findings to that parser's explanation (`add_to`)."""

    def __init__(self) -> None:
        self.lines: list[logline.GateLogLine] = []

    def watch(self, lines: Iterable[Line]) -> Iterator[Line]:
        for line in lines:
            parsed = logline.parse(line) if isinstance(line, str) else None
            if parsed is not None:
                self.lines.append(parsed)
            yield line

    def add_to(self, result: Explanation, policies: Sequence[Policy]) -> Explanation:
        findings = explain_gate(self.lines, policies)
        merged = sorted([*result.findings, *findings], key=lambda f: (-f.count, *f.key()))
        return Explanation(merged, result.lines, max(result.unrecognised - len(self.lines), 0),
                           result.unreadable)


def explain_gate(lines: Iterable[logline.GateLogLine], policies: Sequence[Policy]) -> list[Finding]:
    by_name = {p.name: GatePolicy(p) for p in policies}
    groups: dict[tuple[str, ...], Finding] = {}
    for line in lines:
        failed = line.rcode == "SERVFAIL"
        if line.verdict not in EXPLAINED and not failed:
            continue
        verdict = "servfail" if failed and line.verdict not in EXPLAINED else line.verdict
        finding = _finding(line, verdict, by_name.get(line.policy))
        group = groups.setdefault(finding.key(), finding)
        group.count += 1
    return list(groups.values())


def _finding(line: logline.GateLogLine, verdict: str, gate: GatePolicy | None) -> Finding:
    what = f"dns {line.qtype} {line.name}"
    rule = ",".join(line.rule_ids) or "unlisted"
    finding = Finding("dnsgate", verdict, what, line.policy, rule, peer={"name": line.name})
    if verdict == "servfail":
        finding.reason = ("the gate answered SERVFAIL: " + (line.note or "upstream or set update failed")
                          + " (fail closed)")
    if gate is None:
        return finding
    policy = gate.policy
    if not line.rule_ids:
        finding.where = policy.span.where()
        finding.reason = finding.reason or (
            f"no rule and no `dns resolve` of policy {policy.name} names {line.name}: the gate "
            "answers it REFUSED and never forwards it")
    else:
        rules = [r for r in (policy.rule(i) for i in line.rule_ids) if r is not None]
        finding.where = ", ".join(r.span.where() for r in rules) or None
        finding.reason = finding.reason or "; ".join(f"{r.id}: {r.reason}" for r in rules)
    now = gate.decide(line.name)
    logged = Verdict.REFUSE.value if line.verdict == "would-refuse" else line.verdict
    decided = Verdict.REFUSE.value if now.verdict is Verdict.WOULD_REFUSE else now.verdict.value
    if decided != logged or tuple(now.rule_ids) != tuple(line.rule_ids):
        finding.note = (f"the policy as given decides {now.verdict.value}"
                        + (f" ({', '.join(now.rule_ids)})" if now.rule_ids else ""))
    return finding


# ------------------------------------------------------------------------------ simulate


@dataclass
class DnsSimulation:
    policy: str
    total: int = 0
    by_verdict: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # name -> queries
    by_rule: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "queries": self.total, "verdicts": dict(sorted(self.by_verdict.items())),
                "refused": dict(sorted(self.refused.items(), key=lambda kv: (-kv[1], kv[0]))),
                "rules": dict(sorted(self.by_rule.items()))}


def simulate_dns(policy: Policy, queries: Iterable[Query]) -> DnsSimulation:
    """Each query decided as the gate would in enforce mode (whatever mode the log was in)."""
    gate = GatePolicy(policy, Mode.ENFORCE)
    out = DnsSimulation(policy.name)
    cache: dict[str, tuple[str, tuple[str, ...]]] = {}
    for q in queries:
        if q.policy and q.policy != policy.name:
            continue
        if q.name not in cache:
            d = gate.decide(q.name)
            cache[q.name] = (d.verdict.value, d.rule_ids)
        verdict, ids = cache[q.name]
        out.total += 1
        out.by_verdict[verdict] += 1
        if verdict == Verdict.REFUSE.value:
            out.refused[q.name] += 1
        for i in ids:
            out.by_rule[i] += 1
    return out


def render_text(sim: DnsSimulation) -> str:
    out = [f"policy {sim.policy}: {sim.total} DNS queries as the gate would decide them (enforce)"]
    out += [f"  {v:<8} {n}" for v, n in sorted(sim.by_verdict.items())]
    if sim.refused:
        out.append("  would be refused (never forwarded):")
        out += [f"    {n:>6} x {name}" for name, n in sorted(sim.refused.items(), key=lambda kv: (-kv[1], kv[0]))]
    if sim.by_rule:
        out.append("  queries per rule: " + ", ".join(f"{r} {n}" for r, n in sorted(sim.by_rule.items())))
    return "\n".join(out)


def render_markdown(sim: DnsSimulation) -> str:
    out = [f"**{md_cell(sim.policy)}**: {sim.total} DNS queries", "", "| name | queries | verdict |",
           "|---|---:|---|"]
    out += [f"| {md_cell(name)} | {n} | refuse |"
            for name, n in sorted(sim.refused.items(), key=lambda kv: (-kv[1], kv[0]))]
    return "\n".join(out)
