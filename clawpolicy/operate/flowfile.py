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
`simulate` then matches it against FQDN rules, as the dnsmasq-filled sets would. Lines a
parser cannot read are counted, never fatal.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clawpolicy.names import normalise_name, wire_address

FORMATS = ("auto", "jsonl", "csv", "conntrack", "ss")
PROTOCOLS = {"tcp", "udp", "icmp", "icmpv6", "ipv6-icmp"}


@dataclass(frozen=True)
class FlowRecord:
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
    unrecognised: int = 0


Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]


def _proto(text: object) -> str | None:
    value = str(text or "tcp").lower()
    if value not in PROTOCOLS:
        return None
    return "icmp" if value.startswith(("icmp", "ipv6-icmp")) else value


def _port(value: object) -> int | None:
    if value is None or value == "":
        return None
    number = int(str(value))
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} out of range")
    return number


def _addr(text: object) -> str:
    value = str(text or "").strip()
    if not value:
        return ""
    return str(wire_address(value.split("%")[0]))  # ValueError for junk; ::ffff:a.b.c.d is IPv4


def _from_mapping(row: dict[str, Any]) -> FlowRecord | None:
    direction = str(row.get("direction") or "egress").lower()
    proto = _proto(row.get("proto") or row.get("protocol"))
    if direction not in ("egress", "ingress") or proto is None:
        return None
    src, dst = _addr(row.get("src")), _addr(row.get("dst"))
    raw = str(row.get("name") or "").strip()
    name = (normalise_name(raw) or raw.lower().rstrip(".")) or None  # IDNA 2008, as policies
    if (direction == "egress" and not (dst or name)) or (direction == "ingress" and not src):
        return None
    uid = row.get("uid", row.get("user"))
    return FlowRecord(direction, src, dst, _port(row.get("port", row.get("dport"))), proto,
                      str(row.get("time") or ""), None if uid in (None, "") else str(uid), name)


def _jsonl(lines: Sequence[str], out: FlowFile) -> None:
    for line in lines:
        try:
            doc = json.loads(line)
            flow = _from_mapping(doc) if isinstance(doc, dict) else None
        except ValueError:
            flow = None
        _add(out, flow)


def _csv(lines: Sequence[str], out: FlowFile) -> None:
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    out.lines -= 1  # the header
    for row in reader:
        try:
            flow = _from_mapping({k.strip().lower(): v for k, v in row.items() if k})
        except ValueError:
            flow = None
        _add(out, flow)


_CT_PROTO = re.compile(r"\b(tcp|udp|icmp|icmpv6)\s+\d+\s")


def _conntrack(lines: Sequence[str], out: FlowFile, local: Networks) -> None:
    for line in lines:
        m = _CT_PROTO.search(line)
        f: dict[str, str] = {}
        for key, value in re.findall(r"\b(src|dst|sport|dport)=(\S+)", line):
            f.setdefault(key, value)  # the first of each: the original direction
        try:
            if m is None or "src" not in f or "dst" not in f:
                raise ValueError(line)
            src, dst = _addr(f["src"]), _addr(f["dst"])
            ingress = any(ipaddress.ip_address(dst) in n for n in local if n.version == ipaddress.ip_address(dst).version)
            proto = _proto(m[1]) or "tcp"
            flow: FlowRecord | None = FlowRecord("ingress" if ingress else "egress", src, dst,
                                                 _port(f.get("dport")), proto)
        except ValueError:
            flow = None
        _add(out, flow)


_SS_ENDPOINT = re.compile(r"^\[?([^\]%]*?)(?:%[\w.-]+)?\]?(?:%[\w.-]+)?:(\d+|\*)$")


def _endpoint(text: str) -> tuple[str, int | None] | None:
    m = _SS_ENDPOINT.match(text)
    if m is None:
        return None
    host = m[1].removeprefix("::ffff:") if "." in m[1] else m[1]
    return host, None if m[2] == "*" else int(m[2])


def _ss(lines: Sequence[str], out: FlowFile) -> None:
    rows: list[tuple[str, str, int | None, str, int | None, str | None]] = []
    listening: set[tuple[str, int]] = set()
    for line in lines:
        parts = line.split()
        if parts[:1] == ["Netid"]:
            out.lines -= 1
            continue
        local = _endpoint(parts[4]) if len(parts) >= 6 else None
        remote = _endpoint(parts[5]) if len(parts) >= 6 else None
        proto = _proto(parts[0]) if parts else None
        if local is None or remote is None or proto is None:
            out.unrecognised += 1
            continue
        (lhost, lport), (phost, pport) = local, remote
        if parts[1] in ("LISTEN", "UNCONN") or phost in ("*", "0.0.0.0", "::", ""):
            if lport is not None:
                listening.add((proto, lport))
            out.lines -= 1  # a listening socket is not a flow
            continue
        owner = re.search(r"\buid:(\d+)", line)
        rows.append((proto, lhost, lport, phost, pport, owner[1] if owner else None))
    for proto, lhost, lport, phost, pport, uid in rows:
        try:
            if lport is not None and (proto, lport) in listening:
                flow = FlowRecord("ingress", _addr(phost), _addr(lhost), lport, proto, uid=uid)
            else:
                flow = FlowRecord("egress", _addr(lhost), _addr(phost), pport, proto, uid=uid)
        except ValueError:
            out.unrecognised += 1
            continue
        out.flows.append(flow)


def _add(out: FlowFile, flow: FlowRecord | None) -> None:
    if flow is None:
        out.unrecognised += 1
    else:
        out.flows.append(flow)


def detect(first: str) -> str:
    text = first.strip()
    if text.startswith("{"):
        return "jsonl"
    if text.startswith("Netid") or re.match(r"^(tcp|udp)\s+(ESTAB|SYN-SENT|TIME-WAIT|CLOSE-WAIT|LISTEN|UNCONN|FIN-WAIT)", text):
        return "ss"
    if " src=" in text and " dst=" in text:
        return "conntrack"
    return "csv"


def parse_flows(text: Iterable[str], fmt: str = "auto", local: Networks = (),
                into: FlowFile | None = None) -> FlowFile:
    """Flows from one file's lines in `fmt` (auto: detected from the first non-blank line)."""
    out = into if into is not None else FlowFile()
    lines = [line.rstrip("\r\n") for line in text if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return out
    kind = detect(lines[0]) if fmt == "auto" else fmt
    out.lines += len(lines)
    if kind == "jsonl":
        _jsonl(lines, out)
    elif kind == "csv":
        _csv(lines, out)
    elif kind == "conntrack":
        _conntrack(lines, out, local)
    else:
        _ss(lines, out)
    return out
