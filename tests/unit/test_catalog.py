"""The built-in service catalog: the shipped data and every validation path of the loader."""

from __future__ import annotations

import json
import types
from importlib import resources
from typing import Any

import pytest

from clawpolicy.catalog import CatalogError, CatalogGroup, load_catalog, parse_catalog

REQUIRED_GROUPS = (
    "openai", "anthropic", "google-gemini", "slack", "discord", "telegram", "whatsapp",
    "msteams", "github", "npm-registry", "tailscale", "openclaw",
)

BASE: dict[str, Any] = {
    "description": "Example service",
    "source": "vendor docs: example; checked 2026-11",
    "fqdns": ["api.example.com"],
    "wildcards": ["cdn.example.com"],
    "addresses": ["192.0.2.1"],
    "ports": ["443/tcp"],
}
DROP = object()  # an override value meaning "leave this key out"


def group_toml(name: str = "example", **overrides: Any) -> str:
    """TOML for one group: BASE with `overrides` applied (JSON scalars/arrays are valid TOML)."""
    body = {**BASE, **overrides}
    lines = [f"[groups.{name}]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in body.items() if value is not DROP]
    return "\n".join(lines) + "\n"


# --- the shipped file ------------------------------------------------------------------------

def test_shipped_catalog_loads() -> None:
    catalog = load_catalog()
    assert catalog, "the shipped catalog is empty"
    assert all(isinstance(group, CatalogGroup) for group in catalog.values())
    assert all(name == group.name for name, group in catalog.items())


def test_required_groups_exist() -> None:
    missing = [name for name in REQUIRED_GROUPS if name not in load_catalog()]
    assert not missing


def test_tailscale_udp_lives_in_its_own_group() -> None:
    catalog = load_catalog()
    assert all(port.endswith("/tcp") for port in catalog["tailscale"].ports)
    assert "3478/udp" in catalog["tailscale-derp-stun"].ports


def test_telegram_has_fallback_address() -> None:
    telegram = load_catalog()["telegram"]
    assert "149.154.167.220" in telegram.addresses
    assert "api.telegram.org" in telegram.fqdns


def test_catalog_is_cached_read_only_and_sorted() -> None:
    catalog = load_catalog()
    assert load_catalog() is catalog
    assert isinstance(catalog, types.MappingProxyType)
    assert list(catalog) == sorted(catalog)
    with pytest.raises(TypeError):
        catalog["new"] = catalog["openai"]  # type: ignore[index]


def test_load_catalog_is_parse_catalog_of_the_resource() -> None:
    text = (resources.files("clawpolicy") / "data" / "catalog.toml").read_text(encoding="utf-8")
    assert dict(parse_catalog(text)) == dict(load_catalog())


# --- parsing ---------------------------------------------------------------------------------

def test_valid_group_parses_to_tuples() -> None:
    text = group_toml("zeta") + group_toml("alpha", fqdns=["a.example.com", "b.example.com"])
    catalog = parse_catalog(text)
    assert list(catalog) == ["alpha", "zeta"]
    assert catalog["alpha"] == CatalogGroup(
        name="alpha", description="Example service", source=BASE["source"],
        fqdns=("a.example.com", "b.example.com"), wildcards=("cdn.example.com",),
        addresses=("192.0.2.1",), ports=("443/tcp",))


def test_accepts_ranges_cidrs_and_ipv6() -> None:
    text = group_toml(addresses=["192.0.2.0/24", "2001:db8::/32", "2001:db8::1"],
                      ports=["3478/udp", "443/tcp", "8000-8100/tcp"], fqdns=[], wildcards=[])
    assert parse_catalog(text)["example"].ports == ("3478/udp", "443/tcp", "8000-8100/tcp")


def test_group_with_only_wildcards_is_fine() -> None:
    assert parse_catalog(group_toml(fqdns=[], addresses=[]))["example"].wildcards


MALFORMED: list[tuple[str, str, str]] = [
    # (case id, TOML text, a fragment the message must contain besides the group name)
    ("name-uppercase", group_toml("Slack"), "group names"),
    ("name-leading-hyphen", group_toml('"-slack"'), "group names"),
    ("name-underscore", group_toml("slack_x"), "group names"),
    ("group-not-a-table", "[groups]\nexample = 3\n", "must be a table"),
    ("missing-key", group_toml(source=DROP), "missing key(s) ['source']"),
    ("unknown-key", group_toml(port=["443/tcp"]), "unknown key(s) ['port']"),
    ("description-not-string", group_toml(description=42), "'description'"),
    ("description-empty", group_toml(description="  "), "'description'"),
    ("description-multiline", group_toml(description="two\nlines"), "one-line"),
    ("source-not-string", group_toml(source=["a"]), "'source'"),
    ("fqdns-not-list", group_toml(fqdns="api.example.com"), "list of strings"),
    ("fqdns-item-not-string", group_toml(fqdns=[1]), "list of strings"),
    ("fqdn-uppercase", group_toml(fqdns=["API.example.com"]), "lowercase"),
    ("fqdn-no-dot", group_toml(fqdns=["localhost"]), "at least one dot"),
    ("fqdn-empty-label", group_toml(fqdns=["a..example.com"]), "invalid label ''"),
    ("fqdn-trailing-dot", group_toml(fqdns=["example.com."]), "invalid label ''"),
    ("fqdn-label-leading-hyphen", group_toml(fqdns=["-a.example.com"]), "invalid label"),
    ("fqdn-label-trailing-hyphen", group_toml(fqdns=["a-.example.com"]), "invalid label"),
    ("fqdn-underscore", group_toml(fqdns=["_a.example.com"]), "invalid label"),
    ("fqdn-label-too-long", group_toml(fqdns=["a" * 64 + ".example.com"]), "invalid label"),
    ("fqdn-too-long", group_toml(fqdns=[".".join(["a" * 63] * 4)]), "253"),
    ("fqdn-is-an-ip", group_toml(fqdns=["192.0.2.1"]), "addresses"),
    ("fqdn-wildcard-char", group_toml(fqdns=["*.example.com"]), "invalid label '*'"),
    ("wildcard-with-star-prefix", group_toml(wildcards=["*.example.com"]), "without '*.'"),
    ("wildcard-no-dot", group_toml(wildcards=["com"]), "at least one dot"),
    ("wildcard-bad-label", group_toml(wildcards=["ex ample.com"]), "invalid label"),
    ("address-unparseable", group_toml(addresses=["999.1.1.1"]), "'999.1.1.1'"),
    ("address-host-bits-set", group_toml(addresses=["10.0.0.1/8"]), "host bits"),
    ("address-not-canonical", group_toml(addresses=["2001:DB8::1"]), "not canonical"),
    ("address-name", group_toml(addresses=["example.com"]), "'example.com'"),
    ("ports-empty", group_toml(ports=[]), "at least one port"),
    ("port-no-protocol", group_toml(ports=["443"]), "must look like"),
    ("port-bad-protocol", group_toml(ports=["443/sctp"]), "must look like"),
    ("port-non-ascii-digits", group_toml(ports=["\u0664\u0664\u0663/tcp"]), "must look like"),
    ("port-zero", group_toml(ports=["0/tcp"]), "1-65535"),
    ("port-too-high", group_toml(ports=["65536/udp"]), "1-65535"),
    ("port-range-too-high", group_toml(ports=["65000-70000/tcp"]), "1-65535"),
    ("port-range-reversed", group_toml(ports=["8100-8000/tcp"]), "range start"),
    ("port-leading-zero", group_toml(ports=["0443/tcp"]), "leading zeros"),
    ("fqdns-unsorted", group_toml(fqdns=["b.example.com", "a.example.com"]), "sorted"),
    ("wildcards-duplicated", group_toml(wildcards=["cdn.example.com"] * 2), "duplicate"),
    ("addresses-unsorted", group_toml(addresses=["192.0.2.2", "192.0.2.10"]), "sorted"),
    ("ports-unsorted", group_toml(ports=["80/tcp", "443/tcp"]), "sorted"),
    ("ports-duplicated", group_toml(ports=["443/tcp", "443/tcp"]), "duplicate"),
    ("no-destination", group_toml(fqdns=[], wildcards=[], addresses=[]), "no destination"),
]


def _group_name(text: str) -> str:
    """The group name a MALFORMED case is about, as the error message must quote it."""
    header = next(line for line in text.splitlines() if line.startswith("[groups"))
    if header == "[groups]":
        return "example"
    return header.removeprefix("[groups.").removesuffix("]").strip('"')


def test_malformed_groups_raise_naming_the_group(subtests: Any) -> None:
    for case, text, fragment in MALFORMED:
        with subtests.test(case=case):
            # Another, valid group first: the error must point at the bad one, not the first.
            with pytest.raises(CatalogError) as info:
                parse_catalog(group_toml("aaa-valid") + text)
            message = str(info.value)
            assert f"catalog group {_group_name(text)!r}" in message
            assert fragment in message


def test_malformed_case_ids_are_unique() -> None:
    ids = [case for case, _, _ in MALFORMED]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("text", "fragment"), [
    ("[groups.a\n", "not valid TOML"),
    (group_toml() + group_toml(), "not valid TOML"),  # the same group twice
    ("", "no [groups.<name>] tables"),
    ("groups = 3\n", "no [groups.<name>] tables"),
    ("version = 1\n" + group_toml(), "unknown top-level key(s) ['version']"),
])
def test_malformed_file_structure(text: str, fragment: str) -> None:
    with pytest.raises(CatalogError) as info:
        parse_catalog(text)
    assert fragment in str(info.value)
