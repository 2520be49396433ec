"""Log lines to typed denial records: the first stage of `clawpolicy explain`.

A line is read in two steps. Its envelope (how it was collected) gives the time, the host and
the message: `/dev/kmsg` (`6,123,4567,-;msg`), `dmesg` (`[ 12.345] msg`, or `-T`),
syslog and `journalctl -k -o short|short-iso` (`Nov 20 11:16:00 host kernel: msg`),
`journalctl -o json` (one object a line, `MESSAGE`), auditd's `audit.log`
(`type=SECCOMP msg=audit(1700000000.123:45): ...`) or a bare message. The message is then one
of ours: an nftables log line (`clawpolicy:<policy>:<deny|would-deny>:<rule> IN=.. OUT=..
SRC=.. DST=.. PROTO=.. SPT=.. DPT=..`), a seccomp audit record (`type=1326`/`SECCOMP`:
`arch=c000003e syscall=41 code=0x7ffc0000`), an AppArmor record (`apparmor="DENIED"` or
`"ALLOWED"` in complain mode), or the illustrative forms quoted in context/001 (`seccomp:
SCMP_ACT_ERRNO ... syscall=42 (connect) ... arch=c000003e`, `apparmor: DENIED operation=create
for profile=...`). Anything else is counted, never fatal: a kernel log is mostly other lines.

Times are kept as text in one of three kinds (`uptime` seconds since boot, `utc` ISO 8601,
`local` as the syslog line wrote it, without a year): they are reported, never reinterpreted.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from clawpolicy import seccomp_loader

# AUDIT_ARCH_* (include/uapi/linux/audit.h) as audit records print them, lower-case hex.
AUDIT_ARCHES = {"c000003e": "x86_64", "c00000b7": "aarch64", "40000003": "i386", "40000028": "arm"}
_ARCH_SCMP = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64", "i386": "SCMP_ARCH_X86",
              "arm": "SCMP_ARCH_ARM"}
X32_BIT = seccomp_loader.X32_SYSCALL_BIT

_KMSG = re.compile(r"^(\d+),(\d+),(\d+),[^;]*;(.*)$")
_DMESG = re.compile(r"^\[\s*(\d+\.\d+)\]\s?(.*)$")
_DMESG_T = re.compile(r"^\[([A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4})\]\s?(.*)$")
_SYSLOG = re.compile(r"^([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-][\d:]+)?)"
                     r" (\S+) ([^\s:\[]+)(?:\[\d+\])?: (.*)$")
_AUDITD = re.compile(r"^(?:node=(\S+) )?type=(\S+) msg=audit\((\d+)\.(\d+):\d+\): ?(.*)$")
_KERNEL_AUDIT = re.compile(r"^audit: type=(\d+) audit\((\d+)\.(\d+):\d+\): ?(.*)$")
_NFT = re.compile(r"clawpolicy:(?P<policy>[a-z0-9-]+):(?P<verdict>deny|would-deny):(?P<rule>[a-z0-9_-]+) ?(?P<rest>.*)$")
_KV = re.compile(r'([A-Za-z_][\w-]*)=("[^"]*"|\S*)')
_ILLUSTRATIVE_SECCOMP = re.compile(r"^(?:(?P<host>\S+) )?seccomp: (?P<action>SCMP_ACT_\w+)(?: \([^)]*\))? "
                                   r"for syscall=(?P<nr>\d+)(?: \((?P<name>\w+)\))?(?P<rest>.*)$")
_ILLUSTRATIVE_APPARMOR = re.compile(r"^(?:(?P<host>\S+) )?apparmor: (?P<status>DENIED|ALLOWED|AUDIT) (?P<rest>.*)$")
_HEX = re.compile(r"^(?:[0-9A-F]{2})+$")

AUDIT_SECCOMP = "1326"  # AUDIT_SECCOMP
AUDIT_AVC = "1400"  # AUDIT_AVC, what AppArmor uses


@dataclass(frozen=True)
class Stamp:
    """When, as the log said it: `kind` is uptime | utc | local | none."""

    kind: str = "none"
    text: str = ""

    def __str__(self) -> str:
        return {"uptime": f"{self.text}s after boot", "none": "-"}.get(self.kind, self.text)


@dataclass(frozen=True)
class PacketRecord:
    """One nftables log line of a clawpolicy ruleset."""

    stamp: Stamp
    host: str | None
    policy: str
    verdict: str  # deny | would-deny
    label: str  # rule ID, default-egress|default-ingress, or a shared FQDN chain
    direction: str  # egress | ingress
    protocol: str  # tcp | udp | icmp | other protocol names as the kernel prints them
    src: str
    dst: str
    sport: int | None
    dport: int | None
    mechanism: str = "nftables"

    @property
    def peer(self) -> str:
        return self.dst if self.direction == "egress" else self.src


@dataclass(frozen=True)
class SyscallRecord:
    """One seccomp audit record (AUDIT_SECCOMP): a call the filter did not simply allow."""

    stamp: Stamp
    host: str | None
    arch: str  # x86_64, aarch64, ... or the raw hex
    number: int
    name: str | None  # from libseccomp's resolver; None when it does not know the number
    action: str  # LOG, ERRNO, KILL_PROCESS, ... (SECCOMP_RET_* without the prefix)
    pid: int | None = None
    comm: str | None = None
    exe: str | None = None
    mechanism: str = "seccomp"


@dataclass(frozen=True)
class AppArmorRecord:
    """One AppArmor audit record: DENIED (enforce), ALLOWED (complain mode) or AUDIT."""

    stamp: Stamp
    host: str | None
    status: str
    profile: str
    operation: str
    klass: str | None = None  # class=: net, file, cap, ...
    target: str | None = None  # the path, capability, or "family sock_type", or addr
    denied: str | None = None  # denied_mask
    comm: str | None = None
    pid: int | None = None
    mechanism: str = "apparmor"


Record = PacketRecord | SyscallRecord | AppArmorRecord


@dataclass
class ParseResult:
    records: list[Record] = field(default_factory=list)
    lines: int = 0
    unrecognised: int = 0  # lines that are not one of our denial records (counted, not fatal)


@dataclass(frozen=True)
class _Envelope:
    stamp: Stamp
    host: str | None
    message: str
    audit_type: str | None = None  # auditd's type= name (SECCOMP, AVC, ...)


def _utc(seconds: int, fraction: str = "") -> str:
    when = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{when}.{fraction}Z" if fraction else f"{when}Z"


def _envelope(line: str) -> _Envelope:
    if line.startswith("{"):
        try:
            doc = json.loads(line)
        except ValueError:
            return _Envelope(Stamp(), None, line)
        if isinstance(doc, dict):
            message = doc.get("MESSAGE", "")
            if isinstance(message, list):  # journald writes non-UTF-8 messages as byte arrays
                message = bytes(b for b in message if isinstance(b, int)).decode("utf-8", "replace")
            usec = str(doc.get("__REALTIME_TIMESTAMP", ""))
            stamp = Stamp("utc", _utc(int(usec) // 10**6, f"{int(usec) % 10**6:06d}")) if usec.isdigit() else Stamp()
            host = doc.get("_HOSTNAME")
            return _Envelope(stamp, host if isinstance(host, str) else None, str(message))
        return _Envelope(Stamp(), None, line)
    if m := _AUDITD.match(line):
        return _Envelope(Stamp("utc", _utc(int(m[3]), m[4])), m[1], m[5], m[2])
    if m := _KMSG.match(line):
        micros = int(m[3])
        return _Envelope(Stamp("uptime", f"{micros // 10**6}.{micros % 10**6:06d}"), None, m[4])
    if m := _DMESG.match(line):
        return _Envelope(Stamp("uptime", m[1]), None, m[2])
    if m := _DMESG_T.match(line):
        return _Envelope(Stamp("local", m[1]), None, m[2])
    if m := _SYSLOG.match(line):
        message = m[4]
        if inner := _DMESG.match(message):  # syslog lines sometimes keep the kernel's stamp
            message = inner[2]
        return _Envelope(Stamp("utc" if m[1][:4].isdigit() else "local", m[1]), m[2], message)
    return _Envelope(Stamp(), None, line)


def fields(text: str) -> dict[str, str]:
    """key=value pairs of a kernel or audit message; quoted values unquoted, and the hex
    encoding audit uses for values with unusual characters (comm=6E6F6465) decoded."""
    out: dict[str, str] = {}
    for key, value in _KV.findall(text):
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = value[1:-1]
        elif key in ("comm", "exe", "name", "profile", "proctitle") and _HEX.match(value):
            value = bytes.fromhex(value).decode("utf-8", "replace")
        out.setdefault(key, value)
    return out


def _int(text: str | None, base: int = 10) -> int | None:
    try:
        return int(text, base) if text else None
    except ValueError:
        return None


def _address(text: str) -> str:
    """The kernel prints IPv6 addresses fully expanded; compare them in canonical form."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def _packet(env: _Envelope, m: re.Match[str]) -> PacketRecord:
    f = fields(m["rest"])
    label = m["rule"]
    if label.startswith(("default-", "egress_", "ingress_")):
        direction = "ingress" if "ingress" in label.split("_")[0] else "egress"
    else:
        direction = "ingress" if f.get("IN") else "egress"
    proto = f.get("PROTO", "").lower()
    proto = {"icmpv6": "icmp"}.get(proto, proto)
    return PacketRecord(env.stamp, env.host, m["policy"], m["verdict"], label, direction, proto,
                        _address(f.get("SRC", "")), _address(f.get("DST", "")),
                        _int(f.get("SPT")), _int(f.get("DPT")))


