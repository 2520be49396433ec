"""Real denial log lines from this kernel, explained: an nftables ruleset (enforce and shadow)
in a lab namespace drops or would drop a packet, and a child under the shadow seccomp filter
makes a logged call; the lines are read from /dev/kmsg and `explain` must name the rule.

The kernel logs `log` statements of non-initial namespaces only with
net.netfilter.nf_log_all_netns=1 (set here, restored after) and a logger registered for the
family (/proc/sys/net/netfilter/nf_log/2 and /10: nf_log_syslog). Seccomp LOG records need
`log` in kernel.seccomp.actions_logged. With CLAWPOLICY_REGENERATE=1 the captured lines are
saved to tests/data/logs/captured-kmsg.txt, the fixture the unit tests parse without root.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kernel_io import kmsg
from netlab import Lab, Probe
from regenerate import regenerate

from clawpolicy.backends.base import CompileOptions
from clawpolicy.backends.nftables import render
from clawpolicy.backends.seccomp import BACKEND as SECCOMP
from clawpolicy.ir import Mode, Policy
from clawpolicy.lower import load_policies
from clawpolicy.operate import explain, logparse

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests/data/logs"
ALL_NETNS = Path("/proc/sys/net/netfilter/nf_log_all_netns")
AGENT = ("198.51.100.1", "fd00:a9e::1")


def _policy() -> Policy:
    loaded = load_policies([DATA / "logdemo.claw"])
    assert loaded.ok, loaded.diagnostics
    return loaded.policies[0]


@contextlib.contextmanager
def _log_all_netns() -> Iterator[None]:
    for family in ("2", "10"):
        logger = Path(f"/proc/sys/net/netfilter/nf_log/{family}")
        if logger.exists() and logger.read_text().strip() == "NONE":
            subprocess.run(["modprobe", "nf_log_syslog"], capture_output=True)
            if logger.read_text().strip() == "NONE":
                pytest.skip(f"no kernel logger for family {family} (nf_log_syslog not loadable)")
    if not ALL_NETNS.exists():
        pytest.skip("net.netfilter.nf_log_all_netns missing: nft logs from namespaces unavailable")
    old = ALL_NETNS.read_text().strip()
    ALL_NETNS.write_text("1")
    try:
        yield
    finally:
        ALL_NETNS.write_text(old)


def _save(name: str, lines: list[str]) -> None:
    if regenerate():  # only CLAWPOLICY_REGENERATE=1, and never under CI
        path = DATA / name
        old = path.read_text().splitlines() if path.exists() else []
        path.write_text("\n".join(dict.fromkeys(old + lines)) + "\n")


def test_nftables_denials_are_explained(subtests: pytest.FixtureRequest) -> None:
    policy = _policy()
    probes = [Probe("egress", "198.51.100.66", "tcp", 443), Probe("egress", "198.51.100.99", "udp", 53)]
    expected = {("no-exfil-host", "egress tcp 198.51.100.66:443"), ("default-egress", "egress udp 198.51.100.99:53")}
    with _log_all_netns(), Lab(peer_addresses=["198.51.100.66", "198.51.100.99"], agent_addresses=AGENT) as lab:
        for mode, verdict in ((Mode.ENFORCE, "deny"), (Mode.SHADOW, "would-deny")):
            with subtests.test(msg=mode.value):  # type: ignore[attr-defined]
                lab.load_ruleset(render(policy.with_mode(mode), CompileOptions()))
                with kmsg() as lines:
                    passed = lab.probe(probes, timeout=0.3)
                assert passed == [mode is Mode.SHADOW] * 2
                ours = [line for line in lines if f"clawpolicy:{policy.name}:" in line]
                assert ours, f"no log line from the namespace in /dev/kmsg ({len(lines)} lines read)"
                _save("captured-kmsg.txt", ours)
                result = explain.explain(logparse.parse_lines(ours), [policy])
                got = {(f.rule, f.what) for f in result.findings}
                assert got == expected, result.findings
                for f in result.findings:
                    assert f.verdict == verdict and f.mechanism == "nftables" and f.note is None
                    assert "logdemo.claw:" in (f.where or "") and f.reason


CHILD = """
import ctypes, json, sys
from clawpolicy import seccomp_loader
seccomp_loader.load_profile(json.loads(open(sys.argv[1]).read()))
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.socket(17, 3, 0)  # AF_PACKET, SOCK_RAW: refused by the policy, logged in shadow
print(fd >= 0)
"""


def test_seccomp_log_record_is_explained(tmp_path: Path) -> None:
    logged = Path("/proc/sys/kernel/seccomp/actions_logged")
    if not logged.exists() or "log" not in logged.read_text().split():
        pytest.skip("kernel.seccomp.actions_logged lacks 'log': SCMP_ACT_LOG records are not written")
    policy = _policy().with_mode(Mode.SHADOW)
    result = SECCOMP.compile(policy, CompileOptions())
    profile = next(a for a in result.artifacts if a.path == "profile.json")
    (tmp_path / "profile.json").write_bytes(profile.content)
    ours: list[str] = []
    for attempt in range(6):  # without auditd the kernel rate-limits these records (printk
        time.sleep(2 * bool(attempt))  # ratelimit, shared with every other test): wait, retry
        with kmsg() as lines:
            child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "profile.json")],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert out.strip() == "True"  # shadow: logged, not refused
        ours = [line for line in lines if "type=1326" in line and f"pid={child.pid} " in line
                and "syscall=41 " in line and "code=0x7ffc0000" in line]
        if ours:
            break
    assert ours, "no SCMP_ACT_LOG record for socket() in /dev/kmsg"
    _save("captured-kmsg.txt", ours[:1])
    # the confined child is this interpreter: its records are the policy's, by exe
    explained = explain.explain(logparse.parse_lines(ours[:1]), [policy],
                                explain.Processes(exes=(os.path.realpath(sys.executable),)))
    (finding,) = explained.findings
    assert (finding.mechanism, finding.verdict, finding.rule) == ("seccomp", "LOG", "sockets")
    assert finding.pids == [child.pid] and finding.exe == os.path.realpath(sys.executable)
    assert finding.what.startswith("syscall socket (41) on x86_64")
    assert json.dumps(explained.to_json())
