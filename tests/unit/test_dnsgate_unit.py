"""The DNS gate's install artifacts (clawpolicy/backends/dnsgate.py): the systemd unit passes
`systemd-analyze verify` with nothing at all on stderr (it exits 0 on invalid values, so any
output is a failure), keeps only the two capabilities the gate needs, and carries the
upstreams and mode; the resolv.conf line points at the gate."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from policy_snippets import snippet_policy

from clawpolicy.backends import dnsgate
from clawpolicy.backends.base import CompileOptions
from clawpolicy.ir import Mode, Policy

BODY = 'dns local\nallow egress to api.example, *.chat.example port 443/tcp reason "r"'


def _unit(policy: Policy, **options: object) -> str:
    result = dnsgate.BACKEND.compile(policy, CompileOptions(**options))  # type: ignore[arg-type]
    (unit,) = [a for a in result.artifacts if a.path.endswith(".service")]
    return unit.content.decode()


def _exec_start(unit: str) -> list[str]:
    line = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    return re.findall(r'"((?:[^"\\]|\\.)*)"', line)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_unit_verifies_without_a_word(tmp_path: Path, subtests: pytest.Subtests) -> None:
    cases = {
        "enforce": (snippet_policy(tmp_path, BODY), {}),
        "shadow-upstreams": (snippet_policy(tmp_path, BODY).with_mode(Mode.SHADOW),
                             {"dns_upstreams": ("10.0.0.53", "[fd00::53]:5353"), "fqdn_timeout": 30}),
    }
    for name, (policy, options) in cases.items():
        with subtests.test(case=name):
            unit = _unit(policy, **options)
            # verify needs the command to exist: point it at this checkout's, nothing else changes
            local = unit.replace(f'"{dnsgate.COMMAND}"', f'"{Path(sys.executable).parent / "clawpolicy"}"')
            path = tmp_path / dnsgate.unit_name(policy)
            path.write_text(local)
            r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)],
                               capture_output=True, text=True)
            assert (r.returncode, r.stderr, r.stdout) == (0, "", "")


def test_unit_contents(tmp_path: Path) -> None:
    policy = snippet_policy(tmp_path, BODY)
    unit = _unit(policy, dns_upstreams=("10.0.0.53", "10.0.0.54:5353"), fqdn_timeout=45)
    assert _exec_start(unit) == [
        dnsgate.COMMAND, "dns", "serve", "/etc/clawpolicy/p.claw", "--policy", "p", "--listen",
        "127.0.0.1:53", "--fqdn-timeout", "45", "--upstream", "10.0.0.53", "--upstream",
        "10.0.0.54:5353", "--mode", "enforce"]
    assert "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE\n" in unit
    assert "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE\n" in unit
    assert "PrivateUsers" not in unit and "NoNewPrivileges=yes" in unit
    assert "IPAddressDeny=any\nIPAddressAllow=localhost 10.0.0.53 10.0.0.54\n" in unit
    assert "IPAddressDeny" not in _unit(policy)  # upstreams unknown: not restricted
    without = _exec_start(_unit(policy))
    assert without[-4:] == ["--resolv-conf", "/etc/clawpolicy/upstreams.conf", "--mode", "enforce"]
    shadow = _exec_start(_unit(policy.with_mode(Mode.SHADOW)))
    assert shadow[-2:] == ["--mode", "shadow"]


def test_resolv_conf_and_when_there_is_nothing_to_resolve(tmp_path: Path) -> None:
    policy = snippet_policy(tmp_path, BODY)
    files = {a.path: a.content.decode() for a in dnsgate.BACKEND.compile(policy, CompileOptions()).artifacts}
    assert [x for x in files["resolv.conf"].splitlines() if not x.startswith("#")] == [
        "nameserver 127.0.0.1", "options edns0"]
    plain = snippet_policy(tmp_path, 'allow egress to 192.0.2.1 reason "r"')
    assert dnsgate.BACKEND.compile(plain, CompileOptions()).artifacts == []
    resolve_only = snippet_policy(tmp_path, 'dns resolve probe.example reason "r"')
    assert len(dnsgate.BACKEND.compile(resolve_only, CompileOptions()).artifacts) == 2


def test_hostile_source_path_stays_in_a_comment(tmp_path: Path) -> None:
    policy = snippet_policy(tmp_path, BODY).model_copy(update={"source": 'x\n[Service]\nExecStartPre=/bin/sh "%n'})
    unit = _unit(policy)
    live = [x for x in unit.splitlines() if not x.startswith("#")]
    assert live.count("[Service]") == 1 and not [x for x in live if x.startswith("ExecStartPre")]
