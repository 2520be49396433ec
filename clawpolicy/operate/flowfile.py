"""Recorded connections to flow records: the input of `clawpolicy simulate` and `suggest`.

Formats (one parser each, detected per file from its first meaningful line):
- `jsonl`: one object a line, keys `time direction src dst port proto uid name` (`dport`,
  `protocol`, `user` accepted as synonyms; direction defaults to egress, proto to tcp);
- `csv`: a header row naming the same columns;
- `conntrack`: `conntrack -L` (plain or `-o extended`); the original direction is the
  connection's opener, so it is egress unless its destination is one of `local` addresses;
- `ss`: `ss -tunap` (optionally `-e`); rows in LISTEN/UNCONN state give the listening ports,
  connections to a listening port are ingress, the others egress.
`name` is the destination's domain name where the record has one (e.g. the agent's own log):
`simulate` then matches it against FQDN rules, as the dnsmasq-filled sets would.

A flow file is untrusted input that flows into reports and into `suggest`'s policy text. So
every field is validated here, the way the policy language validates it (addresses canonical,
IPv4-mapped IPv6 as the IPv4 address the kernel sees, names by `resolve.normalise_name`, ports
1-65535 or none, users as `applies-to user` accepts them), and a line that fails is counted
with its position and why (`textinput.Problems`), never fatal: JSON nested deeper than
`MAX_JSON_DEPTH` is refused before the decoder recurses, CSV is read one line at a time (a
bare CR or an overlong field is that line's problem), lines are bounded by `textinput`.
"""

from __future__ import annotations

import csv
import functools
import ipaddress
import json
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from clawpolicy.names import normalise_name, wire_address
from clawpolicy.operate.textinput import Line, Overlong, Problems, json_depth

FORMATS = ("auto", "jsonl", "csv", "conntrack", "ss")
PROTOCOLS = {"tcp", "udp", "icmp", "icmpv6", "ipv6-icmp"}
MAX_JSON_DEPTH = 16  # a flow is one flat object
MAX_TIME_CHARS = 64  # ISO 8601 with nanoseconds and a zone is 35
USER = re.compile(r"^(?:[a-z_][a-z0-9_-]{0,31}\$?|[0-9]{1,10})$")  # as `applies-to user` takes it


class BadFlow(ValueError):
    """Why a line is not a flow (the message is ours: it never quotes the input)."""


class FlowRecord(NamedTuple):
    """One recorded connection. A named tuple, not a frozen dataclass: a week of flows is
    150,000 of them, and a frozen dataclass sets each field through `object.__setattr__`."""

    direction: str  # egress | ingress
    src: str
    dst: str
    port: int | None  # destination port (on the agent for ingress)
    proto: str  # tcp | udp | icmp
    time: str = ""
    uid: str | None = None
    name: str | None = None  # the destination's domain name, when the record has it

    @property
    def peer(self) -> str:
        return self.dst if self.direction == "egress" else self.src


@dataclass
class FlowFile:
    flows: list[FlowRecord] = field(default_factory=list)
    lines: int = 0
    unreadable: Problems = field(default_factory=Problems)  # lines that are not flows, and why

    @property
    def unrecognised(self) -> int:
        return self.unreadable.count


Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]


def _proto(text: object) -> str | None:
    value = str(text or "tcp").lower()
    if value not in PROTOCOLS:
        return None
    return "icmp" if value.startswith(("icmp", "ipv6-icmp")) else value


def _port(value: object) -> int | None:
    if type(value) is int:  # nearly every JSON record (not bool: its type is bool)
        if 1 <= value <= 65535:
            return value
        raise BadFlow("port is not a number from 1 to 65535")
    if value is None or value == "":
        return None
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and 1 <= int(text) <= 65535):
        raise BadFlow("port is not a number from 1 to 65535")
    return int(text)


def _addr(text: object) -> str:
    """Canonical address text; an interface zone dropped, IPv4-mapped IPv6 as its IPv4
    address (what the kernel sends on the wire)."""
    value = text.strip() if isinstance(text, str) else ""
    if not value:
        return ""
    if _canonical_ipv4(value):  # most records: skip building an address object (150,000 a week)
        return value
    try:
        return str(wire_address(value.split("%")[0]))  # ::ffff:a.b.c.d is the IPv4 packet sent
    except ValueError:
        raise BadFlow("an address is not an IPv4 or IPv6 address") from None


