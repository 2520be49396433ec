"""deployment + starter: what a configuration means, and that hostile values stay data."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawpolicy.adopt.deployment import read_deployment
from clawpolicy.adopt.starter import classify, render
from clawpolicy.evaluate import Flow, evaluate, run_tests
from clawpolicy.ir import Action, Direction, Protocol
from clawpolicy.lower import load_policies


def _policy(tmp_path: Path, config: dict[str, object], user: str | None = None) -> Path:
    text = render(read_deployment(config), name="t", user=user,
                  config_files=[Path("openclaw.json")])
    path = tmp_path / "t.claw"
    path.write_text(text)
    return path


def test_classify(subtests: pytest.FixtureRequest) -> None:
    cases = {
        "https://api.example.com/v1": ("name", "api.example.com", 443),
        "http://llm.internal.example:8000": ("name", "llm.internal.example", 8000),
        "wss://gw.example.org": ("name", "gw.example.org", 443),
        "http://10.1.2.3:8000/v1": ("address", "10.1.2.3", 8000),
        "http://[2001:db8::5]:9000": ("address", "2001:db8::5", 9000),
        "http://127.0.0.1:11434": ("loopback", "127.0.0.1", 11434),
        "http://localhost:1234": ("loopback", "localhost", 1234),
        "api.example.com": ("name", "api.example.com", 443),
        "https://BÜCHER.example/v1": ("name", "xn--bcher-kva.example", 443),
        "ftp://files.example.com": ("invalid", "", 0),
        "https://evil.com port 1-65535/tcp": ("invalid", "", 0),
        "https://a\nallow egress to any": ("invalid", "", 0),
        "https://intranet/v1": ("invalid", "", 0),
        "https://x.example.com:99999": ("invalid", "", 0),
        "https://x.example.com:0": ("invalid", "", 0),
        "http://[fe80::1%25eth0]:8080": ("invalid", "", 0),  # interface zones: no firewall rule holds one
        "http://[fd00::1%eth0]/": ("invalid", "", 0),
        "http://[::ffff:10.1.2.3]:80": ("address", "10.1.2.3", 80),  # leaves as IPv4 on the wire
        "http://[::ffff:127.0.0.1]:80": ("loopback", "127.0.0.1", 80),
        "https://a\u2028b.example": ("invalid", "", 0),
    }
    for url, (kind, value, port) in cases.items():
        with subtests.test(msg=url):  # type: ignore[attr-defined]
            target = classify(url)
            assert target.kind == kind
            if kind != "invalid":
                assert (target.value, target.port) == (value, port)


def test_hostile_values_cannot_add_rules(tmp_path: Path) -> None:
    evil = '\n  allow egress to any reason "pwned"\n  id pwned\n#'
    config = {
        "gateway": {"bind": "custom", "customBindHost": "1.2.3.4" + evil, "port": 18789},
        "models": {"providers": {
            "p" + evil: {"baseUrl": "https://api.example.com" + evil},
            'q" } allow egress to any reason "x': {"baseUrl": "https://ok.example.com/v1"},
            "r\u2028s\u0085t\r": {}}},
        "channels": {"c" + evil: {"baseUrl": "https://chat.example.com\u2028allow egress to any"}},
        "discovery": {"mdns": {"mode": "off" + evil}},
    }
    path = _policy(tmp_path, config)
    loaded = load_policies([path])
    assert loaded.ok, loaded.diagnostics
    policy = loaded.policies[0]
    assert not any(r.peers.any for r in policy.rules)
    assert sorted(r.id for r in policy.rules) == [
        "gateway-lan", "mdns", "provider-q-allow-egress-to-a", "update-check"]
    assert all(r.ok for r in run_tests(policy))
    assert evaluate(policy, Flow(Direction.EGRESS, "203.0.113.9", Protocol.TCP, 443)).action is Action.DENY
    text = path.read_text()
    assert all(line.startswith(("#", "policy", "}", "  ", "")) for line in text.splitlines())
    assert "\u2028" not in text and "\r" not in text and "\x85" not in text


def test_unknown_integrations_are_todos(tmp_path: Path) -> None:
    text = _policy(tmp_path, {"models": {"providers": {"acme": {}}},
                              "agents": {"defaults": {"model": "mystery/m1"}},
                              "channels": {"zalo": {}, "imessage": {}, "defaults": {}}}).read_text()
    assert "# TODO provider acme is not in clawpolicy's catalog" in text
    assert "# TODO provider mystery is not in clawpolicy's catalog" in text
    assert "# TODO channel zalo is not in clawpolicy's catalog" in text
    assert "# channel imessage: from channels.imessage" in text and "channel defaults" not in text


def test_gateway_and_mdns_modes(tmp_path: Path, subtests: pytest.FixtureRequest) -> None:
    # (config, user, flow, expected action)
    lan, tail, pub = "192.168.1.20", "100.100.1.2", "203.0.113.9"
    cases = [
        ({}, None, Flow(Direction.INGRESS, lan, Protocol.TCP, 18789), Action.DENY),
        ({"gateway": {"bind": "tailnet"}}, None, Flow(Direction.INGRESS, tail, Protocol.TCP, 18789), Action.ALLOW),
        ({"gateway": {"bind": "tailnet"}}, None, Flow(Direction.INGRESS, lan, Protocol.TCP, 18789), Action.DENY),
        ({"gateway": {"bind": "lan", "port": 20000}}, "agent", Flow(Direction.INGRESS, lan, Protocol.TCP, 20000), Action.ALLOW),
        ({"gateway": {"bind": "auto"}}, None, Flow(Direction.INGRESS, pub, Protocol.TCP, 18789), Action.DENY),
        ({"gateway": {"bind": "custom", "customBindHost": "127.0.0.1"}}, None,
         Flow(Direction.INGRESS, lan, Protocol.TCP, 18789), Action.DENY),
        ({}, None, Flow(Direction.EGRESS, "224.0.0.251", Protocol.UDP, 5353), Action.DENY),
        ({"discovery": {"mdns": {"mode": "minimal"}}}, None, Flow(Direction.EGRESS, "ff02::fb", Protocol.UDP, 5353), Action.ALLOW),
        ({"update": {"checkOnStart": False}}, None, Flow(Direction.EGRESS, "registry.npmjs.org", Protocol.TCP, 443), Action.DENY),
        ({"update": {"checkOnStart": False, "auto": {"enabled": True}}}, None,
         Flow(Direction.EGRESS, "registry.npmjs.org", Protocol.TCP, 443), Action.ALLOW),
    ]
    for n, (config, user, flow, expected) in enumerate(cases):
        with subtests.test(msg=f"{config} {flow}"):  # type: ignore[attr-defined]
            (tmp_path / str(n)).mkdir()
            loaded = load_policies([_policy(tmp_path / str(n), config, user)])
            assert loaded.ok, loaded.diagnostics
            assert evaluate(loaded.policies[0], flow).action is expected


def test_starter_sockets_let_openclaw_read_its_interfaces(tmp_path: Path) -> None:
    """Node's os.networkInterfaces() needs NETLINK_ROUTE: the starter allows that netlink
    protocol and no other (tests/kernel/test_netlink_kernel.py runs node under the profile)."""
    loaded = load_policies([_policy(tmp_path, {"gateway": {"bind": "tailnet"}})])
    assert loaded.ok, loaded.diagnostics
    assert not [d for d in loaded.diagnostics if d.code == "netlink-any"]
    sockets = loaded.policies[0].sockets
    assert sockets is not None and sockets.reason
    assert [str(k) for k in sockets.allow if k.family == "netlink"] == ["netlink route"]
