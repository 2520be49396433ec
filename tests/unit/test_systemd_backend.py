"""The systemd target (backends/systemd.py): every drop-in passes `systemd-analyze verify` with
nothing on stderr (it exits 0 on invalid assignments, so any output fails), a deliberately
broken one is caught the same way, hostile values never become settings, and what systemd
cannot express is said, not pretended."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from policy_snippets import snippet_policy

from clawpolicy.backends import systemd
from clawpolicy.backends.base import CompileOptions
from clawpolicy.backends.registry import targets_for
from clawpolicy.cli import main
from clawpolicy.errors import Severity
from clawpolicy.ir import Mode, Policy

FULL = "\n".join([
    'allow egress to 10.0.0.0/8, 2001:db8::/32 port 443/tcp reason "internal"',
    'allow ingress from 100.64.0.0/10 port 18789/tcp reason "tailnet"',
    'capabilities drop all keep net_bind_service, net_raw reason "ping"',
    'sockets allow unix, inet stream, inet6 dgram, netlink, packet raw',
    'syscalls deny ptrace, bpf reason "no"',
    'syscalls allow io_uring_setup reason "the runtime"',
    'files deny ~/.ssh, "~/.config/x y", /etc/openclaw/secrets, "/srv/a b", "/srv/50%x", "/srv/ünï", "/srv/x;y" reason "creds"',
])
USER = "mode enforce\n applies-to user openclaw\n agent-ports 18789/tcp, 9000-9100/udp"
CASES: dict[str, tuple[str, str, dict[str, object]]] = {
    "host": (FULL, "mode enforce\n applies-to host", {}),
    "user": (FULL, USER, {}),
    "kill": (FULL, USER, {"seccomp_deny_action": "kill"}),
    "shadow": (FULL, "mode shadow\n applies-to host", {}),
    "names-locked": ('allow egress to api.example.com port 443/tcp reason "api"', USER,
                     {"lock": {"api.example.com": ("192.0.2.7", "2001:db8::7")}}),
    "names": ('allow egress to api.example.com, *.example.org reason "api"', USER, {}),
    "drop-caps": ('capabilities drop sys_admin, net_admin reason "r"', USER, {}),
    "any": ('allow egress to any port 443/tcp reason "web"', USER, {}),
    "bare": ('allow egress to 192.0.2.1 reason "one"', USER, {"systemd_unit": "claw@agent-1.service"}),
}


def _compile(policy: Policy, **options: object) -> tuple[str, str, list[str]]:
    opts = CompileOptions(**options)  # type: ignore[arg-type]
    result = systemd.BACKEND.compile(policy, opts)
    (artifact,) = result.artifacts
    return artifact.path, artifact.content.decode(), [d.message for d in result.diagnostics
                                                      if d.severity is not Severity.NOTE]


def _verify(tmp_path: Path, unit: str, drop_in: str) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` of a minimal unit with the drop-in beside it (the directory on
    SYSTEMD_UNIT_PATH, so the drop-in is loaded)."""
    root = tmp_path / "units"
    (root / f"{unit}.d").mkdir(parents=True, exist_ok=True)
    (root / unit).write_text("[Unit]\nDescription=agent\n[Service]\nExecStart=/bin/true\n")
    (root / f"{unit}.d" / "clawpolicy.conf").write_text(drop_in)
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{root}:"}
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(root / unit)], capture_output=True,
                          text=True, env=env, cwd=root)


needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")


@needs_systemd
def test_every_drop_in_verifies_without_a_word(tmp_path: Path, subtests: pytest.Subtests) -> None:
    for name, (body, header, options) in CASES.items():
        with subtests.test(case=name):
            path, text, _ = _compile(snippet_policy(tmp_path, body, header), **options)
            unit = path.split(".d/")[0]
            r = _verify(tmp_path / name, unit, text)
            assert (r.returncode, r.stderr, r.stdout) == (0, "", ""), text


@needs_systemd
def test_a_broken_drop_in_is_caught(tmp_path: Path, subtests: pytest.Subtests) -> None:
    _, text, _ = _compile(snippet_policy(tmp_path, FULL, USER))
    broken = {
        "bad prefix": text.replace("IPAddressAllow=localhost", "IPAddressAllow=localhost 10.0.0.0/33"),
        "bad family": text.replace("AF_UNIX", "AF_UNICORN"),
        "bad syscall": text.replace("~bpf ptrace", "~bpf ptrace not_a_syscall"),
        "bad bind": text.replace("SocketBindAllow=tcp:18789", "SocketBindAllow=tcp:99999"),
        "unknown setting": text + "IPAddressAlow=10.0.0.1\n",
    }
    for name, bad in broken.items():
        with subtests.test(case=name):
            assert bad != text
            r = _verify(tmp_path / name.replace(" ", "-"), "openclaw-gateway.service", bad)
            assert r.stderr.strip(), f"{name}: not caught"


