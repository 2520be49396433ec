"""Service catalog: floor 2 of the pipeline: built-in service groups that `lower` expands.

A policy names a service (``allow egress to slack``, ``define llm = openai, anthropic``) and
`lower` replaces the name with the group's exact FQDNs, ``*.suffix`` wildcards, literal
addresses and its one port list, read from ``data/catalog.toml``. The file is checked strictly
when first loaded: a malformed catalog is a bug in clawpolicy, not in the user's policy, so it
raises `CatalogError` naming the group and key instead of quietly allowing the wrong thing.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

_KEYS = ("description", "source", "fqdns", "wildcards", "addresses", "ports")
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]*")
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PORT_RE = re.compile(r"([0-9]+)(?:-([0-9]+))?/(tcp|udp)")


class CatalogError(Exception):
    """The built-in catalog data is malformed; the message names the group and key."""


@dataclass(frozen=True)
class CatalogGroup:
    """One named service: where it lives (names and addresses) and which ports it uses."""

    name: str
    description: str
    source: str
    fqdns: tuple[str, ...]
    wildcards: tuple[str, ...]  # suffixes: "slack.com" means any name strictly below it
    addresses: tuple[str, ...]  # literal IPv4/IPv6 addresses or canonical CIDRs
    ports: tuple[str, ...]  # "443/tcp", "3478/udp", "8000-8100/tcp"


@functools.cache
def load_catalog() -> Mapping[str, CatalogGroup]:
    """The shipped catalog, parsed and validated once, as a read-only mapping sorted by name."""
    resource = resources.files("clawpolicy") / "data" / "catalog.toml"
    return parse_catalog(resource.read_text(encoding="utf-8"))


def parse_catalog(text: str) -> Mapping[str, CatalogGroup]:
    """Parse and validate catalog TOML text; raise `CatalogError` on the first problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"catalog is not valid TOML: {exc}") from exc
    extra = sorted(set(data) - {"groups"})
    if extra:
        raise CatalogError(f"catalog: unknown top-level key(s) {extra}; "
                           "only [groups.<name>] tables are allowed")
    groups = data.get("groups")
    if not isinstance(groups, dict) or not groups:
        raise CatalogError("catalog: no [groups.<name>] tables")
    parsed = {name: _parse_group(name, body) for name, body in groups.items()}
    return types.MappingProxyType(dict(sorted(parsed.items())))


def _error(group: str, key: str | None, message: str) -> CatalogError:
    where = f"catalog group {group!r}" + (f", key {key!r}" if key else "")
    return CatalogError(f"{where}: {message}")


def _parse_group(name: str, body: object) -> CatalogGroup:
    if not _NAME_RE.fullmatch(name):
        raise _error(name, None, "group names must match ^[a-z0-9][a-z0-9-]*$")
    if not isinstance(body, dict):
        raise _error(name, None, "must be a table ([groups.<name>])")
    unknown = sorted(set(body) - set(_KEYS))
    missing = [key for key in _KEYS if key not in body]
    if unknown or missing:
        found = [f"{what} key(s) {keys}" for what, keys in (("unknown", unknown),
                                                             ("missing", missing)) if keys]
        raise _error(name, None, f"{', '.join(found)}; keys are exactly {list(_KEYS)}")
    description = _one_line(name, "description", body["description"])
    source = _one_line(name, "source", body["source"])
    fqdns, wildcards, addresses, ports = (
        _sorted_strings(name, key, body[key]) for key in _KEYS[2:])
    for fqdn in fqdns:
        _check_dns_name(name, "fqdns", fqdn)
    for suffix in wildcards:
        if suffix.startswith("*."):
            raise _error(name, "wildcards", f"{suffix!r}: write the suffix without '*.' "
                                            f"({suffix[2:]!r} already means {suffix!r})")
        _check_dns_name(name, "wildcards", suffix)
    for address in addresses:
        _check_address(name, address)
    if not ports:
        raise _error(name, "ports", "must list at least one port")
    for port in ports:
        _check_port(name, port)
    if not (fqdns or wildcards or addresses):
        raise _error(name, None, "no destination: fqdns, wildcards and addresses are all empty")
    return CatalogGroup(name, description, source, fqdns, wildcards, addresses, ports)


def _one_line(group: str, key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
        raise _error(group, key, "must be a non-empty one-line string")
    return value


def _sorted_strings(group: str, key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _error(group, key, "must be a list of strings")
    if len(set(value)) != len(value):
        dupes = sorted({item for item in value if value.count(item) > 1})
        raise _error(group, key, f"duplicate entries {dupes}")
    if value != sorted(value):
        raise _error(group, key, f"entries must be sorted (plain string order): {sorted(value)}")
    return tuple(value)


def _check_dns_name(group: str, key: str, name: str) -> None:
    labels = name.split(".")
    if name != name.lower():
        problem = "must be lowercase"
    elif len(name) > 253:
        problem = "is longer than 253 characters"
    elif len(labels) < 2:
        problem = "needs at least one dot"
    elif (bad := next((lb for lb in labels if not _LABEL_RE.fullmatch(lb)), None)) is not None:
        problem = (f"has an invalid label {bad!r} (1-63 of [a-z0-9-], "
                   "not starting or ending with '-')")
    elif labels[-1].isdigit():
        problem = "looks like an IP address; put addresses under 'addresses'"
    else:
        return
    raise _error(group, key, f"{name!r} is not a valid DNS name: it {problem}")


def _check_address(group: str, address: str) -> None:
    try:
        network = ipaddress.ip_network(address, strict=True)
    except ValueError as exc:
        raise _error(group, "addresses", f"{address!r}: {exc}") from exc
    canonical = str(network) if "/" in address else str(network.network_address)
    if address != canonical:
        raise _error(group, "addresses", f"{address!r} is not canonical; write {canonical!r}")


def _check_port(group: str, port: str) -> None:
    match = _PORT_RE.fullmatch(port)
    if not match:
        raise _error(group, "ports", f"{port!r} must look like '443/tcp' or '8000-8100/udp'")
    numbers = [text for text in match.group(1, 2) if text is not None]
    if any(text != str(int(text)) for text in numbers):
        raise _error(group, "ports", f"{port!r}: port numbers must not have leading zeros")
    low, high = int(numbers[0]), int(numbers[-1])
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise _error(group, "ports", f"{port!r}: ports must be within 1-65535")
    if low > high:
        raise _error(group, "ports", f"{port!r}: range start is above its end")