def _canonical_ipv4(text: str) -> bool:
    """Whether `text` is an IPv4 address written as ipaddress writes it (no leading zeros)."""
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text)) == text
    except (OSError, ValueError):  # not dotted-quad; a NUL or a lone surrogate (ValueError)
        return False


@functools.lru_cache(maxsize=4096)
def _normalised(name: str) -> str | None:
    """`normalise_name`, remembered: a week of flows names the same few hosts again and again."""
    return normalise_name(name)


def _name(value: object) -> str | None:
    if value is None or value == "":
        return None
    name = _normalised(value.strip()) if isinstance(value, str) else None
    if name is None or "." not in name:
        raise BadFlow("name is not a domain name")
    return name


def _text(value: object, what: str, most: int) -> str:
    if type(value) is str and len(value) <= most:  # the usual case, first
        return value
    text = "" if value is None else str(value) if isinstance(value, (str, int, float)) else None
    if text is None or len(text) > most:
        raise BadFlow(f"{what} is not a short text")
    return text


def _from_mapping(row: dict[str, Any]) -> FlowRecord:
    direction = str(row.get("direction") or "egress").lower()
    proto = _proto(row.get("proto") or row.get("protocol"))
    if direction not in ("egress", "ingress"):
        raise BadFlow("direction is neither egress nor ingress")
    if proto is None:
        raise BadFlow("proto is not tcp, udp or icmp")
    src, dst = _addr(row.get("src")), _addr(row.get("dst"))
    name = _name(row.get("name"))
    if direction == "egress" and not (dst or name):
        raise BadFlow("an egress flow needs dst or name")
    if direction == "ingress" and not src:
        raise BadFlow("an ingress flow needs src")
    uid = row.get("uid", row.get("user"))
    user = None if uid in (None, "") else _text(uid, "uid", 32)
    if user is not None and not USER.match(user):
        raise BadFlow("uid is not a user name or number")
    port = row.get("port", row.get("dport"))
    return FlowRecord(direction, src, dst, _port(port), proto,
                      _text(row.get("time"), "time", MAX_TIME_CHARS), user, name)


_Numbered = Sequence[tuple[int, str]]
# One JSON value at an index: (value, end); the decoder's own scanner (typeshed lacks the attribute).
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_JSON_SPACE = " \t\n\r"  # the whitespace JSON allows around a value


