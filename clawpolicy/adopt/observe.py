"""Live sockets judged by a policy: floor 3, sockets (procnet) + IR -> findings.

Each socket becomes the flow the policy would see and the evaluator (the reference semantics)
decides it: a connection the agent opened is egress to its peer, one it accepted is ingress on
its listening port, a listener is judged by what it would admit from the LAN. Two things are
flagged whatever the policy says, because they are how OpenClaw deployments leak: a listener
on a non-loopback address (the gateway bound to 0.0.0.0) and an mDNS socket (udp 5353).

A connection to an address is matched against address rules only (as the evaluator does): an
FQDN rule holds only what DNS put into its set at run time. Where the policy file has a lock
file (`clawpolicy resolve`), its names are tried for the address; otherwise the finding says
which FQDN rules could still admit it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clawpolicy.adopt.procnet import Socket, iter_listeners, user_name
from clawpolicy.evaluate import Flow, Verdict, evaluate
from clawpolicy.ir import Action, Direction, Mode, Policy, Protocol
from clawpolicy.printable import shown

MDNS_PORT = 5353
MDNS_GROUP = {4: "224.0.0.251", 6: "ff02::fb"}
LAN_PROBE = {4: "192.168.1.20", 6: "fd00::20"}
WILDCARD = ("0.0.0.0", "::")


@dataclass(frozen=True)
class Finding:
    socket: Socket
    user: str
    kind: str  # listen | egress | ingress
    flow: Flow
    verdict: Verdict
    via_name: str | None  # a locked name that matched the address
    flags: tuple[str, ...]  # exposed | mdns
    notes: tuple[str, ...]

    @property
    def denied(self) -> bool:
        return self.verdict.action is Action.DENY

    def describe(self) -> str:
        port = f"port {self.flow.port}/{self.flow.protocol.value}"
        if self.kind == "listen":
            if self.verdict.cause == "loopback":
                return f"loopback only: {self.verdict}"
            return f"ingress from the LAN ({self.flow.peer}) {port}: {self.verdict}"
        where = "to" if self.flow.direction is Direction.EGRESS else "from"
        via = f" (as {self.via_name})" if self.via_name else ""
        return f"{self.kind} {where} {self.flow.peer}{via} {port}: {self.verdict}"

    def as_json(self) -> dict[str, Any]:
        s = self.socket
        return {
            "protocol": s.protocol, "local": s.local, "local_port": s.local_port,
            "remote": s.remote, "remote_port": s.remote_port, "state": s.state, "uid": s.uid,
            "user": self.user, "pids": list(s.pids), "netns": s.netns, "kind": self.kind,
            "flow": {"direction": self.flow.direction.value, "peer": self.flow.peer,
                     "protocol": self.flow.protocol.value, "port": self.flow.port},
            "verdict": {"action": self.verdict.action.value, "cause": self.verdict.cause,
                        "rule": self.verdict.rule_id, "enforced": self.verdict.enforced,
                        "text": str(self.verdict)},
            "via_name": self.via_name, "flags": list(self.flags), "notes": list(self.notes),
        }


def judge(policy: Policy, sockets: Sequence[Socket],
          locked: Mapping[str, Sequence[str]] | None = None) -> list[Finding]:
    """One finding per socket, in the sockets' order. `locked`: address -> names (a lock file)."""
    listeners = iter_listeners(sockets)
    return [_judge(policy, s, listeners, locked or {}) for s in sockets]


