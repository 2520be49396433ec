"""The k8s target: manifests validate strictly against the official schemas (Kubernetes via
kubernetes-validate, Cilium and Calico via their CRDs in ../shared/schemas), a wrong object
fails the same check, hostile text stays a string value, and `applies-to pods` lowers as
documented. The semantics of the vanilla manifests are in test_k8s_oracle.py."""

from __future__ import annotations

import copy
import dataclasses
import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from policy_snippets import snippet_policy
from shared_schemas import schema_path

from clawpolicy.backends import k8s
from clawpolicy.backends.base import CompileOptions
from clawpolicy.cli import main
from clawpolicy.ir import Mode, Policy
from clawpolicy.lower import load_policies

REPO = Path(__file__).resolve().parents[2]
K8S_VERSIONS = ("1.37", "1.36")  # kubernetes-validate's newest schemas and one minor older
CRDS = {"CiliumNetworkPolicy": "cilium/ciliumnetworkpolicies.yaml",
        "NetworkPolicy": "calico/projectcalico.org_networkpolicies.yaml",
        "StagedNetworkPolicy": "calico/projectcalico.org_stagednetworkpolicies.yaml"}
PODS = 'mode enforce\n applies-to pods app=openclaw in namespace agents'
HOSTILE = 'x\n---\nkind: ClusterRoleBinding\nmetadata: {name: pwn}\n# "quoted" \u2028 }{ &a *a: !!python/object'


