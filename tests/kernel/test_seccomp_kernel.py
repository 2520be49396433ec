"""The generated seccomp filters in the kernel: each one installed in a child process of its
own (seccomp_child.py) from profile.json through our loader into libseccomp, as a runtime
would, and from filter-x86_64.bpf with seccomp(2), as a launcher would; then socket() calls
probed, and a Python workload and Node.js run under it. Root, x86_64."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kernel_io import write_seccomp

from clawpolicy import seccomp_loader
from clawpolicy.backends.base import CompileOptions
from clawpolicy.ir import Mode, Policy
from clawpolicy.lower import load_policies

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.uname().machine != "x86_64",
                                                  reason="filters are probed on x86_64")]
REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).resolve().parent / "seccomp_child.py"
CLOEXEC, NONBLOCK = 0o2000000, 0o4000
# Calls root can make without seccomp (so 0 = allowed, EPERM = the filter said no).
CALLS: dict[str, list[int]] = {
    "packet raw": [17, 3, 0],
    "inet raw": [2, 3, 1],  # IPPROTO_ICMP
    "inet6 raw": [10, 3, 58],  # IPPROTO_ICMPV6
    "netlink raw": [16, 3, 0],  # NETLINK_ROUTE, what getifaddrs opens
    "netlink dgram": [16, 2, 0],
    "netlink raw audit": [16, 3, 9],
    "netlink dgram sock_diag": [16, 2, 4],
    "inet stream|cloexec": [2, 1 | CLOEXEC, 0],
    "inet6 dgram|nonblock": [10, 2 | NONBLOCK, 0],
    "unix stream (socketpair)": [1, 1, 0],
}
EXTRA = {"alg seqpacket": [38, 5, 0], "vsock stream": [40, 1, 0]}  # the kernel may lack these
NODE_SCRIPT = r"""
const net = require("net"), fs = require("fs"), os = require("os"), cp = require("child_process");
const { Worker } = require("worker_threads");
const server = net.createServer(c => c.on("data", d => c.end(d.toString().toUpperCase())));
server.listen(0, "127.0.0.1", () => {
  const client = net.connect(server.address().port, "127.0.0.1", () => client.write("hello"));
  client.on("data", reply => {
    const file = `${os.tmpdir()}/clawpolicy-seccomp-${process.pid}`;
    fs.writeFileSync(file, reply);
    const back = fs.readFileSync(file, "utf8");
    fs.unlinkSync(file);
    const child = cp.execFileSync(process.execPath, ["-e", "process.stdout.write('child')"]);
    const worker = new Worker("require('worker_threads').parentPort.postMessage(6 * 7)", { eval: true });
    worker.on("message", n => {
      console.log(`node ok ${back} ${child} ${n}`);
      worker.terminate(); server.close();
    });
  });
});
"""


def _child(directory: Path, how: str, *args: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    source = (["--profile", str(directory / "profile.json")] if how == "profile" else
              ["--log", "--bpf", str(directory / "filter-x86_64.bpf")])
    return subprocess.run([sys.executable, str(CHILD), *source, *args], capture_output=True,
                          text=True, timeout=timeout)


def _probe(directory: Path, how: str, calls: dict[str, list[int]]) -> dict[str, int]:
    done = _child(directory, how, "probe", json.dumps(list(calls.values())))
    assert done.returncode == 0, done.stderr
    raw = json.loads(done.stdout)
    return {label: raw[",".join(map(str, call))] for label, call in calls.items()}


def _examples() -> list[Policy]:
    result = load_policies(sorted((REPO / "examples").glob("*.claw")))
    assert result.ok, result.diagnostics
    return result.policies


# every example allows `netlink route` (Node's os.networkInterfaces) and no other protocol
REFUSED_BY_EXAMPLE = {
    name: {"packet raw", "inet raw", "inet6 raw", "netlink raw audit", "netlink dgram sock_diag",
           "alg seqpacket", "vsock stream"}
    for name in ("openclaw-server", "openclaw-workstation", "openclaw-k8s")
}
TABLE: list[tuple[str, str, set[str]]] = [
    ("baseline sockets, no capabilities", "", {"packet raw", "inet raw", "inet6 raw", "alg seqpacket",
                                               "vsock stream"}),
    ("raw kept", "capabilities drop all keep net_raw\n sockets allow packet, inet raw, unix",
     {"inet6 raw", "netlink raw", "netlink dgram", "netlink raw audit", "netlink dgram sock_diag",
      "inet stream|cloexec", "inet6 dgram|nonblock", "alg seqpacket", "vsock stream"}),
    ("netlink protocols", "sockets allow unix, inet, netlink route, netlink sock_diag",
     {"packet raw", "inet raw", "inet6 raw", "inet6 dgram|nonblock", "netlink raw audit",
      "alg seqpacket", "vsock stream"}),
    ("raw asked without net_raw", "capabilities drop all\n sockets allow inet raw, inet stream, unix, netlink raw",
     {"packet raw", "inet raw", "inet6 raw", "inet6 dgram|nonblock", "alg seqpacket", "vsock stream"}),
    ("socket denied by a rule", 'sockets allow unix, inet\n syscalls deny socket reason "no new sockets"',
     set(CALLS) - {"unix stream (socketpair)"} | set(EXTRA)),
]


def _check(directory: Path, refused: set[str], mode: Mode, subtests: Any, label: str) -> None:
    for how in ("profile", "bpf"):
        with subtests.test(msg=f"{label} via {how}"):
            got = _probe(directory, how, {**CALLS, **EXTRA})
            if mode is Mode.SHADOW:  # nothing is refused; everything root can do works
                assert {k: v for k, v in got.items() if k in CALLS and v} == {}
                assert errno.EPERM not in got.values()
                continue
            wrong = {k: os.strerror(v) if v else "ok" for k, v in got.items()
                     if (v == errno.EPERM) != (k in refused)}
            assert not wrong, f"unexpected decisions: {wrong}"
            assert {k: v for k, v in got.items() if k in CALLS and k not in refused and v} == {}


def test_examples_in_the_kernel(tmp_path: Path, subtests: Any) -> None:
    for policy in _examples():
        for mode in (Mode.ENFORCE, Mode.SHADOW):
            directory = write_seccomp(policy.with_mode(mode), tmp_path / policy.name / mode.value)
            _check(directory, REFUSED_BY_EXAMPLE[policy.name], mode, subtests, f"{policy.name} {mode.value}")


def test_table_in_the_kernel(tmp_path: Path, subtests: Any) -> None:
    for n, (label, body, refused) in enumerate(TABLE):
        src = tmp_path / f"t{n}.claw"
        src.write_text(f"policy t{n} {{\n mode enforce\n applies-to host\n {body}\n}}\n")
        loaded = load_policies([src])
        assert loaded.ok, loaded.diagnostics
        _check(write_seccomp(loaded.policies[0], tmp_path / f"t{n}"), refused, Mode.ENFORCE, subtests, label)


def test_kill_option_kills_the_process(tmp_path: Path) -> None:
    policy = _examples()[0].with_mode(Mode.ENFORCE)
    directory = write_seccomp(policy, tmp_path, CompileOptions(seccomp_deny_action="kill"))
    for how in ("profile", "bpf"):
        ok = _probe(directory, how, {"inet stream|cloexec": CALLS["inet stream|cloexec"]})
        assert ok == {"inet stream|cloexec": 0}
        killed = _child(directory, how, "probe", json.dumps([CALLS["packet raw"]]))
        assert killed.returncode == -signal.SIGSYS, (how, killed.returncode, killed.stderr)


@pytest.mark.parametrize("mode", [Mode.ENFORCE, Mode.SHADOW])
def test_workloads_run_under_the_filters(tmp_path: Path, mode: Mode, subtests: Any) -> None:
    node = shutil.which("node")
    for policy in _examples():
        directory = write_seccomp(policy.with_mode(mode), tmp_path / policy.name)
        for how in ("profile", "bpf"):
            with subtests.test(msg=f"python {policy.name} via {how}"):
                done = _child(directory, how, "workload")
                assert done.returncode == 0 and "workload ok" in done.stdout, done.stderr[-2000:]
            with subtests.test(msg=f"node {policy.name} via {how}"):
                if node is None:  # visible in the report (-ra), never a silent pass
                    pytest.skip("node is not installed: the Node.js workload was not run")
                done = _child(directory, how, "exec", "--", node, "-e", NODE_SCRIPT)
                assert done.returncode == 0, done.stderr[-2000:]
                assert done.stdout.strip() == "node ok HELLO child 42"


def test_libseccomp_fail_open_is_avoided_in_the_kernel(tmp_path: Path, subtests: Any) -> None:
    """DESIGN.md's trap (default ALLOW, x86 + x32, a socketcall rule) loaded flat lets
    socket(AF_INET) through in this kernel; the binary tree, our builder's only layout, holds.

    The examples' own profiles are checked first, under both layouts (runtimes load
    profile.json with libseccomp's default, flat optimizer), so a libseccomp that no longer
    reproduces the trap (the skip at the end) never skips this check."""
    for policy in _examples():
        directory = write_seccomp(policy.with_mode(Mode.ENFORCE), tmp_path / policy.name)
        refused = REFUSED_BY_EXAMPLE[policy.name]
        calls = json.dumps([CALLS[label] for label in sorted(refused) if label in CALLS])
        for optimize in (seccomp_loader.OPTIMIZE_PRIORITY, seccomp_loader.OPTIMIZE_BINARY_TREE):
            with subtests.test(msg=f"{policy.name} optimizer {optimize}"):
                done = subprocess.run([sys.executable, str(CHILD), "--profile",
                                       str(directory / "profile.json"), "--optimize", str(optimize),
                                       "probe", calls], capture_output=True, text=True, timeout=60)
                assert done.returncode == 0, done.stderr
                got = json.loads(done.stdout)
                assert got and all(v == errno.EPERM for v in got.values()), got
    trap = {"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["socketcall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                         {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                          "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}]}
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(trap))
    call = json.dumps([CALLS["inet stream|cloexec"]])
    results = {}
    for optimize in (seccomp_loader.OPTIMIZE_PRIORITY, seccomp_loader.OPTIMIZE_BINARY_TREE):
        done = subprocess.run([sys.executable, str(CHILD), "--profile", str(path), "--optimize",
                               str(optimize), "probe", call], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        results[optimize] = next(iter(json.loads(done.stdout).values()))
    assert results[seccomp_loader.OPTIMIZE_BINARY_TREE] == errno.EPERM
    if results[seccomp_loader.OPTIMIZE_PRIORITY] == errno.EPERM:
        pytest.skip("this libseccomp no longer fails open with the flat layout (the examples' "
                    "own filters were checked above)")
    assert results[seccomp_loader.OPTIMIZE_PRIORITY] == 0  # reproduced: the rule was lost
