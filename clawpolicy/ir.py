"""The intermediate representation: floor 1, the one data model every later stage reads.

`lower` builds it from the syntax tree; backends, the evaluator, diff and lint only read it.
Models are frozen and normalised (canonical CIDRs, merged networks and ports, lower-case
names), so two policies that mean the same thing compare equal, whatever their spelling or
rule order. Source spans ride along for messages but never take part in equality.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

IR_VERSION = 1


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Span(Model):
    """Where a node came from. Equal to every other span, so it never affects IR equality."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Span)

    def __hash__(self) -> int:
        return 0

    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class Direction(str, enum.Enum):
    EGRESS = "egress"
    INGRESS = "ingress"


class Action(str, enum.Enum):
    ALLOW = "allow"
    DENY = "deny"


class Mode(str, enum.Enum):
    ENFORCE = "enforce"
    SHADOW = "shadow"


class Refusal(str, enum.Enum):
    """How an enforced deny refuses a packet. `drop`: silence (the sender waits for its
    timeout; a scanner learns nothing, not even that a firewall is there). `reject`: a TCP
    reset, or ICMP/ICMPv6 administratively prohibited for anything else, so the sender fails
    at once (and a scanner learns that a filter answers for that address and port)."""

    DROP = "drop"
    REJECT = "reject"


class Protocol(str, enum.Enum):
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"  # ICMP for IPv4 peers, ICMPv6 for IPv6 peers


class PortRange(Model):
    """One protocol and an inclusive port range; no range means every port (or a portless protocol)."""

    protocol: Protocol
    first: int | None = Field(default=None, ge=1, le=65535)
    last: int | None = Field(default=None, ge=1, le=65535)

    @property
    def bounds(self) -> tuple[int, int]:
        if self.first is None or self.last is None:
            return (0, 65535)
        return (self.first, self.last)

    def covers(self, protocol: Protocol, port: int | None) -> bool:
        if protocol is not self.protocol:
            return False
        if self.first is None or self.last is None:
            return True
        return port is not None and self.first <= port <= self.last

    def __str__(self) -> str:
        if self.first is None or self.last is None:
            return self.protocol.value if self.protocol is Protocol.ICMP else f"any/{self.protocol.value}"
        if self.first == self.last:
            return f"{self.first}/{self.protocol.value}"
        return f"{self.first}-{self.last}/{self.protocol.value}"


class Peers(Model):
    """Who a rule talks to. Wildcards are suffixes: "slack.com" stands for *.slack.com, i.e.
    any name with one or more labels below slack.com, not slack.com itself."""

    any: bool = False
    ipv4: tuple[ipaddress.IPv4Network, ...] = ()
    ipv6: tuple[ipaddress.IPv6Network, ...] = ()
    names: tuple[str, ...] = ()
    wildcards: tuple[str, ...] = ()

    @property
    def has_fqdns(self) -> bool:
        return bool(self.names or self.wildcards)

    def describe(self) -> list[str]:
        """Human-readable peer list, in a stable order."""
        if self.any:
            return ["any"]
        return ([str(n) for n in self.ipv4] + [str(n) for n in self.ipv6] + list(self.names)
                + [f"*.{w}" for w in self.wildcards])




class Scope(Model):
    """What the policy fences: the whole host, one system user's traffic, or Kubernetes pods.

    For a user, egress is matched by socket owner; ingress cannot be (no owner is known for an
    arriving packet), so ingress is scoped to `agent_ports`, the ports the agent listens on.
    Pods (selected by every label of `pod_selector`, sorted, in `namespace`) are fenced like a
    host: all their traffic but loopback, in both directions."""

    kind: Literal["host", "user", "pods"] = "host"
    user: str | None = None
    uid: int | None = None
    agent_ports: tuple[PortRange, ...] = ()
    pod_selector: tuple[tuple[str, str], ...] = ()
    namespace: str | None = None


# Capability names in capability-number order (capabilities(7)), without the CAP_ prefix.
CAPABILITIES = tuple("""chown dac_override dac_read_search fowner fsetid kill setgid setuid
setpcap linux_immutable net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner
sys_module sys_rawio sys_chroot sys_ptrace sys_pacct sys_admin sys_boot sys_nice sys_resource
sys_time sys_tty_config mknod lease audit_write audit_control setfcap mac_override mac_admin
syslog wake_alarm block_suspend audit_read perfmon bpf checkpoint_restore""".split())


