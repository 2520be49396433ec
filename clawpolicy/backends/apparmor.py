"""IR to an AppArmor profile: floor 2, one backend, one entry point (`BACKEND.compile`).

Artifacts: `<profile-name>` (the profile, `abi <abi/3.0>`, parsed by Debian 12's
apparmor_parser 3.0) and `apparmorprofile.yaml` (the security-profiles-operator resource).

What the profile says (apparmor.d(5)):
- Attachment: the policy's `executable`, else the OpenClaw CLI as npm installs it globally
  (`OPENCLAW_CLI`; its `#!/usr/bin/env node` line runs node inside this profile). Not node
  itself: that would confine every Node program on the machine. Services and containers
  name the profile instead (systemd `AppArmorProfile=`, Docker, Kubernetes).
- One abstraction, `base` (loader, libc, /dev/null, signals from systemd, ps reading /proc).
  `nameservice` would add network rules the policy never named; certificates, DNS
  configuration and node_modules are covered by the read baseline.
- Baseline files: read, map and run programs anywhere (`ix`: children stay confined). Writes
  are unrestricted unless the policy has `files allow` rules; then only those paths, owned
  scratch (/tmp, /var/tmp, /dev/shm) and terminals are writable.
- Policy rules, each block under a comment with its ID, source line and reason:
  `capabilities` (kept ones allowed, `DANGEROUS_CAPABILITIES` denied explicitly),
  `sockets` (`network FAMILY [TYPE]`; raw IP and packet sockets denied unless kept; a netlink
  protocol is not expressible: `netlink route` becomes `network netlink raw/dgram`), and
  `files` (deny: every permission on the path and below, in every home for ~/ paths; allow:
  write access, `owner`-scoped for ~/ paths). Deny overrides allow, as in the IR.
- Denials are `audit deny` (a plain `deny` is silent). Shadow mode: `flags=(complain)` and
  the same rules as `audit` allows, because a `deny` rule is enforced even in complain mode.
- AppArmor 3 cannot match addresses or ports; the network rules are left to nftables.
  (AppArmor 4.1 has `network ... peer=(ip=, port=)`, but its parser silently drops the peer
  when the kernel lacks the mediation, so `apparmor_abi="4.0"` changes only the abi line.)

Escaping is `apparmor_text`'s (quoted, literal paths; one-line comments). The
apparmorprofile.yaml is dumped by PyYAML (safe_dump, sorted keys, ASCII), like the seccomp resource.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from clawpolicy.backends import support_tables
from clawpolicy.backends.apparmor_text import aa_comment, aa_escape, glob_error, path_pattern
from clawpolicy.backends.base import (
    Artifact,
    BackendResult,
    CompileOptions,
    Feature,
    Support,
    annotations_problem,
    display_path,
)
from clawpolicy.backends.naming import NameClaim, apparmor_profile_name
from clawpolicy.backends.templating import load_template
from clawpolicy.errors import Diagnostic, Location, Severity
from clawpolicy.ir import CAPABILITIES, Action, FileRule, Mode, Policy, SocketKind, Span

if TYPE_CHECKING:
    import jinja2

OPENCLAW_CLI = "/{usr,usr/local}/lib/node_modules/openclaw/openclaw.mjs"
PROFILE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$")  # also a Kubernetes name
SPO_API_VERSION = "security-profiles-operator.x-k8s.io/v1"
ANNOTATION = "clawpolicy.dev/"
IP_FAMILIES = ("inet", "inet6")
SPO_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/@+:=%~ -]+$")  # SPO quotes spaces; nothing else needed
FILE_DENY = "mrwlkx"  # map, read, write (append), link, lock, execute: everything
# apparmor_parser's flex scanner cannot grow its 16 KiB buffer (it uses REJECT): a longer token
# fails with "input buffer overflow". Comments are clipped (aa_comment); a rule line this long
# (a path near PATH_MAX made of escaped characters) is refused instead of written.
PARSER_LINE_MAX_BYTES = 8192
FILE_AUDIT = "mrwlkix"  # the same as an allow rule, which must name an exec mode
FILE_WRITE = "rwlk"
# Writable whatever the policy allows: owned scratch space, and terminals (an inherited
# stdout on a terminal is revalidated at exec; without `w` the kernel would swap it for null).
BASELINE_SCRATCH = (("owner ", "/tmp/**", "rwlk"), ("owner ", "/var/tmp/**", "rwlk"),
                    ("owner ", "/dev/shm/**", "rwlk"), ("", "/dev/tty", "rw"),
                    ("", "/dev/ptmx", "rw"), ("", "/dev/pts/*", "rw"))
# Denied explicitly (and logged) under `drop all` unless kept: an agent never needs them, and
# an explicit deny also overrides any allow an abstraction or local include might add.
DANGEROUS_CAPABILITIES = {
    "audit_control": "change the audit rules that record this agent",
    "bpf": "load eBPF programs",
    "checkpoint_restore": "restore processes with chosen PIDs",
    "dac_override": "write any file whatever its permissions",
    "dac_read_search": "read any file (every user's ~/.ssh)",
    "linux_immutable": "clear immutable and append-only flags",
    "mac_admin": "reconfigure AppArmor itself",
    "mac_override": "override AppArmor",
    "net_admin": "rewrite the firewall (the nftables policy) and routes",
    "net_raw": "raw and packet sockets: spoofing and sniffing",
    "perfmon": "trace the kernel and other processes",
    "setfcap": "give files capabilities",
    "setpcap": "change capability sets",
    "sys_admin": "mount, namespaces and most of root",
    "sys_boot": "reboot or load a new kernel",
    "sys_module": "load kernel modules",
    "sys_ptrace": "read other processes' memory (their credentials)",
    "sys_rawio": "raw device and memory I/O",
    "sys_time": "set the clock (certificates, logs, expiry)",
    "syslog": "read the kernel log (addresses)",
}
SOCKET_DENIES = {"raw": "raw IP sockets: crafted and spoofed packets",
                 "packet": "packet sockets: link-layer capture and injection"}


# ------------------------------------------------------------------------------- model


@dataclass
class Block:
    """Rules under one comment: the first line names the rule ID, its source and reason."""

    comments: list[str]
    rules: list[str]


@dataclass
class Profile:
    name: str
    attachment: str  # quoted glob
    attachment_text: str  # for the header comment
    blocks: list[Block] = field(default_factory=list)
    spo_lost: list[str] = field(default_factory=list)  # what apparmorprofile.yaml cannot carry
    spo: dict[str, Any] = field(default_factory=dict)


def _where(span: Span, item: FileRule | None = None) -> str:
    parts = [f"{display_path(span.file)}:{span.line}"]
    if item is not None:
        parts += [f"{k} {v}" for k, v in (("owner", item.owner), ("ticket", item.ticket),
                                           ("expires", item.expires)) if v]
    return ", ".join(parts)


def network_rules(kind: SocketKind) -> list[str]:
    """`network FAMILY [TYPE],` for one socket kind. A netlink protocol cannot be named
    (apparmor.d(5): the protocol is an inet one, tcp/udp/icmp): its two types stand in."""
    if kind.protocol is not None:
        return ["network netlink raw,", "network netlink dgram,"]
    return [f"network {kind},"]


def net_raw_kept(policy: Policy) -> bool:
    c = policy.capabilities
    return c is not None and ("net_raw" in c.keep if c.drop_all else "net_raw" not in c.drop)


class _Builder:
    """The profile's blocks, the SPO resource's `abstract` and the notes, from one policy."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.shadow = policy.mode is Mode.SHADOW
        self.diagnostics: list[Diagnostic] = []
        self.where = Location(policy.span.file, policy.span.line, policy.span.col)
        self.abstract: dict[str, Any] = {}  # spec.abstract of the SPO resource
        self.spo_lost: list[str] = []  # what that resource cannot carry

    def deny(self, rule: str) -> str:
        return ("audit " if self.shadow else "audit deny ") + rule

    def note(self, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(Severity.NOTE, f"apparmor: {message}", self.where, hint,
                                           code="partial-support"))

    def error(self, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(Severity.ERROR, f"apparmor: {message}", self.where, hint,
                                           code="apparmor"))

    # -- capabilities
    def capabilities(self) -> Block:
        c = self.policy.capabilities
        if c is None:
            self.abstract["capability"] = {"allowedCapabilities": sorted(CAPABILITIES)}
            return Block(["capabilities: the policy does not restrict capabilities"], ["capability,"])
        if c.drop_all:
            what = "drop all" + (", keep " + ", ".join(c.keep) if c.keep else "")
            rules = [f"capability {k}," for k in c.keep]
            denied = sorted(set(DANGEROUS_CAPABILITIES) - set(c.keep))
            allowed = list(c.keep)
        else:
            what = "drop " + ", ".join(c.drop)
            rules, denied = ["capability,"], list(c.drop)
            allowed = [k for k in CAPABILITIES if k not in c.drop]
        rules += [self.deny(f"capability {d},") + (f"  # {DANGEROUS_CAPABILITIES[d]}"
                                                    if d in DANGEROUS_CAPABILITIES else "")
                  for d in denied]
        comments = [f"capabilities ({_where(c.span)}): {what}" + (f": {c.reason}" if c.reason else "")]
        if "net_bind_service" not in allowed:
            comments.append("Docker sets net.ipv4.ip_unprivileged_port_start=0 in containers: "
                            "there, ports below 1024 need no capability")
        self.abstract["capability"] = {"allowedCapabilities": sorted(allowed)}
        return Block(comments, rules)

    # -- sockets
    def sockets(self) -> Block:
        s = self.policy.sockets
        if s is None:
            kept = net_raw_kept(self.policy)
            raw_ok, packet_ok = set(IP_FAMILIES) if kept else set(), kept
            comments = [("sockets: the policy does not restrict socket families; raw IP and "
                        "packet sockets are denied unless it keeps net_raw")]
            rules = ["network,"]
            tcp = udp = True
            self.spo_lost.append("netlink and other socket families (the policy restricts none)")
        else:
            raw_ok = {k.family for k in s.allow if k.family in IP_FAMILIES and k.type in (None, "raw")}
            packet_ok = any(k.family == "packet" for k in s.allow)
            kinds = ", ".join(map(str, s.allow))
            comments = [f"sockets ({_where(s.span)}): allow {kinds}" + (f": {s.reason}" if s.reason else "")]
            rules = list(dict.fromkeys(rule for k in s.allow for rule in network_rules(k)))
            protocols = [str(k) for k in s.allow if k.protocol is not None]
            if protocols:
                comments.append("AppArmor mediates netlink by socket type, not by protocol: every "
                                f"netlink protocol passes here (seccomp allows only {', '.join(protocols)})")
                self.note(f"AppArmor cannot filter netlink protocols: for {', '.join(protocols)} "
                          "the profile allows netlink raw and dgram sockets of every protocol",
                          "the seccomp target filters the protocol (socket()'s third argument)")
            ip = [k for k in s.allow if k.family in IP_FAMILIES]
            tcp = any(k.type in (None, "stream") for k in ip)
            udp = any(k.type in (None, "dgram") for k in ip)
            self.spo_lost += [f"sockets {k}" for k in s.allow  # (SPO includes base too: unix)
                              if k.family not in (*IP_FAMILIES, "unix") or k.type == "seqpacket"]
            if not any(k.family == "unix" for k in s.allow):
                self.note("unix sockets stay allowed: abstractions/base grants them (syslog, "
                          "journald), and AppArmor 3 cannot deny them over it",
                          "the seccomp target can refuse socket(AF_UNIX)")
        rules += [self.deny(f"network {f} raw,") + f"  # {SOCKET_DENIES['raw']}"
                  for f in IP_FAMILIES if f not in raw_ok]
        if not packet_ok:
            rules.append(self.deny("network packet,") + f"  # {SOCKET_DENIES['packet']}")
        self.abstract["network"] = {"allowRaw": bool(raw_ok),
                                    "allowedProtocols": {"allowTcp": tcp, "allowUdp": udp}}
        return Block(comments, rules)

    # -- files
    def files(self) -> list[Block]:
        writes = [f for f in self.policy.files if f.action is Action.ALLOW]
        if writes:
            base = Block([("baseline: read, map and run programs anywhere (children stay in this "
                          "profile); write only where the policy allows, to owned scratch "
                          "space and to terminals")],
                         ["/ r,", "/** rmix,", *(f"{o}{g} {p}," for o, g, p in BASELINE_SCRATCH)])
            spo_writes = [g for _, g, _ in BASELINE_SCRATCH]
        else:
            base = Block([("baseline: the policy names no writable paths, so file access is "
                          "restricted by its deny rules only; children stay in this profile")],
                         ["/ r,", "/** rwlkmix,"])
            spo_writes = ["/**"]
        blocks = [base]
        for f in sorted(self.policy.files, key=lambda f: (f.action is Action.ALLOW, f.id)):
            rules = []
            for path in f.paths:
                pattern = path_pattern(path)
                if f.action is Action.DENY:
                    rules.append(self.deny(f"{pattern} {FILE_DENY if not self.shadow else FILE_AUDIT},"))
                    continue
                home = path.startswith("~")
                rules.append(("owner " if home else "") + f"{pattern} {FILE_WRITE},")
                if SPO_SAFE_PATH.match(path):
                    spo_writes.append(pattern[1:-1])  # no character needed quoting or escaping
                    if home:
                        self.spo_lost.append(f"{f.id}: owner-only writes to {path} (any owner in SPO)")
                else:
                    self.spo_lost.append(f"{f.id}: allow {path} (characters SPO may not accept)")
            if f.action is Action.DENY:
                self.spo_lost.append(f"{f.id}: deny {', '.join(f.paths)}")
            verb = "would deny" if f.action is Action.DENY and self.shadow else f.action.value
            blocks.append(Block([f"{f.id} ({_where(f.span, f)}): {verb} {', '.join(f.paths)}: {f.reason}"],
                                rules))
        if writes and not any(p in ("~", "~/.openclaw") for f in writes for p in f.paths):
            self.note("writes are limited to the allowed paths, which do not include ~/.openclaw, "
                      "where OpenClaw keeps its configuration, sessions and logs",
                      'add it: files allow ~/.openclaw reason "agent state"')
        self.abstract["executable"] = {"allowedExecutables": ["/**"], "allowedLibraries": ["/**"]}
        self.abstract["filesystem"] = {"readWritePaths": sorted(set(spo_writes))}
        return blocks

    def build(self, options: CompileOptions) -> Profile | None:
        policy = self.policy
        name = apparmor_profile_name(options.apparmor_profile_name, policy.name)
        if not PROFILE_NAME.match(name):
            self.error(f"invalid profile name '{name}'", "lower-case letters, digits, '.' and '-' "
                       "(it is also the Kubernetes resource name)")
        executable = policy.executable or OPENCLAW_CLI
        problem = glob_error(executable)
        if problem or not executable.startswith(("/", "@{")) or "\0" in executable:
            self.error(f"executable '{executable}' is not a valid AppArmor glob: "
                       f"{problem or 'it must be an absolute path'}")
        if any("\0" in p for f in policy.files for p in f.paths):
            self.error("a file path contains NUL")
        if any(d.severity is Severity.ERROR for d in self.diagnostics):
            return None
        profile = Profile(name, f'"{aa_escape(executable, globs=True)}"', executable)
        base = Block([("abstractions/base: the dynamic loader and libc (ld.so.cache, locale, "
                      "zoneinfo), /dev/null, /dev/urandom; signals from unconfined processes "
                      "(systemd stopping the agent) and within this profile; ps/top reading it")],
                     ["include <abstractions/base>"])
        profile.blocks = [base, self.sockets(), self.capabilities(), *self.files()]
        profile.spo_lost = self.spo_lost
        if policy.rules:
            ids = ", ".join(sorted(r.id for r in policy.rules))
            self.note(f"AppArmor {options.apparmor_abi} cannot match addresses or ports: the "
                      f"{len(policy.rules)} network rules ({ids}) are not in the profile",
                      "the nftables target enforces them")
        if profile.spo_lost:
            self.note("apparmorprofile.yaml cannot carry: " + "; ".join(profile.spo_lost),
                      "SPO's spec.abstract is an allow list; load the profile file for the full policy")
        profile.spo = self.resource(name, profile.spo_lost)
        return profile

    def resource(self, name: str, lost: Sequence[str]) -> dict[str, Any]:
        annotations = {ANNOTATION + "policy": self.policy.name,
                       ANNOTATION + "source": display_path(self.policy.source)}
        if lost:
            annotations[ANNOTATION + "not-carried"] = "; ".join(lost)
        return {"apiVersion": SPO_API_VERSION, "kind": "AppArmorProfile",
                "metadata": {"name": name, "annotations": annotations},
                "spec": {"mode": "Complain" if self.shadow else "Enforce",
                         "abstract": self.abstract}}


