"""The seccomp backend without a kernel: its decisions (the generated BPF run in the loader's
emulator, for x86_64 and aarch64, against an independent reading of the policy and of
profile.json), the upstream schemas, determinism, hostile input, and the libseccomp
fail-open of DESIGN.md. tests/kernel/test_seccomp_kernel.py loads the same filters."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import yaml
from shared_schemas import schema_path

from clawpolicy import seccomp_loader as loader
from clawpolicy.backends.base import CompileOptions, Feature, Level
from clawpolicy.backends.registry import check_support
from clawpolicy.backends.seccomp import BACKEND
from clawpolicy.backends.seccomp_baseline import BASELINE, CAPABILITY_SYSCALLS, blocks
from clawpolicy.cli import main
from clawpolicy.compiler import compile_paths
from clawpolicy.errors import Severity, render
from clawpolicy.ir import NETLINK_PROTOCOLS, Mode, Policy
from clawpolicy.lower import load_policies

REPO = Path(__file__).resolve().parents[2]
ARCHES = {"SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_AARCH64": "aarch64"}
FAM = {"unix": 1, "inet": 2, "inet6": 10, "netlink": 16, "packet": 17}
TYPE = {"stream": 1, "dgram": 2, "raw": 3, "seqpacket": 5}
CLOEXEC, NONBLOCK = 0o2000000, 0o4000
EPERM_RET = loader.RET_ERRNO | errno.EPERM
ENOSYS_RET = loader.RET_ERRNO | errno.ENOSYS


def _policy(tmp_path: Path, body: str, mode: str = "enforce") -> Policy:
    src = tmp_path / "p.claw"
    src.write_text(f"policy p {{\n mode {mode}\n applies-to host\n{body}\n}}\n")
    result = load_policies([src])
    assert result.ok, result.diagnostics
    return result.policies[0]


@dataclass
class Built:
    profile: dict[str, Any]
    spo: dict[str, Any]
    files: dict[str, bytes]
    diagnostics: list[Any]

    def program(self, arch: str) -> list[tuple[int, int, int, int]]:
        return loader.instructions(self.files[f"filter-{ARCHES[arch]}.bpf"])


def build(policy: Policy, options: CompileOptions = CompileOptions()) -> Built:
    result = BACKEND.compile(policy, options)
    errors = [d for d in result.diagnostics if d.severity is Severity.ERROR]
    assert not errors, errors
    files = {a.path: a.content for a in result.artifacts}
    return Built(json.loads(files["profile.json"]), yaml.safe_load(files["seccompprofile.yaml"]),
                 files, result.diagnostics)


def decide(built: Built, arch: str, name: str, *args: int) -> int:
    nr = loader.syscall_number(arch, name)
    assert nr >= 0, f"{name} is not a syscall on {arch}"
    return loader.run_bpf(built.program(arch), arch, nr, args).ret


# ------------------------------------------------------------------ independent readings


def socket_allowed(policy: Policy, family: int, kind: int, protocol: int = 0) -> bool:
    """What the policy says about socket(family, kind, protocol): the spec, written out again."""
    if family >= 2**32:
        return False  # junk in the upper half: refused, whatever the low half says
    caps = policy.capabilities
    net_raw = caps is not None and caps.drop_all and "net_raw" in caps.keep
    kinds = ([(k.family, k.type, k.protocol) for k in policy.sockets.allow] if policy.sockets else
             [("unix", None, None), ("inet", None, None), ("inet6", None, None), ("netlink", None, None)])
    t = kind & 0xF
    for fam, typ, proto in kinds:
        if FAM[fam] != family or (fam == "packet" and not net_raw):
            continue
        if fam in ("inet", "inet6") and t == TYPE["raw"] and not net_raw:
            continue
        wanted = {TYPE[typ]} if typ else set(range(16))
        if fam == "netlink" and (typ in ("dgram", "raw") or proto is not None):
            wanted = {2, 3}
        if proto is not None and protocol != NETLINK_PROTOCOLS[proto]:
            continue  # a 64-bit compare: upper-half junk is not NETLINK_ROUTE
        if t in wanted:
            return True
    return False


def _holds(arg: Mapping[str, Any], value: int) -> bool:
    v, v2 = arg["value"], arg.get("valueTwo", 0)
    return {"SCMP_CMP_EQ": value == v, "SCMP_CMP_NE": value != v, "SCMP_CMP_LT": value < v,
            "SCMP_CMP_LE": value <= v, "SCMP_CMP_GT": value > v, "SCMP_CMP_GE": value >= v,
            "SCMP_CMP_MASKED_EQ": value & v == v2}[arg["op"]]


def json_decision(profile: Mapping[str, Any], name: str, args: Sequence[int]) -> int:
    """profile.json read as its format says (entries AND their conditions); two entries with
    different actions matching one call would make the result depend on the runtime."""
    words = list(args) + [0] * 6
    hits = {loader.action_value(e["action"], e.get("errnoRet")) for e in profile["syscalls"]
            if name in e["names"] and all(_holds(a, words[a["index"]]) for a in e.get("args", ()))}
    assert len(hits) <= 1, f"{name}{tuple(args)}: entries overlap with actions {hits}"
    return hits.pop() if hits else loader.action_value(profile["defaultAction"],
                                                        profile.get("defaultErrnoRet"))


PROTOCOL_SWEEP = (*range(1, 24), 31, 32, 2**31, 2**32, 2**32 + 4, 2**32 + 9, 2**64 - 1)


def socket_sweep() -> Iterator[tuple[int, int, int]]:
    """(family, type, protocol); other protocols swept for netlink, the only family that
    names them (with fewer flag combinations: flags and protocol are separate arguments)."""
    for family in [*range(48), 2**31, 2**32 - 1, 2**32 + 2, 2**32 + 17, 2**64 - 1]:
        for t in range(16):
            for flags in (0, CLOEXEC, NONBLOCK, CLOEXEC | NONBLOCK, 0x100):
                yield family, t | flags, 0
                if family == FAM["netlink"] and flags in (0, CLOEXEC):
                    yield from ((family, t | flags, p) for p in PROTOCOL_SWEEP)


# ------------------------------------------------------------------ cases

SOCKETS_AND_CAPS = {
    "no statements": "",
    "server example sockets": "capabilities drop all keep net_bind_service\n sockets allow unix, "
    "inet stream, inet6 stream, inet dgram, inet6 dgram, netlink dgram",
    "workstation example sockets": "capabilities drop all keep net_bind_service\n sockets allow "
    "unix, inet stream, inet6 stream, inet dgram, inet6 dgram",
    "raw kept": "capabilities drop all keep net_raw\n sockets allow packet, inet raw, inet6, unix stream",
    "raw asked, not kept": "capabilities drop all\n sockets allow inet raw, packet dgram, inet stream",
    "netlink raw only": "sockets allow netlink raw",
    "netlink route": "sockets allow unix, inet stream, netlink route",
    "netlink protocols": "sockets allow netlink route, netlink audit, netlink generic, netlink smc",
    "netlink protocol and every netlink": "sockets allow netlink route, netlink, inet dgram",
    "netlink protocol and a type": "sockets allow netlink sock_diag, netlink stream, netlink dgram",
    "packet only, not kept": "sockets allow packet",
    "whole families": "sockets allow inet, inet6, unix",
}


def test_socket_decisions_match_the_policy_on_both_architectures(tmp_path: Path, subtests: Any) -> None:
    for label, body in SOCKETS_AND_CAPS.items():
        policy = _policy(tmp_path, body)
        built = build(policy)
        for arch in ARCHES:
            with subtests.test(msg=f"{label} {arch}"):
                wrong = []
                for call in ("socket", "socketpair"):
                    nr = loader.syscall_number(arch, call)
                    prog = built.program(arch)
                    for family, kind, proto in socket_sweep():
                        got = loader.run_bpf(prog, arch, nr, (family, kind, proto)).ret
                        want = loader.RET_ALLOW if socket_allowed(policy, family, kind, proto) else EPERM_RET
                        if got != want or json_decision(built.profile, call, (family, kind, proto)) != want:
                            wrong.append((call, family, hex(kind), proto, hex(got), hex(want)))
                assert not wrong, f"{len(wrong)} wrong decisions, e.g. {wrong[:5]}"


def test_raw_sockets_without_net_raw_are_a_warning_at_the_sockets_line(tmp_path: Path) -> None:
    built = build(_policy(tmp_path, SOCKETS_AND_CAPS["raw asked, not kept"]))
    warnings = [d for d in built.diagnostics if d.severity is Severity.WARNING]
    assert len(warnings) == 1 and "inet raw, packet dgram" in warnings[0].message
    assert warnings[0].location is not None and warnings[0].location.line == 5


CAP = "capabilities drop all keep net_bind_service"
CLONE_NEWUSER, CLONE_VM_THREAD = 0x10000000, 0x003D0F00  # glibc's pthread_create flags
SYSCALL_CASES: list[tuple[str, str, list[tuple[str, tuple[int, ...], int]]]] = [
    ("capabilities dropped", CAP, [
        ("mount", (), EPERM_RET), ("umount2", (), EPERM_RET), ("pivot_root", (), EPERM_RET),
        ("init_module", (), EPERM_RET), ("finit_module", (), EPERM_RET), ("delete_module", (), EPERM_RET),
        ("ptrace", (), EPERM_RET), ("process_vm_readv", (), EPERM_RET), ("settimeofday", (), EPERM_RET),
        ("clock_settime", (), EPERM_RET), ("adjtimex", (), EPERM_RET), ("reboot", (), EPERM_RET),
        ("kexec_load", (), EPERM_RET), ("bpf", (), EPERM_RET), ("perf_event_open", (), EPERM_RET),
        ("unshare", (), EPERM_RET), ("setns", (), EPERM_RET),
        ("clone", (CLONE_NEWUSER,), EPERM_RET), ("clone", (0x40000000 | 0x11,), EPERM_RET),
        ("clone", (CLONE_VM_THREAD,), loader.RET_ALLOW), ("clone", (0x11,), loader.RET_ALLOW),
        ("clone3", (), ENOSYS_RET), ("getppid", (), loader.RET_ALLOW),
        ("io_uring_setup", (), ENOSYS_RET), ("keyctl", (), ENOSYS_RET), ("userfaultfd", (), ENOSYS_RET),
        ("personality", (0xFFFFFFFF,), loader.RET_ALLOW), ("personality", (0x0400000,), ENOSYS_RET),
    ]),
    ("capabilities kept", "capabilities drop all keep sys_admin, sys_ptrace, sys_time, bpf", [
        ("mount", (), loader.RET_ALLOW), ("clone", (CLONE_NEWUSER,), loader.RET_ALLOW),
        ("clone3", (), loader.RET_ALLOW), ("ptrace", (), loader.RET_ALLOW),
        ("settimeofday", (), loader.RET_ALLOW), ("bpf", (), loader.RET_ALLOW),
        ("perf_event_open", (), loader.RET_ALLOW), ("init_module", (), EPERM_RET),
    ]),
    ("no capabilities statement: nothing is kept", "", [
        ("mount", (), EPERM_RET), ("ptrace", (), EPERM_RET), ("clone", (CLONE_NEWUSER,), EPERM_RET),
    ]),
    ("rules edit the baseline", CAP + '\n syscalls deny ioctl, socket reason "no ioctl" id no-ioctl'
     '\n syscalls allow ptrace, io_uring_setup, mseal reason "debugger" id dbg', [
        ("ioctl", (), EPERM_RET), ("socket", (2, 1), EPERM_RET), ("socketpair", (1, 1), loader.RET_ALLOW),
        ("ptrace", (), loader.RET_ALLOW), ("io_uring_setup", (), loader.RET_ALLOW),
        ("process_vm_readv", (), EPERM_RET),
    ]),
    ("deny clone3 keeps threads working", 'syscalls deny clone3 reason "no clone3" id no-clone3', [
        ("clone3", (), ENOSYS_RET), ("clone", (CLONE_VM_THREAD,), loader.RET_ALLOW),
    ]),
    ("deny overrides allow", 'syscalls deny ptrace reason "d" id d1\n syscalls allow ptrace reason "a" id a1', [
        ("ptrace", (), EPERM_RET),
    ]),
]


def test_syscall_decisions(tmp_path: Path, subtests: Any) -> None:
    for label, body, expectations in SYSCALL_CASES:
        built = build(_policy(tmp_path, body))
        for arch in ARCHES:
            for name, args, want in expectations:
                if loader.syscall_number(arch, name) < 0:
                    continue
                with subtests.test(msg=f"{label} {arch} {name}{args}"):
                    assert decide(built, arch, name, *args) == want
                    assert json_decision(built.profile, name, args) == want


def test_the_kill_option_and_shadow_mode(tmp_path: Path, subtests: Any) -> None:
    body = CAP + "\n sockets allow unix, inet stream"
    enforce = build(_policy(tmp_path, body))
    kill = build(_policy(tmp_path, body), CompileOptions(seccomp_deny_action="kill"))
    shadow = build(_policy(tmp_path, body, mode="shadow"))
    calls = [(n, ()) for names in (*BASELINE.values(), *CAPABILITY_SYSCALLS.values()) for n in names]
    calls += [("socket", (f, t, p)) for f, t, p in socket_sweep()] + [("io_uring_setup", ()), ("clone3", ())]
    for arch in ARCHES:
        with subtests.test(msg=arch):
            for name, args in calls:
                nr = loader.syscall_number(arch, name)
                if nr < 0:
                    continue
                e, k, s = (loader.run_bpf(b.program(arch), arch, nr, args).ret
                           for b in (enforce, kill, shadow))
                assert k == {EPERM_RET: loader.RET_KILL_PROCESS}.get(e, e), (name, args)
                assert s == (loader.RET_ALLOW if e == loader.RET_ALLOW else loader.RET_LOG), (name, args)
    assert shadow.profile["defaultAction"] == "SCMP_ACT_LOG" and "defaultErrnoRet" not in shadow.profile
    assert kill.profile["defaultAction"] == "SCMP_ACT_ERRNO" and kill.profile["defaultErrnoRet"] == 38


def test_other_architectures_are_refused(tmp_path: Path) -> None:
    """32-bit x86 (socketcall, ipc) and x32 never reach the rules: kill, or log in shadow."""
    for mode, want in (("enforce", loader.RET_KILL_PROCESS), ("shadow", loader.RET_LOG)):
        built = build(_policy(tmp_path, CAP, mode=mode))
        x86 = loader.instructions(built.files["filter-x86_64.bpf"])
        assert loader.run_bpf(x86, "SCMP_ARCH_X86", 102, (1, 0)).ret == want  # socketcall
        assert loader.run_bpf(x86, "SCMP_ARCH_X32", 41, (17, 3)).ret == want  # socket(AF_PACKET)
        assert loader.run_bpf(built.program("SCMP_ARCH_AARCH64"), "SCMP_ARCH_ARM", 281, (17,)).ret == want


# ------------------------------------------------------------------ profile invariants


def _examples() -> list[Policy]:
    result = load_policies(sorted((REPO / "examples").glob("*.claw")))
    assert result.ok
    return [p for policy in result.policies for p in (policy.with_mode(Mode.ENFORCE),
                                                        policy.with_mode(Mode.SHADOW))]


def test_profiles_never_depend_on_runtime_quirks(tmp_path: Path, subtests: Any) -> None:
    """No x32, no compat multiplexers, one condition per argument (runc ORs repeats), an EPERM
    that differs from the default errno, values a Kubernetes int64 holds, and entries that
    never overlap (so dropping those equal to the default changes nothing)."""
    policies = _examples() + [_policy(tmp_path, b) for b in SOCKETS_AND_CAPS.values()]
    for policy in policies:
        built = build(policy)
        with subtests.test(msg=f"{policy.name} {policy.mode.value} {policy.sockets}"):
            profile = built.profile
            assert profile["architectures"] == list(ARCHES)
            names = {n for e in profile["syscalls"] for n in e["names"]}
            assert not names & {"socketcall", "ipc"}
            for e in profile["syscalls"]:
                indexes = [a["index"] for a in e.get("args", ())]
                assert len(indexes) == len(set(indexes)), e
                assert all(0 <= a["value"] < 2**63 and a.get("valueTwo", 0) < 2**63 for a in e.get("args", ()))
                if e.get("errnoRet") == errno.EPERM:
                    assert profile.get("defaultErrnoRet") != errno.EPERM
            for call in ("socket", "socketpair", "clone"):
                for family, kind, protocol in socket_sweep():
                    json_decision(profile, call, (family, kind, protocol))  # asserts no overlap


def test_blocks_cover_ranges_exactly() -> None:
    for first, last in [(0, 0), (3, 9), (11, 15), (0, 15), (18, 2**32 - 1), (5, 5)]:
        width = 32
        got = list(blocks(first, last, width))
        spans = [(value, value + (~mask & (2**width - 1))) for mask, value in got]
        assert spans[0][0] == first and spans[-1][1] == last
        assert all(a[1] + 1 == b[0] for a, b in zip(spans, spans[1:], strict=False))  # contiguous, disjoint
        assert all(value & ~mask == 0 for mask, value in got)
        assert len(got) <= 2 * width


# ------------------------------------------------------------------ schemas


@pytest.fixture(scope="module")
def oci_validator() -> jsonschema.Validator:
    base = "https://opencontainers.example/schema/"
    registry: referencing.Registry[Any] = referencing.Registry()
    for name in ("config-linux.json", "defs-linux.json", "defs.json"):
        contents = json.loads(schema_path(f"oci/{name}").read_text())
        resource = referencing.Resource.from_contents(contents, referencing.jsonschema.DRAFT4)
        registry = registry.with_resource(base + name, resource)
    schema = {"$ref": base + "config-linux.json#/linux/properties/seccomp"}
    return jsonschema.Draft4Validator(schema, registry=registry)


@pytest.fixture(scope="module")
def spo_validator() -> jsonschema.Validator:
    crd = yaml.safe_load(schema_path("spo/seccompprofile.yaml").read_text())
    assert crd["spec"]["scope"] == "Cluster"
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return jsonschema.Draft4Validator(version["schema"]["openAPIV3Schema"])


def test_artifacts_validate_against_upstream_schemas(tmp_path: Path, oci_validator: jsonschema.Validator,
                                                     spo_validator: jsonschema.Validator, subtests: Any) -> None:
    policies = _examples() + [_policy(tmp_path, b) for b in SOCKETS_AND_CAPS.values()]
    for policy in policies:
        for options in (CompileOptions(), CompileOptions(seccomp_deny_action="kill")):
            built = build(policy, options)
            with subtests.test(msg=f"{policy.name} {policy.mode.value} {options.seccomp_deny_action}"):
                assert not list(oci_validator.iter_errors(built.profile))
                assert not list(spo_validator.iter_errors(built.spo))
                # the validator must be able to fail: an invalid action is caught
                broken = {**built.profile, "defaultAction": "SCMP_ACT_MAYBE"}
                assert list(oci_validator.iter_errors(broken))
                assert built.spo["apiVersion"] == "security-profiles-operator.x-k8s.io/v1"
                assert built.spo["kind"] == "SeccompProfile" and "namespace" not in built.spo["metadata"]


def test_spo_annotations_name_the_rules(tmp_path: Path) -> None:
    built = build(_policy(tmp_path, CAP + '\n syscalls deny ptrace reason "no debuggers" id no-debug'))
    notes = built.spo["metadata"]["annotations"]
    entries = [v for k, v in sorted(notes.items()) if k.startswith("clawpolicy.dev/entry-")]
    assert entries == [e["comment"] for e in built.profile["syscalls"]]
    assert any(v.startswith("no-debug (") and v.endswith("no debuggers") for v in entries)
    assert all("comment" not in s for s in built.spo["spec"]["syscalls"])


# ------------------------------------------------------------------ determinism, text


def test_output_is_deterministic_across_processes(tmp_path: Path) -> None:
    code = ("import hashlib, sys; from clawpolicy.backends.seccomp import BACKEND;"
            "from clawpolicy.backends.base import CompileOptions; from clawpolicy.lower import load_policies;"
            "from pathlib import Path; p = load_policies([Path(sys.argv[1])]).policies[0];"
            "[print(a.path, hashlib.sha256(a.content).hexdigest()) for a in BACKEND.compile(p, CompileOptions()).artifacts]")
    src = "examples/openclaw-server.claw"
    runs = {subprocess.run([sys.executable, "-c", code, src], capture_output=True, text=True, check=True,
                           cwd=REPO).stdout for _ in range(2)}
    assert len(runs) == 1 and "filter-x86_64.bpf" in runs.pop()
    policy = load_policies([REPO / "examples/openclaw-server.claw"]).policies[0]
    reordered = replace_syscalls(policy)
    assert build(policy).files == build(reordered).files


def replace_syscalls(policy: Policy) -> Policy:
    return policy.model_copy(update={"syscalls": tuple(reversed(policy.syscalls)),
                                     "rules": tuple(reversed(policy.rules))})


HOSTILE = [
    'quote " and backslash \\\\ and } ] ) and a , comma',
    "yaml: - item # comment &anchor *alias !!python/object/apply:os.system ['id'] %TAG @ `x`",
    "{{ template }} ${shell} $(cmd) <script>alert(1)</script>",
    "bidi \u202e override, zero-width \u200b, emoji \U0001f600, NUL-like \\u0000",
    '"}], "defaultAction": "SCMP_ACT_ALLOW", "x": [{"',
]


def test_hostile_reasons_stay_text(tmp_path: Path, subtests: Any) -> None:
    for reason in HOSTILE:
        escaped = reason.replace("\\", "\\\\").replace('"', '\\"')
        policy = _policy(tmp_path, f'syscalls deny ptrace reason "{escaped}" id evil')
        built = build(policy)
        with subtests.test(msg=reason[:30]):
            comment = next(e["comment"] for e in built.profile["syscalls"] if "ptrace" in e["names"])
            assert comment.endswith(": " + reason)
            assert built.profile["defaultAction"] == "SCMP_ACT_ERRNO"
            assert list(built.profile) == ["architectures", "defaultAction", "defaultErrnoRet", "flags",
                                           "syscalls"]
            assert reason in built.spo["metadata"]["annotations"].values() or any(
                v.endswith(reason) for v in built.spo["metadata"]["annotations"].values())
            for path in ("profile.json", "seccompprofile.yaml", "filter-x86_64.pfc"):
                built.files[path].decode("ascii")  # non-ASCII is escaped, never raw
            assert reason not in built.files["filter-x86_64.pfc"].decode()


def test_hostile_syscall_names_are_errors_with_the_source_line(tmp_path: Path, subtests: Any) -> None:
    cases = [
        ("syscalls allow ptrce reason \"typo\"", "unknown syscall 'ptrce'", "did you mean ptrace?", Severity.ERROR),
        ("syscalls deny not_a_syscall reason \"x\"", "unknown syscall 'not_a_syscall'", None, Severity.ERROR),
        ("syscalls allow socketcall reason \"x\"", "not a syscall of x86_64 or aarch64", None, Severity.ERROR),
        ("syscalls deny socketcall reason \"x\"", "not a syscall of x86_64 or aarch64", None, Severity.NOTE),
        ("syscalls allow socket reason \"x\"", "governed by the 'sockets' statement", None, Severity.ERROR),
    ]
    for body, message, hint, severity in cases:
        with subtests.test(msg=body):
            src = tmp_path / "h.claw"
            src.write_text(f"policy h {{\n mode enforce\n applies-to host\n {body}\n}}\n")
            result = compile_paths([src], ["seccomp"])
            found = [d for d in result.diagnostics if message in d.message]
            assert len(found) == 1 and found[0].severity is severity
            assert found[0].location is not None and found[0].location.line == 4
            if hint:
                assert found[0].hint == hint
            text = render(found, result.sources)
            assert f"h.claw:4:2: {severity.value}" in text and body in text
            assert result.ok is (severity is not Severity.ERROR)


def test_cli_writes_nothing_on_a_bad_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    Path("bad.claw").write_text('policy bad {\n applies-to host\n syscalls deny ptrace, bogus reason "r"\n}\n')
    assert main(["compile", "bad.claw", "-t", "seccomp"]) == 1
    assert "unknown syscall 'bogus'" in capsys.readouterr().err
    assert not Path("generated").exists()


# ------------------------------------------------------------------ support and pitfalls


def test_connect_destinations_are_declared_unenforceable(tmp_path: Path) -> None:
    assert BACKEND.support[Feature.CIDR_PORT].level is Level.NO
    assert BACKEND.support[Feature.SOCKETS].level is Level.YES
    policy = _policy(tmp_path, 'allow egress to 192.0.2.1 port 443/tcp reason "api" id api')
    diags = check_support(policy, ["seccomp"])
    assert any(d.severity is Severity.WARNING and d.message.startswith("api:") and
               "connect()" in (d.hint or "") for d in diags)
    assert not [d for d in check_support(policy, ["seccomp", "nftables"]) if "api" in d.message]


def test_libseccomp_fail_open_cannot_arise_with_our_options(tmp_path: Path) -> None:
    """DESIGN.md: default ALLOW + x32 + a socketcall rule + the flat layout loses the x86_64
    argument rules. Reproduce it (so this check can see it), then show our options do not."""
    trap = {"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["socketcall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                         {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                          "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}]}
    results = {}
    for optimize in (loader.OPTIMIZE_PRIORITY, loader.OPTIMIZE_BINARY_TREE):
        bpf, _ = loader.export(loader.build_filter(trap, optimize=optimize))
        results[optimize] = loader.run_bpf(bpf, "SCMP_ARCH_X86_64", 41, (2, 1, 0)).ret
    assert results[loader.OPTIMIZE_BINARY_TREE] == EPERM_RET
    if results[loader.OPTIMIZE_PRIORITY] == EPERM_RET:
        pytest.skip("this libseccomp no longer fails open with the flat layout")
    assert results[loader.OPTIMIZE_PRIORITY] == loader.RET_ALLOW  # the bug, reproduced
    for policy in _examples():
        built = build(policy)
        header = built.files["filter-x86_64.pfc"].decode()
        assert "(binary tree)" in header and "X32" not in json.dumps(built.profile)
        x86 = built.program("SCMP_ARCH_X86_64")
        refused = loader.RET_LOG if policy.mode is Mode.SHADOW else EPERM_RET
        assert loader.run_bpf(x86, "SCMP_ARCH_X86_64", 41, (2, 1 | CLOEXEC, 0)).ret == loader.RET_ALLOW
        assert loader.run_bpf(x86, "SCMP_ARCH_X86_64", 41, (2, 3, 1)).ret == refused
        assert loader.run_bpf(x86, "SCMP_ARCH_X86_64", 41, (17, 3, 0)).ret == refused


def test_missing_libseccomp_is_an_error_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(*_: Any, **__: Any) -> Any:
        raise loader.LoaderError("libseccomp is not available (test)")

    monkeypatch.setattr(loader, "build_filter", unavailable)
    result = BACKEND.compile(_policy(tmp_path, CAP), CompileOptions())
    assert not result.artifacts
    assert [d.message for d in result.diagnostics if d.severity is Severity.ERROR] == [
        "seccomp x86_64: libseccomp is not available (test)"]


def test_examples_compile_to_six_files(tmp_path: Path) -> None:
    for policy in _examples():
        result = BACKEND.compile(policy, CompileOptions())
        assert sorted(a.path for a in result.artifacts) == [
            "filter-aarch64.bpf", "filter-aarch64.pfc", "filter-x86_64.bpf", "filter-x86_64.pfc",
            "profile.json", "seccompprofile.yaml"]



def test_cli_deny_action_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("k.claw").write_text("policy k {\n mode enforce\n applies-to host\n sockets allow unix\n}\n")
    assert main(["compile", "k.claw", "-t", "seccomp", "--seccomp-deny-action", "kill"]) == 0
    profile = json.loads(Path("generated/k/seccomp/profile.json").read_text())
    actions = {e["action"] for e in profile["syscalls"]}
    assert "SCMP_ACT_KILL_PROCESS" in actions and "SCMP_ACT_ERRNO" in actions  # clone3 stays ENOSYS
    assert main(["compile", "k.claw", "-t", "seccomp", "--seccomp-deny-action", "maybe"]) == 2