def _strict(schema: Any) -> Any:
    """CRD schemas leave unknown fields open; reject them, as the API server's strict field
    validation does (except where the schema keeps unknown fields on purpose). The branches
    of anyOf/oneOf only list required fields (empty property schemas): left as they are."""
    if isinstance(schema, dict):
        out = {k: v if k in ("anyOf", "oneOf", "allOf", "not") else _strict(v)
               for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out and not out.get(
                "x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def _crd_validator(kind: str) -> jsonschema.Draft202012Validator:
    crd = yaml.safe_load(schema_path(CRDS[kind]).read_text(encoding="utf-8"))
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def validate(obj: dict[str, Any]) -> None:
    """Raises when the object is not valid for its API; every kind the target writes."""
    if obj["apiVersion"] == "networking.k8s.io/v1":
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
    elif obj["apiVersion"] == "apps/v1":  # the patch: its security contexts inside a Pod
        pod_spec = obj["spec"]["template"]["spec"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
               "spec": {"securityContext": pod_spec["securityContext"], "containers": [
                   {**c, "image": "openclaw:latest"} for c in pod_spec["containers"]]}}
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(pod, version, strict=True)
    else:
        _crd_validator(obj["kind"]).validate(obj)


def compile_k8s(policy: Policy, flavor: str = "vanilla", **kw: Any) -> dict[str, str]:
    result = k8s.BACKEND.compile(policy, CompileOptions(k8s_flavor=flavor, **kw))  # type: ignore[arg-type]
    assert not [d for d in result.diagnostics if d.severity.value == "error"], result.diagnostics
    return {a.path: a.content.decode() for a in result.artifacts}


def objects(files: dict[str, str]) -> list[dict[str, Any]]:
    return [o for path, text in sorted(files.items()) if path.endswith(".yaml")
            and path != "kustomization.yaml" for o in yaml.safe_load_all(text)]


def _example() -> Policy:
    loaded = load_policies([REPO / "examples/openclaw-k8s.claw"])
    assert loaded.ok, loaded.diagnostics
    return loaded.policies[0]


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("flavor", ["vanilla", "cilium", "calico"])
def test_manifests_validate_strictly(flavor: str, mode: Mode, subtests: Any) -> None:
    for obj in objects(compile_k8s(_example().with_mode(mode), flavor)):
        with subtests.test(kind=obj["kind"]):
            validate(obj)


def test_the_check_can_fail(subtests: Any) -> None:
    policy = _example()
    cases = [("vanilla", "unknown field", lambda o: o["spec"]["egress"][0].update(bogus=1)),
             ("vanilla", "endPort as string", lambda o: o["spec"]["egress"][0]["ports"][0].update(
                 endPort="x")),
             ("cilium", "unknown field", lambda o: o["spec"].update(egresss=[])),
             ("cilium", "bad protocol", lambda o: o["spec"]["egress"][0]["toPorts"][0]["ports"][0]
              .update(protocol="ICMP")),
             ("calico", "unknown rule field", lambda o: o["spec"]["egress"][0].update(to={})),
             ("calico", "bad action", lambda o: o["spec"]["egress"][0].update(action="Drop"))]
    for flavor, name, spoil in cases:
        with subtests.test(flavor=flavor, case=name):
            obj = copy.deepcopy(objects(compile_k8s(policy, flavor))[0])
            validate(obj)
            spoil(obj)
            with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
                validate(obj)
    with subtests.test(case="patch: capability as a string"):
        patch = yaml.safe_load(compile_k8s(policy)["pod-hardening-patch.yaml"])
        patch["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"] = "ALL"
        with pytest.raises(kubernetes_validate.ValidationError):
            validate(patch)


def test_hostile_reason_stays_one_string(tmp_path: Path, subtests: Any) -> None:
    """Lowering refuses control characters in reasons; the backend must not rely on it."""
    policy = snippet_policy(tmp_path, 'allow egress to 10.0.0.0/8 port 443/tcp reason "a"\n'
                            'deny egress to 10.1.0.0/16 reason "b"', PODS)
    policy = policy.model_copy(update={"source": HOSTILE, "rules": tuple(
        r.model_copy(update={"reason": HOSTILE}) for r in policy.rules)})
    for flavor in ("vanilla", "cilium", "calico"):
        files = compile_k8s(policy, flavor)
        for path, text in files.items():
            with subtests.test(flavor=flavor, path=path):
                if not path.endswith(".yaml"):
                    assert "\n---\nkind: ClusterRoleBinding" not in text
                    continue
                docs = list(yaml.safe_load_all(text))
                assert len(docs) == 1 and docs[0]["kind"] != "ClusterRoleBinding"
                annotations = docs[0].get("metadata", {}).get("annotations", {})
                assert all(isinstance(v, str) for v in annotations.values())
        for obj in objects(files):
            validate(obj)


def test_patch_carries_capabilities_and_profiles(tmp_path: Path) -> None:
    policy = snippet_policy(tmp_path, "capabilities drop all keep net_bind_service", PODS)
    patch = yaml.safe_load(compile_k8s(policy, k8s_container="agent")["pod-hardening-patch.yaml"])
    spec = patch["spec"]["template"]["spec"]
    assert spec["containers"] == [{"name": "agent", "securityContext": {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]
    assert spec["securityContext"] == {
        "seccompProfile": {"type": "Localhost", "localhostProfile": "operator/p.json"},
        "appArmorProfile": {"type": "Localhost", "localhostProfile": "clawpolicy-p"}}


def test_vanilla_carves_denies_and_reports_what_it_cannot(tmp_path: Path) -> None:
    policy = snippet_policy(tmp_path, "\n".join([
        'allow egress to 10.0.0.0/8 reason "lan"',
        'deny egress to 10.1.2.3 port 22/tcp reason "no ssh to the bastion"',
        'allow egress to api.example.com port 443/tcp reason "api"',
        'allow egress to 192.0.2.1 port icmp reason "ping"']), PODS)
    result = k8s.BACKEND.compile(policy, CompileOptions())
    said = {(d.message.split(":")[0], d.code) for d in result.diagnostics}
    assert ("ae-" in "".join(m for m, _ in said))
    np = yaml.safe_load(next(a for a in result.artifacts if a.path == "networkpolicy.yaml").content)
    egress = np["spec"]["egress"]
    # TCP 22 excludes the bastion; every other port and UDP reach all of 10/8; ICMP is lost
    assert {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.2.3/32"]}}],
            "ports": [{"protocol": "TCP", "port": 22}]} in egress
    assert any(r.get("ports") == [{"protocol": "TCP", "port": 1, "endPort": 21},
                                  {"protocol": "TCP", "port": 23, "endPort": 65535},
                                  {"protocol": "UDP"}] for r in egress)
    unenforced = yaml.safe_load(np["metadata"]["annotations"]["clawpolicy.dev/not-enforced"])
    assert len(unenforced) == 3  # the every-protocol rule (ICMP lost), the name, the ping


def test_lock_turns_names_into_ip_blocks(tmp_path: Path) -> None:
    policy = snippet_policy(tmp_path, 'allow egress to api.example.com port 443/tcp reason "api"', PODS)
    files = compile_k8s(policy, lock={"api.example.com": ("192.0.2.7", "2001:db8::7")})
    np = yaml.safe_load(files["networkpolicy.yaml"])
    assert np["spec"]["egress"][0]["to"] == [{"ipBlock": {"cidr": "192.0.2.7/32"}},
                                             {"ipBlock": {"cidr": "2001:db8::7/128"}}]
    assert "stale" in np["metadata"]["annotations"]["clawpolicy.dev/lock"]
    assert "not-enforced" not in str(np["metadata"]["annotations"])


def test_shadow_mode_per_flavour(tmp_path: Path) -> None:
    policy = snippet_policy(tmp_path, 'allow egress to 10.0.0.0/8 reason "lan"', PODS).with_mode(Mode.SHADOW)
    for flavor, listed in (("vanilla", []), ("cilium", []), ("calico", ["calico-networkpolicy.yaml"])):
        files = compile_k8s(policy, flavor)
        assert yaml.safe_load(files["kustomization.yaml"])["resources"] == listed
    assert yaml.safe_load(compile_k8s(policy, "calico")["calico-networkpolicy.yaml"])["kind"] == \
        "StagedNetworkPolicy"
    assert "policyAuditMode" in compile_k8s(policy, "cilium")["README.md"]


LOWERING = [
    ("labels sorted, namespace", "applies-to pods b=2, app.kubernetes.io/name=oc in namespace ai",
     (("app.kubernetes.io/name", "oc"), ("b", "2")), "ai"),
    ("default namespace", "applies-to pods app=openclaw", (("app", "openclaw"),), "default"),
    ("empty value", "applies-to pods canary=", (("canary", ""),), "default"),
]
BAD = [
    ("bad value", "applies-to pods app=-x", "invalid pod label 'app=-x'"),
    ("bad prefix", "applies-to pods Example.com/app=x", "invalid pod label"),
    ("bad namespace", "applies-to pods app=x in namespace Agents", "invalid namespace 'Agents'"),
    ("twice", "applies-to pods app=x, app=y", "given twice"),
    ("no labels", "applies-to pods", "pods are selected by labels"),
    ("spaces", "applies-to pods app = x", "pods are selected by labels"),
    ("dns local", "applies-to pods app=x\n dns local", "'dns local' does not apply to pods"),
]


def test_applies_to_pods(tmp_path: Path, subtests: Any) -> None:
    for name, header, labels, namespace in LOWERING:
        with subtests.test(name):
            policy = snippet_policy(tmp_path, 'allow egress to 10.0.0.1 reason "x"', header)
            assert (policy.scope.kind, policy.scope.pod_selector, policy.scope.namespace) == (
                "pods", labels, namespace)
    for name, header, message in BAD:
        with subtests.test(name):
            src = tmp_path / "bad.claw"
            src.write_text(f'policy p {{\n {header}\n allow egress to 10.0.0.1 reason "x"\n}}\n')
            result = load_policies([src])
            assert not result.ok
            text = " ".join(f"{d.message} {d.hint}" for d in result.diagnostics)
            assert message in text
            assert all(d.location and d.location.line for d in result.diagnostics)


def test_cli_k8s_targets(tmp_path: Path, capsys: Any, subtests: Any) -> None:
    host = tmp_path / "h.claw"
    host.write_text('policy h {\n applies-to host\n allow egress to 10.0.0.1 reason "x"\n}\n')
    out = tmp_path / "out"
    with subtests.test("explicit k8s on a host policy is an error with a hint"):
        assert main(["compile", str(host), "-t", "k8s", "-o", str(out)]) == 1
        assert "--k8s-selector" in capsys.readouterr().err
    with subtests.test("a selector makes it a pods policy for k8s"):
        assert main(["compile", str(host), "-t", "k8s", "--k8s-selector", "app=oc",
                     "--k8s-namespace", "ai", "-o", str(out)]) == 0
        np = yaml.safe_load((out / "h/k8s/networkpolicy.yaml").read_text())
        assert (np["metadata"]["namespace"], np["spec"]["podSelector"]) == (
            "ai", {"matchLabels": {"app": "oc"}})
    with subtests.test("bad selector is a usage error"):
        assert main(["compile", str(host), "-t", "k8s", "--k8s-selector", "app"]) == 2
        assert "key=value" in capsys.readouterr().err
    with subtests.test("defaults: no k8s for a host policy, no nftables for pods"):
        pods = tmp_path / "p.claw"
        pods.write_text('policy p {\n applies-to pods app=x\n allow egress to 10.0.0.1 reason "x"\n}\n')
        assert main(["compile", str(host), str(pods), "-o", str(tmp_path / "d")]) == 0
        assert not (tmp_path / "d/h/k8s").exists() and (tmp_path / "d/h/nftables").exists()
        assert (tmp_path / "d/p/k8s").exists() and not (tmp_path / "d/p/nftables").exists()


def test_options_are_frozen_dataclass() -> None:
    assert dataclasses.replace(CompileOptions(), k8s_flavor="calico").k8s_flavor == "calico"


# (flavour, policy body, {rule id: words of its "cannot enforce" report}; rules not listed are
# enforced as written). An ICMP deny holds wherever no allow lets ICMP through; vanilla cannot
# tell ICMP from the other port-less protocols, so cutting ICMP out of an every-protocol allow
# costs those too.
ICMP_CASES: list[tuple[str, str, dict[str, str]]] = [
    ("vanilla", 'allow egress to 10.0.0.0/8 port 443/tcp id web reason "w"\n'
                'deny egress to 10.2.0.0/16 port icmp id noping reason "n"', {}),
    ("vanilla", 'allow egress to 10.0.0.0/8 id lan reason "l"\n'
                'deny egress to 10.2.0.0/16 port icmp id noping reason "n"', {"noping": "other protocols"}),
    ("vanilla", 'allow egress to 10.0.0.0/8 id lan reason "l"\n'
                'deny egress to 192.0.2.0/24 port icmp id noping reason "n"', {}),
    ("vanilla", 'allow ingress from 198.51.100.0/24 port icmp id ping reason "p"', {"ping": "ICMP"}),
    ("cilium", 'allow egress to 10.0.0.0/8 id lan reason "l"\n'
               'deny egress to 10.2.0.0/16 port icmp id noping reason "n"', {"noping": "ICMP"}),
    ("cilium", 'allow egress to 10.0.0.0/8 port 443/tcp id web reason "w"\n'
               'deny egress to 10.2.0.0/16 port icmp id noping reason "n"', {}),
    ("cilium", 'allow ingress from 198.51.100.0/24 port icmp id ping reason "p"', {"ping": "ICMP"}),
    ("calico", 'allow egress to 10.0.0.0/8 id lan reason "l"\n'
               'deny egress to 10.2.0.0/16 port icmp id noping reason "n"', {}),
]


def test_icmp_losses_are_reported_per_flavour(tmp_path: Path, subtests: pytest.Subtests) -> None:
    for n, (flavour, body, expected) in enumerate(ICMP_CASES):
        with subtests.test(msg=f"{flavour} #{n}"):
            (tmp_path / str(n)).mkdir()
            policy = snippet_policy(tmp_path / str(n), body, PODS)
            result = k8s.BACKEND.compile(policy, CompileOptions(k8s_flavor=flavour))
            said = {d.message.split(":")[0]: d.message for d in result.diagnostics if d.code == "unenforced"}
            assert set(said) == set(expected), said
            for rule_id, words in expected.items():
                assert words in said[rule_id], said[rule_id]


DNS_DENIES = [  # (deny, whether it may cover the cluster DNS on 53)
    ('deny egress to 172.16.0.0/12 reason "lan"', True),
    ('deny egress to 192.168.0.0/16 port 53/udp reason "lan dns"', True),
    ('deny egress to any port 50-60/tcp reason "low ports"', True),
    ('deny egress to fd00::/8 reason "ula"', True),
    ('deny egress to 100.64.0.0/10 port 53/tcp reason "cgnat"', True),
    ('deny egress to 10.0.0.0/8 port 443/tcp reason "lan https"', False),
    ('deny egress to 169.254.169.254 reason "metadata"', False),
    ('deny egress to fd00:ec2::254, fd20:ce::254 reason "metadata over IPv6, inside fc00::/7"', False),
    ('deny egress to fd00:ec2::254, 10.96.0.10 reason "metadata and a DNS service address"', True),
    ('deny egress to 203.0.113.0/24 reason "public"', False),
]


def test_cluster_dns_allow_obeys_deny_overrides(tmp_path: Path, subtests: Any) -> None:
    """The added cluster-dns allow never overrides a deny of the policy (the evaluator knows no
    such allow): vanilla leaves it out, Calico orders it after the denies, Cilium's egressDeny
    wins; every flavour warns on the deny that names may not resolve."""
    for i, (deny, blocks) in enumerate(DNS_DENIES):
        with subtests.test(deny=deny):
            (tmp_path / str(i)).mkdir()
            policy = snippet_policy(tmp_path / str(i), 'allow egress to api.example.com port 443/tcp '
                                    f'reason "api"\n{deny}', PODS)
            for flavor in ("vanilla", "calico", "cilium"):
                result = k8s.BACKEND.compile(policy, CompileOptions(k8s_flavor=flavor))  # type: ignore[arg-type]
                warned = [d for d in result.diagnostics if d.code == "cluster-dns"]
                assert bool(warned) == blocks, (flavor, result.diagnostics)
                files = {a.path: a.content.decode() for a in result.artifacts}
                text = "".join(v for k, v in files.items() if k.endswith(".yaml"))
                if flavor == "vanilla":
                    assert ("kube-dns" in text) == (not blocks)
                else:
                    assert "kube-dns" in text
                if flavor == "calico":
                    egress = yaml.safe_load(files["calico-networkpolicy.yaml"])["spec"]["egress"]
                    actions = [e["action"] for e in egress]
                    assert actions.index("Deny") < len(actions) - 2  # DNS allows come last
                    assert actions[-2:] == ["Allow", "Allow"]
