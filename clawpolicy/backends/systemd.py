"""IR to a systemd drop-in for the agent's own unit: floor 2, one backend, one entry point.

OpenClaw's gateway usually runs as a systemd service; systemd can fence that one unit
(systemd.resource-control(5), systemd.exec(5)) without touching the rest of the host:
- `IPAddressDeny=any` + `IPAddressAllow=` (cgroup BPF on the unit's sockets): loopback and
  every address an allow rule names, in both directions, **without ports or protocols**
  (an address allowed for 443/tcp is allowed for everything). systemd's allow list wins over
  its deny list, so a deny inside an allowed network cannot be carved out (said per rule).
  Names cannot be expressed: with name rules and no `compile --lock`, the IP filter is left
  out (it would cut them) and compile says so; with `--lock` the locked addresses are used;
- `SocketBindAllow=`/`SocketBindDeny=any`: the unit binds the agent ports only;
- `RestrictAddressFamilies=` from `sockets` (families only: types are the seccomp target's);
- `SystemCallFilter=@system-service` plus the policy's `syscalls allow`, minus `syscalls deny`,
  `SystemCallErrorNumber=EPERM` (or the kill default with `--seccomp-deny-action kill`),
  `SystemCallArchitectures=native` (DESIGN.md: compat paths hide socket families);
- `CapabilityBoundingSet=`/`AmbientCapabilities=` from `capabilities`, `NoNewPrivileges=yes`;
- `InaccessiblePaths=-…` from `files deny` (`~/` becomes `%h`: the home of a user unit's
  user, /root for a system unit) and `AppArmorProfile=` (the apparmor target's profile).
Shadow mode: systemd has no log-only IP, bind, family or capability filter, so the drop-in
carries only what logs: `SystemCallLog=` for what the filter would refuse, and the AppArmor
profile (the apparmor target writes it in complain mode). Everything else waits for enforce.

Escaping (systemd.syntax(7), systemd.unit(5) "Specifiers"): every value from the policy goes
through `unit_value`: `%` doubled (specifier expansion), whitespace quoted, and values a unit
file cannot hold safely (line breaks, quotes, backslashes: a trailing one continues the line)
refused with a diagnostic. `systemd-analyze verify` checks every drop-in in the suite with its
stderr counted as errors (it exits 0 on invalid assignments).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from clawpolicy.backends import support_tables
from clawpolicy.backends.base import (
    Artifact,
    BackendResult,
    CompileOptions,
    Feature,
    Support,
)
from clawpolicy.backends.naming import NameClaim, apparmor_profile_name
from clawpolicy.backends.nftables import line_comment
from clawpolicy.errors import Diagnostic, Location, Severity
from clawpolicy.ir import Action, Direction, Mode, Policy, PortRange, Rule
from clawpolicy.netspace import IPNetwork

FAMILIES = {"unix": "AF_UNIX", "inet": "AF_INET", "inet6": "AF_INET6", "netlink": "AF_NETLINK",
            "packet": "AF_PACKET"}
UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.\\@-]{1,246}\.service$")
SYSCALL = re.compile(r"^[a-z0-9_]+$")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\'\\\u0085\u2028\u2029]')
DEFAULT_AGENT_PORTS = (PortRange.model_validate({"protocol": "tcp", "first": 18789, "last": 18793}),
                       PortRange.model_validate({"protocol": "tcp", "first": 18800, "last": 18899}))


class UnsafeValue(ValueError):
    """A value a unit file cannot carry as written."""


def unit_value(text: str) -> str:
    """One word of a unit setting: specifiers escaped (`%%`), quoted when it holds blanks.
    Line breaks, quotes and backslashes are refused: systemd would end the line, unquote or
    continue it, so no escaping keeps their meaning in every setting."""
    if not text or _UNSAFE.search(text):
        raise UnsafeValue(f"{text!r} cannot be written into a unit file")
    text = text.replace("%", "%%")
    return f'"{text}"' if any(c.isspace() for c in text) else text


def drop_in_path(options: CompileOptions, policy: Policy) -> str:
    return f"{options.systemd_unit}.d/clawpolicy-{policy.name}.conf"


def _addresses(policy: Policy, options: CompileOptions, out: list[Diagnostic]) -> list[str] | None:
    """The IPAddressAllow= entries, or None when the filter must be left out."""
    allows = [r for r in policy.rules if r.action is Action.ALLOW]
    named = [r for r in allows if r.direction is Direction.EGRESS and r.peers.has_fqdns]
    if named and options.lock is None:
        out.append(_diag(policy, named[0], "systemd cannot express names: the drop-in leaves the IP "
                         "filter out (IPAddressDeny= would cut these rules)",
                         "compile --lock to allow the locked addresses, or rely on nftables"))
        return None
    entries: dict[str, None] = {"localhost": None}
    for rule in allows:
        if rule.peers.any:
            return ["any"]
        for net in (*rule.peers.ipv4, *rule.peers.ipv6):
            entries[str(net)] = None
        for name in rule.peers.names:
            for address in (options.lock or {}).get(name, ()):
                entries[str(ipaddress.ip_address(address))] = None
        if rule.ports:
            out.append(_diag(policy, rule, "systemd's IP filter has no ports: the unit may reach "
                             f"{', '.join(rule.peers.describe()[:3])} on every port and protocol",
                             "nftables enforces the ports", Severity.NOTE))
    for rule in policy.rules:
        if rule.action is Action.DENY and any(
                _overlaps(rule, allow) for allow in allows if allow.direction is rule.direction):
            out.append(_diag(policy, rule, "systemd's allow list wins over its deny list: this deny "
                             "inside an allowed network is not enforced by the drop-in",
                             "nftables enforces it"))
    return list(entries)


def _overlaps(deny: Rule, allow: Rule) -> bool:
    if allow.peers.any or deny.peers.any:
        return True
    denied: list[IPNetwork] = [*deny.peers.ipv4, *deny.peers.ipv6]
    allowed: list[IPNetwork] = [*allow.peers.ipv4, *allow.peers.ipv6]
    return any(d.version == a.version and d.overlaps(a) for d in denied for a in allowed)


def _diag(policy: Policy, rule: Rule, message: str, hint: str,
          severity: Severity = Severity.WARNING) -> Diagnostic:
    return Diagnostic(severity, f"{rule.id}: systemd: {message}",
                      Location(rule.span.file, rule.span.line, rule.span.col), hint, code="systemd")


def _ports(policy: Policy) -> list[str]:
    ports = policy.scope.agent_ports or DEFAULT_AGENT_PORTS
    out = []
    for p in ports:
        if p.protocol.value in ("tcp", "udp"):
            lo, hi = p.bounds
            out.append(f"{p.protocol.value}:{lo if lo == hi else f'{lo}-{hi}'}")
    return out


def _path(path: str) -> str:
    """`files deny` path -> InaccessiblePaths= word (`-`: a missing path is no error)."""
    if path == "~" or path.startswith("~/"):
        return "-%h" + (unit_value(path[1:]) if path != "~" else "")
    return "-" + unit_value(path)


def render(policy: Policy, options: CompileOptions) -> tuple[str, list[Diagnostic]]:
    diags: list[Diagnostic] = []
    shadow = policy.mode is Mode.SHADOW
    lines = [f"# Generated by clawpolicy from {line_comment(policy.source)}: do not edit, edit the policy.",
             f"# Policy {policy.name} ({policy.mode.value} mode): a drop-in for {options.systemd_unit}.",
             f"# Install: /etc/systemd/system/{drop_in_path(options, policy)} (or ~/.config/systemd/user/"
             "... for a user unit), then systemctl daemon-reload and restart the unit.",
             "[Service]"]

    def put(comment: str, *settings: str) -> None:
        if settings:
            lines.extend(["", f"# {line_comment(comment)}", *settings])

    syscalls_allow = sorted({n for s in policy.syscalls if s.action is Action.ALLOW for n in s.names
                             if SYSCALL.match(n)})
    syscalls_deny = sorted({n for s in policy.syscalls if s.action is Action.DENY for n in s.names
                            if SYSCALL.match(n)})
    profile = apparmor_profile_name(options.apparmor_profile_name, policy.name)
    if shadow:
        put("Shadow mode: systemd has no log-only network, bind, family or capability filter; "
            "only the syscalls the filter would refuse are logged (SystemCallLog=).",
            "SystemCallLog=~@system-service" + "".join(f" {n}" for n in syscalls_allow),
            *([f"SystemCallLog={' '.join(syscalls_deny)}"] if syscalls_deny else []))
        put("AppArmor (the apparmor target writes the profile in complain mode: it logs)",
            f"AppArmorProfile=-{unit_value(profile)}")
        return "\n".join(lines) + "\n", diags
    addresses = _addresses(policy, options, diags)
    if addresses is not None:
        put("network: loopback and the addresses the allow rules name, both directions, no ports",
            "IPAddressDeny=any", f"IPAddressAllow={' '.join(addresses)}")
    put("the unit binds the agent ports only", *[f"SocketBindAllow={p}" for p in _ports(policy)],
        "SocketBindDeny=any")
    if policy.sockets is not None:
        families = sorted({FAMILIES[k.family] for k in policy.sockets.allow})
        put("sockets allow (families; types and netlink protocols are the seccomp target's)",
            f"RestrictAddressFamilies={' '.join(families)}")
    kill = options.seccomp_deny_action == "kill"
    put("system calls: systemd's @system-service set, plus and minus the policy's",
        "SystemCallFilter=@system-service" + "".join(f" {n}" for n in syscalls_allow),
        *([f"SystemCallFilter=~{' '.join(syscalls_deny)}"] if syscalls_deny else []),
        *([] if kill else ["SystemCallErrorNumber=EPERM"]), "SystemCallArchitectures=native")
    caps = policy.capabilities
    if caps is not None:
        names = " ".join(f"CAP_{c.upper()}" for c in (caps.keep if caps.drop_all else caps.drop))
        if caps.drop_all:
            put("capabilities drop all keep ...; ambient, so a non-root agent has what it keeps",
                f"CapabilityBoundingSet={names}", f"AmbientCapabilities={names}")
        else:
            put("capabilities drop ...", f"CapabilityBoundingSet=~{names}")
    paths: list[str] = []
    for rule in policy.files:
        if rule.action is not Action.DENY:
            continue
        for path in rule.paths:
            try:
                paths.append(_path(path))
            except UnsafeValue as exc:
                diags.append(Diagnostic(Severity.WARNING, f"{rule.id}: systemd: {exc}; left out of "
                                        "InaccessiblePaths=", Location(rule.span.file, rule.span.line,
                                                                      rule.span.col),
                                        "the apparmor target still denies it", code="systemd"))
    put("files deny (a missing path is no error)", *[f"InaccessiblePaths={p}" for p in paths])
    put("no privilege gain through setuid binaries or file capabilities", "NoNewPrivileges=yes")
    put("AppArmor (the apparmor target's profile; '-': ignored where AppArmor is off)",
        f"AppArmorProfile=-{unit_value(profile)}")
    return "\n".join(lines) + "\n", diags


class SystemdBackend:
    name: str = "systemd"
    summary: str = "a drop-in for the agent's systemd unit (IP allow list, binds, syscalls, capabilities, paths)"
    enforces: bool = True
    support: Mapping[Feature, Support] = support_tables.SYSTEMD

    def compile(self, policy: Policy, options: CompileOptions) -> BackendResult:
        text, diags = render(policy, options)
        path = drop_in_path(options, policy)
        return BackendResult([Artifact(path, text.encode("utf-8"), "text/x-systemd-unit")], diags,
                             [NameClaim("systemd drop-in", path, f"policy {policy.name}")])


BACKEND = SystemdBackend()
