"""Denial records to explanations: which policy, which rule (or default), its source line and
reason, and the mechanism that decided; repeats grouped with a count and first/last time.

nftables lines name the policy and rule in their prefix (`clawpolicy:<policy>:<verdict>:<rule>`),
so the IR gives the rest (`Policy.rule`). The evaluator re-decides the logged packet, and a
disagreement is reported (the policy changed since the log was written). Seccomp records name
no profile, and every filtered process on the host writes them: a record is the policy's only
when its process (`comm`/`exe`) is the profile's (`Processes`: `--comm`/`--exe`, else the
policy's `executable`); others are listed as another program's, never blamed on the policy.
Calls of an ABI the profile does not list (i386, x32, arm: decoded with their own tables)
fail its architecture check; otherwise the seccomp target's plan says which entry refused the
call (a `syscalls deny` rule, the `sockets` statement, a dropped capability, or outside the
baseline). AppArmor records name their profile, `clawpolicy-<policy>` for ours. First/last are
by time within a group (reading order where a group mixes kinds of time stamps).

Every field of a finding may come from a forged log line: the text renderer escapes every
line for the terminal (`printable.shown`), the Markdown one escapes every cell (`markdown`),
JSON is escaped by `json.dumps`.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from clawpolicy.backends import nftables, seccomp
from clawpolicy.backends.apparmor import OPENCLAW_CLI
from clawpolicy.backends.seccomp_baseline import Verdict as SeccompVerdict
from clawpolicy.evaluate import Flow, evaluate
from clawpolicy.ir import Direction, Policy, Protocol
from clawpolicy.markdown import md_cell
from clawpolicy.operate.logparse import (
    AppArmorRecord,
    PacketRecord,
    ParseResult,
    Record,
    Stamp,
    SyscallRecord,
)
from clawpolicy.printable import shown

APPARMOR_PREFIX = "clawpolicy-"
MECHANISMS = {"nftables": "nftables (network: address, protocol, port)",
              "seccomp": "seccomp (system calls and socket arguments)",
              "apparmor": "AppArmor (files, capabilities, socket kinds)"}


@dataclass
class Finding:
    """One group of identical denials."""

    mechanism: str
    verdict: str  # deny | would-deny | ERRNO | LOG | DENIED | ALLOWED ...
    what: str  # the denied thing: "egress tcp 203.0.113.9:443", "syscall socket (41) x86_64"
    policy: str | None
    rule: str | None  # rule ID, default-egress|default-ingress, baseline, sockets, ...
    where: str | None = None  # source line of the rule
    reason: str | None = None
    note: str | None = None  # e.g. the current policy decides differently
    count: int = 0
    first: str = "-"
    last: str = "-"
    peer: dict[str, Any] | None = field(default=None, repr=False)  # for suggest: the flow
    comm: str | None = None  # the process, where the record names it (seccomp, AppArmor)
    exe: str | None = None
    pids: list[int] = field(default_factory=list)  # distinct, sorted, at most MAX_PIDS

    def key(self) -> tuple[str, ...]:
        return (self.mechanism, self.verdict, self.what, self.policy or "", self.rule or "",
                self.comm or "", self.exe or "")

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in {
            "mechanism": self.mechanism, "verdict": self.verdict, "what": self.what,
            "policy": self.policy, "rule": self.rule, "where": self.where, "reason": self.reason,
            "note": self.note, "count": self.count, "first": self.first, "last": self.last,
            "comm": self.comm, "exe": self.exe, "pids": self.pids}.items()}

    @property
    def process(self) -> str:
        parts = [f"comm {self.comm}" if self.comm else "", f"exe {self.exe}" if self.exe else "",
                 ("pid " + ", ".join(map(str, self.pids))) if self.pids else ""]
        return "; ".join(p for p in parts if p)


MAX_PIDS = 20


@dataclass(frozen=True)
class Processes:
    """The process a policy's seccomp profile confines, as audit records name it (`comm`, at
    most 15 bytes, and `exe`): given with `explain --comm/--exe`, else derived from the
    policy's `executable` (default: the OpenClaw CLI). Seccomp records name no profile, and
    every filtered process on the host writes them: only the profile's process is its own."""

    comms: tuple[str, ...] = ()
    exes: tuple[str, ...] = ()


TASK_COMM_LEN = 15  # comm is truncated to 15 bytes (TASK_COMM_LEN 16 with the NUL)


