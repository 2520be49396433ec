"""IR to seccomp profiles and filters: floor 2, one backend, one entry point (`BACKEND.compile`).

Output, under generated/<policy>/seccomp/:
- `profile.json`, an OCI / Docker seccomp profile (runc, crun, podman, Kubernetes Localhost);
- `seccompprofile.yaml`, the same as a security-profiles-operator SeccompProfile (v1, cluster
  scoped; pods reference it as `operator/<name>.json`);
- `filter-x86_64.bpf`, `filter-aarch64.bpf` and their `.pfc` listings, built from profile.json
  by libseccomp (`seccomp_loader`), for launchers that install raw BPF with seccomp(2).

Decisions. Every syscall gets one of three verdicts: allowed; refused, because a policy rule,
the `sockets` statement or a capability the policy does not keep says so; or unlisted (outside
the baseline: the default action). The ACTIONS table maps them per mode:

- enforce: refused is SCMP_ACT_ERRNO(EPERM), what the kernel itself answers for a missing
  permission; unlisted is the default, SCMP_ACT_ERRNO with defaultErrnoRet ENOSYS. Two errnos
  on purpose. runc skips a rule whose action equals the default (libseccomp refuses such a
  rule), so a default of EPERM would silently drop every EPERM rule. ENOSYS is also what
  runc answers for syscalls newer than its libseccomp, and what glibc, libuv and Node treat as
  "not on this kernel" and fall back from (clone3 to clone, io_uring to epoll). The process
  (and strace) can tell a named refusal from an unlisted call; the audit record cannot (the
  kernel logs the action without its errno, code=0x50000, and the syscall number).
  `seccomp_deny_action="kill"` makes refusals SCMP_ACT_KILL_PROCESS; unlisted calls stay ENOSYS
  (probing a newer syscall is not an attack);
- shadow: SCMP_ACT_LOG for everything enforce would not allow, the default included.

Entries never overlap (each syscall/argument combination matches at most one entry), so a
runtime that drops entries equal to the default, as runc does and as the SPO resource forces
(its CRD has no defaultErrnoRet, so its default errno is EPERM), changes no decision. Each
entry has at most one condition per argument: runc turns several conditions on one argument
into separate rules (OR), which would widen a range check into "anything".

`socket`/`socketpair`: family (arg0) exact, type (arg1) under SOCK_TYPE_MASK (0xf), which strips
SOCK_CLOEXEC and SOCK_NONBLOCK (the kernel returns EINVAL for any other bit). Refused families
and types are written as aligned blocks (value under a mask) and `family > max`, so every
value, including junk in the upper 32 bits, lands in exactly one entry. Netlink does not
distinguish SOCK_DGRAM from SOCK_RAW (netlink(7)): either type allows both, which glibc's
getifaddrs needs. `netlink PROTOCOL` (`netlink route`: getifaddrs, Node's networkInterfaces)
adds the protocol (arg2) to those entries: each allowed protocol exact, the rest refused as
64-bit aligned blocks and `protocol > max` (the kernel reads an int, so upper-bit junk must not
alias NETLINK_ROUTE). SOCK_RAW on inet/inet6 and every packet socket need the policy to keep
net_raw. Seccomp cannot read connect()/sendto() addresses (a pointer): the support table says
so and the shared check warns; nftables filters destinations.

Architectures: x86_64 and aarch64 only. 32-bit x86, x32 and arm calls fail the filter's
architecture check (KILL_PROCESS in enforce, LOG in shadow; runtimes loading profile.json
use libseccomp's default, kill), so socketcall/ipc need no rules and the x32 fail-open of
DESIGN.md cannot arise; filters use libseccomp's binary tree.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from clawpolicy import seccomp_loader as loader
from clawpolicy.backends import support_tables
from clawpolicy.backends.base import (
    Artifact,
    BackendResult,
    CompileOptions,
    Feature,
    Support,
    annotations_problem,
    clip,
)
from clawpolicy.backends.naming import NameClaim, seccomp_resource_name
from clawpolicy.backends.seccomp_baseline import (
    BASELINE,
    CAPABILITY_SYSCALLS,
    NEWER_SYSCALLS,
    PERSONALITY_VALUES,
    Arg,
    Entry,
    Verdict,
    capability_source,
    clone_entries,
    keeps,
    location,
    socket_entries,
)
from clawpolicy.errors import Diagnostic, Location, Severity, closest
from clawpolicy.ir import Action, Mode, Policy, SyscallRule

ARCHITECTURES: Mapping[str, str] = {"SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_AARCH64": "aarch64"}
SOCKET_CALLS = ("socket", "socketpair")
SPO_API = "security-profiles-operator.x-k8s.io/v1"
ANNOTATION = "clawpolicy.dev/"


ACTIONS: Mapping[tuple[Mode, str, Verdict], tuple[str, int | None]] = {
    **{(mode, deny, Verdict.ALLOW): ("SCMP_ACT_ALLOW", None) for mode in Mode for deny in ("errno", "kill")},
    (Mode.ENFORCE, "errno", Verdict.REFUSE): ("SCMP_ACT_ERRNO", errno.EPERM),
    (Mode.ENFORCE, "kill", Verdict.REFUSE): ("SCMP_ACT_KILL_PROCESS", None),
    **{(Mode.ENFORCE, deny, Verdict.UNLISTED): ("SCMP_ACT_ERRNO", errno.ENOSYS) for deny in ("errno", "kill")},
    **{(Mode.SHADOW, deny, v): ("SCMP_ACT_LOG", None) for deny in ("errno", "kill")
       for v in (Verdict.REFUSE, Verdict.UNLISTED)},
}
BAD_ARCH_ACTION = {Mode.ENFORCE: loader.RET_KILL_PROCESS, Mode.SHADOW: loader.RET_LOG}


@dataclass
class Plan:
    entries: list[Entry] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def _cite(rule: SyscallRule) -> str:
    return f"{rule.id} ({rule.span.file}:{rule.span.line}): {rule.reason}"


# ------------------------------------------------------------------------------ planning


def _check_names(policy: Policy, plan: Plan) -> set[str]:
    """Diagnose names that are not syscalls here; return those a deny rule may drop."""
    foreign: set[str] = set()
    known = loader.known_syscalls(tuple(ARCHITECTURES)) | set(NEWER_SYSCALLS)
    for rule in policy.syscalls:
        for name in rule.names:
            where = f"syscalls {rule.action.value} ({rule.id})"
            if name in SOCKET_CALLS and rule.action is Action.ALLOW:
                plan.diagnostics.append(Diagnostic(
                    Severity.ERROR, f"{where}: '{name}' is governed by the 'sockets' statement",
                    location(rule.span), "list the families and types in 'sockets allow ...'",
                    code="syscall"))
            elif name not in known and loader.syscall_number("SCMP_ARCH_X86_64", name) != -1:
                severity = Severity.ERROR if rule.action is Action.ALLOW else Severity.NOTE
                foreign.add(name)
                plan.diagnostics.append(Diagnostic(
                    severity, f"{where}: '{name}' is not a syscall of x86_64 or aarch64",
                    location(rule.span), "32-bit and compat calls fail the seccomp target's "
                    "architecture check; remove the name", code="syscall"))
            elif name not in known:
                guess = closest(name, known)
                plan.diagnostics.append(Diagnostic(
                    Severity.ERROR, f"{where}: unknown syscall '{name}'", location(rule.span),
                    f"did you mean {guess}?" if guess else "see syscalls(2)", code="syscall"))
    return foreign


def _by_rules(policy: Policy, action: Action, skip: set[str]) -> dict[str, list[SyscallRule]]:
    out: dict[str, list[SyscallRule]] = {}
    for rule in sorted(policy.syscalls, key=lambda r: r.id):
        if rule.action is action:
            for name in (n for n in rule.names if n not in skip):
                out.setdefault(name, []).append(rule)
    return out


def _grouped(names_to_rules: Mapping[str, Sequence[SyscallRule]], verdict: Verdict) -> list[Entry]:
    groups: dict[tuple[str, ...], list[str]] = {}
    cites: dict[tuple[str, ...], str] = {}
    for name, rules in sorted(names_to_rules.items()):
        key = tuple(r.id for r in rules)
        groups.setdefault(key, []).append(name)
        cites[key] = "; ".join(_cite(r) for r in rules)
    return [Entry(tuple(names), verdict, cites[key]) for key, names in sorted(groups.items())]


def plan(policy: Policy) -> Plan:
    """The profile's entries, in review order: baseline, arguments, capabilities, rules."""
    out = Plan()
    foreign = _check_names(policy, out)
    if any(d.severity is Severity.ERROR for d in out.diagnostics):
        return out
    denied = _by_rules(policy, Action.DENY, foreign)
    allowed = {n: r for n, r in _by_rules(policy, Action.ALLOW, foreign).items() if n not in denied}
    for name, rules in sorted(_by_rules(policy, Action.ALLOW, foreign).items()):
        if name in denied:
            out.diagnostics.append(Diagnostic(
                Severity.NOTE, f"syscall '{name}': denied by {', '.join(r.id for r in denied[name])}"
                f" and allowed by {', '.join(r.id for r in rules)}; deny wins", location(rules[0].span),
                code="syscall"))
    decided = set(denied) | set(allowed)
    for group, names in BASELINE.items():
        kept = tuple(n for n in names if n not in decided)
        if kept:
            out.entries.append(Entry(kept, Verdict.ALLOW, f"baseline: {group} (clawpolicy's Node.js "
                                     "agent allowlist, backends/seccomp_baseline.py)"))
    if "personality" not in decided:
        out.entries.extend(Entry(("personality",), Verdict.ALLOW, "baseline: personality, the "
                                 "values Docker allows", (Arg(0, "SCMP_CMP_EQ", v),))
                           for v in PERSONALITY_VALUES)
    out.entries.extend(clone_entries(policy, decided))
    out.entries.extend(socket_entries(policy, [n for n in SOCKET_CALLS if n not in denied],
                                      out.diagnostics))
    out.entries.extend(_capability_entries(policy, decided, allowed, out))
    out.entries.extend(_grouped(allowed, Verdict.ALLOW))
    if "clone3" in denied:  # glibc falls back to clone() only on ENOSYS; EPERM breaks threads
        rules = denied.pop("clone3")
        out.entries.extend(_grouped({"clone3": rules}, Verdict.UNLISTED))
        out.diagnostics.append(Diagnostic(
            Severity.NOTE, "syscall 'clone3' is denied with ENOSYS, not EPERM", location(rules[0].span),
            "glibc creates threads with clone3 and falls back to the filtered clone() only on ENOSYS",
            code="syscall"))
    out.entries.extend(_grouped(denied, Verdict.REFUSE))
    if policy.mode is Mode.SHADOW:
        out.diagnostics.append(Diagnostic(
            Severity.NOTE, "seccomp shadow mode: every call the enforce profile would not allow "
            "is logged (audit type=1326, code=0x7ffc0000) and allowed", Location(policy.source),
            "run auditd: without it the kernel's printk rate limit drops most records; each "
            "logged call costs microseconds, so de-duplicate by syscall when reviewing",
            code="seccomp-shadow"))
    return out