# ------------------------------------------------------------------------------- rendering


TEMPLATE = "apparmor/profile.j2"  # and its filters: test_templating.py compiles it ahead of time
TEMPLATE_FILTERS: Mapping[str, Callable[[Any], str]] = {"aa_comment": aa_comment}


@functools.cache
def _template() -> jinja2.Template:
    return load_template(TEMPLATE, TEMPLATE_FILTERS)


def build(policy: Policy, options: CompileOptions) -> tuple[Profile | None, list[Diagnostic]]:
    builder = _Builder(policy)
    return builder.build(options), builder.diagnostics


def render(policy: Policy, options: CompileOptions, profile: Profile) -> str:
    return _template().render(policy=policy, profile=profile, abi=options.apparmor_abi,
                              shadow=policy.mode is Mode.SHADOW,
                              source=display_path(policy.source),
                              default_attachment=policy.executable is None,
                              uses_home=any(p.startswith("~") for f in policy.files for p in f.paths))


def render_resource(policy: Policy, profile: Profile) -> str:
    header = [(f"# security-profiles-operator AppArmorProfile {profile.name}, generated by "
              f"clawpolicy from {display_path(policy.source)}: do not edit, edit the policy."),
              ("# Cluster-scoped (SPO v0.9.0 and later). Pods use it with securityContext."
              f"appArmorProfile: {{type: Localhost, localhostProfile: {profile.name}}}."),
              ("# spec.abstract is an allow list: it cannot deny paths, and it names protocols "
              "(tcp, udp, raw), not socket families.")]
    if profile.spo_lost:
        header.append(f"# Not carried here (load apparmor/{profile.name} for those): "
                      + "; ".join(profile.spo_lost))
    body = yaml.safe_dump(profile.spo, sort_keys=True, allow_unicode=False,
                          default_flow_style=False, width=1 << 16)
    return "\n".join(aa_comment(h) for h in header) + "\n" + body


