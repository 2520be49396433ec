"""NetworkPolicy semantics as a test oracle: the vanilla manifests allow exactly what the IR
evaluator allows, for every flow NetworkPolicy can express, and every flow they cannot
express touches a rule compile reported.

The oracle follows the Kubernetes API reference and "Network Policies" concept page, written
independently of the backend: a policy applies to a pod when its namespace matches and its
podSelector's matchLabels are a subset of the pod's labels; a pod is isolated in a direction
when some applying policy lists it in policyTypes; then a connection passes when any rule of
any applying policy matches it (union): a rule matches when one of its peers matches (no
`to`/`from`: every peer) AND one of its ports matches (no `ports`: every port and protocol);
an ipBlock matches an address in `cidr` and in no `except`; a port matches its protocol
(default TCP) and `port`..`endPort` (no port: all). Flows are TCP/UDP to or from addresses
outside the cluster: ICMP is left to the network plugin, names are never seen.
"""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path
from typing import Any

import yaml
from policy_snippets import snippet_policy

from clawpolicy.backends import k8s
from clawpolicy.backends.base import CompileOptions
from clawpolicy.evaluate import Flow, evaluate, peer_matches
from clawpolicy.ir import Action, Direction, Policy, Protocol
from clawpolicy.lower import load_policies

REPO = Path(__file__).resolve().parents[2]
POD = ("agents", {"app": "openclaw", "tier": "gateway"})  # namespace, labels of the pod


def _applies(np: dict[str, Any], namespace: str, labels: dict[str, str]) -> bool:
    wanted = np["spec"]["podSelector"].get("matchLabels", {})
    return np["metadata"].get("namespace", "default") == namespace and all(
        labels.get(k) == v for k, v in wanted.items())


def _peer_ok(peer: dict[str, Any], address: str) -> bool:
    if "ipBlock" not in peer:  # pod/namespace selectors: never an address outside the cluster
        return False
    ip = ipaddress.ip_address(address)
    cidr = ipaddress.ip_network(peer["ipBlock"]["cidr"])
    if ip.version != cidr.version or ip not in cidr:
        return False
    return not any(ip in ipaddress.ip_network(e) for e in peer["ipBlock"].get("except", []))


def _port_ok(port: dict[str, Any], protocol: str, number: int) -> bool:
    if port.get("protocol", "TCP") != protocol.upper():
        return False
    if "port" not in port:
        return True
    return int(port["port"]) <= number <= int(port.get("endPort", port["port"]))


def allows(policies: list[dict[str, Any]], flow: Flow) -> bool:
    """Whether NetworkPolicy lets the pod POD open (egress) or accept (ingress) the flow."""
    kind, key = (("Egress", "to") if flow.direction is Direction.EGRESS else ("Ingress", "from"))
    applying = [p for p in policies if _applies(p, *POD)
                and kind in p["spec"].get("policyTypes", ["Ingress"])]
    if not applying:
        return True
    for p in applying:
        for rule in p["spec"].get(kind.lower(), []) or []:
            peers = rule.get(key)
            ports = rule.get("ports")
            if (peers is None or any(_peer_ok(x, flow.peer) for x in peers)) and (
                    ports is None or any(_port_ok(x, flow.protocol.value, flow.port or 0)
                                         for x in ports)):
                return True
    return False


def _random_policy(rng: random.Random) -> str:
    nets = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3", "192.0.2.0/24", "192.0.2.128/25",
            "0.0.0.0/0", "2001:db8::/32", "2001:db8:1::/48", "any", "203.0.113.7"]
    ports = ["443/tcp", "80/tcp", "1000-2000/tcp", "1500-1600/tcp", "53/udp", "udp", "tcp",
             "5000-5100/udp", "22/tcp"]
    lines = []
    for n in range(rng.randint(1, 6)):
        action = rng.choice(["allow", "allow", "deny"])
        direction, kw = rng.choice([("egress", "to"), ("ingress", "from")])
        peers = ", ".join(sorted(set(rng.sample(nets, rng.randint(1, 2)))))
        port = ""
        if rng.random() < 0.7:
            port = " port " + ", ".join(sorted(set(rng.sample(ports, rng.randint(1, 3)))))
        lines.append(f'{action} {direction} {kw} {peers}{port} reason "r{n}" id r{n}')
    return "\n".join(lines)


