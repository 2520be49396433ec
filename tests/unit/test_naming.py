"""Names derived from user text stay distinct (issue 16, item 1), and compile proves it.

Three layers: every backend's claims for policies whose IDs once sanitised alike (split rules'
`.N` beside user IDs with '-'), the generic check in the compiler (a backend that merges two
identities makes the compile fail, shown with the old lossy chain name), and the lowering rules
that keep every name valid in every target (reserved IDs, IDs used twice, policy names that
are DNS-1123 labels).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from clawpolicy.backends import nftables
from clawpolicy.backends.base import CompileOptions
from clawpolicy.backends.naming import NameClaim, collisions
from clawpolicy.backends.registry import BACKENDS, targets_for
from clawpolicy.cli import main
from clawpolicy.compiler import compile_paths
from clawpolicy.ir import Policy
from clawpolicy.lower import load_policies


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


# Each body has IDs that the old chain name ('rule_' + [^a-z0-9] -> '_') merged. `openai` and
# `anthropic` are catalog groups with their own ports: beside a literal address the rule splits.
SANITISED_ALIKE = {
    "split ax.1 and ax-1": """
        allow egress to openai, 192.0.2.5 reason "api" id ax
        deny egress to 192.0.2.6 reason "bad" id ax-1""",
    "split c-.1 and c--1": """
        allow egress to anthropic, 198.51.100.0/24 reason "api" id c-
        deny egress to 198.51.100.7 reason "bad" id c--1""",
    "split q9.2 and q9-2, ingress": """
        allow egress to openai, 2001:db8::/64 reason "api" id q9
        allow ingress from 10.9.9.0/24 port 22/tcp reason "ssh" id ssh
        deny ingress from 10.9.9.2 reason "bad" id q9-2""",
    "long IDs that differ at the end": """
        allow egress to 192.0.2.1 reason "a" id abcdefghijklmnopqrstuvwxyz012345
        deny egress to 192.0.2.1 port 22/tcp reason "b" id abcdefghijklmnopqrstuvwxyz012346
        allow egress to openai, 192.0.2.9 reason "c" id abcdefghijklmnopqrstuvwxyz01234""",
    "FQDN groups shared and alone": """
        allow egress to example.com port 443/tcp reason "a" id g-1
        allow egress to example.org port 443/tcp reason "b" id g
        deny egress to bad.example port 443/tcp reason "c" id g-2
        deny egress to worse.example port 80/tcp reason "d" id g-x-y""",
}
HOST = "mode enforce\n applies-to host\n dns local"
PODS = "mode enforce\n applies-to pods app=openclaw in namespace agents"


def _policy(root: Path, body: str, header: str, name: str = "p") -> Policy:
    src = root / f"{name}.claw"
    src.write_text(f"policy {name} {{\n {header}\n{body}\n}}\n", encoding="utf-8")
    result = load_policies([src])
    assert result.ok, [d.message for d in result.diagnostics]
    return result.policies[0]


def _claims(policy: Policy, options: CompileOptions) -> dict[str, list[NameClaim]]:
    chosen, _ = targets_for(policy, tuple(BACKENDS), options)
    out = {}
    for target in chosen:
        produced = BACKENDS[target].compile(policy, options)
        assert produced.artifacts, (target, [d.message for d in produced.diagnostics])
        out[target] = produced.names
    return out


def test_every_backend_keeps_ids_that_sanitised_alike_apart(workdir: Path, subtests: pytest.Subtests) -> None:
    for case, body in SANITISED_ALIKE.items():
        if "ingress" in case:
            variants = [("host", HOST, CompileOptions())]
        else:
            variants = [("host", HOST, CompileOptions())] + [
                (f"pods {flavor}", PODS, CompileOptions(k8s_flavor=flavor))
                for flavor in ("vanilla", "cilium", "calico")]
        for label, header, options in variants:
            with subtests.test(case=case, scope=label):
                policy = _policy(workdir, body, header)
                claims = _claims(policy, options)
                everything = [c for names in claims.values() for c in names]
                assert collisions(everything) == []
                by_space: dict[str, dict[str, str]] = {}
                for c in everything:
                    by_space.setdefault(c.space, {})[c.name] = c.owner
                for space, names in by_space.items():  # one name per owner, one owner per name
                    assert len(set(names.values())) == len(names), space
                if "nftables" in claims:
                    chains = {c.name for c in claims["nftables"] if c.space.startswith("nftables chain")
                              and c.owner.startswith("rule ")}
                    shared = {r.id for g in nftables.fqdn_groups(policy) if len(g.rules) > 1 for r in g.rules}
                    expected = {f"rule_{r.id}" for r in policy.rules if r.id not in shared or r.peers.ipv4
                                or r.peers.ipv6}
                    assert chains == expected | ({"rule_local-dns-only"} if policy.local_dns else set())
                    text = nftables.render(policy, options)
                    defined = re.findall(r"^\tchain (\S+) \{$", text, re.M)
                    assert len(defined) == len(set(defined))
                    prefixes = re.findall(r'log prefix "([^"]*)"', text)
                    deny_ids = {r.id for r in policy.rules if r.action.value == "deny"}
                    assert {p.split(":")[3].strip() for p in prefixes} >= deny_ids


def _lossy(rule_id: str) -> str:
    return "rule_" + re.sub(r"[^a-z0-9]", "_", rule_id)


def test_compile_fails_when_a_backend_merges_two_rules(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                       subtests: pytest.Subtests,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The check is generic: with the old lossy chain name put back, compile stops with an
    internal error naming both rules, exits 1 and writes nothing."""
    monkeypatch.setattr(nftables, "chain_name", _lossy)
    for case, body in SANITISED_ALIKE.items():
        if case.startswith("long") or case.startswith("FQDN"):
            continue  # nothing there sanitises alike
        with subtests.test(case=case):
            src = workdir / "merge.claw"
            src.write_text(f"policy merge {{\n {HOST}\n{body}\n}}\n", encoding="utf-8")
            result = compile_paths([src], ["nftables"])
            internal = [d for d in result.diagnostics if d.code == "internal"]
            assert not result.ok and internal, [d.message for d in result.diagnostics]
            assert "nftables chain" in internal[0].message and "internal error" in internal[0].message
            capsys.readouterr()
            assert main(["compile", str(src), "-t", "nftables", "-o", str(workdir / "out")]) == 1
            assert "internal error" in capsys.readouterr().err
            assert not (workdir / "out").exists()