@dataclass
class Explanation:
    findings: list[Finding]
    lines: int
    unrecognised: int
    unreadable: int = 0  # lines in our shapes with impossible values (forged or corrupt)

    def to_json(self) -> dict[str, Any]:
        return {"lines": self.lines, "unrecognised": self.unrecognised,
                "unreadable": self.unreadable, "findings": [f.to_json() for f in self.findings]}


def _port_text(record: PacketRecord) -> str:
    host = f"[{record.peer}]" if ":" in record.peer else record.peer
    return f"{host}:{record.dport}" if record.dport is not None else host


def _packet(record: PacketRecord, policies: dict[str, Policy]) -> Finding:
    what = f"{record.direction} {record.protocol or '?'} {_port_text(record)}"
    finding = Finding("nftables", record.verdict, what, record.policy, record.label,
                      peer={"direction": record.direction, "peer": record.peer,
                            "protocol": record.protocol, "port": record.dport})
    policy = policies.get(record.policy)
    if policy is None:
        return finding
    label = record.label
    if label.startswith("default-"):
        finding.where = policy.span.where()
        finding.reason = f"no rule of policy {policy.name} allows this {label.removeprefix('default-')} (default deny)"
    elif policy.local_dns is not None and label == policy.local_dns.id:
        finding.where = policy.span.where()
        finding.reason = policy.local_dns.reason
    elif (rule := policy.rule(label)) is not None:
        finding.where, finding.reason = rule.span.where(), rule.reason
    else:
        shared = [g for g in nftables.fqdn_groups(policy)
                  if f"{g.direction.value}_{g.action.value}_fqdn_{nftables.port_signature(g.ports)}" == label]
        if shared:  # a log line of an older ruleset: FQDN rules with these ports shared a chain
            rules = [r for g in shared for r in g.rules]
            finding.where = ", ".join(r.span.where() for r in rules)
            finding.reason = "; ".join(f"{r.id}: {r.reason}" for r in rules)
        else:
            finding.note = f"policy {policy.name} has no rule '{label}' (the policy changed since?)"
    flow = _flow(record)
    if flow is not None and finding.note is None:
        verdict = evaluate(policy, flow)
        decided = verdict.rule_id or (f"default-{record.direction}" if verdict.cause == "default" else verdict.cause)
        if verdict.action.value == "allow" or (decided != label and label in {
                r.id for r in policy.rules} | {f"default-{record.direction}"}):
            finding.note = f"the policy as given decides {verdict}"
    return finding


def _flow(record: PacketRecord) -> Flow | None:
    try:
        protocol = Protocol(record.protocol)
        ipaddress.ip_address(record.peer)
    except ValueError:
        return None
    return Flow(Direction(record.direction), record.peer, protocol, record.dport)


def _expand_braces(glob: str) -> list[str]:
    """AppArmor's `{a,b}` alternatives as separate fnmatch patterns (not nested)."""
    m = re.search(r"\{([^{}]*)\}", glob)
    if m is None:
        return [glob]
    return [x for alt in m[1].split(",") for x in _expand_braces(glob[:m.start()] + alt + glob[m.end():])]


def _own_process(record: SyscallRecord, policy: Policy, processes: Processes) -> bool:
    """Whether the record's process is the one the policy's profile confines."""
    if record.comm is None and record.exe is None:
        return True  # the record does not say (the illustrative format): the operator's call
    if processes.comms or processes.exes:
        return record.comm in processes.comms or any(
            record.exe is not None and fnmatch.fnmatchcase(record.exe, e) for e in processes.exes)
    patterns = _expand_braces(policy.executable or OPENCLAW_CLI)
    if record.exe is not None and any(fnmatch.fnmatchcase(record.exe, p) for p in patterns):
        return True
    bases = {b for p in patterns for b in (p.rsplit("/", 1)[-1], p.rsplit("/", 1)[-1].split(".")[0])}
    return record.comm is not None and any(fnmatch.fnmatchcase(record.comm, b[:TASK_COMM_LEN]) for b in bases)


def _seccomp_policy(record: SyscallRecord, policies: dict[str, Policy], processes: Processes) -> Policy | None:
    mine = [p for p in policies.values() if _own_process(record, p, processes)]
    if len(mine) > 1:
        mine = [p for p in mine if p.executable and p.executable == record.exe]
    return mine[0] if len(mine) == 1 else None