def _capability_entries(policy: Policy, decided: set[str], allowed: Mapping[str, Sequence[SyscallRule]],
                        out: Plan) -> list[Entry]:
    needs: dict[str, list[str]] = {}
    for cap, names in sorted(CAPABILITY_SYSCALLS.items()):
        for name in names:
            needs.setdefault(name, []).append(cap)
    groups: dict[tuple[Verdict, tuple[str, ...]], list[str]] = {}
    for name, caps in sorted(needs.items()):
        kept = any(keeps(policy, c) for c in caps)
        if name in allowed and not kept:
            out.diagnostics.append(Diagnostic(
                Severity.NOTE, f"syscall '{name}' is allowed by {allowed[name][0].id} although "
                f"the policy does not keep {' or '.join(caps)}", location(allowed[name][0].span),
                "the rule overrides the capability-implied refusal", code="syscall"))
        if name not in decided:
            groups.setdefault((Verdict.ALLOW if kept else Verdict.REFUSE, tuple(caps)), []).append(name)
    source = capability_source(policy)
    entries = []
    for (verdict, needed), members in sorted(groups.items(), key=lambda g: (g[0][0].value, g[0][1])):
        what = " or ".join(needed)
        text = (f"{source}: keeps {what}" if verdict is Verdict.ALLOW
                else f"{source}: needs {what}, which the policy does not keep")
        entries.append(Entry(tuple(members), verdict, text))
    return entries