def test_compile_fails_on_artifact_names_that_collide(workdir: Path, subtests: pytest.Subtests) -> None:
    """Names a target option makes collide are caught by the same check."""
    for name in ("a", "b"):
        (workdir / f"{name}.claw").write_text(
            f'policy {name} {{\n files deny ~/.ssh reason "keys"\n}}\n', encoding="utf-8")
    paths = [workdir / "a.claw", workdir / "b.claw"]
    cases = {
        "one profile name for two policies": ("fixed", "AppArmor profile"),
        "a profile named like the SPO file": ("apparmorprofile.yaml", "output file"),
    }
    for case, (template, space) in cases.items():
        with subtests.test(case=case):
            options = dataclasses.replace(CompileOptions(), apparmor_profile_name=template)
            result = compile_paths(paths, ["apparmor"], options=options, explicit=True)
            messages = [d.message for d in result.diagnostics if d.code == "internal"]
            assert not result.ok and any(space in m for m in messages), messages
    with subtests.test(case="the default template keeps policies apart"):
        assert compile_paths(paths, ["apparmor"], explicit=True).ok


def test_collisions_are_owners_not_repeats() -> None:
    same = [NameClaim("s", "n", "rule a"), NameClaim("s", "n", "rule a"), NameClaim("t", "n", "rule b")]
    assert collisions(same) == []
    found = collisions([*same, NameClaim("s", "n", "rule b")])
    assert [(c.space, c.name, c.owners) for c in found] == [("s", "n", ("rule a", "rule b"))]
    assert "rule a and rule b" in found[0].message()


ID_ERRORS = {
    'id default-egress': "reserved",
    'id default-whatever': "reserved",
    'id local-dns-only': "reserved",
    'id cluster-dns': "reserved",
    'id a_b': "invalid",
    'id x.2': "invalid",
    'id AX': "invalid",
}


def test_ids_that_would_name_something_else_are_refused(workdir: Path, subtests: pytest.Subtests) -> None:
    for attr, expected in ID_ERRORS.items():
        with subtests.test(attr=attr):
            src = workdir / "ids.claw"
            src.write_text(f'policy ids {{\n allow egress to 192.0.2.1 reason "r" {attr}\n}}\n')
            result = load_policies([src])
            assert not result.ok
            assert any(expected in d.message for d in result.diagnostics), [d.message for d in result.diagnostics]


def test_an_explicit_id_twice_is_refused_even_when_one_splits(workdir: Path, subtests: pytest.Subtests) -> None:
    bodies = {
        "one splits": ('allow egress to openai, 192.0.2.5 reason "a" id ax',
                       'deny egress to 192.0.2.6 reason "b" id ax'),
        "both split": ('allow egress to openai, 192.0.2.5 reason "a" id ax',
                       'allow egress to anthropic, 192.0.2.6 reason "b" id ax'),
        "a files rule": ('allow egress to 192.0.2.5 reason "a" id ax',
                         'files deny ~/.ssh reason "b" id ax'),
    }
    for case, (one, two) in bodies.items():
        with subtests.test(case=case):
            src = workdir / "twice.claw"
            src.write_text(f"policy twice {{\n {one}\n {two}\n}}\n")
            result = load_policies([src])
            assert [d.location.line for d in result.diagnostics
                    if "used twice" in d.message and d.location is not None] == [3]


def test_policy_names_are_dns_labels(workdir: Path, subtests: pytest.Subtests) -> None:
    for name, ok in (("a-", False), ("agent--", False), ("a-b", True), ("a1", True), ("a" * 48, True),
                     ("a" * 49, False)):
        with subtests.test(name=name):
            src = workdir / "n.claw"
            src.write_text(f'policy {name} {{\n allow egress to 192.0.2.1 reason "r"\n}}\n')
            assert load_policies([src]).ok is ok


def test_the_longest_names_fit_the_log_prefix_uncut(workdir: Path) -> None:
    """nft keeps 127 bytes of a log prefix: the longest policy name, the longest explicit ID and
    a split suffix, in shadow mode's longer label, still fit, so no two prefixes are cut alike."""
    long_id = "a" * 31 + "b"
    policy = _policy(workdir, f'deny egress to openai, 192.0.2.5 reason "r" id {long_id}',
                     "mode shadow\n applies-to host", name="p" * 48)
    text = nftables.render(policy, CompileOptions())
    prefixes = re.findall(r'log prefix "([^"]*)"', text)
    assert {f"clawpolicy:{'p' * 48}:would-deny:{long_id}.{n} " for n in (1, 2)} <= set(prefixes)
    assert all(len(p.encode()) <= 127 and not p.endswith("...") for p in prefixes)
