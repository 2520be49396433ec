"""`clawpolicy test --kernel`: a policy's `test` blocks on the evaluator and in the kernel.

Layers, one result per expectation per layer (JUnit: one testcase each):
- evaluator: `run_tests`, the reference semantics;
- nftables: the policy compiled in enforce mode and loaded into a throwaway network namespace
  (`netlab.Lab`, two namespaces and a veth pair, nothing on the host changes); each
  expectation becomes a probe (TCP connect, UDP echo, ICMP echo) from the agent side
  (egress, as the expectation's user) or from a peer (ingress). Skipped, with the reason:
  names (FQDN sets are filled by the resolver at run time; this check runs none), loopback
  (always passes), and flows the lab cannot build (ingress from multicast, no port);
- seccomp: `test` blocks say nothing about syscalls, so this layer checks what the policy
  does say to seccomp: for each socket kind (family x type, netlink protocols) the filter is loaded in a forked
  child, socket() is called, and EPERM must come back exactly when the policy's `sockets`
  statement (and `keep net_raw` for raw and packet sockets) does not allow the kind. The
  expected answers are derived from the IR here, not from the backend's plan.
Needs root (namespaces, nft, raw sockets); `can_run` says why not.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import ipaddress
import json
import os
import shutil
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from clawpolicy import seccomp_loader
from clawpolicy.backends.base import CompileOptions
from clawpolicy.backends.nftables import render
from clawpolicy.backends.seccomp import BACKEND as SECCOMP
from clawpolicy.backends.seccomp_baseline import SOCKET_BASELINE, keeps
from clawpolicy.evaluate import run_tests
from clawpolicy.ir import NETLINK_PROTOCOLS, Action, Direction, Expectation, Mode, Policy, Protocol

AGENT_ADDRESSES = ("198.51.100.1", "fd00:a9e::1")
AGENT_UID = 4242  # the policy's user inside the lab (named users are mapped to it)
OTHER_UID = 4343  # any other user an expectation names
# (family, type, netlink protocol): getifaddrs's route, and two an agent has no use for
SOCKET_KINDS: tuple[tuple[str, str, str | None], ...] = (
    ("unix", "stream", None), ("unix", "dgram", None), ("inet", "stream", None),
    ("inet", "dgram", None), ("inet", "raw", None), ("inet6", "stream", None),
    ("inet6", "dgram", None), ("inet6", "raw", None), ("netlink", "raw", "route"),
    ("netlink", "dgram", "sock_diag"), ("netlink", "raw", "audit"), ("packet", "raw", None))
_FAMILY = {"unix": socket.AF_UNIX, "inet": socket.AF_INET, "inet6": socket.AF_INET6,
           "netlink": 16, "packet": 17}
_TYPE = {"stream": socket.SOCK_STREAM, "dgram": socket.SOCK_DGRAM, "raw": socket.SOCK_RAW}
_PROTOCOL = {("inet", "raw"): 1, ("inet6", "raw"): 58}  # ICMP, ICMPv6: raw sockets need one


@dataclass(frozen=True)
class CaseResult:
    policy: str
    layer: str  # evaluator | nftables | seccomp
    name: str
    status: str  # passed | failed | skipped | error
    message: str = ""
    file: str = ""
    line: int = 0
    seconds: float = 0.0
    col: int = 0

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.col}" if self.col else f"{self.file}:{self.line}"


def can_run() -> str | None:
    """None when the kernel layers can run here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, nft, raw sockets): run it as root, e.g. in CI"
    missing = [t for t in ("ip", "nft") if shutil.which(t) is None]
    if missing:
        return f"needs {' and '.join(missing)} on PATH"
    return None


def evaluator_cases(policy: Policy) -> list[CaseResult]:
    out = []
    for r, t in zip(run_tests(policy), policy.tests, strict=True):
        status = "passed" if r.ok else "failed"
        out.append(CaseResult(policy.name, "evaluator", _case_name(t), status,
                              "" if r.ok else f"expected {r.expected.value}, evaluator: {r.verdict}",
                              t.span.file, t.span.line, col=t.span.col))
    return out


