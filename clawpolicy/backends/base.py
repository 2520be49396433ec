"""What a backend is: floor 2. The contract between the IR and every target.

A backend is one module with one pure entry point, `compile(policy, options)`, plus a
declared table of which policy features it enforces. The table is data: the shared check in
`registry` compares it with the features a policy uses (so compile can say which rule a
target cannot enforce, and why) and the docs target prints it as the enforcement matrix.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Literal, Protocol

from clawpolicy.backends.naming import NameClaim
from clawpolicy.errors import Diagnostic
from clawpolicy.ir import Policy


@dataclass(frozen=True)
class Artifact:
    """One generated file: a path relative to generated/<policy>/<target>/, and its bytes."""

    path: str
    content: bytes
    media_type: str = "text/plain"


class Feature(str, enum.Enum):
    """Parts of a policy a target may or may not be able to enforce."""

    CIDR_PORT = "addresses and ports"
    FQDN = "domain names"
    WILDCARD = "*.wildcard names"
    EXPLICIT_DENY = "explicit deny"
    INGRESS = "ingress"
    USER_SCOPE = "per-user scope"
    SOCKETS = "socket families and types"
    SYSCALLS = "syscall allow/deny lists"
    CAPABILITIES = "capabilities"
    FILES = "file paths"
    LOG_ONLY = "log-only (shadow) mode"


class Level(str, enum.Enum):
    YES = "yes"
    PARTIAL = "partly"
    NO = "no"


@dataclass(frozen=True)
class Support:
    level: Level
    how: str  # one line: how the target enforces it, or why it cannot


@dataclass(frozen=True)
class CompileOptions:
    """Options every backend may read; target-specific settings get their own fields here."""

    strict: bool = False
    nft_log_rate: str = "10/second"
    nft_log_burst: int = 20
    # FQDN sets: seconds an address DNS added stays without a new answer or connection for it;
    # the dnsmasq target caps the TTLs it hands out at the same value (never outlived by a TTL)
    fqdn_timeout: int = 600
    # the resolver's upstream servers (IP or IP:PORT): the hardened dnsmasq fragment forwards
    # only the policy's names there, and the DNS gate's unit passes them to `dns serve`
    dns_upstreams: tuple[str, ...] = ()
    lock: Mapping[str, tuple[str, ...]] | None = None  # `compile --lock`: name -> locked addresses
    seccomp_deny_action: Literal["errno", "kill"] = "errno"  # refusals: EPERM, or kill the process
    apparmor_abi: Literal["3.0", "4.0"] = "3.0"  # the `abi <abi/X>` the profile is written against
    apparmor_profile_name: str = "clawpolicy-{policy}"  # {policy}: the policy's name
    k8s_flavor: Literal["vanilla", "cilium", "calico"] = "vanilla"  # which network policy API
    k8s_selector: tuple[tuple[str, str], ...] = ()  # pod labels; overrides `applies-to pods`
    k8s_namespace: str | None = None  # overrides the policy's namespace
    k8s_container: str = "openclaw"  # the container the pod hardening patch merges into
    systemd_unit: str = "openclaw-gateway.service"  # the unit the systemd target's drop-in is for


@dataclass
class BackendResult:
    artifacts: list[Artifact] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # every name derived from user text, with the IR identity it stands for: the compiler
    # fails the compile when two identities share one (`naming.collisions`)
    names: list[NameClaim] = field(default_factory=list)


# A comment line in a generated file, in UTF-8 bytes. Readers choke on long lines: AppArmor's
# scanner stops at ~16 KiB ("input buffer overflow"), and dnsmasq reads 1,024 bytes at a time and
# parses the rest of a longer comment line as an option (a reason could add `address=` lines).
# Full texts live in the docs target.
COMMENT_LINE_MAX_BYTES = 512


def clip(text: str, limit: int = COMMENT_LINE_MAX_BYTES) -> str:
    """`text` cut to at most `limit` UTF-8 bytes (on a character boundary), ending in '...'
    when cut, so a reader sees that something is missing."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", errors="ignore") + "..."


# Kubernetes refuses an object whose annotations (keys and values) exceed 256 KiB in total
# (apimachinery ValidateAnnotationsSize); compile says so instead of writing it.
ANNOTATIONS_MAX_BYTES = 256 * 1024


def annotations_problem(kind: str, annotations: Mapping[str, str]) -> str | None:
    """Why the API server would refuse these annotations, or None."""
    size = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in annotations.items())
    if size <= ANNOTATIONS_MAX_BYTES:
        return None
    return (f"the {kind}'s annotations take {size} bytes; Kubernetes accepts at most "
            f"{ANNOTATIONS_MAX_BYTES}")


class Backend(Protocol):
    """The one shape every target module exposes (checked by mypy through `BACKENDS`)."""

    name: str
    summary: str
    enforces: bool  # False for documentation-only targets
    support: Mapping[Feature, Support]

    def compile(self, policy: Policy, options: CompileOptions) -> BackendResult: ...


def display_path(path: str) -> str:
    """A source path without the machine's layout, as artifacts show it: `lower` records paths
    relative to the working directory, an absolute one (a file outside it) keeps only its name."""
    return PurePath(path).name if PurePath(path).is_absolute() else path
