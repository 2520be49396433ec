"""np-guard's network-config-analyzer (NCA) as an independent oracle for the Kubernetes target.

NCA reads NetworkPolicy and Calico manifests with a cluster of pods and namespaces and answers
which connections exist (`--connectivity`) and which appeared or disappeared between two
versions (`--semantic_diff`). Here, for generated vanilla and Calico manifests:
- every sampled flow between the agent pod and an address outside the cluster is allowed by NCA
  exactly when the evaluator allows it (flows touching a rule compile reported as not enforced
  are left out, as in test_k8s_oracle.py);
- for change sets, NCA's added and removed connections to and from ipBlocks are the same
  regions, cell by cell, as the widened and narrowed reach `clawpolicy diff` reports
  (review.reach.reach_changes).

NCA lives in its own venv (.venv-nca, pinned by scripts/setup.sh: it pins old dependencies). Where
it is missing the tests skip, saying why; in CI (CI set) they fail. NCA 2.1.0 rejects the
per-rule `metadata` (annotations) that Calico v3 allows, so it is stripped before NCA reads the
manifest: annotations carry rule IDs, never meaning.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from policy_snippets import snippet_policy

from clawpolicy.backends import k8s
from clawpolicy.backends.base import CompileOptions
from clawpolicy.evaluate import Flow, evaluate, peer_matches
from clawpolicy.ir import Action, Direction, Policy, Protocol
from clawpolicy.lower import load_policies
from clawpolicy.review.reach import reach_changes

REPO = Path(__file__).resolve().parents[2]
NCA = REPO / ".venv-nca" / "bin" / "nca"
NAMESPACE = "agents"
POD_LABELS = {"app": "openclaw", "tier": "gateway"}
HEADER = "mode enforce\n applies-to pods app=openclaw, tier=gateway in namespace agents"
PROTOCOLS = (Protocol.TCP, Protocol.UDP)  # NetworkPolicy leaves ICMP undefined
FLAVORS = ("vanilla", "calico")
# (direction, protocol, family) -> boxes (address lo, hi, port lo, hi), all inclusive
Region = dict[tuple[Direction, Protocol, int], list[tuple[int, int, int, int]]]

# Policies whose every part a NetworkPolicy can say (addresses, ports, deny carving, both
# directions, both families): each flavour must agree with the evaluator on all of them.
POLICIES = {
    "carved allow": ('allow egress to 10.20.0.0/16 port 8000-8100/tcp reason "tools"\n'
                     'deny egress to 10.20.4.13 port 8080/tcp reason "legacy admin"\n'
                     'deny egress to 10.20.9.0/24 reason "other team"'),
    "internet https but not private": ('allow egress to 0.0.0.0/0, ::/0 port 443/tcp reason "web"\n'
                                       'deny egress to 10.0.0.0/8, 192.168.0.0/16, fc00::/7 reason "lan"\n'
                                       'allow egress to 10.0.0.53 port 53/udp, 53/tcp reason "dns"'),
    "ingress and udp": ('allow ingress from 10.42.0.0/16, 2001:db8:42::/48 port 18789/tcp reason "gw"\n'
                        'deny ingress from 10.42.7.0/24 reason "quarantined nodes"\n'
                        'allow egress to 198.51.100.0/24 port 5000-5100/udp, 22/tcp reason "svc"'),
}
# old body, new body: edits whose reach diff reports (widen by edit, by new rule, narrow by a deny)
CHANGE_SETS = {
    "widen a range by edit": (
        'allow egress to 10.20.4.0/22 port 8000-8100/tcp reason "tools"\n'
        'deny egress to 10.20.4.13 port 8080/tcp reason "legacy admin"',
        'allow egress to 10.0.0.0/8 port 8000-8100/tcp reason "tools"\n'
        'deny egress to 10.20.4.13 port 8080/tcp reason "legacy admin"'),
    "ports, a new deny, ingress moved": (
        'allow egress to 0.0.0.0/0 port 443/tcp reason "web"\n'
        'allow ingress from 10.42.0.0/16 port 18789/tcp reason "gw"',
        'allow egress to 0.0.0.0/0 port 443/tcp, 8443/tcp reason "web"\n'
        'deny egress to 203.0.113.0/24 reason "blocked"\n'
        'allow ingress from 10.43.0.0/16, 2001:db8::/32 port 18789/tcp reason "gw"'),
}


@pytest.fixture(scope="module")
def nca() -> Path:
    if not NCA.exists():
        why = f"network-config-analyzer is not installed in {NCA.parent.parent.name} (scripts/setup.sh)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return NCA


def _cluster(tmp: Path) -> list[str]:
    """NCA's pod and namespace lists: the agent pod (the policy's selector) in its namespace,
    and the cluster DNS pod the vanilla/Calico DNS rule selects."""
    def ns(name: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {
            "kubernetes.io/metadata.name": name, "projectcalico.org/name": name}}}

    def pod(name: str, namespace: str, labels: dict[str, str], ip: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "spec": {"containers": [{"name": name, "image": "example.invalid/x"}]},
                "status": {"podIP": ip, "hostIP": "192.0.2.250"}}

    (tmp / "ns.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "NamespaceList", "items": [
        ns(NAMESPACE), ns("kube-system")]}))
    (tmp / "pods.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "PodList", "items": [
        pod("agent-0", NAMESPACE, POD_LABELS, "10.244.1.5"),
        pod("coredns-0", "kube-system", {"k8s-app": "kube-dns"}, "10.244.0.10")]}))
    return ["--pod_list", str(tmp / "pods.yaml"), "--ns_list", str(tmp / "ns.yaml")]


def _manifest(policy: Policy, flavor: str, path: Path) -> tuple[Path, set[str]]:
    """The flavour's manifest (for NCA) and the IDs of rules compile reported as not enforced."""
    result = k8s.BACKEND.compile(policy, CompileOptions(k8s_flavor=flavor))  # type: ignore[arg-type]
    artifact = next(a for a in result.artifacts if a.path == k8s.FILES[flavor])
    docs = [d for d in yaml.safe_load_all(artifact.content) if d]
    for doc in docs:
        for direction in ("ingress", "egress"):
            for rule in doc["spec"].get(direction, []) or []:
                rule.pop("metadata", None)  # NCA 2.1.0 refuses Calico's rule annotations
    path.write_text(yaml.safe_dump_all(docs))
    unenforced = {d.message.split(":")[0] for d in result.diagnostics if d.code == "unenforced"}
    unenforced |= set(json.loads(docs[0]["metadata"]["annotations"].get("clawpolicy.dev/not-enforced", "{}")))
    return path, unenforced