def _case_name(t: Expectation) -> str:
    where = "to" if t.direction is Direction.EGRESS else "from"
    port = t.protocol.value if t.port is None else f"{t.port}/{t.protocol.value}"
    who = f" as user {t.user}" if t.user else ""
    return f"{t.name}: expect {t.verdict.value} {t.direction.value} {where} {t.peer} port {port}{who}"


# ----------------------------------------------------------------------------- nftables


def _skip_reason(t: Expectation) -> str | None:
    try:
        address = ipaddress.ip_address(t.peer)
    except ValueError:
        return ("a name: FQDN rules admit only addresses the resolver put into their sets at "
                "run time, and this check runs no resolver")
    if address.is_loopback:
        return "loopback always passes (accepted before any rule)"
    if address.is_unspecified or str(address) in AGENT_ADDRESSES or (address.version == 6 and address.is_link_local):
        return "the lab cannot place this address on a peer"
    if address.is_multicast and (t.direction is Direction.INGRESS or t.protocol is not Protocol.UDP):
        return "the lab sends only UDP to multicast groups"
    if t.protocol is not Protocol.ICMP and t.port is None:
        return "no port: the lab probes one port"
    return None


def _uid(policy: Policy, t: Expectation) -> int:
    if t.user is None:
        return AGENT_UID if policy.scope.kind == "user" else 0
    if t.user.isdigit():
        return int(t.user)
    return AGENT_UID if t.user == policy.scope.user else OTHER_UID


def nftables_cases(policy: Policy) -> list[CaseResult]:
    from clawpolicy.operate.netlab import Lab, Probe

    enforced = policy.with_mode(Mode.ENFORCE)
    if enforced.scope.kind == "user" and enforced.scope.uid is None:
        enforced = enforced.model_copy(update={"scope": enforced.scope.model_copy(update={"uid": AGENT_UID})})
    out: list[CaseResult] = []
    probes: list[tuple[Expectation, Probe]] = []
    for t in policy.tests:
        reason = _skip_reason(t)
        if reason is not None:
            out.append(CaseResult(policy.name, "nftables", _case_name(t), "skipped", reason,
                                  t.span.file, t.span.line))
            continue
        peer = str(ipaddress.ip_address(t.peer))
        port = None if t.protocol is Protocol.ICMP else t.port
        uid = _uid(policy, t) if t.direction is Direction.EGRESS else 0
        probes.append((t, Probe(t.direction.value, peer, t.protocol.value, port, uid=uid)))
    if not probes:
        return out
    peers = sorted({p.remote for _, p in probes if not ipaddress.ip_address(p.remote).is_multicast})
    tcp = sorted({p.port for _, p in probes if p.protocol == "tcp" and p.port} | {443})
    udp = sorted({p.port for _, p in probes if p.protocol == "udp" and p.port} | {53})
    users = {n: AGENT_UID for n in [policy.scope.user] if n and not n.isdigit()}
    users |= {t.user: OTHER_UID for t, _ in probes if t.user and not t.user.isdigit() and t.user not in users}
    start = time.monotonic()
    with Lab(peer_addresses=peers, agent_addresses=AGENT_ADDRESSES, tcp_ports=tcp, udp_ports=udp) as lab:
        lab.load_ruleset(render(enforced, CompileOptions()), users=users)
        results = lab.probe_results([p for _, p in probes])
    each = (time.monotonic() - start) / len(probes)
    for (t, _), r in zip(probes, results, strict=True):
        ok = r.ok == (t.verdict is Action.ALLOW)
        got = "got through" if r.ok else f"blocked ({r.outcome}{' ' + r.errno if r.errno else ''})"
        out.append(CaseResult(policy.name, "nftables", _case_name(t), "passed" if ok else "failed",
                              "" if ok else f"expected {t.verdict.value}; in the kernel the flow {got}",
                              t.span.file, t.span.line, each, t.span.col))
    return out


