"""Lockout and dependency lint (review/lockout.py): a table of host policies, each with the
finding it must produce (or not) and the hint that fixes it; the CLI's --management-port."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from clawpolicy.cli import main
from clawpolicy.errors import Severity, render
from clawpolicy.ir import Policy
from clawpolicy.lower import load_policies
from clawpolicy.review.lint import CHECKS, lint

TODAY = dt.date(2026, 11, 1)
HOST = "applies-to host"
SSH = 'allow ingress from 10.20.8.0/24 port 22/tcp reason "ssh"'
NTP = 'allow egress to 10.20.0.123 port 123/udp reason "ntp"'
DNS = 'allow egress to 10.20.0.53 port 53/udp, 53/tcp reason "dns"'
MIRROR = 'allow egress to deb.debian.org, security.debian.org port 443/tcp reason "apt"'
TAILSCALE = ('allow egress to tailscale, tailscale-derp-stun reason "ts"\n'
             'allow egress to any port 41641/udp reason "wg"')
TAILNET_IN = 'allow ingress from 100.64.0.0/10 port 18789/tcp reason "gateway"'
HEALTHY = "\n".join([SSH, NTP, DNS, MIRROR, "dns local"])


def load(tmp_path: Path, body: str, header: str = HOST) -> Policy:
    path = tmp_path / "p.claw"
    path.write_text(f"policy p {{\n  {header}\n{body}\n}}\n", encoding="utf-8")
    result = load_policies([path], today=TODAY)
    assert result.ok, render(result.diagnostics, result.sources)
    return result.policies[0]


# (case, check, header, body, management ports, fires, a fragment of the message, of the hint)
CASES: list[tuple[str, str, str, str, tuple[int, ...], bool, str, str]] = [
    ("no ingress at all", "no-management-ingress", HOST, NTP, (22,), True, "22/tcp",
     "allow ingress from <admin network> port 22/tcp"),
    ("ssh allowed", "no-management-ingress", HOST, SSH, (22,), False, "", ""),
    ("ssh allowed from any", "no-management-ingress", HOST, 'allow ingress from any port 22/tcp reason "s"',
     (22,), False, "", ""),
    ("ssh allowed then denied", "no-management-ingress", HOST,
     SSH + '\ndeny ingress from 10.20.8.0/24 port 22/tcp reason "no"', (22,), True, "22/tcp", "port 22/tcp"),
    ("ssh on another port", "no-management-ingress", HOST, SSH, (2222,), True, "2222/tcp",
     "port 2222/tcp"),
    ("the named port allowed", "no-management-ingress", HOST,
     'allow ingress from 10.0.0.0/8 port 2200-2300/tcp reason "s"', (2222,), False, "", ""),
    ("shadow says when enforced", "no-management-ingress", "applies-to host\n  mode shadow", NTP, (22,),
     True, "once enforced", "--management-port"),
    ("ssh only over ICMP", "no-management-ingress", HOST,
     'allow ingress from 10.20.8.0/24 port icmp reason "ping"', (22,), True, "22/tcp", "SSH management"),
    ("user scope fences no SSH", "no-management-ingress", "applies-to user openclaw", NTP, (22,), False, "", ""),
    ("tailnet without tailscale", "tailscale-egress-missing", HOST, TAILNET_IN, (22,), True,
     "coordination server", "tailscale, tailscale-derp-stun"),
    ("tailnet v6 without tailscale", "tailscale-egress-missing", HOST,
     'allow ingress from fd7a:115c:a1e0::/48 port 22/tcp reason "ssh over tailscale"', (22,), True,
     "DERP relays", "41641/udp"),
    ("tailnet with half of tailscale", "tailscale-egress-missing", HOST,
     TAILNET_IN + '\nallow egress to tailscale reason "ts"', (22,), True, "STUN", "tailscale-derp-stun"),
    ("tailnet with tailscale", "tailscale-egress-missing", HOST, TAILNET_IN + "\n" + TAILSCALE, (22,),
     False, "", ""),
    ("no tailnet ingress", "tailscale-egress-missing", HOST, SSH, (22,), False, "", ""),
    ("no ntp", "no-ntp", HOST, SSH, (22,), True, "123/udp", "port 123/udp"),
    ("ntp to an internal server", "no-ntp", HOST, NTP, (22,), False, "", ""),
    ("ntp by pool name", "no-ntp", HOST, 'allow egress to 2.debian.pool.ntp.org port 123/udp reason "t"',
     (22,), False, "", ""),
    ("ntp allowed then denied", "no-ntp", HOST, NTP + '\ndeny egress to 10.20.0.0/16 reason "no"', (22,),
     True, "clock", "NTP servers"),
    ("no mirrors", "no-package-mirror", HOST, SSH, (22,), True, "security updates", "deb.debian.org"),
    ("debian mirrors", "no-package-mirror", HOST, MIRROR, (22,), False, "", ""),
    ("https anywhere", "no-package-mirror", HOST, 'allow egress to any port 443/tcp reason "w"', (22,),
     False, "", ""),
    ("no upstream", "no-resolver-upstream", HOST, SSH, (22,), True, "53/udp", "DNS upstream"),
    ("upstream allowed", "no-resolver-upstream", HOST, DNS, (22,), False, "", ""),
    ("upstream only over loopback", "no-resolver-upstream", HOST,
     'allow egress to 127.0.0.53 port 53/udp reason "stub"', (22,), True, "no DNS upstream", "53/udp"),
    ("names without dns local", "names-without-dns-local", HOST,
     DNS + '\nallow egress to api.example.com port 443/tcp reason "api"', (22,), True, "dns local",
     "dns serve"),
    ("names with dns local", "names-without-dns-local", HOST,
     DNS + '\ndns local\nallow egress to api.example.com port 443/tcp reason "api"', (22,), False, "", ""),
    ("user scope names", "names-without-dns-local", "applies-to user openclaw",
     DNS + '\nallow egress to *.example.com port 443/tcp reason "api"', (22,), True, "any allowed resolver",
     "'dns local'"),
    ("healthy host", "no-management-ingress", HOST, HEALTHY, (22,), False, "", ""),
]


def test_lockout_cases(tmp_path: Path, subtests: pytest.Subtests) -> None:
    for case, check, header, body, ports, fires, message, hint in CASES:
        with subtests.test(case=case, check=check):
            findings = [f for f in lint(load(tmp_path, body, header), today=TODAY, targets=("nftables",),
                                        management_ports=ports) if f.check == check]
            assert bool(findings) == fires, findings
            for f in findings:
                assert message in f.message and hint in f.hint, f


def test_a_healthy_host_policy_has_no_host_findings(tmp_path: Path) -> None:
    policy = load(tmp_path, HEALTHY + "\n" + TAILNET_IN + "\n" + TAILSCALE)
    ids = {s.id for s in CHECKS if s.id in {c[1] for c in CASES}}
    assert not [f for f in lint(policy, today=TODAY, targets=("nftables",)) if f.check in ids]


def test_the_lockout_is_an_error_only_for_hosts_run_remotely(tmp_path: Path) -> None:
    """A workstation needs no SSH: without declared management ports the lockout is a
    warning; declaring them (--management-port, [lint] management-ports) makes it an error."""
    severities = {c.id: c.severity for c in CHECKS}
    assert {severities[c] for c in ("no-management-ingress", "no-ntp", "tailscale-egress-missing",
                                    "no-resolver-upstream", "names-without-dns-local")} == {Severity.WARNING}
    policy = load(tmp_path, NTP, HOST)
    found = {ports: [f.severity for f in lint(policy, today=TODAY, targets=("nftables",),
                                              management_ports=ports)
                     if f.check == "no-management-ingress"] for ports in (None, (22,))}
    assert found == {None: [Severity.WARNING], (22,): [Severity.ERROR]}


def test_cli_management_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.claw"
    path.write_text(f"policy h {{\n  applies-to host\n  {SSH}\n}}\n")
    assert main(["lint", str(path)]) == 0
    path.write_text("policy h {\n  applies-to host\n}\n")
    assert main(["lint", str(path)]) == 0  # a warning: nothing says the host is run remotely
    assert "warning: [no-management-ingress]" in capsys.readouterr().out
    path.write_text(f"policy h {{\n  applies-to host\n  {SSH}\n}}\n")
    assert main(["lint", str(path), "--management-port", "2222"]) == 1
    out = capsys.readouterr().out
    assert f"{path}:1:1: error: [no-management-ingress] no ingress to the management port 2222/tcp" in out
    assert main(["lint", str(path), "--management-port", "22/tcp", "--management-port", "2222"]) == 1
    assert main(["lint", str(path), "--management-port", "70000"]) == 2
