"""Lint: for every check, a policy that triggers it and one that must not; the CLI's formats
and exit statuses; SARIF validated against the SARIF 2.1.0 schema."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from shared_schemas import schema_path

from clawpolicy.cli import main
from clawpolicy.errors import render
from clawpolicy.ir import Policy
from clawpolicy.lower import load_policies
from clawpolicy.review import lockout, sarif
from clawpolicy.review.lint import CHECKS, Finding, lint

REPO = Path(__file__).resolve().parents[2]
TODAY = dt.date(2026, 11, 1)
HOST = "applies-to host"
ALL = ("nftables", "dnsmasq", "seccomp", "apparmor", "docs")


def load(tmp_path: Path, body: str, header: str = HOST) -> Policy:
    path = tmp_path / "p.claw"
    path.write_text(f"policy p {{\n  {header}\n{body}\n}}\n", encoding="utf-8")
    result = load_policies([path], today=TODAY)
    assert result.ok, render(result.diagnostics, result.sources)
    return result.policies[0]


def run(tmp_path: Path, body: str, header: str = HOST, targets: tuple[str, ...] = ALL,
        require_owner: bool = False) -> list[Finding]:
    return lint(load(tmp_path, body, header), today=TODAY, targets=targets, require_owner=require_owner)


# (check id, policy body, whether the check must fire); extra keyword arguments per case below.
CASES: list[tuple[str, str, bool]] = [
    ("expired", 'allow egress to 192.0.2.1 port 443/tcp reason "r" expires 2026-10-01', True),
    ("expired", 'allow egress to 192.0.2.1 port 443/tcp reason "r" expires 2027-10-01', False),
    ("expiring", 'allow egress to 192.0.2.1 port 443/tcp reason "r" expires 2026-11-20', True),
    ("expiring", 'allow egress to 192.0.2.1 port 443/tcp reason "r" expires 2026-12-20', False),
    ("wide-egress", 'allow egress to any port 443/tcp reason "r"', True),
    ("wide-egress", 'allow egress to ::/0 port 443/tcp reason "r"', True),
    ("wide-egress", 'allow egress to 10.0.0.0/8 reason "r"', True),
    ("wide-egress", 'allow egress to 10.0.0.0/8 port 443/tcp reason "r"', False),
    ("wide-egress", 'allow egress to 10.0.0.0/9 reason "r"', False),
    ("gateway-exposed", 'allow ingress from 192.168.1.0/24 port 18789/tcp reason "r"', True),
    ("gateway-exposed", 'allow ingress from 100.0.0.0/8 port 18789/tcp reason "r"', True),
    ("gateway-exposed", 'allow ingress from any reason "r"', True),
    ("gateway-exposed", 'allow ingress from 100.64.0.0/10, fd7a:115c:a1e0::/48 port 18789/tcp reason "r"',
     False),
    ("gateway-exposed", 'allow ingress from 192.168.1.0/24 port 22/tcp reason "r"', False),
    ("gateway-exposed", ('allow ingress from any port 18789/tcp reason "r"\n'
                        'deny ingress from 0.0.0.0/0, ::/0 port 18789/tcp reason "no"'), False),
    ("netlink-any", 'sockets allow unix, netlink', True),
    ("netlink-any", 'sockets allow unix, netlink dgram', True),
    ("netlink-any", 'sockets allow unix, netlink raw', True),
    ("netlink-any", 'sockets allow unix, netlink route', False),
    ("netlink-any", 'sockets allow unix, netlink route, netlink sock_diag', False),
    ("netlink-any", 'sockets allow unix, inet stream', False),
    ("mdns-allowed", 'allow egress to 224.0.0.0/4 port 5353/udp reason "r"', True),
    ("mdns-allowed", ('allow egress to 224.0.0.0/4 port 5353/udp reason "r"\n'
                     'deny egress to 224.0.0.251, ff02::fb port 5353/udp reason "no"'), False),
    ("dns-any-resolver", 'allow egress to any port 53/udp reason "r"', True),
    ("dns-any-resolver", 'allow egress to 10.0.0.0/8 port 53/udp reason "r"', True),
    ("dns-any-resolver", 'allow egress to 10.0.0.53 port 53/udp, 53/tcp reason "r"', False),
    ("metadata-reachable", 'allow egress to 169.254.0.0/16 port 80/tcp reason "r"', True),
    ("metadata-reachable", ('allow egress to 169.254.0.0/16 port 80/tcp reason "r"\n'
                           'deny egress to 169.254.169.254 reason "no"'), True),  # ECS, EKS left
    ("metadata-reachable", ('allow egress to 169.254.0.0/16 port 80/tcp reason "r"\n'
                           'deny egress to 169.254.169.254, 169.254.170.0/24 reason "no"'), False),
    # IPv6 and other clouds' endpoints (the hint names fd00:ec2::254; it must be checked too)
    ("metadata-reachable", 'allow egress to fd00:ec2::/32 port 80/tcp reason "r"', True),
    ("metadata-reachable", 'allow egress to fc00::/7 port 80/tcp reason "r"', True),
    ("metadata-reachable", 'allow egress to fd20:ce::/32 reason "r"', True),
    ("metadata-reachable", 'allow egress to fd00:c1::a9fe:a9fe port 80/tcp reason "r"', True),
    ("metadata-reachable", 'allow egress to 169.254.170.2 port 80/tcp reason "r"', True),
    ("metadata-reachable", 'allow egress to 168.63.129.0/24 port 80/tcp reason "r"', True),
    ("metadata-reachable", 'allow egress to fd00:ec2::/32 port 443/tcp reason "r"', False),
    ("metadata-reachable", 'allow egress to fd00:ec3::/32 port 80/tcp reason "r"', False),
    ("public-suffix-wildcard", 'dns local\nallow egress to *.com port 443/tcp reason "r"', True),
    ("public-suffix-wildcard", 'dns local\nallow egress to *.co.uk port 443/tcp reason "r"', True),
    ("public-suffix-wildcard", 'dns local\nallow egress to *.org, *.pvt.k12.ma.us reason "r"', True),
    ("public-suffix-wildcard", 'dns local\nallow egress to *.github.io port 443/tcp reason "r"', True),
    ("public-suffix-wildcard", 'dns local\nallow egress to *.s3.amazonaws.com port 443/tcp reason "r"', True),
    ("public-suffix-wildcard", 'dns local\nallow egress to *.рф port 443/tcp reason "r"', True),
    ("public-suffix-wildcard", 'dns local\nallow egress to *.CO.JP. port 443/tcp reason "r"', True),
    ("public-suffix-wildcard", 'dns local\nallow egress to *.slack.com, *.bbc.co.uk reason "r"', False),
    ("public-suffix-wildcard", 'dns local\nallow egress to *.example.github.io reason "r"', False),
    ("public-suffix-wildcard", 'dns local\ndeny egress to *.com reason "r"', False),
    ("dangerous-capability", "capabilities drop all keep net_raw, net_bind_service", True),
    ("dangerous-capability", "capabilities drop net_raw", True),
    ("dangerous-capability", "capabilities drop all keep net_bind_service", False),
    ("credentials-not-denied", 'capabilities drop all\nfiles deny ~/.ssh reason "r"', True),
    ("credentials-not-denied", ('capabilities drop all\n'
                               'files deny ~/.ssh, ~/.aws, ~/.config, ~/.kube reason "r"'), False),
    ("credentials-not-denied", 'allow egress to 192.0.2.1 port 443/tcp reason "r"', False),
    ("fqdn-without-dns", 'allow egress to api.example.com port 443/tcp reason "r"', True),
    ("fqdn-without-dns", ('allow egress to api.example.com port 443/tcp reason "r"\n'
                         'allow egress to 10.0.0.53 port 53/udp reason "dns"'), False),
    ("fqdn-without-dns", 'dns local\nallow egress to api.example.com port 443/tcp reason "r"', False),
    ("shadowed", ('allow egress to 10.1.0.0/16 port 443/tcp reason "a"\n'
                 'allow egress to 10.0.0.0/8 port 443/tcp, 80/tcp reason "b"'), True),
    ("shadowed", ('allow egress to a.example.com port 443/tcp reason "a"\n'
                 'allow egress to *.example.com port 443/tcp reason "b"\n'
                 'dns local'), True),
    ("shadowed", ('allow egress to 10.1.0.0/16 port 443/tcp reason "a"\n'
                 'allow egress to 10.0.0.0/8 port 80/tcp reason "b"'), False),
    ("shadowed", ('allow egress to 10.1.0.0/16 port 443/tcp reason "a"\n'
                 'allow ingress from 10.0.0.0/8 port 443/tcp reason "b"'), False),
    ("redundant-deny", ('allow egress to 192.0.2.0/24 port 443/tcp reason "a"\n'
                       'deny egress to 10.0.0.1 reason "d"'), True),
    ("redundant-deny", ('allow egress to 10.0.0.0/24 port 443/tcp reason "a"\n'
                       'deny egress to 10.0.0.1 reason "d"'), False),
    ("redundant-deny", ('dns local\nallow egress to api.example.com port 443/tcp reason "a"\n'
                       'deny egress to 169.254.169.254 reason "d"'), False),
    # explicit denies of dangerous destinations are defence in depth, never "redundant"
    ("redundant-deny", ('allow egress to 192.0.2.0/24 port 443/tcp reason "a"\n'
                       'deny egress to ff02::fb port 5353/udp reason "no mDNS"'), False),
    ("redundant-deny", ('allow egress to 192.0.2.0/24 port 443/tcp reason "a"\n'
                       'deny egress to 168.63.129.16, fd00:c1::a9fe:a9fe reason "no metadata"'), False),
    ("redundant-deny", ('allow egress to 192.0.2.0/24 port 443/tcp reason "a"\n'
                       'deny ingress from 172.20.0.0/16 port 18789/tcp reason "not from the LAN"'), False),
    ("redundant-deny", ('allow egress to 192.0.2.0/24 port 443/tcp reason "a"\n'
                       'deny ingress from 172.20.0.0/16 port 22/tcp reason "no ssh"'), True),
    # allows a deny (or `dns local`) cancels entirely, decided region by region
    ("cancelled-allow", ('allow egress to 10.8.0.0/16 port 8080/tcp reason "a"\n'
                        'deny egress to 10.0.0.0/12 reason "d"'), True),
    ("cancelled-allow", ('allow egress to 10.8.0.0/16 port 8080/tcp reason "a"\n'
                        'deny egress to 10.8.0.0/17, 10.8.128.0/18, 10.8.192.0/18 port 8000-9000/tcp '
                        'reason "pieces"'), True),
    ("cancelled-allow", ('allow egress to 10.8.0.0/16 port 8080/tcp reason "a"\n'
                        'deny egress to 10.8.0.0/17, 10.8.192.0/18 port 8000-9000/tcp reason "gap"'), False),
    ("cancelled-allow", ('allow egress to 10.8.0.0/16 port 8080/tcp, 8443/tcp reason "a"\n'
                        'deny egress to 10.8.0.0/16 port 8080/tcp reason "one port"'), False),
    ("cancelled-allow", ('dns local\nallow egress to git.example.net port 22/tcp reason "a"\n'
                        'deny egress to *.example.net reason "d"'), True),
    ("cancelled-allow", ('dns local\nallow egress to *.cdn.example.net port 443/tcp reason "a"\n'
                        'deny egress to *.example.net port 443/tcp reason "d"'), True),
    ("cancelled-allow", ('dns local\nallow egress to *.example.net port 443/tcp reason "a"\n'
                        'deny egress to *.cdn.example.net port 443/tcp reason "d"'), False),
    ("cancelled-allow", ('dns local\nallow egress to 10.0.0.10 port 53/udp, 53/tcp reason "dns"'), True),
    ("cancelled-allow", ('allow ingress from any port 9100/tcp reason "a"\n'
                        'deny ingress from any reason "d"'), True),
    ("cancelled-allow", ('allow ingress from any port 9100/tcp reason "a"\n'
                        'deny ingress from 0.0.0.0/0 reason "v4 only"'), False),
    ("cancelled-allow", ('allow egress to 2001:db8::/48 port 443/tcp reason "a"\n'
                        'deny egress to 2001:db8::/32 port 443/tcp reason "d"'), True),
]


def test_checks(tmp_path: Path, subtests: pytest.Subtests) -> None:
    for n, (check, body, fires) in enumerate(CASES):
        with subtests.test(f"{check} {'fires' if fires else 'quiet'} #{n}"):
            case_dir = tmp_path / str(n)
            case_dir.mkdir()
            found = [f for f in run(case_dir, body) if f.check == check]
            assert bool(found) == fires, found
            for f in found:
                assert f.location.line > 0 and f.hint


def test_unenforced_and_owner(tmp_path: Path, subtests: pytest.Subtests) -> None:
    body = 'allow egress to 192.0.2.1 port 443/tcp reason "r" owner "me"\n' \
           'allow egress to 192.0.2.2 port 443/tcp reason "r"'
    cases: list[tuple[str, tuple[str, ...], bool, int]] = [
        ("unenforced", ("seccomp",), False, 2),
        ("unenforced", ("nftables",), False, 0),
        ("missing-owner", ALL, True, 1),
        ("missing-owner", ALL, False, 0),
    ]
    for check, targets, owner, count in cases:
        with subtests.test(f"{check} {targets} {owner}"):
            found = [f for f in run(tmp_path, body, targets=targets, require_owner=owner)
                     if f.check == check]
            assert len(found) == count, found


def test_every_check_is_tested_and_documented() -> None:
    tested = {c for c, _, _ in CASES} | {"unenforced", "missing-owner"} | {
        s.id for s in lockout.SPECS} | {"explicit-id"}  # test_lockout.py, test_pinids.py
    ids = [c.id for c in CHECKS]
    assert len(ids) == len(set(ids))
    assert tested == set(ids)
    assert all(c.title and c.help for c in CHECKS)


def test_finding_names_rule_and_position(tmp_path: Path) -> None:
    policy = load(tmp_path, 'allow egress to any port 443/tcp reason "r" id wide')
    (f,) = [f for f in lint(policy, today=TODAY, targets=ALL) if f.check == "wide-egress"]
    assert (f.rule_id, f.location.line, f.location.col) == ("wide", 3, 1)
    assert f.location.file.endswith("p.claw")


def test_cli_examples_lint_clean(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    examples = sorted(str(p.relative_to(REPO)) for p in (REPO / "examples").glob("*.claw"))
    assert main(["lint", *examples]) == 0
    out = capsys.readouterr().out
    assert "error:" not in out


def test_cli_exit_status_and_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "w.claw"
    path.write_text('policy w {\n  applies-to user w\n  allow egress to any port 443/tcp reason "r"\n}\n')
    assert main(["lint", str(path)]) == 0  # a warning only
    assert f"{path}:3:3: warning: [wide-egress]" in capsys.readouterr().out
    assert main(["lint", str(path), "--fail-on", "warning"]) == 1
    capsys.readouterr()
    assert main(["lint", str(path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {d["check"] for d in data} >= {"wide-egress"}
    assert main(["lint", str(path), "--fail-on", "bogus"]) == 2
    path.write_text('policy w {\n  applies-to host\n  allow ingress from any port 18789/tcp reason "r"\n}\n')
    assert main(["lint", str(path)]) == 1
    assert main(["lint", "--help"]) == 0
    assert "examples:" in capsys.readouterr().out


def _schema() -> dict[str, object] | None:
    path = schema_path("sarif/sarif-schema-2.1.0.json")
    data: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_sarif_validates(tmp_path: Path) -> None:
    import jsonschema

    schema = _schema()
    policy = load(tmp_path, 'allow egress to any reason "r" expires 2026-10-01\n'
                            'allow ingress from any port 18789/tcp reason "g"\n'
                            'capabilities drop all keep net_raw')
    findings = lint(policy, today=TODAY, targets=ALL, require_owner=True)
    assert len({f.check for f in findings}) >= 5
    text = sarif.dumps(findings)
    doc = json.loads(text)
    jsonschema.Draft4Validator(schema).validate(doc)
    run_ = doc["runs"][0]
    assert [r["id"] for r in run_["tool"]["driver"]["rules"]] == [c.id for c in CHECKS]
    result = run_["results"][0]
    region = result["locations"][0]["physicalLocation"]["region"]
    assert region["startLine"] >= 1 and region["startColumn"] >= 1
    assert text == sarif.dumps(findings) and text == json.dumps(doc, indent=2, sort_keys=True) + "\n"


def test_public_suffix_list_works_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Public Suffix List comes with the installed package: no network at run time."""
    import socket

    from clawpolicy import names

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the Public Suffix List must not be fetched")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    names._public_suffixes.cache_clear()
    try:
        assert names.is_public_suffix("com") and names.is_public_suffix("co.uk")
        assert names.is_public_suffix("github.io")  # the list's private section counts too
        assert not names.is_public_suffix("slack.com") and not names.is_public_suffix("bbc.co.uk")
    finally:
        names._public_suffixes.cache_clear()