def _jsonl(lines: _Numbered, out: FlowFile, file: str) -> None:
    for number, line in lines:
        try:
            if line.count("{") + line.count("[") > MAX_JSON_DEPTH and json_depth(line) > MAX_JSON_DEPTH:
                raise BadFlow(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            try:  # the C scanner directly (json.loads adds two Python calls a line)
                text = line.strip(_JSON_SPACE)
                doc, end = _scan(text, 0)
            except (ValueError, RecursionError, StopIteration):  # StopIteration: no value at 0
                raise BadFlow("not a JSON object") from None
            if not isinstance(doc, dict) or end != len(text):
                raise BadFlow("not a JSON object")
            out.flows.append(_from_mapping(doc))
        except BadFlow as exc:
            out.unreadable.add(file, number, str(exc))


def _csv_row(line: str) -> list[str]:
    """One line as CSV fields: quoted fields may not span lines (a flow never needs it), so a
    bare CR, an open quote or a field over csv's 128 KiB limit is this line's problem."""
    try:
        return next(csv.reader([line], strict=True), [])
    except csv.Error as exc:
        raise BadFlow(f"not a CSV row ({str(exc).split(' - ')[0]})") from None


def _csv(lines: _Numbered, out: FlowFile, file: str) -> None:
    (number, first), rows = lines[0], lines[1:]
    out.lines -= 1  # the header
    try:
        header = [k.strip().lower() for k in _csv_row(first)]
    except BadFlow as exc:
        out.unreadable.add(file, number, f"header: {exc}")
        return
    for number, line in rows:
        try:
            out.flows.append(_from_mapping({k: v for k, v in zip(header, _csv_row(line), strict=False) if k}))
        except BadFlow as exc:
            out.unreadable.add(file, number, str(exc))


_CT_PROTO = re.compile(r"\b(tcp|udp|icmp|icmpv6)\s+\d+\s")


def _conntrack(lines: _Numbered, out: FlowFile, file: str, local: Networks) -> None:
    for number, line in lines:
        m = _CT_PROTO.search(line)
        f: dict[str, str] = {}
        for key, value in re.findall(r"\b(src|dst|sport|dport)=(\S+)", line):
            f.setdefault(key, value)  # the first of each: the original direction
        try:
            if m is None or "src" not in f or "dst" not in f:
                raise BadFlow("not a conntrack entry")
            src, dst = _addr(f["src"]), _addr(f["dst"])
            address = ipaddress.ip_address(dst)
            ingress = any(address in n for n in local if n.version == address.version)
            proto = _proto(m[1]) or "tcp"
            out.flows.append(FlowRecord("ingress" if ingress else "egress", src, dst,
                                        _port(f.get("dport")), proto))
        except BadFlow as exc:
            out.unreadable.add(file, number, str(exc))


_SS_ENDPOINT = re.compile(r"^\[?([^\]%]*?)(?:%[\w.-]+)?\]?(?:%[\w.-]+)?:(\d{1,5}|\*)$")


def _endpoint(text: str) -> tuple[str, int | None] | None:
    m = _SS_ENDPOINT.match(text)
    if m is None or (m[2] != "*" and not 0 <= int(m[2]) <= 65535):
        return None
    host = m[1].removeprefix("::ffff:") if "." in m[1] else m[1]
    return host, None if m[2] == "*" or m[2] == "0" else int(m[2])


def _ss(lines: _Numbered, out: FlowFile, file: str) -> None:
    rows: list[tuple[int, str, str, int | None, str, int | None, str | None]] = []
    listening: set[tuple[str, int]] = set()
    for number, line in lines:
        parts = line.split()
        if parts[:1] == ["Netid"]:
            out.lines -= 1
            continue
        local = _endpoint(parts[4]) if len(parts) >= 6 else None
        remote = _endpoint(parts[5]) if len(parts) >= 6 else None
        proto = _proto(parts[0]) if parts else None
        if local is None or remote is None or proto is None:
            out.unreadable.add(file, number, "not an ss socket line")
            continue
        (lhost, lport), (phost, pport) = local, remote
        if parts[1] in ("LISTEN", "UNCONN") or phost in ("*", "0.0.0.0", "::", ""):
            if lport is not None:
                listening.add((proto, lport))
            out.lines -= 1  # a listening socket is not a flow
            continue
        owner = re.search(r"\buid:(\d{1,10})\b", line)
        rows.append((number, proto, lhost, lport, phost, pport, owner[1] if owner else None))
    for number, proto, lhost, lport, phost, pport, uid in rows:
        try:
            if lport is not None and (proto, lport) in listening:
                flow = FlowRecord("ingress", _addr(phost), _addr(lhost), lport, proto, uid=uid)
            else:
                flow = FlowRecord("egress", _addr(lhost), _addr(phost), pport, proto, uid=uid)
        except BadFlow as exc:
            out.unreadable.add(file, number, str(exc))
            continue
        out.flows.append(flow)


def detect(first: str) -> str:
    text = first.strip()
    if text.startswith("{"):
        return "jsonl"
    if text.startswith("Netid") or re.match(
            r"^(tcp|udp)\s+(ESTAB|SYN-SENT|TIME-WAIT|CLOSE-WAIT|LISTEN|UNCONN|FIN-WAIT)", text):
        return "ss"
    if " src=" in text and " dst=" in text:
        return "conntrack"
    return "csv"


def parse_flows(text: Iterable[Line], fmt: str = "auto", local: Networks = (),
                into: FlowFile | None = None, file: str = "-") -> FlowFile:
    """Flows from one file's lines in `fmt` (auto: detected from the first non-blank line);
    `file` names it in the positions of unreadable lines."""
    out = into if into is not None else FlowFile()
    lines: list[tuple[int, str]] = []
    for number, line in enumerate(text, 1):
        if isinstance(line, Overlong):
            out.lines += 1
            out.unreadable.add(file, number, f"line of {line.size} bytes: longer than any flow")
        elif line.strip() and not line.lstrip().startswith("#"):
            lines.append((number, line.rstrip("\r\n")))
    if not lines:
        return out
    kind = detect(lines[0][1]) if fmt == "auto" else fmt
    out.lines += len(lines)
    if kind == "jsonl":
        _jsonl(lines, out, file)
    elif kind == "csv":
        _csv(lines, out, file)
    elif kind == "conntrack":
        _conntrack(lines, out, file, local)
    else:
        _ss(lines, out, file)
    return out
