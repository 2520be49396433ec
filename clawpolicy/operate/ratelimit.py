"""Lines saying the kernel dropped audit records: floor 3, beside `logparse` (for `explain`).

With no audit daemon listening, the kernel prints audit records (seccomp, AppArmor) to the
kernel log through a rate limit and reports what it dropped as `kauditd_printk_skb: N
callbacks suppressed` (kernel/audit.c, printk_ratelimited). dmesg, /dev/kmsg, syslog and
`journalctl -k` then hold only part of a busy shadow run, and explain's counts are too low.
Those lines are counted here so explain can say so; auditd's audit.log (or journald's own
audit socket) receives every record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from clawpolicy.operate.textinput import Line

_SUPPRESSED = re.compile(r"\bkauditd_printk_skb: (\d{1,12}) callbacks suppressed\b")


@dataclass
class Suppressed:
    """How many audit records the kernel said it dropped, over the lines watched."""

    records: int = 0
    lines: int = 0

    def watch(self, lines: Iterable[Line]) -> Iterator[Line]:
        """Pass every line through, counting the suppression notices among them."""
        for line in lines:
            if isinstance(line, str) and (m := _SUPPRESSED.search(line)):
                self.records += int(m.group(1))
                self.lines += 1
            yield line

    def warning(self) -> str | None:
        if not self.lines:
            return None
        return (f"the kernel dropped {self.records} audit record(s) ({self.lines} "
                "'kauditd_printk_skb: N callbacks suppressed' line(s)): seccomp and AppArmor counts "
                "are too low. Read auditd's log instead (ausearch -m SECCOMP,AVC --raw, or "
                "/var/log/audit/audit.log), or journald's audit records")