# ------------------------------------------------------------------------------ seccomp


def socket_allowed(policy: Policy, family: str, kind: str, protocol: str | None = None) -> bool:
    """What the policy says about socket(family, kind, netlink protocol), read from the IR alone."""
    if (family == "packet" or (kind == "raw" and family in ("inet", "inet6"))) and not keeps(policy, "net_raw"):
        return False
    allowed = [(k.family, k.type, k.protocol) for k in policy.sockets.allow] if policy.sockets else \
        [(f, None, None) for f in SOCKET_BASELINE]
    for fam, typ, proto in allowed:
        if fam != family or (proto is not None and proto != protocol):
            continue
        if proto is not None:  # netlink PROTOCOL: raw and dgram, which netlink treats alike
            if kind in ("dgram", "raw"):
                return True
            continue
        if typ is None or typ == kind or (family == "netlink" and {typ, kind} <= {"dgram", "raw"}):
            return True
    return False


def _label(family: str, kind: str, protocol: str | None) -> str:
    return " ".join(w for w in (family, kind, protocol) if w)


def _probe_in_child(profile: dict[str, object]) -> dict[str, int]:
    """Fork; the child installs the filter (irreversible, hence a child) and calls socket()
    for every kind; the parent reads errno per kind (0: the call succeeded)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(read_fd)
            seccomp_loader.load_profile(profile)
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            result = {}
            for family, kind, protocol in SOCKET_KINDS:
                number = NETLINK_PROTOCOLS[protocol] if protocol else _PROTOCOL.get((family, kind), 0)
                fd = libc.socket(_FAMILY[family], _TYPE[kind], number)
                result[_label(family, kind, protocol)] = ctypes.get_errno() if fd < 0 else 0
                if fd >= 0:
                    os.close(fd)
            os.write(write_fd, json.dumps(result).encode())
        except BaseException as exc:  # noqa: BLE001 - reported through the pipe
            os.write(write_fd, json.dumps({"error": str(exc)}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    doc = json.loads(data or b'{"error": "the child died"}')
    if "error" in doc:
        raise RuntimeError(f"seccomp child: {doc['error']}")
    return {str(k): int(v) for k, v in doc.items()}


def seccomp_cases(policy: Policy) -> list[CaseResult]:
    result = SECCOMP.compile(policy.with_mode(Mode.ENFORCE), CompileOptions())
    profile = next((a for a in result.artifacts if a.path == "profile.json"), None)
    where = policy.sockets.span if policy.sockets else policy.span
    if profile is None:
        return [CaseResult(policy.name, "seccomp", "compile the seccomp profile", "error",
                           "; ".join(d.message for d in result.diagnostics), where.file, where.line)]
    start = time.monotonic()
    answers = _probe_in_child(json.loads(profile.content))
    each = (time.monotonic() - start) / len(SOCKET_KINDS)
    out = []
    for family, kind, protocol in SOCKET_KINDS:
        allowed = socket_allowed(policy, family, kind, protocol)
        label = _label(family, kind, protocol)
        got = answers[label]
        refused = got == errno.EPERM
        ok = refused is not allowed
        said = "allowed" if allowed else "refused"
        outcome = "EPERM" if refused else ("created" if got == 0 else errno.errorcode.get(got, str(got)))
        out.append(CaseResult(policy.name, "seccomp", f"socket {label}: policy says {said}",
                              "passed" if ok else "failed",
                              "" if ok else f"the filter answered {outcome}", where.file, where.line, each))
    return out


def run(policies: Sequence[Policy], *, kernel: bool) -> list[CaseResult]:
    out: list[CaseResult] = []
    for policy in policies:
        out += evaluator_cases(policy)
        if kernel:
            out += nftables_cases(policy)
            out += seccomp_cases(policy)
    return out
