"""Peer literals and ports as written: floor 2, the leaf of lowering that needs no context.

An address, CIDR, domain name or *.wildcard becomes an `Atom`, a port item a `PortRange`, or
a positioned diagnostic. A list whose every item is a canonical IPv4 host (a 100,000-address
rule) is converted in one pass (`ipv4_hosts`), with no per-item object but its integer.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from clawpolicy import ir
from clawpolicy.errors import Diagnostics, Location, closest
from clawpolicy.ir import PortRange, Protocol
from clawpolicy.names import embedded_ipv4_problem, normalise_name
from clawpolicy.netspace import ipv4_network, merge_networks, networks_of_keys
from clawpolicy.syntax import Word

_PORT = re.compile(r"^(?:([0-9]+)(?:-([0-9]+))?|any)/(\w+)$")  # ASCII digits: \d admits ٤٤٣
PROTOCOLS = {p.value: p for p in Protocol}


@dataclass(frozen=True, slots=True)
class Atom:
    """One resolved peer: kind is any | net4 | net6 | name | wildcard, or `nets`: a whole
    definition of address literals, as `address_keys` gives them (`keys`)."""

    kind: str
    value: str
    origin: str  # the word as written in the rule (e.g. "@llm")
    ports: tuple[PortRange, ...] | None = None  # catalog ports; None: the rule decides
    net: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None  # parsed once, for net4/net6
    keys: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # `nets`: IPv4 and IPv6 keys

    def named(self, origin: str) -> Atom:
        """The same peer reached through another word (a reference)."""
        return Atom(self.kind, self.value, origin, self.ports, self.net, self.keys)


# A canonical IPv4 address or CIDR (no leading zeros): the common case, parsed in C by
# inet_pton (strict dotted-quad decimal: it refuses "1.2.3", "01.2.3.4" and hex). Anything else
# that looks like an address goes through `ipaddress`, which gives the error messages; the fast
# path accepts only text `ipaddress` accepts, with the same network.
def _fast_ipv4(text: str) -> ipaddress.IPv4Network | None:
    """The network of a canonical IPv4 literal without host bits, else None (the slow path)."""
    key = _key(text, 4)
    return None if key is None else ipv4_network(key >> 8, key & 255)


_BITS = {4: 32, 6: 128}
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}


def _key(text: str, family: int) -> int | None:
    """`address << 8 | prefix` of a literal the fast path takes, else None (`ipaddress`
    decides, and words the error). IPv6 only as inet_ntop writes it (a canonical spelling,
    which `ipaddress` accepts as the same address) and above ::/64, which keeps clear of the
    embedded-IPv4 ranges `names.embedded_ipv4_problem` refuses."""
    addr, slash, plen = text.partition("/")
    if not text.isascii():
        return None
    try:
        packed = socket.inet_pton(_FAMILY[family], addr)
        if family == 6 and socket.inet_ntop(socket.AF_INET6, packed) != addr:
            return None
    except (OSError, ValueError):  # not an address; a NUL
        return None
    value, bits = int.from_bytes(packed, "big"), _BITS[family]
    if family == 6 and value >> 64 == 0:
        return None
    if not slash:
        return value << 8 | bits
    if not plen.isdigit() or (len(plen) > 1 and plen[0] == "0") or int(plen) > bits:
        return None  # "/08", "/33", "/": leave to ipaddress
    prefix = int(plen)
    if value & ((1 << (bits - prefix)) - 1):
        return None  # host bits set: the slow path says so, with a fix
    return value << 8 | prefix


def parse_literal(word: Word, diag: Diagnostics,
                  suggestions: Iterable[str] | Callable[[], Iterable[str]] | None = None) -> Atom | None:
    """An address, CIDR, FQDN or *.wildcard as written in a policy. `suggestions` (names for a
    "did you mean" hint) may be a callable: it is only needed for an unknown peer."""
    text = word.text
    fast = _fast_ipv4(text) if text[:1].isdigit() else None
    if fast is not None:
        return Atom("net4", text, text, None, fast)
    if _looks_like_address(text):
        if "%" in text:  # ipaddress accepts fe80::1%eth0; no firewall rule can hold a zone
            diag.error(f"invalid address '{text}': interface zones are not supported", word.loc,
                       f"drop the zone: {re.sub(r'%[^/]*', '', text)}", code="address")
            return None
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            try:
                fix = ipaddress.ip_network(text, strict=False)
            except ValueError:
                diag.error(f"invalid address '{text}'", word.loc, str(exc), code="address")
                return None
            diag.error(f"{text} has host bits set", word.loc,
                       f"did you mean {fix}? (or {text.split('/')[0]} for the single host)",
                       code="cidr")
            return None
        problem = embedded_ipv4_problem(net)
        if problem is not None:
            diag.error(f"invalid address '{text}': {problem[0]}", word.loc, problem[1], code="address")
            return None
        return Atom(f"net{net.version}", text, text, None, net)
    if text.startswith("*."):
        name = normalise_name(text[2:])
        if name is None:
            diag.error(f"invalid wildcard '{text}'", word.loc,
                       "a wildcard is '*.' followed by a domain name, e.g. *.slack.com", code="name")
            return None
        return Atom("wildcard", name, text)
    if "*" in text:
        diag.error(f"invalid wildcard '{text}'", word.loc,
                   "only a leading '*.' is supported; use 'any' for every address", code="name")
        return None
    name = normalise_name(text)
    if name is None or "." not in name:
        options = suggestions() if callable(suggestions) else suggestions
        guess = closest(text, list(options or []))
        hint = f"did you mean {guess}?" if guess else (
            "peers are addresses, CIDRs, domain names, *.wildcards, @definitions, catalog "
            "groups (see `clawpolicy catalog`) or 'any'")
        diag.error(f"unknown peer '{text}'", word.loc, hint, code="unknown-name")
        return None
    return Atom("name", name, text)


def _looks_like_address(text: str) -> bool:
    return ":" in text or bool(re.fullmatch(r"[0-9./]+", text))


def parse_port_text(text: str) -> PortRange:
    """A port item known to be valid (catalog data); see `parse_port` for user input."""
    diag = Diagnostics()
    port = parse_port(Word(text, Location("<catalog>")), diag)
    if port is None:
        raise ValueError(f"invalid catalog port {text!r}")
    return port


def parse_port(word: Word, diag: Diagnostics) -> PortRange | None:
    """`443/tcp`, `8000-8100/tcp`, `any/udp`, `tcp`, `udp` or `icmp`."""
    text = word.text.lower()
    if text in PROTOCOLS:
        return PortRange(protocol=PROTOCOLS[text])
    m = _PORT.match(text)
    if not m:
        hint = "write ports as 443/tcp, 53/udp, 8000-8100/tcp, any/udp or icmp"
        if text.isdigit():
            hint = f"name the protocol: {text}/tcp or {text}/udp"
        diag.error(f"invalid port '{word.text}'", word.loc, hint, code="port")
        return None
    lo_text, hi_text, proto_text = m.groups()
    proto = PROTOCOLS.get(proto_text)
    if proto is Protocol.ICMP and lo_text:
        diag.error(f"icmp has no ports: '{word.text}'", word.loc, "write icmp alone", code="port")
        return None
    if proto is None:
        guess = closest(proto_text, ["tcp", "udp"])
        diag.error(f"unknown protocol '{proto_text}' in '{word.text}'", word.loc,
                   f"did you mean {guess}?" if guess else "ports are tcp or udp; icmp has none",
                   code="port")
        return None
    if lo_text is None:
        return PortRange(protocol=proto)
    lo = int(lo_text)
    hi = int(hi_text) if hi_text else lo
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
        diag.error(f"port out of range in '{word.text}'", word.loc, "ports are 1-65535", code="port")
        return None
    if lo > hi:
        diag.error(f"empty port range '{word.text}'", word.loc, f"did you mean {hi}-{lo}/{proto_text}?",
                   code="port")
        return None
    return PortRange(protocol=proto, first=lo, last=hi)


_PTON4 = functools.partial(socket.inet_pton, socket.AF_INET)


def ipv4_hosts(texts: Sequence[str]) -> list[int] | None:
    """The addresses of a list whose every item is a canonical IPv4 host ("11.0.0.2": what
    `_fast_ipv4` takes as a /32, inet_pton's strict dotted quad), else None. One C pass
    (inet_pton over the list, one unpack) instead of a parse and an object per item."""
    if not texts:
        return None
    try:
        packed = b"".join(map(_PTON4, texts))
    except (OSError, ValueError):  # not an address; a NUL
        return None
    return list(struct.unpack(f">{len(texts)}I", packed))


def address_keys(texts: Sequence[str]) -> tuple[list[int], list[int]] | None:
    """The IPv4 and IPv6 networks of a list whose every item is an address literal the fast
    path takes, as `address << 8 | prefix` integers (`netspace.networks_of_keys`), else None:
    a list of 100,000 networks with no Atom, Word or network object per item."""
    if len(texts) < 2:
        return None
    hosts = ipv4_hosts(texts)
    if hosts is not None:
        return [h << 8 | 32 for h in hosts], []
    keys: dict[int, list[int]] = {4: [], 6: []}
    for text in texts:
        family = 6 if ":" in text else 4
        key = _key(text, family)
        if key is None:
            return None
        keys[family].append(key)
    return keys[4], keys[6]


def peers_of(atoms: list[Atom]) -> ir.Peers:
    """The atoms' peers, sorted and merged, in one pass over a list that may be 100,000 long."""
    by_kind: dict[str, list[Atom]] = {"net4": [], "net6": [], "name": [], "wildcard": [], "any": [],
                                      "nets": []}
    for a in atoms:
        by_kind[a.kind].append(a)
    if by_kind["any"]:
        return ir.Peers(any=True)
    names = tuple(sorted({a.value for a in by_kind["name"]}))
    wildcards = tuple(sorted({a.value for a in by_kind["wildcard"]}))
    if by_kind["nets"]:  # whole literal definitions: merge everything as integers
        keys4 = [k for a in by_kind["nets"] if a.keys for k in a.keys[0]]
        keys6 = [k for a in by_kind["nets"] if a.keys for k in a.keys[1]]
        keys4 += [_key_of(a.net) for a in by_kind["net4"] if a.net is not None]
        keys6 += [_key_of(a.net) for a in by_kind["net6"] if a.net is not None]
        return literal_peers(keys4, keys6, names, wildcards)
    return ir.Peers(
        ipv4=merge_networks(a.net for a in by_kind["net4"] if isinstance(a.net, ipaddress.IPv4Network)),
        ipv6=merge_networks(a.net for a in by_kind["net6"] if isinstance(a.net, ipaddress.IPv6Network)),
        names=names, wildcards=wildcards,
    )


def _key_of(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    return int(net.network_address) << 8 | net.prefixlen


def literal_peers(keys4: list[int], keys6: list[int], names: tuple[str, ...] = (),
                   wildcards: tuple[str, ...] = ()) -> ir.Peers:
    """The peers of address literals given as keys (`literals.address_keys`), sorted and merged."""
    ipv4 = networks_of_keys(keys4, 4) if keys4 else ()
    ipv6 = networks_of_keys(keys6, 6) if keys6 else ()
    return ir.Peers(ipv4=ipv4, ipv6=ipv6, names=names, wildcards=wildcards)