def _judge(policy: Policy, s: Socket, listeners: set[tuple[str, str, str, int]],
           locked: Mapping[str, Sequence[str]]) -> Finding:
    protocol = Protocol(s.protocol)
    version = ipaddress.ip_address(s.local).version
    user = _flow_user(policy, s.uid)
    flags: list[str] = []
    notes: list[str] = []
    local_loopback = ipaddress.ip_address(s.local).is_loopback
    if s.listening:
        kind = "listen"
        if not local_loopback:
            flags.append("exposed")
            notes.append(f"listens on {s.local} (every address)" if s.local in WILDCARD
                         else f"listens on {s.local}, beyond loopback")
        flow = Flow(Direction.INGRESS, LAN_PROBE[version], protocol, s.local_port)
    elif _accepted(s, listeners):
        kind = "ingress"
        flow = Flow(Direction.INGRESS, s.remote, protocol, s.local_port)
    else:
        kind = "egress"
        flow = Flow(Direction.EGRESS, s.remote, protocol, s.remote_port, user)
    if s.protocol == "udp" and MDNS_PORT in (s.local_port, s.remote_port):
        flags.append("mdns")
        mdns = evaluate(policy, Flow(Direction.EGRESS, MDNS_GROUP[version], Protocol.UDP,
                                     MDNS_PORT, user))
        notes.append(f"mDNS socket; announcements to {MDNS_GROUP[version]}:{MDNS_PORT}: {mdns}")
    if kind == "listen" and local_loopback:
        verdict = Verdict(Action.ALLOW, "loopback", enforced=policy.mode is Mode.ENFORCE)
        flow = Flow(Direction.INGRESS, s.local, protocol, s.local_port)
    else:
        verdict = evaluate(policy, flow)
    via = None
    if kind == "egress" and verdict.action is Action.DENY and verdict.cause == "default":
        for name in sorted(locked.get(s.remote, ())):
            named = evaluate(policy, Flow(Direction.EGRESS, name, protocol, s.remote_port, user))
            if named.action is Action.ALLOW:
                verdict, via = named, name
                break
        else:
            fqdn = sorted(r.id for r in policy.rules if r.direction is Direction.EGRESS
                          and r.action is Action.ALLOW and r.peers.has_fqdns
                          and (not r.ports or any(p.covers(protocol, s.remote_port) for p in r.ports)))
            if fqdn:
                notes.append(f"unless DNS put {s.remote} into the set of an FQDN rule "
                             f"({', '.join(fqdn)}); `clawpolicy resolve` locks names to addresses")
    if verdict.cause == "out-of-scope":
        notes.append(f"not governed by this policy ({_scope(policy)})")
    return Finding(s, user_name(s.uid), kind, flow, verdict, via, tuple(flags), tuple(notes))


def _accepted(s: Socket, listeners: set[tuple[str, str, str, int]]) -> bool:
    """A connection whose local end is a listening port of ours was accepted, not opened."""
    wild = "0.0.0.0" if ipaddress.ip_address(s.local).version == 4 else "::"
    return any((s.netns, s.protocol, addr, s.local_port) in listeners
               for addr in (s.local, wild, "::"))


def _flow_user(policy: Policy, uid: int) -> str:
    """The socket's owner as the policy names users (a name, or a uid if it uses uids)."""
    scope = policy.scope
    if scope.kind == "user" and scope.user is not None and scope.user.isdigit():
        return str(uid)
    return user_name(uid)


def _scope(policy: Policy) -> str:
    scope = policy.scope
    return "applies to the whole host" if scope.kind == "host" else f"applies to user {scope.user}"


def summary(findings: Sequence[Finding]) -> dict[str, int]:
    return {
        "sockets": len(findings),
        "denied": sum(f.denied for f in findings),
        "exposed": sum("exposed" in f.flags for f in findings),
        "mdns": sum("mdns" in f.flags for f in findings),
    }


def render_text(policy: Policy, selection: str, findings: Sequence[Finding],
                unreadable: Sequence[int] = ()) -> str:
    mode = policy.mode.value
    lines = [f"policy {policy.name} ({mode}), {selection}: {len(findings)} sockets"]
    rows = [("PROTO", "LOCAL", "REMOTE", "STATE", "PIDS/USER", "JUDGEMENT")]
    for f in findings:
        s = f.socket
        remote = "*" if s.listening else _endpoint(s.remote, s.remote_port)
        flags = "".join(f"[{flag.upper()}] " for flag in f.flags)
        rows.append((s.protocol, _endpoint(s.local, s.local_port), remote, s.state,
                     f"{','.join(map(str, s.pids))}/{f.user}", flags + f.describe()))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for n, row in enumerate(rows):
        lines.append("  ".join(col.ljust(w) for col, w in zip(row, widths, strict=False))
                     + "  " + row[5])
        if n:
            lines += [" " * (sum(widths) + 10) + f"- {note}" for note in findings[n - 1].notes]
    total = summary(findings)
    deny = "would be denied" if mode == "shadow" else "denied"
    lines.append(f"{total['denied']} {deny}, {total['exposed']} listening beyond loopback, "
                 f"{total['mdns']} mDNS")
    if unreadable:
        lines.append(f"warning: could not read the sockets of pid(s) {', '.join(map(str, unreadable))}"
                     " (run as root or as their user)")
    return "\n".join(shown(line) for line in lines)  # user and unit names are anyone's text


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def render_json(policy: Policy, selection: str, findings: Sequence[Finding],
                unreadable: Sequence[int] = ()) -> dict[str, Any]:
    return {"policy": policy.name, "mode": policy.mode.value, "selection": selection,
            "sockets": [f.as_json() for f in findings], "summary": summary(findings),
            "unreadable_pids": list(unreadable)}