def _run(nca: Path, args: list[str]) -> list[dict[str, Any]]:
    done = subprocess.run([str(nca), *args, "--output_format", "json", "--print_ipv6"],
                          capture_output=True, text=True, timeout=300, check=False)
    start = done.stdout.find("[")
    assert start >= 0, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    answer, _ = json.JSONDecoder().raw_decode(done.stdout[start:])
    assert isinstance(answer, list)
    return answer


def _block(text: str) -> tuple[int, int, int]:
    """(family, first, last) of an NCA ipBlock: a CIDR or `first-last`."""
    if "-" in text:
        lo, hi = (ipaddress.ip_address(x) for x in text.split("-"))
        return lo.version, int(lo), int(hi)
    net = ipaddress.ip_network(text)
    return net.version, int(net.network_address), int(net.broadcast_address)


def _connections(items: Iterable[Any]) -> Iterator[tuple[Protocol, int, int]]:
    """NCA's connection descriptions as (protocol, first port, last port), TCP/UDP only."""
    for item in items:
        if item == "All connections":
            yield from ((p, 1, 65535) for p in PROTOCOLS)
            continue
        assert isinstance(item, dict) and set(item) <= {"protocols", "dst_ports"}, item
        for name in str(item["protocols"]).replace(" ", "").split(","):
            if name.lower() not in ("tcp", "udp"):
                continue
            for port in item.get("dst_ports", ["1-65535"]):
                lo, _, hi = str(port).partition("-")
                yield Protocol(name.lower()), int(lo), int(hi or lo)


def _region(rules: Iterable[dict[str, Any]]) -> Region:
    """The connections between the agent's namespace and ipBlocks that `rules` list."""
    region: Region = {}
    for rule in rules:
        if "dst_ip_block" in rule and NAMESPACE in rule.get("src_ns", []):
            direction, blocks = Direction.EGRESS, rule["dst_ip_block"]
        elif "src_ip_block" in rule and NAMESPACE in rule.get("dst_ns", []):
            direction, blocks = Direction.INGRESS, rule["src_ip_block"]
        else:
            continue  # pod to pod (the cluster DNS), or other namespaces
        pods = rule.get("src_pods" if direction is Direction.EGRESS else "dst_pods")
        assert pods in (["*"], ["agent-0"]), rule
        for family, lo, hi in map(_block, blocks):
            for protocol, plo, phi in _connections(rule["connection"]):
                region.setdefault((direction, protocol, family), []).append((lo, hi, plo, phi))
    return region


