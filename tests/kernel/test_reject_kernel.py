"""Reject instead of drop, in the kernel: a denied connect fails at once.

A policy with denies of each refusal (a rule's own `reject` or `drop`, the policy's
`--deny-action` for the default deny) is loaded in a namespace lab and probed over IPv4 and
IPv6. The probes wait far longer than a reject needs, so the outcome, not a clock, shows
whether a flow failed at once. What the kernel reports (measured here, Linux 6.18):
- egress TCP: a reject's reset fails connect() with ECONNREFUSED at once; a drop leaves
  the SYN to be retransmitted until the caller's timeout (Node: about two minutes);
- egress UDP/ICMP from this host: the OUTPUT hook's verdict (a reject also drops the packet
  after answering) fails send() with EPERM at once, whichever the refusal;
- ingress: a reject answers the remote peer (a TCP reset: ECONNREFUSED; ICMP/ICMPv6
  administratively prohibited: EHOSTUNREACH on IPv4, EACCES on IPv6), a drop says nothing.
Every verdict and refusal is the evaluator's too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from netlab import Lab, Probe, format_results

from clawpolicy.backends.base import CompileOptions
from clawpolicy.backends.nftables import render
from clawpolicy.evaluate import Flow, evaluate
from clawpolicy.ir import Action, Direction, Mode, Policy, Protocol, Refusal
from clawpolicy.lower import load_policies

pytestmark = pytest.mark.root
WAIT = 4.0  # a probe that hits a drop waits this long; a rejected one returns at once
PEERS = {"rejected": ("192.0.2.21", "2001:db8:21::1"), "dropped": ("192.0.2.22", "2001:db8:22::1"),
         "open": ("192.0.2.23", "2001:db8:23::1"), "inbound": ("192.0.2.24", "2001:db8:24::1")}
POLICY = """policy rejectlab {{
  applies-to host
  deny egress to {rejected} port 443/tcp, 53/udp reason "fail fast" id rej reject
  deny egress to {dropped} port 443/tcp, 53/udp reason "stay silent" id drp drop
  allow egress to {open} port 22/tcp reason "the one allowed service" id open
  allow ingress from any port 443/tcp reason "a public service" id web
  allow ingress from any port 53/udp reason "a public resolver" id dns
  deny ingress from {inbound} port 443/tcp, 53/udp reason "a known scanner" id scanner reject
}}
"""


def _policy(tmp_path: Path) -> Policy:
    src = tmp_path / "rejectlab.claw"
    src.write_text(POLICY.format(**{k: ", ".join(v) for k, v in PEERS.items()}))
    loaded = load_policies([src])
    assert loaded.ok, [d.message for d in loaded.diagnostics]
    return loaded.policies[0]


def _expected(policy: Policy, probe: Probe) -> set[str]:
    """The outcomes the evaluator's verdict allows for this probe."""
    verdict = evaluate(policy, Flow(Direction(probe.direction), probe.remote,
                                    Protocol(probe.protocol), probe.port))
    if verdict.passes:
        return {"ok"}
    if probe.direction == "egress" and probe.protocol != "tcp":
        return {"eperm"}  # the local send fails at once, drop or reject
    if verdict.refusal is Refusal.REJECT:
        # TCP: a reset. Anything else: ICMP admin-prohibited, which the kernel reports as
        # EHOSTUNREACH (IPv4) or EACCES (IPv6); both are "unreachable" to the probe.
        return {"refused"} if probe.protocol == "tcp" else {"unreachable"}
    return {"timeout"}  # a drop: silence until the caller gives up


def _probes() -> list[Probe]:
    out = []
    for family in (0, 1):
        for name in ("rejected", "dropped", "open"):
            addr = PEERS[name][family]
            out += [Probe("egress", addr, "tcp", 443), Probe("egress", addr, "udp", 53),
                    Probe("egress", addr, "tcp", 22)]
        out += [Probe("ingress", PEERS["inbound"][family], "tcp", 443),
                Probe("ingress", PEERS["inbound"][family], "udp", 53),
                Probe("ingress", PEERS["inbound"][family], "tcp", 22),
                Probe("ingress", PEERS["open"][family], "udp", 53),
                Probe("ingress", PEERS["open"][family], "tcp", 443)]
    return out


@pytest.fixture(scope="module")
def lab() -> Lab:
    with Lab(peer_addresses=[a for pair in PEERS.values() for a in pair],
             tcp_ports=(22, 443), udp_ports=(53,)) as lab_:
        yield lab_


@pytest.mark.parametrize("egress", [Refusal.DROP, Refusal.REJECT], ids=lambda r: f"deny-action-{r.value}")
def test_rejects_fail_at_once(lab: Lab, tmp_path: Path, egress: Refusal, subtests: pytest.Subtests) -> None:
    policy = _policy(tmp_path).with_refusal(egress=egress)
    lab.load_ruleset(render(policy, CompileOptions()))
    probes = _probes()
    results = lab.probe_results(probes, timeout=WAIT)
    report = format_results(results)
    seen = set()
    for probe, result in zip(probes, results, strict=True):
        expected = _expected(policy, probe)
        seen |= expected
        with subtests.test(probe=str(probe)):
            assert result.outcome in expected, f"{probe}: {result.outcome} ({result.errno})\n{report}"
    # each kind happened: resets, ICMP errors, local EPERM, silence, passes
    assert {"refused", "unreachable", "eperm", "timeout", "ok"} <= seen


def test_reject_policy_covers_default_deny_but_not_ingress(tmp_path: Path) -> None:
    """What the kernel test relies on, stated on the evaluator: --deny-action reject turns the
    egress default deny and rule-less-word denies into rejects; ingress keeps drop, and a
    rule's own `drop` wins."""
    policy = _policy(tmp_path).with_refusal(egress=Refusal.REJECT)
    default_egress = evaluate(policy, Flow(Direction.EGRESS, PEERS["open"][0], Protocol.TCP, 443))
    assert (default_egress.cause, default_egress.refusal) == ("default", Refusal.REJECT)
    default_ingress = evaluate(policy, Flow(Direction.INGRESS, PEERS["inbound"][1], Protocol.TCP, 22))
    assert (default_ingress.cause, default_ingress.refusal) == ("default", Refusal.DROP)
    own_drop = evaluate(policy, Flow(Direction.EGRESS, PEERS["dropped"][1], Protocol.UDP, 53))
    assert (own_drop.rule_id, own_drop.refusal) == ("drp", Refusal.DROP)
    allowed = evaluate(policy, Flow(Direction.EGRESS, PEERS["open"][1], Protocol.TCP, 22))
    assert (allowed.action, allowed.refusal) == (Action.ALLOW, None)


def test_shadow_rejects_nothing(lab: Lab, tmp_path: Path) -> None:
    policy = _policy(tmp_path).with_refusal(egress=Refusal.REJECT).with_mode(Mode.SHADOW)
    text = render(policy, CompileOptions())
    assert " reject with " not in text
    lab.load_ruleset(text)
    probes = [p for p in _probes() if p.direction == "egress"]
    results = lab.probe_results(probes, timeout=WAIT)
    assert all(r.ok for r in results), format_results(results)
