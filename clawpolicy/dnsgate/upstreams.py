"""Where the gate listens and forwards: floor 1 (pure text parsing, no DNS library).

Shared by `dns serve` (its --listen/--upstream and the host's resolv.conf) and `compile
--dns-upstream` (the hardened dnsmasq fragment and the gate's systemd unit).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path

Address = tuple[str, int]


def parse_address(text: str, default_port: int = 53) -> Address:
    """`IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 address."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default_port
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    else:
        host, port = text, default_port
    ipaddress.ip_address(host)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return host, port


def resolv_conf_upstreams(path: Path, listen: Sequence[Address]) -> tuple[Address, ...]:
    """`nameserver` lines of resolv.conf, minus the gate's own listen addresses (which the
    host's resolv.conf names once the gate is installed)."""
    own = {(h, p) for h, p in listen}
    out = []
    try:
        text = path.read_text()
    except OSError:
        return ()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                address = parse_address(parts[1].split("%")[0])
            except ValueError:
                continue
            if address not in own:
                out.append(address)
    return tuple(dict.fromkeys(out))
