"""`suggest` proposals read like a reviewer's: catalog groups for the names seen, and each rule
rated by `diff`'s risk rules (the gateway port from the LAN, metadata and mDNS are high)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawpolicy.cli import main
from clawpolicy.operate import suggest

O = suggest.Observation

# name: (observations, group expected in the text or None, names that must stay as names)
GROUPS: dict[str, tuple[list[suggest.Observation], str | None, list[str]]] = {
    "four of GitHub's six names": (
        [O("egress", n, "tcp", 443, 2) for n in ("api.github.com", "codeload.github.com",
                                                 "raw.githubusercontent.com", "uploads.github.com")],
        "github", []),
    "both of PyPI's names, beside another host": (
        [O("egress", n, "tcp", 443, 1) for n in ("pypi.org", "files.pythonhosted.org", "ci.example.net")],
        "pypi", ["ci.example.net"]),
    "half of Teams' names": (
        [O("egress", n, "tcp", 443, 1) for n in ("graph.microsoft.com", "login.microsoftonline.com")],
        "msteams", []),
    "one of Teams' four names": (
        [O("egress", "graph.microsoft.com", "tcp", 443, 1)], None, ["graph.microsoft.com"]),
    "GitHub's names on a port the group lacks": (
        [O("egress", n, "tcp", 80, 1) for n in ("api.github.com", "codeload.github.com", "github.com")],
        None, ["api.github.com", "codeload.github.com", "github.com"]),
    "git over ssh": (
        [O("egress", n, "tcp", 22, 1) for n in ("github.com", "ssh.github.com")], "github-ssh", []),
}


def test_catalog_groups_for_the_names_seen(subtests: pytest.Subtests) -> None:
    for name, (observations, group, kept) in GROUPS.items():
        with subtests.test(msg=name):
            proposal = suggest.suggest("sim", observations)
            text = proposal.text
            if group is None:
                assert "catalog group" not in text, text
            else:
                assert f"allow egress to {group}\n" in text, text
            for n in kept:
                assert n in text.split("catalog group")[-1] if group else n in text
            assert proposal.flows == sum(o.count for o in observations)


# name: (observation, risk, words of the why)
RISKS: dict[str, tuple[suggest.Observation, str, str]] = {
    "gateway from a home LAN": (O("ingress", "192.168.7.20", "tcp", 18789, 3), "high", "gateway port"),
    "gateway from a 10/8 LAN": (O("ingress", "10.3.3.3", "tcp", 18789, 1), "high", "gateway port"),
    "gateway from the tailnet": (O("ingress", "100.64.1.7", "tcp", 18789, 1), "medium", "new ingress"),
    "ECS credentials": (O("egress", "169.254.170.2", "tcp", 80, 1), "high", "metadata"),
    "mDNS over IPv6": (O("egress", "ff02::fb", "udp", 5353, 1), "high", "mDNS"),
    "one API host": (O("egress", "api.example.net", "tcp", 443, 1), "medium", "new egress"),
}


def test_each_proposal_is_rated_as_diff_would(subtests: pytest.Subtests) -> None:
    for name, (observation, risk, why) in RISKS.items():
        with subtests.test(msg=name):
            proposal = suggest.suggest("sim", [observation])
            assert proposal.risks == [risk]
            assert f"# risk {risk}: " in proposal.text and why in proposal.text, proposal.text


def test_cli_warns_about_high_risk_proposals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "p.claw"
    policy.write_text('policy p {\n  mode shadow\n  applies-to host\n'
                      '  allow egress to 192.0.2.53 port 53/udp reason "dns"\n}\n')
    flows = tmp_path / "flows.jsonl"
    flows.write_text('{"direction": "ingress", "src": "172.16.4.4", "dst": "172.16.4.1", "port": 18789}\n'
                     '{"dst": "203.0.113.5", "port": 443}\n')
    assert main(["suggest", str(policy), "--flows", str(flows)]) == 0
    out, err = capsys.readouterr()
    assert "1 proposed rule(s) rated high risk" in err
    assert "# risk high: the gateway port 18789/tcp" in out and "# risk medium: new egress" in out