def _flows(policy: Policy, rng: random.Random) -> list[Flow]:
    addresses = ["10.0.0.1", "10.1.0.9", "10.1.2.3", "10.1.2.4", "192.0.2.1", "192.0.2.200",
                 "203.0.113.7", "198.51.100.1", "2001:db8::1", "2001:db8:1::5", "2001:db9::1"]
    for rule in policy.rules:  # the edges of every range the policy names
        for net in (*rule.peers.ipv4, *rule.peers.ipv6):
            addresses += [str(net.network_address), str(net.broadcast_address)]
    port_values = [1, 22, 53, 79, 80, 81, 443, 999, 1000, 1499, 1500, 1600, 1601, 2000, 2001,
                   5000, 5100, 5101, 65535] + [rng.randint(1, 65535) for _ in range(5)]
    return [Flow(d, a, p, n) for d in Direction for a in sorted(set(addresses))
            for p in (Protocol.TCP, Protocol.UDP) for n in port_values]


def _reported(policy: Policy, flow: Flow, unenforced: set[str]) -> bool:
    """A flow NetworkPolicy may get wrong: one a reported rule matches."""
    return any(r.id in unenforced and r.direction is flow.direction and peer_matches(r.peers, flow.peer)
               and (not r.ports or any(p.covers(flow.protocol, flow.port) for p in r.ports))
               for r in policy.rules)


def check(policy: Policy, options: CompileOptions | None = None) -> tuple[int, int]:
    """(flows compared, flows skipped as reported); asserts every compared flow agrees."""
    policy = policy.model_copy(update={"scope": policy.scope.model_copy(update={
        "kind": "pods", "pod_selector": (("app", "openclaw"),), "namespace": POD[0]})})
    result = k8s.BACKEND.compile(policy, options or CompileOptions())
    manifest = next(a for a in result.artifacts if a.path == "networkpolicy.yaml")
    policies = list(yaml.safe_load_all(manifest.content))
    unenforced = {d.message.split(":")[0] for d in result.diagnostics if d.code == "unenforced"}
    unenforced |= set(yaml.safe_load(policies[0]["metadata"]["annotations"].get(
        "clawpolicy.dev/not-enforced", "{}")))
    compared = skipped = 0
    for flow in _flows(policy, random.Random(policy.name)):
        if _reported(policy, flow, unenforced):
            skipped += 1
            continue
        compared += 1
        expected = evaluate(policy, flow).action is Action.ALLOW
        assert allows(policies, flow) == expected, (str(flow), evaluate(policy, flow))
    return compared, skipped


def test_oracle_on_generated_policies(tmp_path: Path, subtests: Any) -> None:
    rng = random.Random(20261123)  # seeded: the same 150 policies every run
    total = 0
    for n in range(150):
        body = _random_policy(rng)
        with subtests.test(n=n, policy=body):
            compared, _ = check(snippet_policy(tmp_path, body, "applies-to pods app=openclaw"))
            total += compared
    assert total > 100_000


def test_oracle_on_examples_and_their_tests(subtests: Any) -> None:
    loaded = load_policies(sorted((REPO / "examples").glob("*.claw")))
    assert loaded.ok, loaded.diagnostics
    for policy in loaded.policies:
        if policy.local_dns is not None:  # DNS via a local resolver: no pod equivalent
            policy = policy.model_copy(update={"local_dns": None})
        with subtests.test(policy=policy.name):
            compared, _ = check(policy)
            assert compared
            for t in policy.tests:  # the policy's own claims, where expressible
                flow = Flow(t.direction, t.peer, t.protocol, t.port)
                try:
                    ipaddress.ip_address(t.peer)
                except ValueError:
                    continue
                if t.protocol is not Protocol.ICMP:
                    assert evaluate(policy, flow).action is t.verdict


def test_oracle_agrees_with_the_examples_lock(subtests: Any) -> None:
    """With a lock, names are ipBlocks: flows to the locked addresses are compared too."""
    policy = snippet_policy(REPO / "tests", "", "applies-to pods app=openclaw") if False else None
    assert policy is None
    loaded = load_policies([REPO / "examples/openclaw-k8s.claw"])
    base = loaded.policies[0]
    names = sorted({n for r in base.rules for n in r.peers.names})
    lock = {n: (f"198.18.0.{i + 1}",) for i, n in enumerate(names)}
    # in the evaluator, a locked name is its addresses: rewrite the rules the same way
    rules = tuple(r.model_copy(update={"peers": r.peers.model_copy(update={
        "names": (), "ipv4": tuple(sorted({*r.peers.ipv4, *(ipaddress.IPv4Network(a) for n in
                                                            r.peers.names for a in lock[n])}))})})
                  for r in base.rules)
    compared, skipped = check(base.model_copy(update={"rules": rules}))
    assert compared and not skipped
    compared, _ = check(base, CompileOptions(lock=lock))
    assert compared