def _inside(region: Region, flow: Flow) -> bool:
    address = ipaddress.ip_address(flow.peer)
    port = flow.port or 0
    return any(lo <= int(address) <= hi and plo <= port <= phi
               for lo, hi, plo, phi in region.get((flow.direction, flow.protocol, address.version), []))


def _flows(policy: Policy, region: Region, rng: random.Random) -> list[Flow]:
    """Both sides of every edge NCA and the policy draw, and random flows besides."""
    addresses = {"198.51.100.77", "203.0.113.9", "8.8.8.8", "2001:db8::1", "2001:db9::5"}
    ports = {1, 22, 53, 443, 8080, 18789, 65535, *(rng.randint(1, 65535) for _ in range(4))}
    nets: list[tuple[int, int, int]] = [(n.version, int(n.network_address), int(n.broadcast_address))
                                         for r in policy.rules for n in r.peers.ipv4]
    nets += [(n.version, int(n.network_address), int(n.broadcast_address))
             for r in policy.rules for n in r.peers.ipv6]
    for (_, _, family), boxes in region.items():
        nets += [(family, lo, hi) for lo, hi, _, _ in boxes]
        ports |= {p for _, _, plo, phi in boxes for p in (plo - 1, plo, phi, phi + 1) if 0 < p < 65536}
    for rule in policy.rules:
        for r in rule.ports:
            if r.first is not None and r.last is not None:
                ports |= {p for p in (r.first - 1, r.first, r.last, r.last + 1) if 0 < p < 65536}
    top = {4: 2**32 - 1, 6: 2**128 - 1}
    for family, lo, hi in nets:
        for value in (lo - 1, lo, hi, hi + 1, rng.randint(lo, hi)):
            if 0 <= value <= top[family]:
                addresses.add(str(ipaddress.ip_address(value) if family == 4 else ipaddress.IPv6Address(value)))
    usable = [a for a in sorted(addresses) if not ipaddress.ip_address(a).is_loopback]
    return [Flow(d, a, p, n) for d in Direction for a in usable for p in PROTOCOLS for n in sorted(ports)]


def _reported(policy: Policy, flow: Flow, unenforced: set[str]) -> bool:
    return any(r.id in unenforced and r.direction is flow.direction and peer_matches(r.peers, flow.peer)
               and (not r.ports or any(p.covers(flow.protocol, flow.port) for p in r.ports))
               for r in policy.rules)


def _agree(nca: Path, policy: Policy, flavor: str, tmp: Path) -> int:
    manifest, unenforced = _manifest(policy, flavor, tmp / f"{flavor}.yaml")
    (answer,) = _run(nca, ["--connectivity", str(manifest), *_cluster(tmp)])
    region = _region(r for e in answer["explanation"] for r in e["rules"])
    compared = 0
    for flow in _flows(policy, region, random.Random(policy.name + flavor)):
        if _reported(policy, flow, unenforced):
            continue
        compared += 1
        assert _inside(region, flow) == (evaluate(policy, flow).action is Action.ALLOW), str(flow)
    return compared


def test_connectivity_agrees_with_the_evaluator(nca: Path, tmp_path: Path, subtests: pytest.Subtests) -> None:
    for name, body in POLICIES.items():
        for flavor in FLAVORS:
            with subtests.test(policy=name, flavor=flavor):
                work = tmp_path / f"{len(list(tmp_path.iterdir()))}"
                work.mkdir()
                assert _agree(nca, snippet_policy(work, body, HEADER), flavor, work) > 500


def test_connectivity_of_the_k8s_example(nca: Path, tmp_path: Path, subtests: pytest.Subtests) -> None:
    loaded = load_policies([REPO / "examples/openclaw-k8s.claw"])
    assert loaded.ok, loaded.diagnostics
    policy = loaded.policies[0]
    policy = policy.model_copy(update={"scope": policy.scope.model_copy(update={
        "pod_selector": tuple(sorted(POD_LABELS.items())), "namespace": NAMESPACE})})
    for flavor in FLAVORS:
        with subtests.test(flavor=flavor):
            (tmp_path / flavor).mkdir()
            assert _agree(nca, policy, flavor, tmp_path / flavor) > 500


