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

Every line is untrusted (any local user can plant one with `logger`): a line in one of our
shapes whose values cannot be real (a timestamp past year 9999, a syscall number or port out
of range, a journal object nested too deep, a byte above 255) raises `Unreadable`, which
`parse_lines` counts with its position and goes on. Field values are kept as the log wrote
them; escaping them for a terminal or Markdown is the renderer's job.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from clawpolicy import seccomp_loader
from clawpolicy.operate.textinput import Line, Overlong, Problems, json_depth

# AUDIT_ARCH_* (include/uapi/linux/audit.h) as audit records print them, lower-case hex.
AUDIT_ARCHES = {"c000003e": "x86_64", "c00000b7": "aarch64", "40000003": "i386", "40000028": "arm"}
_ARCH_SCMP = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64", "i386": "SCMP_ARCH_X86",
              "arm": "SCMP_ARCH_ARM", "x32": "SCMP_ARCH_X32"}
X32_BIT = seccomp_loader.X32_SYSCALL_BIT

_KMSG = re.compile(r"^(\d+),(\d+),(\d+),[^;]*;(.*)$")
_DMESG = re.compile(r"^\[\s*(\d+\.\d+)\]\s?(.*)$")
_DMESG_T = re.compile(r"^\[([A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4})\]\s?(.*)$")
_SYSLOG = re.compile(r"^([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-][\d:]+)?)"
                     r" (\S+) ([^\s:\[]+)(?:\[\d+\])?: (.*)$")
_AUDITD = re.compile(r"^(?:node=(\S+) )?type=(\S+) msg=audit\((\d+)\.(\d+):\d+\): ?(.*)$")
_KERNEL_AUDIT = re.compile(r"^audit: type=(\d+) audit\((\d+)\.(\d+):\d+\): ?(.*)$")
# The nftables log prefix `clawpolicy:<policy>:<deny|would-deny>:<label> ` (backends/nftables.py
# `log_prefix`, always followed by a space). Policy names are `[a-z][a-z0-9-]*` (lower.POLICY_NAME);
# a label is a rule ID (`id` words are `[a-z][a-z0-9-]*` (confine.RULE_ID), automatic IDs
# `<2 letters>-<handle>[-<n>]` (ruleids), and a rule split by port sets gets `.<n>` per part:
# `de-sec-204-2.2`),
# `local-dns-only`, `default-egress|ingress`, or (rulesets before issue 17) a shared FQDN chain
# (`egress_allow_fqdn_tcp443`).
# So a label is a run of `[a-z0-9._-]` up to the blank that ends the prefix; the tests hold
# every ID the lowering can produce to this (tests/unit/test_explain.py, the ID round trip).
RULE_LABEL = r"[a-z0-9][a-z0-9._-]*"
_NFT = re.compile(r"clawpolicy:(?P<policy>[a-z][a-z0-9-]*):(?P<verdict>deny|would-deny):"
                  rf"(?P<rule>{RULE_LABEL})(?:\s(?P<rest>.*))?$")
_KV = re.compile(r'([A-Za-z_][\w-]*)=("[^"]*"|\S*)')
_ILLUSTRATIVE_SECCOMP = re.compile(r"^(?:(?P<host>\S+) )?seccomp: (?P<action>SCMP_ACT_\w+)(?: \([^)]*\))? "
                                   r"for syscall=(?P<nr>\d+)(?: \((?P<name>\w+)\))?(?P<rest>.*)$")
_ILLUSTRATIVE_APPARMOR = re.compile(r"^(?:(?P<host>\S+) )?apparmor: (?P<status>DENIED|ALLOWED|AUDIT) (?P<rest>.*)$")
_HEX = re.compile(r"^(?:[0-9A-F]{2})+$")

AUDIT_SECCOMP = "1326"  # AUDIT_SECCOMP
AUDIT_AVC = "1400"  # AUDIT_AVC, what AppArmor uses
# Bounds on what a real line can hold; past them a line is forged or corrupt (Unreadable).
MAX_EPOCH_SECONDS = 253402300799  # 9999-12-31T23:59:59Z, the last second datetime can show
MAX_FRACTION_DIGITS = 9  # audit and journald write milli- to microseconds
MAX_UPTIME_DIGITS = 12  # seconds since boot: 30,000 years
MAX_SYSCALL = 0xFFFFFFFF  # syscall numbers are 32-bit (x32 calls carry bit 30)
MAX_JSON_DEPTH = 32  # journal JSON is one flat object; the C decoder recurses per level


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


class Unreadable(ValueError):
    """A line in one of our shapes whose values cannot be real; counted, never fatal."""


@dataclass
class ParseResult:
    records: list[Record] = field(default_factory=list)
    lines: int = 0
    unrecognised: int = 0  # lines that are not one of our denial records (counted, not fatal)
    unreadable: Problems = field(default_factory=Problems)  # ours in shape, impossible in value


@dataclass(frozen=True)
class _Envelope:
    stamp: Stamp
    host: str | None
    message: str
    audit_type: str | None = None  # auditd's type= name (SECCOMP, AVC, ...)


def _utc(seconds: int | str, fraction: str = "") -> str:
    """An epoch time as ISO 8601; `Unreadable` past year 9999 (a forged `audit(99999999999999.1:1)`)."""
    value = _bounded(seconds, MAX_EPOCH_SECONDS, "timestamp")
    if len(fraction) > MAX_FRACTION_DIGITS:
        raise Unreadable("timestamp out of range")
    when = dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{when}.{fraction}Z" if fraction else f"{when}Z"


