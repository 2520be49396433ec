"""names.py: IDNA 2008 / UTS #46 host names and embedded-IPv4 addresses, and the same answers
wherever names and addresses enter (policy peers, defines, test expectations, lock files,
flows)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from pathlib import Path

import pytest

from clawpolicy.errors import render
from clawpolicy.evaluate import Flow, evaluate
from clawpolicy.ir import Direction, Protocol
from clawpolicy.lockfile import LockError, load
from clawpolicy.lower import load_policies
from clawpolicy.names import embedded_ipv4_problem, normalise_name, wire_address
from clawpolicy.operate.flowfile import parse_flows

TODAY = dt.date(2026, 11, 1)


def test_names_are_idna_2008(subtests: pytest.Subtests) -> None:
    # text -> A-label, or None when it is no host name. IDNA 2003 (Python's codec) maps
    # ß -> ss and ς -> σ and drops joiners: each of those would name another domain.
    cases: dict[str, tuple[str, str | None]] = {
        "sharp s": ("faß.de", "xn--fa-hia.de"),
        "sharp s, upper case elsewhere": ("STRAßE.de", "xn--strae-oqa.de"),
        "sharp s in a subdomain": ("api.grüße.example", "api.xn--gre-6ka8l.example"),
        "upper case": ("API.Example.COM", "api.example.com"),
        "upper-case unicode": ("BÜCHER.example", "xn--bcher-kva.example"),
        "trailing dot": ("example.com.", "example.com"),
        "two trailing dots": ("example.com..", None),
        "fullwidth letters (UTS #46 maps them)": ("ｅｘａｍｐｌｅ.com", "example.com"),
        "ZWJ outside its context": ("a\u200db.example", None),
        "ZWNJ outside its context": ("a\u200cb.example", None),
        "mixed script keeps its own A-label": ("pаypal.com", "xn--pypal-4ve.com"),
        "underscore": ("under_score.example", None),
        "hyphens in 3rd and 4th place": ("ab--cd.example", None),
        "invalid A-label": ("xn--zz.example", None),
        "label too long": ("a" * 64 + ".example", None),
        "name too long": (".".join(["a" * 63] * 4) + ".example", None),
        "numeric last label": ("10.0.0.1.5", None),
        "empty": ("", None),
    }
    for name, (text, expected) in cases.items():
        with subtests.test(msg=name):
            assert normalise_name(text) == expected
    with subtests.test(msg="final sigma stays distinct from sigma"):
        final, medial = normalise_name("ὀδυσσεύς.gr"), normalise_name("ὀδυσσεύσ.gr")
        assert final and medial and final != medial and final.startswith("xn--")
    with subtests.test(msg="ß is not ss, ς is not σ"):
        assert normalise_name("faß.de") != normalise_name("fass.de")
        assert normalise_name("straße.de") != normalise_name("strasse.de")
    with subtests.test(msg="ZWNJ in a valid context is kept (another domain than without)"):
        with_zwnj = normalise_name("\u0646\u0627\u0645\u0647\u200c\u0627\u06cc.example")
        without = normalise_name("\u0646\u0627\u0645\u0647\u0627\u06cc.example")
        assert with_zwnj and without and with_zwnj != without


def _policy(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "p.claw"
    path.write_text(f"policy p {{\n  applies-to host\n  dns local\n{body}\n}}\n", encoding="utf-8")
    return path


def test_a_policy_name_means_one_domain(tmp_path: Path, subtests: pytest.Subtests) -> None:
    """`allow egress to faß.de` allows xn--fa-hia.de and not fass.de (and likewise for the
    other IDNA 2003 / 2008 differences), in the IR and in the evaluator."""
    for n, (written, other) in enumerate([("faß.de", "fass.de"), ("*.straße.de", "x.strasse.de"),
                                          ("ὀδυσσεύς.gr", "ὀδυσσεύσ.gr")]):
        with subtests.test(msg=written):
            case = tmp_path / str(n)
            case.mkdir()
            result = load_policies([_policy(case, f'  allow egress to {written} port 443/tcp reason "r"')],
                                   today=TODAY)
            assert result.ok, render(result.diagnostics, result.sources)
            p = result.policies[0]
            rule = next(r for r in p.rules if r.reason == "r")
            stored = (*rule.peers.names, *rule.peers.wildcards)
            assert all(s.isascii() for s in stored) and "fass.de" not in stored
            other_name = normalise_name(other)
            assert other_name is not None
            verdict = evaluate(p, Flow(Direction.EGRESS, other_name, Protocol.TCP, 443))
            assert verdict.action.value == "deny", verdict


# Written form -> (rejected?, words of the hint). Mapped and compatible forms are rejected
# (the kernel sends IPv4 for them); NAT64, 6to4, Teredo, :: and ::1 leave as IPv6.
ADDRESSES: dict[str, tuple[bool, str]] = {
    "::ffff:10.9.9.2": (True, "10.9.9.2"),
    "::ffff:c0a8:101": (True, "192.168.1.1"),
    "::FFFF:203.0.113.7": (True, "203.0.113.7"),
    "::ffff:0:0/96": (True, "0.0.0.0/0"),
    "::ffff:172.16.0.0/108": (True, "172.16.0.0/12"),
    "::fffe:0:0/95": (True, "overlaps ::ffff:0:0/96"),
    "::/64": (True, "overlaps ::ffff:0:0/96"),
    "::10.1.2.3": (True, "10.1.2.3"),
    "::192.0.2.0/120": (True, "192.0.2.0/24"),
    "64:ff9b::10.9.9.2": (False, ""),
    "64:ff9b::/96": (False, ""),
    "2002:a09:902::1": (False, ""),
    "2001:db8::1": (False, ""),
    "::1": (False, ""),
    "::": (False, ""),
    "::/0": (False, ""),
    "10.9.9.2": (False, ""),
}


def test_embedded_ipv4(subtests: pytest.Subtests) -> None:
    for text, (rejected, hint) in ADDRESSES.items():
        with subtests.test(msg=text):
            problem = embedded_ipv4_problem(ipaddress.ip_network(text))
            assert (problem is not None) == rejected, problem
            if problem is not None:
                assert hint in " ".join(problem)


def test_embedded_ipv4_is_rejected_wherever_a_policy_names_an_address(
        tmp_path: Path, subtests: pytest.Subtests) -> None:
    places = {
        "rule peer": 'allow egress to {a} port 443/tcp reason "r"',
        "deny peer": 'deny egress to {a} reason "r"',
        "ingress peer": 'allow ingress from {a} port 22/tcp reason "r"',
        "define": 'define x = {a}\n  allow egress to @x port 443/tcp reason "r"',
        "test expectation": ('allow egress to 192.0.2.1 port 443/tcp reason "r"\n'
                             '  test "t" {{ expect deny egress {a} port 443/tcp }}'),
    }
    for n, (place, body) in enumerate(places.items()):
        for address in ("::ffff:10.9.9.2", "::ffff:198.51.100.0/120", "::10.0.0.7"):
            if place == "test expectation" and "/" in address:
                continue
            with subtests.test(msg=f"{place}: {address}"):
                case = tmp_path / f"{n}-{address.replace(':', '_').replace('/', '_')}"
                case.mkdir()
                result = load_policies([_policy(case, "  " + body.format(a=address))], today=TODAY)
                errors = [d for d in result.diagnostics if d.code == "address"]
                assert not result.ok and errors, result.diagnostics
                assert "IPv4" in errors[0].message and errors[0].hint
                assert errors[0].location is not None and errors[0].location.line > 0


def _lock(tmp_path: Path, names: dict[str, object]) -> Path:
    path = tmp_path / "x.lock.json"
    path.write_text(json.dumps({"version": 1, "names": names, "wildcards": []}), encoding="utf-8")
    return path


def test_lock_files_refuse_embedded_ipv4_and_unnormalised_names(tmp_path: Path,
                                                                subtests: pytest.Subtests) -> None:
    observed = {"resolver": "r", "time": "t"}
    bad = {
        "mapped AAAA": {"a.example": {"ipv6": ["::ffff:a09:902"], "observed": observed}},
        "compatible AAAA": {"a.example": {"ipv6": ["::a09:902"], "observed": observed}},
        "unicode name": {"faß.de": {"ipv4": ["192.0.2.1"], "observed": observed}},
        "upper-case name": {"A.example": {"ipv4": ["192.0.2.1"], "observed": observed}},
    }
    for name, names in bad.items():
        with subtests.test(msg=name):
            with pytest.raises(LockError, match="invalid lock file"):
                load(_lock(tmp_path, names))
    with subtests.test(msg="valid"):
        good = {"xn--fa-hia.de": {"ipv4": ["192.0.2.1"], "ipv6": ["64:ff9b::c000:201"], "observed": observed}}
        assert load(_lock(tmp_path, good)).addresses() == {"xn--fa-hia.de": ("192.0.2.1", "64:ff9b::c000:201")}


def test_flows_carry_what_the_kernel_sends(subtests: pytest.Subtests) -> None:
    """A flow to ::ffff:a.b.c.d is the IPv4 packet a.b.c.d; a flow's name is IDNA 2008."""
    with subtests.test(msg="address"):
        assert str(wire_address("::ffff:10.9.9.2")) == "10.9.9.2"
        assert str(wire_address("64:ff9b::a09:902")) == "64:ff9b::a09:902"
    with subtests.test(msg="jsonl flow"):
        line = json.dumps({"direction": "egress", "dst": "::ffff:203.0.113.5", "port": 443,
                           "proto": "tcp", "name": "FAß.de."})
        flows = parse_flows([line])
        [flow] = flows.flows
        assert (flow.dst, flow.name) == ("203.0.113.5", "xn--fa-hia.de")