@functools.cache
def syscall_name(arch: str, number: int) -> str | None:
    """libseccomp's name for a syscall number (seccomp_syscall_resolve_num_arch)."""
    scmp = _ARCH_SCMP.get(arch)
    if scmp is None:
        return None
    if arch == "x86_64" and number & X32_BIT:  # the kernel reports x32 calls this way
        scmp, number = "SCMP_ARCH_X32", number & ~X32_BIT
    try:
        return seccomp_loader.syscall_name(scmp, number)
    except seccomp_loader.LoaderError:  # no libseccomp: the number alone is still reported
        return None


def _action(code: str | None) -> str:
    value = _int(code[2:] if code and code.startswith("0x") else code, 16)
    if value is None:
        return "unknown"
    name = seccomp_loader.RET_NAMES.get(value & 0xFFFF0000, f"{value:#x}")
    return f"{name}({value & 0xFFFF})" if name == "ERRNO" and value & 0xFFFF else name


def _seccomp(env: _Envelope, f: dict[str, str], stamp: Stamp) -> SyscallRecord | None:
    number = _int(f.get("syscall"))
    raw_arch = f.get("arch", "").lower()
    if number is None:
        return None
    arch = AUDIT_ARCHES.get(raw_arch, raw_arch or "unknown")
    return SyscallRecord(stamp, env.host, arch, number, syscall_name(arch, number),
                         _action(f.get("code")), _int(f.get("pid")), f.get("comm"), f.get("exe"))