class Capabilities(Model):
    drop_all: bool
    keep: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    reason: str | None = None
    span: Span


SocketFamily = Literal["unix", "inet", "inet6", "netlink", "packet"]  # in this (review) order
SocketType = Literal["stream", "dgram", "raw", "seqpacket"]
# Netlink protocols by name (include/uapi/linux/netlink.h, netlink(7)): `sockets allow netlink
# route` is socket(AF_NETLINK, SOCK_RAW or SOCK_DGRAM, NETLINK_ROUTE), what getifaddrs (Node's
# os.networkInterfaces) opens. 1 and 17 are unassigned.
NETLINK_PROTOCOLS: dict[str, int] = {
    "route": 0, "usersock": 2, "firewall": 3, "sock_diag": 4, "nflog": 5, "xfrm": 6,
    "selinux": 7, "iscsi": 8, "audit": 9, "fib_lookup": 10, "connector": 11, "netfilter": 12,
    "ip6_fw": 13, "dnrtmsg": 14, "kobject_uevent": 15, "generic": 16, "scsitransport": 18,
    "ecryptfs": 19, "rdma": 20, "crypto": 21, "smc": 22,
}


class SocketKind(Model):
    """One `sockets allow` item: a family, and a type (None: every type) or, for netlink, a
    protocol (None: every protocol; a protocol implies the raw and dgram types, the only two
    netlink has, which it treats alike)."""

    family: SocketFamily
    type: SocketType | None = None  # None: every type
    protocol: str | None = None  # a NETLINK_PROTOCOLS name; netlink only

    @model_validator(mode="after")
    def _protocol_is_netlink(self) -> SocketKind:
        if self.protocol is not None and (self.family != "netlink" or self.type is not None
                                          or self.protocol not in NETLINK_PROTOCOLS):
            raise ValueError(f"protocol {self.protocol!r}: a netlink protocol name, without a type")
        return self

    @property
    def sort_key(self) -> tuple[int, bool, str, int]:
        """Family order, then the whole family, its types, its protocols (by number)."""
        protocol = -1 if self.protocol is None else NETLINK_PROTOCOLS[self.protocol]
        return get_args(SocketFamily).index(self.family), protocol >= 0, self.type or "", protocol

    def __str__(self) -> str:
        return " ".join(w for w in (self.family, self.type, self.protocol) if w)


class Sockets(Model):
    allow: tuple[SocketKind, ...]
    reason: str | None = None
    span: Span


class Documented(Model):
    """What every rule carries besides its meaning: why, who, which ticket, until when."""

    id: str
    action: Action
    reason: str
    owner: str | None = None
    ticket: str | None = None
    expires: dt.date | None = None
    span: Span
    # `id` was written in the source (else automatic: ruleids); lint notes automatic ones
    id_pinned: bool = False


class Rule(Documented):
    """A network rule after lowering: one direction, one action, one port set."""

    direction: Direction
    peers: Peers
    ports: tuple[PortRange, ...] = ()  # empty: every protocol and port
    origin: tuple[str, ...] = ()  # peers as written (e.g. "@llm", "slack.com"), for docs and review
    refusal: Refusal | None = None  # a deny's own `reject`/`drop`; None: the policy's for its direction


class SyscallRule(Documented):
    """Syscalls added to (allow) or removed from (deny) the seccomp target's baseline."""

    names: tuple[str, ...]


class FileRule(Documented):
    """Paths the agent may (allow) or may not (deny) touch; `~/` is the agent's home."""

    paths: tuple[str, ...]


class ResolveRule(Documented):
    """`dns resolve NAMES`: names the agent may look up through the DNS gate although no rule
    lets it connect to them (a resolver check, a name whose address another rule allows).
    The gate forwards them and fills no set: they grant no egress. `action` is always allow.
    Wildcards mean what they mean in `Peers`: one or more labels below, not the suffix."""

    names: tuple[str, ...] = ()
    wildcards: tuple[str, ...] = ()  # suffixes: "corp.example" for *.corp.example

    def describe(self) -> list[str]:
        return [*self.names, *(f"*.{w}" for w in self.wildcards)]


