"""Hunting name collisions (issue 16, items 1 and 17): rule IDs (explicit ones from a tiny
alphabet, automatic ones with their short width cut to 1-2 hex digits so they clash all the
time), rules that split (`.N`), and several policies whose names differ by a '-'. Whatever is
drawn, compile either succeeds with every derived name distinct (checked here from the IR, not
from the claims the backends make) or fails with positioned errors; it never merges two rules
into one name. A second property puts the old lossy chain name back and checks that the
generic check fails the compile exactly when two rules would share a chain. Derandomized, so a
CI failure reproduces locally."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from clawpolicy import ruleids
from clawpolicy.backends import nftables
from clawpolicy.compiler import CompileResult, compile_paths
from clawpolicy.errors import Severity
from clawpolicy.ir import Action

FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
# seccomp and docs derive no name from rule IDs (the SeccompProfile is the policy's name, as
# AppArmor's is) and are the slowest targets: left out to draw more policies
HOST_TARGETS = ["nftables", "dnsmasq", "apparmor"]
POD_TARGETS = ["k8s", "apparmor"]

# a-1, a--1, ab-, ...: IDs that sanitise alike, and alike a split rule's a.1
explicit_ids = st.sampled_from(["a", "a-1", "a-2", "a--1", "a-", "b", "b-1", "a-b", "ab"]) | st.from_regex(
    r"\A[ab][ab1-]{0,4}\Z")
peers = st.lists(st.sampled_from(
    ["192.0.2.1", "192.0.2.0/28", "2001:db8::1", "openai", "anthropic", "example.com",
     "*.example.org", "198.51.100.7"]), min_size=1, max_size=3, unique=True)
# a catalog group (its own ports) beside an address: the rule splits into .1 and .2
splitting = st.tuples(st.sampled_from(["openai", "anthropic"]), st.sampled_from(["192.0.2.9", "2001:db8::9"])
                      ).map(list)
ports = st.sampled_from(["", "", "", " port 443/tcp", " port 22/tcp, 53/udp", " port 80/tcp"])


@st.composite
def rules(draw: st.DrawFn) -> str:
    action = draw(st.sampled_from(["allow", "deny"]))
    direction = draw(st.sampled_from(["egress", "egress", "ingress"]))
    chosen = draw(peers | splitting)
    if direction == "ingress":  # ingress names addresses only
        chosen = [p for p in chosen if p[0].isdigit()] or ["192.0.2.1"]
    word = "to" if direction == "egress" else "from"
    explicit = draw(st.none() | st.none() | explicit_ids)
    rule_id = f" id {explicit}" if explicit else ""
    return f'{action} {direction} {word} {", ".join(chosen)}{draw(ports)} reason "r"{rule_id}'


# A split rule and a user ID that a lossy name would merge with one of its parts: `x.1` is
# the address part (its ports sort first), `x.2` the group's names.
@st.composite
def split_pairs(draw: st.DrawFn) -> list[str]:
    base = draw(st.sampled_from(["s", "s-", "sa", "s1"]))
    part = draw(st.sampled_from(["1", "2"]))
    other = draw(st.sampled_from(["deny egress to 192.0.2.9", "allow egress to 198.51.100.7 port 80/tcp",
                                  "deny egress to example.net"]))
    return [f'allow egress to openai, 192.0.2.9 reason "r" id {base}',
            f'{other} reason "r" id {base}-{part}']


# Automatic IDs of one kind for distinct rules: with 1-2 hex digits, several clash.
bulk = st.sets(st.integers(1, 254), min_size=2, max_size=12).map(
    lambda hosts: [f'allow egress to 203.0.113.{h} reason "r"' for h in sorted(hosts)])

files_rules = st.builds(lambda path, explicit: f'files deny {path} reason "f"' + (f" id {explicit}" if explicit else ""),
                        st.sampled_from(["~/.ssh", "~/.aws", "/srv/x"]), st.none() | explicit_ids)


@st.composite
def policy_sets(draw: st.DrawFn, pods: bool | None = None) -> tuple[list[str], bool]:
    """Policy texts (names like a, a-b, a-1, differing in '-') and whether they select pods."""
    names = draw(st.lists(st.from_regex(r"\A[ab](?:[ab1-]{0,3}[ab1])?\Z"), min_size=1, max_size=3, unique=True))
    pods = draw(st.booleans()) if pods is None else pods
    scope = "applies-to pods app=openclaw in namespace agents" if pods else "applies-to host\n  dns local"
    texts = []
    for name in names:
        body = (draw(st.lists(rules(), min_size=1, max_size=8)) + draw(st.lists(files_rules, max_size=2))
                + draw(st.just([]) | split_pairs()) + draw(st.just([]) | bulk))
        texts.append(f"policy {name} {{\n  {scope}\n" + "".join(f"  {line}\n" for line in body) + "}\n")
    return texts, pods


@contextmanager
def short_ids(width: int) -> Iterator[None]:
    """Handles cut to `width` characters, so that many rules share one as they would in a
    huge policy (and numbered IDs meet explicit ones)."""
    with mock.patch.object(ruleids, "HANDLE_WIDTH", width):
        yield


def _compile(texts: list[str], pods: bool) -> CompileResult:
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for n, text in enumerate(texts):
            path = Path(tmp) / f"p{n}.claw"
            path.write_text(text, encoding="utf-8")
            paths.append(path)
        return compile_paths(paths, POD_TARGETS if pods else HOST_TARGETS, explicit=True)


def chains(text: str) -> dict[str, str]:
    """Each rule chain the ruleset defines, by the ID its name carries -> its comment."""
    return dict(re.findall(r'^\tchain rule_(\S+) \{\n\t\tcomment "([^"]*)"', text, re.M))


def _assert_distinct(result: CompileResult, pods: bool) -> None:
    assert not [d for d in result.diagnostics if d.code == "internal"]
    policies = result.policies
    for policy in policies:
        ids = [r.id for r in (*policy.rules, *policy.files, *policy.syscalls)]
        assert len(ids) == len(set(ids)), ids
        if not pods:
            text = result.outputs[f"{policy.name}/nftables/ruleset.nft"].decode()
            defined = re.findall(r"^\tchain (\S+) \{$", text, re.M)
            assert len(defined) == len(set(defined))
            known = set(ids) | ({policy.local_dns.id} if policy.local_dns else set())
            by_id = chains(text)
            assert len(by_id) == len([d for d in defined if d.startswith("rule_")])
            for rule_id, comment in by_id.items():  # each chain is the chain of the rule it names
                assert rule_id in known and comment.startswith((f"{rule_id} (", f"{rule_id}:")), (rule_id, comment)
            prefixes = re.findall(r'log prefix "([^"]*)"', text)
            assert len(prefixes) == len(set(prefixes))
            labels = {p.split(":", 3)[3].strip() for p in prefixes}
            denied = {r.id for r in policy.rules if r.action is Action.DENY}
            if policy.local_dns is not None:
                denied.add(policy.local_dns.id)
            assert denied & set(by_id) <= labels
    tables = {nftables.table_name(p) for p in policies}
    assert len(tables) == len(policies)
    spo = [p.name for p in policies]  # SeccompProfile and AppArmor names derive from these verbatim
    assert len(set(spo)) == len(spo)


@FUZZ
@given(policy_sets(), st.sampled_from([1, 1, 1, 2, ruleids.HANDLE_WIDTH]))
def test_names_are_distinct_or_the_compile_fails(drawn: tuple[list[str], bool], width: int) -> None:
    texts, pods = drawn
    with short_ids(width):
        result = _compile(texts, pods)
    numbered = any(re.search(r"-[0-9]+$", r.id.split(".")[0]) for p in result.policies for r in p.rules
                   if r.id[2:3] == "-")  # an automatic ID numbered among rules sharing its handle
    event(f"compiled: {result.ok}; numbered: {numbered}")  # --hypothesis-show-statistics
    if result.ok:
        _assert_distinct(result, pods)
    else:  # the user's mistake (an ID used twice, ...), said with a position
        errors = [d for d in result.diagnostics if d.severity is Severity.ERROR]
        assert errors and all(d.location is not None and d.code != "internal" for d in errors), errors
        for d in errors:  # an automatic ID is used twice only by the same rule written twice
            twice = re.match(r"rule id '([^']+)' is used twice", d.message)
            if twice and not any(f" id {twice.group(1)}\n" in text for text in texts):
                assert any(_repeated_content(text) for text in texts), (d.message, texts)


def _repeated_content(text: str) -> bool:
    """Whether two rules of a policy without `id` say the same (what an automatic ID hashes:
    action, direction, peers as a set, ports), reason aside."""
    seen = set()
    for line in text.splitlines():
        m = re.match(r'\s*(allow|deny) (egress|ingress) (?:to|from) (.*?)(?: port (.*?))? reason "[^"]*"$', line)
        f = re.match(r'\s*files (deny) (\S+) reason "[^"]*"$', line)
        if m:
            key: tuple[object, ...] = (m[1], m[2], frozenset(m[3].split(", ")), frozenset((m[4] or "").split(", ")))
        elif f:
            key = ("files", f[1], f[2])
        else:
            continue
        if key in seen:
            return True
        seen.add(key)
    return False


def _lossy(rule_id: str) -> str:
    return "rule_" + re.sub(r"[^a-z0-9]", "_", rule_id)


@FUZZ
@given(policy_sets(pods=False))
def test_the_check_catches_a_lossy_chain_name(drawn: tuple[list[str], bool]) -> None:
    texts, pods = drawn
    clean = _compile(texts, pods)
    if not clean.ok:
        return  # a mistake in the drawn policy: nothing to compare
    expected = False
    for policy in clean.policies:
        ids = set(chains(clean.outputs[f"{policy.name}/nftables/ruleset.nft"].decode()))
        expected |= len({_lossy(i) for i in ids}) < len(ids)
    with mock.patch.object(nftables, "chain_name", _lossy):
        lossy = _compile(texts, pods)
    event(f"lossy names collide: {expected}")
    internal = [d for d in lossy.diagnostics if d.code == "internal"]
    assert bool(internal) == expected, (internal, texts)
    assert lossy.ok is not expected