def _apparmor(env: _Envelope, f: dict[str, str], stamp: Stamp) -> AppArmorRecord | None:
    status = f.get("apparmor")
    if status not in ("DENIED", "ALLOWED", "AUDIT") or "profile" not in f:
        return None
    klass = f.get("class")
    target: str | None
    if "name" in f:
        target = f["name"]
    elif "capname" in f:
        target = f["capname"]
    elif "family" in f:
        target = " ".join(v for v in (f.get("family"), f.get("sock_type")) if v)
    else:
        target = f.get("addr")
    return AppArmorRecord(stamp, env.host, status, f["profile"], f.get("operation", "?"), klass,
                          target, f.get("denied_mask"), f.get("comm"), _int(f.get("pid")))


def parse_line(line: str) -> Record | None:
    """The record a line carries, or None if it carries none of ours."""
    line = line.rstrip("\r\n")
    env = _envelope(line)
    message = env.message
    if m := _NFT.search(message):
        return _packet(env, m)
    if env.audit_type in ("SECCOMP", "AVC"):
        f = fields(message)
        return _seccomp(env, f, env.stamp) if env.audit_type == "SECCOMP" else _apparmor(env, f, env.stamp)
    if m := _KERNEL_AUDIT.search(message):
        stamp = Stamp("utc", _utc(int(m[2]), m[3]))  # absolute: better than the envelope's uptime
        f = fields(m[4])
        if m[1] == AUDIT_SECCOMP:
            return _seccomp(env, f, stamp)
        if m[1] == AUDIT_AVC:
            return _apparmor(env, f, stamp)
        return None
    if m := _ILLUSTRATIVE_SECCOMP.match(message):
        f = fields(m["rest"])
        arch = AUDIT_ARCHES.get(f.get("arch", "").lower().rstrip(".,"), f.get("arch", "unknown").rstrip(".,"))
        number = int(m["nr"])
        action = m["action"].removeprefix("SCMP_ACT_")
        return SyscallRecord(env.stamp, env.host or m["host"], arch, number,
                             syscall_name(arch, number) or m["name"], action,
                             _int(f.get("pid", "").rstrip(".,")))
    if m := _ILLUSTRATIVE_APPARMOR.match(message):
        f = {k: v.rstrip(".,") for k, v in fields(m["rest"]).items()}
        if "profile" in f:
            return _apparmor(env if env.host else _Envelope(env.stamp, m["host"], message),
                             {**f, "apparmor": m["status"]}, env.stamp)
    return None


def parse_lines(lines: Iterable[str], into: ParseResult | None = None) -> ParseResult:
    result = into if into is not None else ParseResult()
    for line in lines:
        if not line.strip():
            continue
        result.lines += 1
        record = parse_line(line)
        if record is None:
            result.unrecognised += 1
        else:
            result.records.append(record)
    return result


def read_lines(stream: Iterable[bytes]) -> Iterator[str]:
    """Log files are not always UTF-8 (a comm= with odd bytes): decode leniently."""
    for raw in stream:
        yield raw.decode("utf-8", "replace")