def test_the_oracle_sees_a_lost_deny(nca: Path, tmp_path: Path) -> None:
    """Not vacuous: a vanilla manifest that lost its except-carving (the deny) disagrees."""
    policy = snippet_policy(tmp_path, POLICIES["carved allow"], HEADER)
    manifest, _ = _manifest(policy, "vanilla", tmp_path / "vanilla.yaml")
    docs = list(yaml.safe_load_all(manifest.read_text()))
    for rule in docs[0]["spec"]["egress"]:
        for peer in rule.get("to", []):
            peer.get("ipBlock", {}).pop("except", None)
    manifest.write_text(yaml.safe_dump_all(docs))
    (answer,) = _run(nca, ["--connectivity", str(manifest), *_cluster(tmp_path)])
    region = _region(r for e in answer["explanation"] for r in e["rules"])
    assert _inside(region, Flow(Direction.EGRESS, "10.20.9.1", Protocol.TCP, 8000))
    assert evaluate(policy, Flow(Direction.EGRESS, "10.20.9.1", Protocol.TCP, 8000)).action is Action.DENY


def _diff_region(old: Policy, new: Policy, widened: bool) -> Region:
    region: Region = {}
    for change in reach_changes(old, new):
        if change.widened is not widened or change.family is None:
            continue
        for protocol, (plo, phi) in change.ports:
            if protocol in PROTOCOLS:
                region.setdefault((change.direction, protocol, change.family), []).extend(
                    (lo, hi, plo, phi) for lo, hi in change.intervals)
    return region


LOOPBACK = {4: (int(ipaddress.IPv4Address("127.0.0.0")), int(ipaddress.IPv4Address("127.255.255.255"))),
            6: (1, 1)}


def _cells(a: Region, b: Region) -> Iterator[tuple[tuple[Direction, Protocol, int], int, int]]:
    """A point in every cell of the grid both regions' edges draw: two regions are equal iff
    every such point is in both or in neither. Loopback is left out: the evaluator always
    allows it (it never leaves the pod), NetworkPolicy does not say."""
    for key in sorted(a.keys() | b.keys(), key=str):
        boxes = a.get(key, []) + b.get(key, [])
        low, high = LOOPBACK[key[2]]
        addresses = sorted({x for lo, hi, _, _ in boxes for x in (lo, hi + 1)} | {low, high + 1})
        ports = sorted({x for _, _, lo, hi in boxes for x in (lo, hi + 1)})
        for address in (x for x in addresses if not low <= x <= high):
            for port in ports:
                if 1 <= port <= 65535:
                    yield key, address, port


def _holds(region: Region, key: tuple[Direction, Protocol, int], address: int, port: int) -> bool:
    return any(lo <= address <= hi and plo <= port <= phi for lo, hi, plo, phi in region.get(key, []))


def test_semantic_diff_names_the_regions_diff_reports(nca: Path, tmp_path: Path,
                                                      subtests: pytest.Subtests) -> None:
    for n, (name, (old_body, new_body)) in enumerate(CHANGE_SETS.items()):
        for side in ("o", "n"):
            (tmp_path / f"{n}{side}").mkdir()
        old = snippet_policy(tmp_path / f"{n}o", old_body, HEADER)
        new = snippet_policy(tmp_path / f"{n}n", new_body, HEADER)
        for flavor in FLAVORS:
            with subtests.test(change=name, flavor=flavor):
                work = tmp_path / f"{n}{flavor}"
                work.mkdir()
                before, _ = _manifest(old, flavor, work / "old.yaml")
                after, _ = _manifest(new, flavor, work / "new.yaml")
                (answer,) = _run(nca, ["--semantic_diff", str(after), "--base_np_list", str(before),
                                       *_cluster(work)])
                found: dict[bool, Region] = {True: {}, False: {}}
                for part in answer.get("explanation", []):
                    if "ipBlocks" in part["description"]:
                        widened = part["description"].startswith("Added")
                        assert widened or part["description"].startswith("Removed"), part["description"]
                        for key, boxes in _region(part["rules"]).items():
                            found[widened].setdefault(key, []).extend(boxes)
                assert found[True], "each change set widens something"
                for widened in (True, False):
                    ours = _diff_region(old, new, widened)
                    for key, address, port in _cells(found[widened], ours):
                        assert _holds(found[widened], key, address, port) == _holds(ours, key, address, port), (
                            widened, key, str(ipaddress.ip_address(address) if key[2] == 4
                                              else ipaddress.IPv6Address(address)), port)
