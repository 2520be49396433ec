"""Host names and addresses as people write them: floor 1, the one normaliser every stage uses.

Names: IDNA 2008 with the UTS #46 mapping (the `idna` package), non-transitional, so `faß.de`
stays `xn--fa-hia.de` and final sigma stays itself. Python's built-in `idna` codec is IDNA 2003,
which maps `ß` to `ss` and `ς` to `σ`: `allow egress to faß.de` would allow `fass.de`, another
domain (DESIGN.md, field facts). Compile (`includes`), lock files, `init` and the flow readers
behind `suggest` and `simulate` all call `normalise_name`, so a name means one domain everywhere.

Mixed-script names (a Cyrillic `а` in `pаypal.com`) are valid IDNA 2008; they are kept and come
out as their own A-label (`xn--pypal-4ve.com`), never folded onto the Latin look-alike, so every
artifact shows the domain really named.

Addresses: an IPv4-mapped IPv6 address (`::ffff:10.9.9.2`, RFC 4291 2.5.5.2) leaves the host as
an IPv4 packet when a dual-stack socket connects to it, so a rule for it in the IPv6 tables never
sees that packet: `deny egress to ::ffff:10.9.9.2` would deny nothing. IPv4-compatible addresses
(`::10.9.9.2`, deprecated by RFC 4291 2.5.5.1) are sent by Linux through the automatic `sit`
tunnel inside IPv4 packets to the embedded address. Policies, lock files and test expectations
therefore reject both forms (and any network overlapping them other than `::/0`) with a hint
naming the IPv4 equivalent. Flows (observed traffic) are facts rather than rules: there a
mapped address is normalised to the IPv4 address the kernel actually sent.

Accepted as written, because they leave the host as IPv6 to an IPv6 next hop and so match the
IPv6 rules the compiler writes: NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`), 6to4 (`2002::/16`),
Teredo (`2001::/32`), and `::` and `::1`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where needed: a policy of addresses only never loads them
    from publicsuffixlist import PublicSuffixList

MAX_NAME = 253  # RFC 1035 2.3.4, without the final dot
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_LOOPBACK_OR_UNSPECIFIED = ipaddress.IPv6Network("::/127")  # `::` and `::1`: not embedded IPv4
_ALL_IPV6 = ipaddress.IPv6Network("::/0")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def normalise_name(text: str) -> str | None:
    """The lower-case A-label form (`xn--...`) of a DNS host name, or None when `text` is not
    one. One final dot (a fully qualified name) is dropped; an empty label is not a name.
    Labels must be letters, digits and '-' once encoded (no '_': host names, RFC 952/1123)."""
    if text.endswith("."):
        text = text[:-1]
    if not text or len(text) > 4 * MAX_NAME:  # bound the work before the IDNA tables
        return None
    import idna

    try:
        ascii_name = idna.encode(text, uts46=True, std3_rules=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None
    ascii_name = ascii_name.lower()
    labels = ascii_name.split(".")
    if len(ascii_name) > MAX_NAME or not all(_LABEL.match(label) for label in labels):
        return None
    if labels[-1].isdigit():  # 10.0.0.1 written with an extra label is not a name
        return None
    return ascii_name


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    """The Public Suffix List the package bundles (ICANN and private sections): read from the
    installed package, never fetched, so lint and diff work offline and give the same answer
    for the same installed version."""
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def is_public_suffix(name: str) -> bool:
    """Whether anyone can register names directly under `name` (an A-label name such as `com`,
    `co.uk` or `github.io`), so that `*.name` matches names of unrelated owners. A single label
    the list does not know (`corp`, `zz`) counts too: the list's default rule is `*`."""
    return bool(_public_suffixes().is_public(name.lower()))


def embedded_ipv4_problem(net: Network) -> tuple[str, str] | None:
    """Why a network a rule names is refused, and a hint; None when it is fine.

    A network is refused when it overlaps the IPv4-mapped range or the IPv4-compatible range
    (`::/0` aside, which means every IPv6 address; `::` and `::1` aside, which are not embedded
    IPv4): see the module docstring for what the kernel does with these addresses."""
    if not isinstance(net, ipaddress.IPv6Network) or net == _ALL_IPV6:
        return None
    if net.overlaps(IPV4_MAPPED):
        why = "IPv4-mapped IPv6 addresses leave the host as IPv4, so an IPv6 rule never matches them"
        return _problem(net, IPV4_MAPPED, why)
    if net.overlaps(IPV4_COMPATIBLE) and not net.subnet_of(_LOOPBACK_OR_UNSPECIFIED):
        why = "IPv4-compatible IPv6 addresses (::a.b.c.d) are deprecated and leave the host inside IPv4"
        return _problem(net, IPV4_COMPATIBLE, why)
    return None


def _problem(net: ipaddress.IPv6Network, embedded: ipaddress.IPv6Network, why: str) -> tuple[str, str]:
    if net.subnet_of(embedded):
        return why, _ipv4_hint(net, embedded)
    return f"it overlaps {embedded}: {why}", _ipv4_hint(net, embedded)


def _ipv4_hint(net: ipaddress.IPv6Network, embedded: ipaddress.IPv6Network) -> str:
    if net.subnet_of(embedded):
        first = ipaddress.IPv4Address(int(net.network_address) & 0xFFFFFFFF)
        v4 = ipaddress.IPv4Network(f"{first}/{net.prefixlen - 96}")
        shown = str(v4.network_address) if v4.prefixlen == 32 else str(v4)
        return f"write the IPv4 form: {shown}"
    return (f"this network overlaps {embedded}: name IPv4 addresses for that part, and "
            "narrow the IPv6 network so it leaves that range out")


def is_address(text: str) -> bool:
    """Whether `text` is one IPv4 or IPv6 address as written (not a network, not a name)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def wire_address(text: str) -> Address:
    """An address as packets carry it (observed flows, URLs): an IPv4-mapped address is the IPv4 packet
    the kernel sent, so it becomes that IPv4 address. Raises ValueError for junk."""
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# Metadata services that hand out instance or workload credentials over HTTP (80/tcp). Left
# out: Alibaba Cloud's 100.100.100.200, inside the Tailscale range 100.64.0.0/10 that tailnet
# policies allow, where it would flag every such policy.
METADATA_ENDPOINTS = (
    ("169.254.169.254", "AWS, GCP, Azure, Oracle, OpenStack and DigitalOcean instance metadata"),
    ("fd00:ec2::254", "AWS instance metadata over IPv6"),
    ("169.254.170.2", "AWS ECS task credentials"),
    ("169.254.170.23", "AWS EKS Pod Identity credentials"),
    ("fd00:ec2::23", "AWS EKS Pod Identity credentials over IPv6"),
    ("fd20:ce::254", "Google Cloud metadata over IPv6"),
    ("fd00:c1::a9fe:a9fe", "Oracle Cloud metadata over IPv6"),
    ("168.63.129.16", "Azure WireServer: VM agent configuration and certificates"),
)
