"""What an OpenClaw configuration says about the network: floor 3, config dict -> facts.

Reads only the keys that decide traffic, with OpenClaw's defaults where a key is absent
(documented at docs.openclaw.ai, gateway configuration reference, read 2026-11):

* ``gateway.port`` (default 18789; ``OPENCLAW_GATEWAY_PORT`` overrides it at run time, which a
  file cannot show), ``gateway.bind`` loopback (default) | lan | tailnet | auto | custom, with
  ``gateway.customBindHost`` for custom, and ``gateway.tailscale.mode`` off | serve | funnel;
* ``discovery.mdns.mode`` off | minimal | full. OpenClaw's default is minimal, but its Bonjour
  plugin only starts by itself on macOS, so on Linux an absent key is taken as "no mDNS";
* ``update.checkOnStart`` (default true) and ``update.auto.enabled``: the update check asks the
  npm registry;
* model providers: every ``models.providers.<id>`` (with its ``baseUrl``) and every provider
  named in a model reference ``provider/model`` (``agents.defaults.model`` as a string or
  ``{primary, fallbacks}``, the keys of ``agents.defaults.models``, ``agents.list[].model``);
* channels: every ``channels.<id>`` object except ``defaults`` and ``modelByChannel``; a
  channel starts when its section exists unless ``enabled: false``. Self-hosted channels name
  their server (``channels.mattermost.baseUrl`` is documented; ``channels.matrix.homeserver``
  and ``channels.bluebubbles.serverUrl`` are assumed from the channel guides), also per
  account under ``accounts.<name>``.

Everything here is data the user controls: nothing is trusted to be a valid name, which is the
renderer's (`starter`) job to check.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

DEFAULT_GATEWAY_PORT = 18789
BIND_MODES = ("loopback", "lan", "tailnet", "auto", "custom")
MDNS_MODES = ("off", "minimal", "full")
NOT_CHANNELS = frozenset({"defaults", "modelByChannel"})
# Keys of a channel (or one of its accounts) that name the server it talks to.
CHANNEL_URL_KEYS = ("baseUrl", "homeserver", "serverUrl")


@dataclass(frozen=True)
class Endpoint:
    """A URL found in the configuration, and the key path it came from."""

    url: str
    source: str


@dataclass(frozen=True)
class Integration:
    kind: str  # "provider" | "channel"
    id: str  # as the config spells it (user-controlled)
    sources: tuple[str, ...]  # key paths that name it
    endpoints: tuple[Endpoint, ...] = ()
    enabled: bool = True


@dataclass(frozen=True)
class Deployment:
    gateway_port: int = DEFAULT_GATEWAY_PORT
    gateway_port_source: str | None = None  # None: OpenClaw's default
    bind: str = "loopback"
    bind_source: str | None = None
    custom_bind_host: str | None = None
    tailscale_mode: str | None = None
    mdns_mode: str | None = None  # None: not set
    update_check: bool = True
    update_sources: tuple[str, ...] = ()
    providers: tuple[Integration, ...] = ()
    channels: tuple[Integration, ...] = ()
    problems: tuple[str, ...] = field(default=())  # values that were not understood


def read_deployment(config: dict[str, Any]) -> Deployment:
    problems: list[str] = []
    gateway = _obj(config.get("gateway"))
    port, port_source = DEFAULT_GATEWAY_PORT, None
    raw_port = gateway.get("port")
    if raw_port is not None:
        if isinstance(raw_port, int) and not isinstance(raw_port, bool) and 0 < raw_port < 65536:
            port, port_source = raw_port, "gateway.port"
        else:
            problems.append(f"gateway.port {_show(raw_port)} is not a port; assumed {port}")
    bind, bind_source = "loopback", None
    raw_bind = gateway.get("bind")
    if raw_bind is not None:
        if raw_bind in BIND_MODES:
            bind, bind_source = str(raw_bind), "gateway.bind"
        else:  # legacy host aliases and anything else: review it as custom
            bind, bind_source = "custom", "gateway.bind"
            problems.append(f"gateway.bind {_show(raw_bind)} is not one of {', '.join(BIND_MODES)}; "
                            "treated as custom")
    custom = gateway.get("customBindHost")
    tailscale = _obj(gateway.get("tailscale")).get("mode")
    mdns = _obj(_obj(config.get("discovery")).get("mdns")).get("mode")
    if mdns is not None and mdns not in MDNS_MODES:
        problems.append(f"discovery.mdns.mode {_show(mdns)} is not one of {', '.join(MDNS_MODES)}; "
                        "treated as minimal")
        mdns = "minimal"
    update = _obj(config.get("update"))
    check = update.get("checkOnStart") is not False
    auto = _obj(update.get("auto")).get("enabled") is True
    update_sources = tuple(s for s, on in (
        ("update.checkOnStart" + ("" if "checkOnStart" in update else " (default: true)"), check),
        ("update.auto.enabled", auto)) if on)
    return Deployment(
        gateway_port=port, gateway_port_source=port_source, bind=bind, bind_source=bind_source,
        custom_bind_host=custom if isinstance(custom, str) else None,
        tailscale_mode=tailscale if isinstance(tailscale, str) else None,
        mdns_mode=mdns if isinstance(mdns, str) else None,
        update_check=check or auto, update_sources=update_sources,
        providers=_providers(config), channels=_channels(config), problems=tuple(problems))


def _show(value: Any) -> str:
    """A config value in a message (the renderer escapes it for the policy text)."""
    return f'"{value}"' if isinstance(value, str) else json.dumps(value)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _providers(config: dict[str, Any]) -> tuple[Integration, ...]:
    sources: dict[str, list[str]] = {}
    endpoints: dict[str, list[Endpoint]] = {}
    for pid, body in _obj(_obj(config.get("models")).get("providers")).items():
        key = f"models.providers.{pid}"
        sources.setdefault(pid, []).append(key)
        url = _obj(body).get("baseUrl")
        if isinstance(url, str) and url.strip():
            endpoints.setdefault(pid, []).append(Endpoint(url.strip(), f"{key}.baseUrl"))
    for ref, where in _model_refs(config):
        if "/" in ref:
            sources.setdefault(ref.split("/", 1)[0], []).append(where)
    return tuple(Integration("provider", pid, tuple(dict.fromkeys(src)),
                             tuple(endpoints.get(pid, ())))
                 for pid, src in sorted(sources.items()) if pid)


def _model_refs(config: dict[str, Any]) -> Iterator[tuple[str, str]]:
    agents = _obj(config.get("agents"))
    defaults = _obj(agents.get("defaults"))
    yield from _refs_of(defaults.get("model"), "agents.defaults.model")
    for ref in _obj(defaults.get("models")):
        yield ref, "agents.defaults.models"
    entries = agents.get("list")
    for n, entry in enumerate(entries if isinstance(entries, list) else []):
        yield from _refs_of(_obj(entry).get("model"), f"agents.list[{n}].model")


def _refs_of(value: Any, key: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield value, key
    elif isinstance(value, dict):
        if isinstance(value.get("primary"), str):
            yield value["primary"], f"{key}.primary"
        fallbacks = value.get("fallbacks")
        for ref in fallbacks if isinstance(fallbacks, list) else []:
            if isinstance(ref, str):
                yield ref, f"{key}.fallbacks"


def _channels(config: dict[str, Any]) -> tuple[Integration, ...]:
    out = []
    for cid, body in sorted(_obj(config.get("channels")).items()):
        if cid in NOT_CHANNELS or not isinstance(body, dict):
            continue
        key = f"channels.{cid}"
        found = [Endpoint(v.strip(), f"{key}.{k}") for k in CHANNEL_URL_KEYS
                 if isinstance(v := body.get(k), str) and v.strip()]
        for name, account in sorted(_obj(body.get("accounts")).items()):
            found += [Endpoint(v.strip(), f"{key}.accounts.{name}.{k}") for k in CHANNEL_URL_KEYS
                      if isinstance(v := _obj(account).get(k), str) and v.strip()]
        out.append(Integration("channel", cid, (key,), tuple(found),
                               enabled=body.get("enabled") is not False))
    return tuple(out)