LOCAL_DNS_ID = "local-dns-only"


def _dns_ports() -> tuple[PortRange, ...]:
    return tuple(PortRange(protocol=p, first=n, last=n)
                 for n in (53, 853) for p in (Protocol.UDP, Protocol.TCP))  # DNS, DoT, DoQ


class LocalDns(Model):
    """The agent's DNS goes to the resolver on its own host (loopback) and nowhere else.

    Lowering adds this whenever an egress rule names a domain: such a rule holds only the
    addresses the local resolver put into its sets (the dnsmasq target), so DNS to any other
    server would let the agent learn addresses the sets never saw, and any resolver could
    carry data out. Egress to `ports` on any address but loopback is denied, whatever the
    allow rules say (the rule `id`). When the policy fences the whole host, the resolver's
    own queries (sockets owned by `resolver_user`) are exempt from this rule; the other rules
    still decide which upstream servers it may reach."""

    id: str = LOCAL_DNS_ID
    ports: tuple[PortRange, ...] = Field(default_factory=_dns_ports)
    resolver_user: str = "dnsmasq"
    reason: str = ("FQDN rules hold only what the local resolver put into their sets: the "
                   "agent's DNS goes there and nowhere else")

    def exempts(self, scope: Scope, user: str | None) -> bool:
        return scope.kind == "host" and user == self.resolver_user


class Expectation(Model):
    """A `test` block's claim about one flow, checked by the evaluator (and the kernel)."""

    name: str
    verdict: Action
    direction: Direction
    peer: str  # an address or a name
    protocol: Protocol
    port: int | None = None
    user: str | None = None  # egress as this user (name or uid); None: the policy's own user
    span: Span


class Policy(Model):
    ir_version: int = IR_VERSION
    name: str
    description: str | None = None
    owner: str | None = None
    mode: Mode = Mode.ENFORCE
    scope: Scope = Scope()
    rules: tuple[Rule, ...] = ()
    capabilities: Capabilities | None = None
    sockets: Sockets | None = None
    syscalls: tuple[SyscallRule, ...] = ()
    files: tuple[FileRule, ...] = ()
    executable: str | None = None  # the agent's program (AppArmor attachment); None: the target's default
    local_dns: LocalDns | None = None  # set by lowering when an egress rule names a domain
    resolve: tuple[ResolveRule, ...] = ()  # `dns resolve`: names the DNS gate may forward
    tests: tuple[Expectation, ...] = ()
    # How denies without their own word refuse (and the default deny): egress follows
    # `compile --deny-action`; ingress stays silent unless asked (`--ingress-deny-action`).
    egress_refusal: Refusal = Refusal.DROP
    ingress_refusal: Refusal = Refusal.DROP
    source: str
    span: Span

    def rule(self, rule_id: str) -> Rule | SyscallRule | FileRule | ResolveRule | None:
        items: tuple[Rule | SyscallRule | FileRule | ResolveRule, ...] = (
            *self.rules, *self.syscalls, *self.files, *self.resolve)
        for item in items:
            if item.id == rule_id:
                return item
        return None

    def with_mode(self, mode: Mode) -> Policy:
        return self.model_copy(update={"mode": mode})

    def with_refusal(self, egress: Refusal | None = None, ingress: Refusal | None = None) -> Policy:
        """The policy with another default refusal per direction (None: keep it)."""
        return self.model_copy(update={"egress_refusal": egress or self.egress_refusal,
                                       "ingress_refusal": ingress or self.ingress_refusal})

    def refusal(self, direction: Direction, rule: Rule | None = None) -> Refusal:
        """How a deny by `rule` (None: the default deny, or `local-dns-only`) refuses."""
        if rule is not None and rule.refusal is not None:
            return rule.refusal
        return self.egress_refusal if direction is Direction.EGRESS else self.ingress_refusal


def json_schema() -> dict[str, Any]:
    """The IR's JSON Schema, published by `clawpolicy ir --schema`."""
    return Policy.model_json_schema()