def test_contents(tmp_path: Path) -> None:
    _, text, warnings = _compile(snippet_policy(tmp_path, FULL, USER))
    lines = text.splitlines()
    assert "IPAddressDeny=any" in lines
    assert "IPAddressAllow=localhost 10.0.0.0/8 2001:db8::/32 100.64.0.0/10" in lines
    assert ["SocketBindAllow=tcp:18789", "SocketBindAllow=udp:9000-9100", "SocketBindDeny=any"] == [
        x for x in lines if x.startswith("SocketBind")]
    assert "RestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK AF_PACKET AF_UNIX" in lines
    assert "SystemCallFilter=@system-service io_uring_setup" in lines and "SystemCallFilter=~bpf ptrace" in lines
    assert "SystemCallErrorNumber=EPERM" in lines and "SystemCallArchitectures=native" in lines
    assert "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_RAW" in lines
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_RAW" in lines
    assert [x for x in lines if x.startswith("InaccessiblePaths=")] == [
        "InaccessiblePaths=-/etc/openclaw/secrets", "InaccessiblePaths=-/srv/50%%x",
        'InaccessiblePaths=-"/srv/a b"', "InaccessiblePaths=-/srv/x;y", "InaccessiblePaths=-/srv/ünï",
        'InaccessiblePaths=-%h"/.config/x y"', "InaccessiblePaths=-%h/.ssh"]
    assert "NoNewPrivileges=yes" in lines and "AppArmorProfile=-clawpolicy-p" in lines
    assert warnings == []
    _, kill, _ = _compile(snippet_policy(tmp_path, FULL, USER), seccomp_deny_action="kill")
    assert "SystemCallErrorNumber" not in kill


def test_shadow_carries_only_what_logs(tmp_path: Path) -> None:
    _, text, _ = _compile(snippet_policy(tmp_path, FULL, USER).with_mode(Mode.SHADOW))
    settings = [x.split("=")[0] for x in text.splitlines() if "=" in x and not x.startswith("#")]
    assert settings == ["SystemCallLog", "SystemCallLog", "AppArmorProfile"]
    assert "SystemCallLog=~@system-service io_uring_setup" in text and "SystemCallLog=bpf ptrace" in text


def test_what_systemd_cannot_express_is_said(tmp_path: Path) -> None:
    names = snippet_policy(tmp_path, 'allow egress to api.example.com port 443/tcp reason "api"', USER)
    _, text, warnings = _compile(names)
    assert "IPAddressDeny" not in text and any("cannot express names" in w for w in warnings)
    _, locked, warnings = _compile(names, lock={"api.example.com": ("192.0.2.7",)})
    assert "IPAddressAllow=localhost 192.0.2.7" in locked and warnings == []
    carve = snippet_policy(tmp_path, 'allow egress to 10.0.0.0/8 reason "a"\n'
                                     'deny egress to 10.1.0.0/16 reason "d" id carve', USER)
    _, text, warnings = _compile(carve)
    assert any(w.startswith("carve: systemd: systemd's allow list wins") for w in warnings)
    outside = snippet_policy(tmp_path, 'allow egress to 10.0.0.0/8 reason "a"\n'
                                       'deny egress to 192.0.2.0/24 reason "d"', USER)
    assert _compile(outside)[2] == []  # IPAddressDeny=any covers it
    support = systemd.BACKEND.support
    assert support[systemd.Feature.FQDN].level.value == "no"


# hostile values: each is refused (never written), or written so it stays one value
HOSTILE = ["/a\nIPAddressAllow=any", "/a\\", '/a"b', "/a'b", "/a\u2028b", "/a\x7fb", "", "/a\tb"]


def test_unit_value_escapes_or_refuses(subtests: pytest.Subtests) -> None:
    assert systemd.unit_value("/srv/50%x") == "/srv/50%%x"
    assert systemd.unit_value("/srv/a b") == '"/srv/a b"'
    assert systemd.unit_value("%h%n") == "%%h%%n"
    for text in HOSTILE:
        with subtests.test(value=text):
            with pytest.raises(systemd.UnsafeValue):
                systemd.unit_value(text)


def test_hostile_paths_through_the_compiler(tmp_path: Path) -> None:
    # lowering refuses control characters and backslashes in paths already; quotes get here
    body = 'files deny "/x\\" IPAddressAllow=any", "/it\'s", "/ok" reason "r"'
    _, text, warnings = _compile(snippet_policy(tmp_path, body, USER))
    assert "IPAddressAllow=any" not in text.replace("IPAddressDeny=any", "")
    assert [x for x in text.splitlines() if x.startswith("InaccessiblePaths=")] == ["InaccessiblePaths=-/ok"]
    assert len(warnings) == 2 and all("left out of InaccessiblePaths=" in w for w in warnings)


def test_built_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = snippet_policy(tmp_path, 'allow egress to 192.0.2.1 reason "r"', USER)
    assert "systemd" not in targets_for(policy, ("nftables", "systemd"))[0]
    assert "systemd" in targets_for(policy, ("systemd",), explicit=True)[0]
    out = tmp_path / "out"
    assert main(["compile", str(tmp_path / "p.claw"), "-t", "systemd", "-o", str(out),
                 "--systemd-unit", "agent.service"]) == 0
    assert (out / "p" / "systemd" / "agent.service.d" / "clawpolicy-p.conf").is_file()
    assert main(["compile", str(tmp_path / "p.claw"), "-t", "systemd", "--systemd-unit", "../x"]) == 2
