"""Deployment facts to a starter policy: floor 3, `Deployment` -> `.claw` text.

The text is meant to be read and edited, so every rule says where in openclaw.json it came
from, owners and tickets are TODO comments, and the policy starts in shadow mode. It is also
meant to be safe: every value from the configuration is user-controlled, so names become
peers only after they validate as DNS names or addresses (else a TODO comment), strings are
JSON-escaped (the grammar's STRING accepts JSON escapes) and comments are escaped to one
line of printable ASCII, so a hostile base URL or channel name cannot add a rule. Peers are
checked by the language's own validator (`resolve.parse_literal`: an interface zone, a
malformed name or an address the language refuses becomes a TODO comment), and `check`
compiles the finished text: `init` writes a starter only if it loads, compiles for every
target and passes its own tests. Output is deterministic: integrations sorted by id, no
timestamps.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from clawpolicy.adopt.deployment import Deployment, Endpoint, Integration
from clawpolicy.catalog import CatalogGroup, load_catalog
from clawpolicy.errors import Diagnostics, Location
from clawpolicy.fmt import format_text
from clawpolicy.includes import parse_literal
from clawpolicy.names import normalise_name, wire_address
from clawpolicy.syntax import Word

# OpenClaw provider ids (docs.openclaw.ai "Model providers") -> catalog groups.
PROVIDER_GROUPS = {
    "anthropic": "anthropic", "openai": "openai", "google": "google-gemini",
    "gemini": "google-gemini", "google-gemini": "google-gemini", "openrouter": "openrouter",
    "groq": "groq", "mistral": "mistral", "xai": "xai", "deepseek": "deepseek",
    "together": "together", "cerebras": "cerebras", "fireworks": "fireworks",
    "moonshot": "moonshot",
}
# Providers that talk to a server on the same host by default (their documented base URLs).
LOCAL_PROVIDERS = {"ollama": "http://127.0.0.1:11434", "lmstudio": "http://127.0.0.1:1234"}
CHANNEL_GROUPS = {"telegram": "telegram", "slack": "slack", "discord": "discord",
                  "whatsapp": "whatsapp", "msteams": "msteams"}
LOCAL_CHANNELS = {
    "imessage": "talks to the local imsg CLI (macOS Messages), not to the network",
    "signal": "talks to a signal-cli daemon; signal-cli's own traffic to Signal's servers is "
              "that process's, allow it where it runs",
}
TAILNET = ("100.64.0.0/10", "fd7a:115c:a1e0::/48")
PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
MDNS = ("224.0.0.251", "ff02::fb")
LAN_PROBE, TAILNET_PROBE, PUBLIC_PROBE = "192.168.1.20", "100.100.1.2", "203.0.113.9"
# The user-scope agent ports lowering assumes (lower.OPENCLAW_AGENT_PORTS).
DEFAULT_AGENT_PORTS = ((18789, 18793), (18800, 18899))
RULE_ID = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
USER_RE = re.compile(r"^(?:[a-z_][a-z0-9_-]{0,31}\$?|[0-9]{1,10})$")
POLICY_NAME = re.compile(r"^[a-z](?:[a-z0-9-]{0,46}[a-z0-9])?$")  # as lower.POLICY_NAME


@dataclass(frozen=True)
class Target:
    """Where an endpoint URL points, after validation."""

    kind: str  # group | name | address | loopback | invalid
    value: str  # group name, DNS name, address, or why it is invalid
    port: int = 443


@dataclass
class _Out:
    lines: list[str]
    tests: list[tuple[str, str]]  # (test name, expect clause)
    ids: set[str]

    def rule_id(self, base: str) -> str:
        stem = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:28].strip("-") or "rule"
        stem = stem if stem[0].isalpha() else f"r-{stem}"[:28]
        candidate, n = stem, 2
        while candidate in self.ids:
            candidate, n = f"{stem}-{n}", n + 1
        self.ids.add(candidate)
        return candidate

    def rule(self, head: str, reason: str, base_id: str, *, review: bool = False) -> str:
        rid = self.rule_id(base_id)
        todo = '# TODO owner "..." ticket ...' + ("   (REVIEW before enforcing)" if review else "")
        self.lines += [f"  {head}", f"    reason {q(reason)}", f"    id {rid}  {todo}"]
        return rid

    def test(self, name: str, clause: str) -> None:
        self.tests.append((name, clause))


def q(text: str) -> str:
    """A policy STRING holding one line of printable ASCII: the language wants reasons and
    descriptions on one line, so configuration text is `c`-escaped first (a newline in a
    provider id reads `\\n`), then JSON-quoted, which the grammar decodes."""
    return json.dumps(c(text))


def c(text: str) -> str:
    """Text safe inside a `#` comment: one line of printable ASCII (control characters,
    line separators and everything non-ASCII JSON-escaped)."""
    return json.dumps(text)[1:-1].replace('\\"', '"')


def valid_user(user: str) -> bool:
    return bool(USER_RE.match(user))


def valid_policy_name(name: str) -> bool:
    return bool(POLICY_NAME.match(name))


def classify(url: str) -> Target:
    """A base URL from the configuration as a peer the policy can name, or why not."""
    try:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        return Target("invalid", f"not a URL ({exc})")
    scheme = parts.scheme.lower()
    if not host or scheme not in ("http", "https", "ws", "wss"):
        return Target("invalid", "not an http(s) or ws(s) URL with a host")
    if port == 0:
        return Target("invalid", "port 0 is not a port")
    port = port or (80 if scheme in ("http", "ws") else 443)
    try:
        address = wire_address(host)
    except ValueError:
        name = normalise_name(host)
        if name is not None and (name == "localhost" or name.endswith(".localhost")):
            return Target("loopback", name, port)
        if name is None or "." not in name or not _peer_ok(name):
            return Target("invalid", "the host is not a DNS name")
        return Target("name", name, port)
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return Target("invalid", "an interface zone (%...) cannot be part of a firewall rule")
        address = address.ipv4_mapped or address  # ::ffff:a.b.c.d leaves as IPv4 on the wire
    if address.is_loopback:
        return Target("loopback", str(address), port)
    if not _peer_ok(str(address)):
        return Target("invalid", "an address the policy language does not accept")
    return Target("address", str(address), port)


def _peer_ok(text: str) -> bool:
    """`text` is a peer the language reads back as itself (one address or domain name)."""
    atom = parse_literal(Word(text, Location("<starter>")), Diagnostics())
    return atom is not None and atom.kind in ("net4", "net6", "name") and atom.value in (
        text, text.lower())


def render(dep: Deployment, *, name: str, user: str | None, config_files: Sequence[Path],
           resolvers: Sequence[str] = (), ssh_ports: Sequence[int] | None = None) -> str:
    """The starter policy for `dep`; `user` None fences the whole host. `ssh_ports`: where
    sshd listens on the machine that ran init (None: not looked at)."""
    if not valid_policy_name(name):
        raise ValueError(f"invalid policy name {name!r}: 1-48 of a-z, 0-9, '-', starting with a letter, "
                         "not ending with '-'")
    if user is not None and not valid_user(user):
        raise ValueError(f"invalid user {user!r}: a user name or a uid")
    out = _Out([], [], set())
    files = ", ".join(c(str(p)) for p in config_files)
    head = [
        f"# Starter policy written by `clawpolicy init --from-openclaw` from {files}.",
        "# Every rule says which configuration key it comes from. Review each one, fill in the",
        "# TODO owners and tickets, then: clawpolicy test FILE; clawpolicy lint FILE; compile.",
        "# It starts in shadow mode: nothing is blocked, what enforce would block is logged.",
        "",
        f"policy {name} {{",
        f"  description {q('OpenClaw deployment configured in ' + str(config_files[0]))}",
        "  # TODO owner \"team@example.com\"",
        "  mode shadow                        # flip to enforce once the logs show no surprises",
        f"  applies-to user {user}" if user else "  applies-to host",
    ]
    out.lines += head
    if user and not any(lo <= dep.gateway_port <= hi for lo, hi in DEFAULT_AGENT_PORTS):
        out.lines.append(f"  agent-ports {dep.gateway_port}/tcp, 18790-18793/tcp, 18800-18899/tcp"
                         "   # gateway.port is outside OpenClaw's default ports")
    for problem in dep.problems:
        out.lines.append(f"  # NOTE {c(problem)}")
    _section(out, "model providers")
    for integration in dep.providers:
        _integration(out, integration)
    _section(out, "chat channels")
    if not dep.channels:
        out.lines.append("  # no channels.* section: no channel rule")
    for integration in dep.channels:
        _integration(out, integration)
    _gateway(out, dep, user)
    if user is None:
        _management(out, ssh_ports)
    _mdns(out, dep)
    _updates(out, dep)
    _section(out, "sockets (seccomp and AppArmor)")  # without netlink route, OpenClaw fails under them
    out.lines += ["  # netlink route: Node's os.networkInterfaces(), OpenClaw's own addresses for the bind "
                  f"({c(dep.bind)}) and mDNS; no other netlink protocol",
                  "  sockets allow unix, inet stream, inet6 stream, inet dgram, inet6 dgram, netlink route",
                  f"    reason {q('IP and unix sockets; netlink route: the interface addresses')}"]
    _section(out, "DNS")
    out.lines += ["  # FQDN rules hold the addresses the local resolver puts into their sets; add",
                  "  # 'dns local' once the dnsmasq target runs (docs/adoption.md)"]
    resolvers = [r for r in resolvers if _peer_ok(r)]
    if resolvers:
        out.lines.append("  # the resolvers of /etc/resolv.conf on the machine that ran init")
        out.rule(f"allow egress to {', '.join(resolvers)} port 53/udp, 53/tcp",
                 "the system's DNS resolvers (/etc/resolv.conf)", "dns-resolvers")
    out.lines += ["", "  # ---- tests: one per integration, checked by `clawpolicy test`"]
    out.test("no exfiltration", f"expect deny egress {PUBLIC_PROBE} port 443/tcp")
    width = max(len(q(n)) for n, _ in out.tests)
    out.lines += [f"  test {q(n).ljust(width)} {{ {clause} }}" for n, clause in out.tests]
    out.lines.append("}")
    return format_text("\n".join(out.lines) + "\n", f"{name}.claw")  # canonical, as `fmt` leaves it


def _section(out: _Out, title: str) -> None:
    out.lines += ["", f"  # ---- {title}"]


def _integration(out: _Out, it: Integration) -> None:
    kind = "model provider" if it.kind == "provider" else "channel"
    src = ", ".join(c(s) for s in it.sources)
    out.lines.append(f"  # {kind} {c(it.id)}: from {src}")
    if not it.enabled:
        out.lines.append("  # enabled: false in the configuration: no rule")
        return
    group = (PROVIDER_GROUPS if it.kind == "provider" else CHANNEL_GROUPS).get(it.id)
    catalog = load_catalog()
    targets = [(e, classify(e.url)) for e in it.endpoints]
    if group is not None and group in catalog:
        # A base URL on one of the group's own names is the group; any other overrides it.
        own = [t for _, t in targets if t.kind == "name" and t.value in catalog[group].fqdns]
        if not targets or own:
            _group_rule(out, it, catalog[group], kind)
            targets = [(e, t) for e, t in targets if t not in own]
    elif not targets and it.kind == "provider" and it.id in LOCAL_PROVIDERS:
        targets = [(Endpoint(LOCAL_PROVIDERS[it.id], "OpenClaw's default baseUrl"),
                    classify(LOCAL_PROVIDERS[it.id]))]
    elif not targets and it.kind == "channel" and it.id in LOCAL_CHANNELS:
        out.lines.append(f"  # no rule: it {LOCAL_CHANNELS[it.id]}")
        return
    elif not targets:
        what = "provider" if it.kind == "provider" else "channel"
        out.lines += [f"  # TODO {what} {c(it.id)} is not in clawpolicy's catalog and the "
                      "configuration names no URL for it:",
                      "  #   allow egress to <its API host> port 443/tcp reason \"...\""]
        return
    for endpoint, target in targets:
        _endpoint_rule(out, it, kind, endpoint, target)


def _group_rule(out: _Out, it: Integration, group: CatalogGroup, kind: str) -> None:
    out.lines.append(f"  # catalog group {group.name}: {c(group.description)}")
    out.rule(f"allow egress to {group.name}", f"{kind} {it.id} ({it.sources[0]})",
             f"{it.kind}-{it.id}")
    port = group.ports[0].split("-")[0].split("/")
    probe = group.fqdns[0] if group.fqdns else ("x." + group.wildcards[0] if group.wildcards
                                                else group.addresses[0])
    proto = group.ports[0].split("/")[1]
    out.test(f"{kind} {it.id}", f"expect allow egress {probe} port {port[0]}/{proto}")
    for address in group.addresses:
        out.test(f"{kind} {it.id} {address}", f"expect allow egress {address} port {port[0]}/{proto}")


def _endpoint_rule(out: _Out, it: Integration, kind: str, endpoint: Endpoint,
                   target: Target) -> None:
    where = f"{endpoint.source} = {endpoint.url}"
    if target.kind == "invalid":
        out.lines.append(f"  # TODO {c(where)}: {target.value}; no rule written for it")
        return
    if target.kind == "loopback":
        out.lines.append(f"  # {c(where)}: loopback, which every policy allows: no rule")
        return
    out.lines.append(f"  # {c(where)}")
    out.rule(f"allow egress to {target.value} port {target.port}/tcp",
             f"{kind} {it.id} ({endpoint.source})", f"{it.kind}-{it.id}")
    out.test(f"{kind} {it.id} {target.value}",
             f"expect allow egress {target.value} port {target.port}/tcp")


def _gateway(out: _Out, dep: Deployment, user: str | None) -> None:
    port = dep.gateway_port
    src = dep.gateway_port_source or "OpenClaw's default port"
    _section(out, f"gateway: {port}/tcp ({src}), bind {dep.bind} ({dep.bind_source or 'default'})")
    bind = dep.bind
    custom = dep.custom_bind_host
    if bind == "custom" and custom:
        out.lines.append(f"  # gateway.customBindHost = {c(custom)}")
        try:
            bind = "loopback" if ipaddress.ip_address(custom).is_loopback else bind
        except ValueError:
            pass
    deny_lan = f"expect deny ingress from {LAN_PROBE} port {port}/tcp"
    if bind == "loopback":
        out.lines.append("  # loopback only: no ingress rule (loopback traffic always passes)")
        out.test("gateway not on the LAN", deny_lan)
    elif bind == "tailnet":
        out.rule(f"allow ingress from {', '.join(TAILNET)} port {port}/tcp",
                 "gateway.bind tailnet: the gateway answers on the Tailscale address only",
                 "gateway-tailnet")
        out.test("gateway on the tailnet", f"expect allow ingress from {TAILNET_PROBE} port {port}/tcp")
        out.test("gateway not on the LAN", deny_lan)
        if user is None:
            out.lines.append("  # tailscaled runs on this host: its control plane and relays")
            out.rule("allow egress to tailscale, tailscale-derp-stun",
                     "Tailscale for the tailnet gateway (gateway.bind tailnet)", "tailscale")
    else:
        out.lines += [f"  # REVIEW gateway.bind {bind} listens beyond loopback (0.0.0.0 for lan, "
                      "and for auto inside containers):",
                      "  # narrow this to the clients that need the gateway, or bind it to "
                      "loopback/tailnet instead"]
        out.rule(f"allow ingress from {', '.join(PRIVATE)} port {port}/tcp",
                 f"REVIEW: gateway.bind {bind} exposes the gateway to the local network; "
                 "narrow to the clients that need it", "gateway-lan", review=True)
        out.test("gateway on the LAN (REVIEW)", f"expect allow ingress from {LAN_PROBE} port {port}/tcp")
        out.test("gateway not public", f"expect deny ingress from {PUBLIC_PROBE} port {port}/tcp")
    if dep.tailscale_mode in ("serve", "funnel"):
        reach = "the tailnet" if dep.tailscale_mode == "serve" else "the internet (Funnel)"
        out.lines.append(f"  # REVIEW gateway.tailscale.mode {c(dep.tailscale_mode)}: tailscaled "
                         f"proxies {reach} to the gateway on 443/tcp;")
        out.lines.append("  # a host policy must allow that ingress, a user policy does not see it")


def _management(out: _Out, ports: Sequence[int] | None) -> None:
    """A host-wide policy fences SSH too: suggest the ingress sshd needs (from its listening
    sockets), TODO-marked, so enforcing the starter does not lock the operator out."""
    _section(out, "management (SSH)")
    ports = sorted({p for p in ports or () if 0 < p < 65536})
    if not ports:
        out.lines += ["  # TODO no listening sshd found on the machine that ran init: allow ingress to",
                      "  # your management port before enforcing (`clawpolicy lint` reports "
                      "no-management-ingress)"]
        return
    shown = ", ".join(f"{p}/tcp" for p in ports)
    out.lines += [f"  # TODO sshd listens on {shown} here: narrow 'any' to the admin network or",
                  "  # the tailnet before enforcing, or this host-wide policy locks you out"]
    out.rule(f"allow ingress from any port {shown}",
             "TODO SSH management (sshd's listening sockets when init ran); narrow the peers",
             "ssh", review=True)


def _mdns(out: _Out, dep: Deployment) -> None:
    mode = dep.mdns_mode
    _section(out, f"mDNS (discovery.mdns.mode: {mode or 'not set'})")
    peers = f"{', '.join(MDNS)} port 5353/udp"
    if mode in ("minimal", "full"):
        if mode == "full":
            out.lines += ["  # REVIEW full mode announces cliPath and sshPort (user name, install "
                          "path) to the whole LAN;",
                          "  # `clawpolicy lint` reports this rule (mdns-allowed). Prefer "
                          "minimal or off."]
        out.rule(f"allow egress to {peers}",
                 f"discovery.mdns.mode {mode}: the gateway announces _openclaw-gw._tcp"
                 + (" with cliPath and sshPort (REVIEW)" if mode == "full" else ""),
                 "mdns", review=mode == "full")
        out.test("mDNS announcements", f"expect allow egress {MDNS[0]} port 5353/udp")
    else:
        if mode is None:
            out.lines.append("  # OpenClaw's Bonjour plugin starts by itself only on macOS; set "
                             "discovery.mdns.mode \"off\" to say so")
        out.rule(f"deny egress to {peers}", "no mDNS service broadcasting"
                 + (" (discovery.mdns.mode off)" if mode == "off" else ""), "no-mdns")
        out.test("no mDNS", f"expect deny egress {MDNS[0]} port 5353/udp")


def _updates(out: _Out, dep: Deployment) -> None:
    _section(out, "update check")
    if not dep.update_check:
        out.lines.append("  # update.checkOnStart is false and auto-update is off: no rule")
        return
    out.lines.append(f"  # from {', '.join(dep.update_sources)}: OpenClaw asks the npm registry")
    out.rule("allow egress to npm-registry",
             f"OpenClaw update check ({dep.update_sources[0].split(' ')[0]})", "update-check")
    out.test("update check", "expect allow egress registry.npmjs.org port 443/tcp")


def check(text: str, name: str) -> list[str]:
    """Why the starter `text` is not a policy clawpolicy can use (empty: it is): it must
    load, compile for every default target and pass its own tests. `init` refuses to write
    a starter that fails, since every value in it came from a file it does not trust."""
    import tempfile

    from clawpolicy.backends.registry import DEFAULT_TARGETS
    from clawpolicy.compiler import compile_paths
    from clawpolicy.errors import Severity
    from clawpolicy.evaluate import run_tests

    with tempfile.TemporaryDirectory(prefix="clawpolicy-init-") as tmp:
        path = Path(tmp) / f"{name}.claw"
        path.write_text(text, encoding="utf-8")
        result = compile_paths([path], DEFAULT_TARGETS)
    problems = [f"{d.location.line if d.location else 0}: {d.message}" for d in result.diagnostics
                if d.severity is Severity.ERROR]
    for policy in result.policies:
        problems += [f"test {t.name!r} fails" for t in run_tests(policy) if not t.ok]
    return problems