def _syscall(record: SyscallRecord, policies: dict[str, Policy], processes: Processes = Processes()) -> Finding:
    name = record.name or f"#{record.number}"
    what = f"syscall {name} ({record.number}) on {record.arch}"
    policy = _seccomp_policy(record, policies, processes)
    finding = Finding("seccomp", record.action, what, policy.name if policy else None, None,
                      peer={"syscall": record.name}, comm=record.comm, exe=record.exe)
    if policy is None:
        if policies:
            finding.note = ("not the profile's process: another program's seccomp filter (name the "
                            "agent's process with --comm/--exe if it is)")
        return finding
    if record.arch not in seccomp.ARCHITECTURES.values():
        listed = ", ".join(seccomp.ARCHITECTURES.values())
        finding.rule = "architecture"
        finding.reason = (f"a call of the {record.arch} ABI: the profile lists {listed} only, so "
                          "the filter's architecture check kills the process (the runtime's "
                          "default for unlisted architectures; logged only in shadow mode)")
        return finding
    if record.name is None:
        return finding
    for rule in policy.syscalls:
        if record.name in rule.names and rule.action.value == "deny":
            finding.rule, finding.where, finding.reason = rule.id, rule.span.where(), rule.reason
            return finding
    entries = [e for e in seccomp.plan(policy).entries if record.name in e.names]
    refusing = sorted({e.comment for e in entries if e.verdict is not SeccompVerdict.ALLOW})
    if not entries:
        finding.rule = "baseline"
        finding.reason = (f"{record.name} is outside the seccomp baseline (unlisted: ENOSYS when "
                          "enforced); allow it with `syscalls allow` if the agent needs it")
    elif any(e.args for e in entries):  # decided by arguments the audit record does not carry
        finding.rule = "sockets" if record.name in seccomp.SOCKET_CALLS else "arguments"
        finding.where = policy.sockets.span.where() if policy.sockets and finding.rule == "sockets" else None
        finding.reason = ("refused for some arguments (the audit record does not carry them): "
                          + "; ".join(refusing[:2]) + (" ..." if len(refusing) > 2 else ""))
    elif refusing:
        finding.rule = "capabilities" if "capabilit" in refusing[0] else "baseline"
        named = policy.capabilities is not None and finding.rule == "capabilities"
        finding.where = policy.capabilities.span.where() if named and policy.capabilities else None
        finding.reason = refusing[0]
    else:
        finding.rule, finding.reason = "baseline", "allowed by the current profile (the policy changed since?)"
    return finding


def _apparmor(record: AppArmorRecord, policies: dict[str, Policy]) -> Finding:
    what = " ".join(v for v in (record.operation, record.klass, record.target) if v)
    name = record.profile.removeprefix(APPARMOR_PREFIX) if record.profile.startswith(APPARMOR_PREFIX) else None
    finding = Finding("apparmor", record.status, what, name, None, comm=record.comm)
    policy = policies.get(name or "")
    if policy is None:
        finding.note = f"profile {record.profile}" + ("" if name else " (not a clawpolicy profile)")
        return finding
    if record.klass == "file" and record.target:
        for rule in policy.files:
            if any(_under(record.target, p) for p in rule.paths):
                finding.rule, finding.where, finding.reason = rule.id, rule.span.where(), rule.reason
                return finding
    if record.klass == "net" and policy.sockets:
        finding.rule, finding.where = "sockets", policy.sockets.span.where()
        finding.reason = "socket kind not in `sockets allow " + ", ".join(map(str, policy.sockets.allow)) + "`"
    elif record.klass == "cap" and policy.capabilities:
        finding.rule, finding.where = "capabilities", policy.capabilities.span.where()
        finding.reason = policy.capabilities.reason or "capability not kept"
    return finding


def _under(path: str, policy_path: str) -> bool:
    """`~/.ssh` covers /home/u/.ssh/id_rsa: compare the part after the home directory."""
    suffix = policy_path[1:] if policy_path.startswith("~/") else policy_path
    return path == suffix or path.endswith(suffix) or (suffix.rstrip("/") + "/") in path


def explain_record(record: Record, policies: dict[str, Policy], processes: Processes = Processes()) -> Finding:
    if isinstance(record, PacketRecord):
        return _packet(record, policies)
    if isinstance(record, SyscallRecord):
        return _syscall(record, policies, processes)
    return _apparmor(record, policies)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def stamp_key(stamp: Stamp) -> tuple[str, tuple[object, ...]] | None:
    """A sortable form of a time, within its kind (None: cannot be ordered). UTC fractions
    are compared as numbers (`.5` after `.25`); syslog's local time has no year."""
    try:
        if stamp.kind == "uptime":
            return "uptime", (float(stamp.text),)
        if stamp.kind == "utc":
            whole, _, fraction = stamp.text.rstrip("Z").partition(".")
            return "utc", (whole, float(f"0.{fraction or 0}"))
        if stamp.kind == "local" and stamp.text[:3] in _MONTHS:
            month, day, clock = stamp.text.split()
            return "local", (_MONTHS.index(month), int(day), clock)
        if stamp.kind == "local":
            when = dt.datetime.fromisoformat(stamp.text)
            return ("utc", (when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                            when.microsecond / 1e6)) if when.tzinfo else ("local-iso", (stamp.text,))
    except ValueError:
        return None
    return None