# ------------------------------------------------------------------------------ rendering


def profile_document(policy: Policy, entries: Sequence[Entry], options: CompileOptions) -> dict[str, Any]:
    deny = options.seccomp_deny_action
    default, default_errno = ACTIONS[(policy.mode, deny, Verdict.UNLISTED)]
    doc: dict[str, Any] = {"defaultAction": default, "architectures": list(ARCHITECTURES)}
    if default_errno is not None:
        doc["defaultErrnoRet"] = default_errno
    if policy.mode is Mode.ENFORCE:
        doc["flags"] = ["SECCOMP_FILTER_FLAG_LOG"]  # the kernel logs ERRNO only when asked
    syscalls = []
    for entry in entries:
        action, err = ACTIONS[(policy.mode, deny, entry.verdict)]
        item: dict[str, Any] = {"names": list(entry.names), "action": action, "comment": entry.comment}
        if err is not None:
            item["errnoRet"] = err
        if entry.args:
            item["args"] = [a.document() for a in entry.args]
        syscalls.append(item)
    doc["syscalls"] = syscalls
    return doc


def spo_document(policy: Policy, profile: Mapping[str, Any]) -> dict[str, Any]:
    """The SeccompProfile resource: the CRD has no defaultErrnoRet and no per-entry comment,
    so comments become annotations (entry-NNN) and the default errno is the runtime's, EPERM."""
    spec = {k: v for k, v in profile.items() if k not in ("defaultErrnoRet", "syscalls")}
    spec["syscalls"] = [{k: v for k, v in s.items() if k != "comment"} for s in profile["syscalls"]]
    annotations = {f"{ANNOTATION}policy": policy.name, f"{ANNOTATION}source": policy.source,
                   f"{ANNOTATION}mode": policy.mode.value}
    for i, s in enumerate(profile["syscalls"]):
        annotations[f"{ANNOTATION}entry-{i:03d}"] = clip(s["comment"])
    return {"apiVersion": SPO_API, "kind": "SeccompProfile",
            "metadata": {"name": seccomp_resource_name(policy.name), "annotations": annotations}, "spec": spec}