class AppArmorBackend:
    name: str = "apparmor"
    summary: str = "an AppArmor profile (abi 3.0) and its security-profiles-operator resource"
    enforces: bool = True
    support: Mapping[Feature, Support] = support_tables.APPARMOR

    def compile(self, policy: Policy, options: CompileOptions) -> BackendResult:
        profile, diagnostics = build(policy, options)
        if profile is None:
            return BackendResult([], diagnostics)
        text = render(policy, options, profile)
        longest = max(len(line.encode("utf-8")) for line in text.splitlines())
        problem = annotations_problem("AppArmorProfile", profile.spo["metadata"]["annotations"])
        if longest > PARSER_LINE_MAX_BYTES:
            problem = (f"the AppArmor profile would not parse: a line of {longest} bytes "
                       "(apparmor_parser's scanner stops near 16 KiB); shorten the longest path")
        if problem is not None:
            return BackendResult([], [*diagnostics, Diagnostic(
                Severity.ERROR, f"{policy.name}: {problem}", Location(policy.source), code="apparmor")])
        owner = f"policy {policy.name}"  # profiles are host-wide, SPO resources cluster-wide
        return BackendResult([
            Artifact(profile.name, text.encode("utf-8"), "text/x-apparmor"),
            Artifact("apparmorprofile.yaml", render_resource(policy, profile).encode("utf-8"),
                     "application/yaml"),
        ], diagnostics, [NameClaim("AppArmor profile", profile.name, owner),
                         NameClaim("cluster-scoped AppArmorProfile", profile.name, owner)])


BACKEND = AppArmorBackend()