def explain(parsed: ParseResult, policies: Sequence[Policy], processes: Processes = Processes()) -> Explanation:
    """Group the records by explanation. First and last are by time where a group's times
    are of one kind (all UTC, all uptime, ...); a group mixing kinds keeps reading order."""
    by_name = {p.name: p for p in policies}
    groups: dict[tuple[str, ...], Finding] = {}
    cache: dict[Record, Finding] = {}
    span: dict[tuple[str, ...], tuple[object, object] | None] = {}  # first key, last key
    for record in parsed.records:
        template = cache.get(_without_time(record))
        if template is None:
            template = cache[_without_time(record)] = explain_record(record, by_name, processes)
        k = template.key()
        key = stamp_key(record.stamp)
        group = groups.get(k)
        if group is None:
            group = groups[k] = replace(template, first=str(record.stamp), pids=[])
            span[k] = (key, key) if key is not None else None
        else:
            bounds = span[k]
            if bounds is not None and key is not None and key[0] == bounds[0][0]:  # type: ignore[index]
                if key < bounds[0]:  # type: ignore[operator]
                    group.first, bounds = str(record.stamp), (key, bounds[1])
                if not key < bounds[1]:  # type: ignore[operator]
                    group.last, bounds = str(record.stamp), (bounds[0], key)
                span[k] = bounds
                group.count += 1
                _add_pid(group, record)
                continue
            span[k] = None  # mixed kinds: reading order from here on
        group.count += 1
        group.last = str(record.stamp)
        _add_pid(group, record)
    findings = sorted(groups.values(), key=lambda f: (-f.count, *f.key()))
    return Explanation(findings, parsed.lines, parsed.unrecognised, parsed.unreadable.count)


def _add_pid(group: Finding, record: Record) -> None:
    pid = getattr(record, "pid", None)
    if isinstance(pid, int) and pid not in group.pids and len(group.pids) < MAX_PIDS:
        group.pids.append(pid)
        group.pids.sort()


def _without_time(record: Record) -> Record:
    """The record minus what does not change its explanation (time, source port, pid)."""
    if isinstance(record, PacketRecord):
        return replace(record, stamp=Stamp(), sport=None, src=record.src if record.direction == "ingress" else "")
    if isinstance(record, SyscallRecord):
        return replace(record, stamp=Stamp(), pid=None)
    return replace(record, stamp=Stamp(), pid=None)


# ------------------------------------------------------------------------------ output


def render_text(result: Explanation) -> str:
    out = []
    for f in result.findings:
        who = f"{f.policy or '?'}: {f.rule or '?'}"
        out.append(f"{f.count:>6} x {f.verdict:<10} {f.what}")
        out.append(f"         by {MECHANISMS.get(f.mechanism, f.mechanism)}; policy {who}"
                   + (f" [{f.where}]" if f.where else ""))
        if f.reason:
            out.append(f"         reason: {f.reason}")
        if f.note:
            out.append(f"         note: {f.note}")
        if f.process:
            out.append(f"         process: {f.process}")
        out.append(f"         first {f.first}, last {f.last}")
    out.append(_summary(result))
    return "\n".join(shown(line) for line in out)  # one line per line, whatever the log held


def _summary(result: Explanation) -> str:
    total = sum(f.count for f in result.findings)
    return (f"{total} denial records in {len(result.findings)} groups; "
            f"{result.unrecognised} of {result.lines} lines were not denial records"
            + (f"; {result.unreadable} unreadable" if result.unreadable else ""))


def render_markdown(result: Explanation) -> str:
    out = ["| count | mechanism | verdict | what | policy | rule | source | reason | process | first | last |",
           "|---:|---|---|---|---|---|---|---|---|---|---|"]
    for f in result.findings:
        cells = [str(f.count), f.mechanism, f.verdict, f.what, f.policy or "?", f.rule or "?",
                 f.where or "", (f.reason or "") + (f" ({f.note})" if f.note else ""), f.process,
                 f.first, f.last]
        out.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    return "\n".join(out + ["", _summary(result)])


