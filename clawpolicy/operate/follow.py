"""Denials as they happen, one JSON line each: floor 3, `clawpolicy explain --follow`.

For a log shipper (Vector, Fluent Bit, Promtail): each kernel, audit or journal line that
carries a clawpolicy denial (nftables `deny`/`would-deny` log prefixes, seccomp and AppArmor
audit records) becomes one JSON object on its own line, explained with `explain_record`
(the same decision as `clawpolicy explain`): policy, rule ID, the rule's source line and
reason, the layer, and the process (pid, comm, exe) where the record names one (seccomp and
AppArmor records do; nftables log lines carry no process). Lines that are not ours are
skipped; a line in our shape with impossible values is reported as `unreadable`, never
guessed at. Sources: a stream (stdin: `journalctl -kf -o short-iso | ...`, `dmesg -w | ...`)
or a file followed like `tail -F` (from its end; a file replaced or truncated by rotation is
reopened from its start).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from clawpolicy.ir import Policy
from clawpolicy.operate.explain import Processes, explain_record
from clawpolicy.operate.logparse import (
    AppArmorRecord,
    PacketRecord,
    SyscallRecord,
    Unreadable,
    parse_line,
)

MAX_LINE = 64 * 1024  # longer than any log line: reported, not parsed


def events(lines: Iterable[str], policies: Sequence[Policy],
           processes: Processes = Processes()) -> Iterator[dict[str, Any]]:
    """One event per denial line, in input order. Seccomp records are a policy's only for
    its process (`processes`, as `explain --comm/--exe`)."""
    by_name = {p.name: p for p in policies}
    for line in lines:
        if len(line) > MAX_LINE:
            yield {"unreadable": f"line of {len(line)} characters: longer than any log line"}
            continue
        try:
            record = parse_line(line)
        except Unreadable as exc:
            yield {"unreadable": str(exc)}
            continue
        if record is None:
            continue
        finding = explain_record(record, by_name, processes)
        event: dict[str, Any] = {
            "layer": finding.mechanism, "verdict": finding.verdict, "what": finding.what,
            "policy": finding.policy, "rule": finding.rule, "where": finding.where,
            "reason": finding.reason, "time": str(record.stamp), "host": record.host}
        if finding.note:
            event["note"] = finding.note
        if isinstance(record, SyscallRecord):
            event.update(pid=record.pid, comm=record.comm, exe=record.exe)
        elif isinstance(record, AppArmorRecord):
            event.update(pid=record.pid, comm=record.comm)
        elif isinstance(record, PacketRecord):
            event.update(src=record.src, dst=record.dst, sport=record.sport, dport=record.dport)
        yield {k: v for k, v in event.items() if v is not None}


def tail(path: Path, *, stop: Callable[[], bool] = lambda: False, poll: float = 0.2,
         from_start: bool = False) -> Iterator[str]:
    """The lines appended to `path` (its whole content first with `from_start`), until
    `stop()`; reopened from the start when rotation replaces or truncates it."""
    fh = path.open("r", encoding="utf-8", errors="replace")
    try:
        if not from_start:
            fh.seek(0, os.SEEK_END)
        inode = os.fstat(fh.fileno()).st_ino
        pending = ""
        while True:
            chunk = fh.readline()
            if chunk:
                pending += chunk
                if pending.endswith("\n"):
                    yield pending
                    pending = ""
                continue
            if stop():
                return
            try:
                st = path.stat()
            except FileNotFoundError:
                st = None
            if st is not None and (st.st_ino != inode or st.st_size < fh.tell()):
                fh.close()
                fh = path.open("r", encoding="utf-8", errors="replace")
                inode = os.fstat(fh.fileno()).st_ino
                pending = ""
                continue
            time.sleep(poll)
    finally:
        fh.close()