def _bounded(value: int | str, most: int, what: str) -> int:
    """A non-negative decimal number of at most `most`, checked on its digits before `int()`
    (which refuses, slowly, past 4300 digits)."""
    if isinstance(value, str):
        text = value.lstrip("0") or "0"
        if not text.isascii() or not text.isdigit() or len(text) > len(str(most)):
            raise Unreadable(f"{what} out of range")
        value = int(text)
    if not 0 <= value <= most:
        raise Unreadable(f"{what} out of range")
    return value


def _journal(line: str) -> _Envelope:
    """`journalctl -o json`: one flat object a line; non-UTF-8 messages are byte arrays."""
    if line.count("[") + line.count("{") > MAX_JSON_DEPTH and json_depth(line) > MAX_JSON_DEPTH:
        raise Unreadable(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError):
        return _Envelope(Stamp(), None, line)
    if not isinstance(doc, dict):
        return _Envelope(Stamp(), None, line)
    message = doc.get("MESSAGE", "")
    if isinstance(message, list):
        if not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in message):
            raise Unreadable("MESSAGE is a byte array with values that are not bytes")
        message = bytes(message).decode("utf-8", "replace")
    elif not isinstance(message, str):  # not a log message at all: not ours
        message = ""
    usec = doc.get("__REALTIME_TIMESTAMP")
    stamp = Stamp()
    if isinstance(usec, str) and usec.isascii() and usec.isdigit():
        micros = _bounded(usec, MAX_EPOCH_SECONDS * 10**6 + 999999, "__REALTIME_TIMESTAMP")
        stamp = Stamp("utc", _utc(micros // 10**6, f"{micros % 10**6:06d}"))
    host = doc.get("_HOSTNAME")
    return _Envelope(stamp, host if isinstance(host, str) else None, _valid_text(message))


def _valid_text(text: str) -> str:
    """JSON can carry lone surrogates (`\\ud800`), which no output encoding accepts."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _envelope(line: str) -> _Envelope:
    if line.startswith("{"):
        return _journal(line)
    if m := _AUDITD.match(line):
        return _Envelope(Stamp("utc", _utc(m[3], m[4])), m[1], m[5], m[2])
    if m := _KMSG.match(line):
        micros = m[3].lstrip("0").rjust(7, "0")
        if len(micros) > MAX_UPTIME_DIGITS + 6:
            raise Unreadable("timestamp out of range")
        return _Envelope(Stamp("uptime", f"{micros[:-6]}.{micros[-6:]}"), None, m[4])
    if m := _DMESG.match(line):
        if len(m[1]) > MAX_UPTIME_DIGITS + 10:
            raise Unreadable("timestamp out of range")
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
    f = fields(m["rest"] or "")
    label = m["rule"]
    if label.startswith(("default-", "egress_", "ingress_")):
        direction = "ingress" if "ingress" in label.split("_")[0] else "egress"
    else:
        direction = "ingress" if f.get("IN") else "egress"
    proto = f.get("PROTO", "").lower()
    proto = {"icmpv6": "icmp"}.get(proto, proto)
    return PacketRecord(env.stamp, env.host, m["policy"], m["verdict"], label, direction, proto,
                        _address(f.get("SRC", "")), _address(f.get("DST", "")),
                        _port(f.get("SPT")), _port(f.get("DPT")))


def _port(text: str | None) -> int | None:
    return None if not text else _bounded(text, 65535, "port")


@functools.cache
def syscall_name(arch: str, number: int) -> str | None:
    """libseccomp's name for a syscall number (seccomp_syscall_resolve_num_arch)."""
    scmp = _ARCH_SCMP.get(arch)
    if scmp is None:
        return None
    if arch in ("x86_64", "x32") and number & X32_BIT:  # the kernel reports x32 calls this way
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


def record_arch(raw: str, number: int) -> str:
    """The architecture a call was made in: AUDIT_ARCH_* by name, and x32 for an x86_64
    record whose number has __X32_SYSCALL_BIT (x32 shares x86_64's audit arch; its own
    table is x86_64's numbers with that bit), so it is decoded and judged as x32."""
    arch = AUDIT_ARCHES.get(raw, raw or "unknown")
    return "x32" if arch == "x86_64" and number & X32_BIT else arch


def _seccomp(env: _Envelope, f: dict[str, str], stamp: Stamp) -> SyscallRecord | None:
    if not f.get("syscall"):
        return None
    number = _bounded(f["syscall"], MAX_SYSCALL, "syscall number")
    arch = record_arch(f.get("arch", "").lower(), number)
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
        stamp = Stamp("utc", _utc(m[2], m[3]))  # absolute: better than the envelope's uptime
        f = fields(m[4])
        if m[1] == AUDIT_SECCOMP:
            return _seccomp(env, f, stamp)
        if m[1] == AUDIT_AVC:
            return _apparmor(env, f, stamp)
        return None
    if m := _ILLUSTRATIVE_SECCOMP.match(message):
        f = fields(m["rest"])
        number = _bounded(m["nr"], MAX_SYSCALL, "syscall number")
        arch = record_arch(f.get("arch", "").lower().rstrip(".,"), number)
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


def parse_lines(lines: Iterable[Line], into: ParseResult | None = None, name: str = "-") -> ParseResult:
    """Records of every line (`name` is the file, for positions); lines that are not ours
    are counted as unrecognised, lines that are ours but impossible as unreadable."""
    result = into if into is not None else ParseResult()
    for number, line in enumerate(lines, 1):
        if isinstance(line, Overlong):
            result.lines += 1
            result.unreadable.add(name, number, f"line of {line.size} bytes: longer than any log line")
            continue
        if not line.strip():
            continue
        result.lines += 1
        try:
            record = parse_line(line)
        except Unreadable as exc:
            result.unreadable.add(name, number, str(exc))
            continue
        if record is None:
            result.unrecognised += 1
        else:
            result.records.append(record)
    return result