def _pfc_header(policy: Policy, arch: str, built: loader.Built, entries: Sequence[Entry],
                options: CompileOptions) -> str:
    tree = "binary tree" if built.optimize == loader.OPTIMIZE_BINARY_TREE else "priority order"
    lines = [(f"# clawpolicy {policy.name} ({policy.mode.value}): seccomp filter for {arch}, built "
              f"from profile.json by libseccomp {loader.libseccomp_version()} ({tree})."),
             ("# Install after prctl(PR_SET_NO_NEW_PRIVS, 1) with seccomp(SECCOMP_SET_MODE_FILTER, "
              "SECCOMP_FILTER_FLAG_LOG, &prog)."),
             "# Calls of other architectures (x86, x32, arm) get the invalid-architecture action."]
    if built.skipped:
        lines.append(f"# Unknown to this libseccomp, so left to the default action: "
                     f"{', '.join(sorted(set(built.skipped)))}.")
    lines.append("# What decides each non-baseline entry (rule IDs; profile.json has the reasons):")
    for entry in entries:
        if not entry.comment.startswith("baseline:"):
            action, err = ACTIONS[(policy.mode, options.seccomp_deny_action, entry.verdict)]
            lines.append(f"#   {', '.join(entry.names)}: {action}{f'({err})' if err else ''}"
                         f"{' if arguments match' if entry.args else ''}, "
                         f"by {entry.comment.split(' ', 1)[0]}")
    return "\n".join(dict.fromkeys(lines)) + "\n"


class SeccompBackend:
    name = "seccomp"
    summary = "seccomp: OCI/Docker profile, security-profiles-operator resource, raw BPF filters"
    enforces = True
    support: Mapping[Feature, Support] = support_tables.SECCOMP

    def compile(self, policy: Policy, options: CompileOptions) -> BackendResult:
        try:
            planned = plan(policy)
        except loader.LoaderError as exc:
            return BackendResult([], [Diagnostic(Severity.ERROR, str(exc), Location(policy.source),
                                                 code="seccomp")])
        result = BackendResult([], planned.diagnostics)
        if any(d.severity is Severity.ERROR for d in planned.diagnostics):
            return result
        profile = profile_document(policy, planned.entries, options)
        text = json.dumps(profile, indent=2, sort_keys=True, ensure_ascii=True) + "\n"
        result.artifacts.append(Artifact("profile.json", text.encode(), "application/json"))
        resource = spo_document(policy, profile)
        problem = annotations_problem("SeccompProfile", resource["metadata"]["annotations"])
        if problem is not None:
            return BackendResult([], [*result.diagnostics, Diagnostic(
                Severity.ERROR, f"{policy.name}: {problem}", Location(policy.source),
                "fewer or shorter syscall rules", code="seccomp")])
        spo = yaml.safe_dump(resource, sort_keys=True, allow_unicode=False,
                             default_flow_style=False, width=1 << 16)
        result.artifacts.append(Artifact("seccompprofile.yaml", spo.encode(), "application/yaml"))
        result.names.append(NameClaim("cluster-scoped SeccompProfile", seccomp_resource_name(policy.name),
                                      f"policy {policy.name}"))
        for scmp_arch, arch in ARCHITECTURES.items():
            try:
                built = loader.build_filter(profile, scmp_arch,
                                            bad_arch_action=BAD_ARCH_ACTION[policy.mode])
                bpf, pfc = loader.export(built)
            except loader.LoaderError as exc:
                result.diagnostics.append(Diagnostic(Severity.ERROR, f"seccomp {arch}: {exc}",
                                                     Location(policy.source), code="seccomp"))
                return BackendResult([], result.diagnostics)
            header = _pfc_header(policy, arch, built, planned.entries, options)
            result.artifacts.append(Artifact(f"filter-{arch}.bpf", bpf, "application/octet-stream"))
            result.artifacts.append(Artifact(f"filter-{arch}.pfc", (header + pfc).encode()))
        return result


BACKEND = SeccompBackend()
