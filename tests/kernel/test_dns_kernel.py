"""FQDN rules that hold on a host, proven with real DNS in network namespaces.

The lab: the peer namespace is a small internet: an upstream dnsmasq authoritative for the
test names (their addresses are peer addresses, with listeners on them); the agent namespace
holds the generated ruleset and, for the run-time path, the agent's own resolver (dnsmasq
with the generated fragment), which fills the ruleset's sets. The agent is uid AGENT_UID.
The resolver shares the agent's namespace rather than having one of its own: nftables sets
belong to a network namespace, and dnsmasq's `nftset=` adds to the sets of its own one (as on
a real host, where the resolver and the ruleset are both the host's). Nothing leaves the two
namespaces.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from netlab import Daemon, DnsAnswer, DnsQuery, Lab, Probe, format_results

from clawpolicy.backends import dnsmasq
from clawpolicy.backends.base import CompileOptions
from clawpolicy.backends.nftables import fqdn_groups, render, table_name
from clawpolicy.compiler import compile_paths
from clawpolicy.ir import Mode, Policy
from clawpolicy.lockfile import load, lock_path
from clawpolicy.lower import load_policies

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]
AGENT_UID = 4242
UPSTREAM = "198.18.0.53"
LOCAL = "127.0.0.1"  # the agent's resolver, in the agent namespace
NAMES = {  # what the upstream answers (A and AAAA), each address a listener in the peer ns
    "api.llm.test": ("198.18.1.10", "2001:db8:1::10"),
    "x.api.llm.test": ("198.18.1.11",),
    "chat.test": ("198.18.2.1",),
    "files.chat.test": ("198.18.2.20",),
    "evil.test": ("198.18.9.9",),
}
PEERS = (UPSTREAM, *sorted({a for addrs in NAMES.values() for a in addrs}))
POLICY = f"""policy dnslab {{
  mode enforce
  applies-to user {AGENT_UID}
  dns local
  allow egress to api.llm.test port 443/tcp reason "model API" id llm
  allow egress to *.chat.test port 443/tcp reason "chat files" id chat
}}
"""
UPSTREAM_CONF = "\n".join([
    "no-resolv", "no-hosts", "bind-interfaces", f"listen-address={UPSTREAM}",
    "local=/test/",  # authoritative: other .test names are NXDOMAIN, nothing is forwarded
    "local-ttl=60",
    *(f"host-record={name},{','.join(addrs)}" for name, addrs in NAMES.items()), ""])


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(peer_addresses=PEERS, tcp_ports=(443,), udp_ports=(443,)) as lab:
        lab.start_dnsmasq(lab.peer_ns, UPSTREAM_CONF, name="upstream", user="dnsmasq")
        yield lab


def _policy(path: Path, text: str = POLICY) -> Policy:
    path.write_text(text)
    loaded = load_policies([path])
    assert loaded.ok, loaded.diagnostics
    return loaded.policies[0]


def _connect(lab: Lab, *addresses: str, uid: int = AGENT_UID) -> list[bool]:
    results = lab.probe_results([Probe("egress", a, "tcp", 443, uid=uid) for a in addresses])
    print(format_results(results))
    return [r.ok for r in results]


def _sets(policy: Policy, family: int = 4) -> list[str]:
    return [g.set_name(family) for g in fqdn_groups(policy)]


def _set_of(policy: Policy, rule_id: str, family: int = 4) -> str:
    """The DNS-filled set of one rule (every FQDN rule has its own)."""
    (name,) = [g.set_name(family) for g in fqdn_groups(policy) if g.rule.id == rule_id]
    return name


# ------------------------------------------------------------------------- lock file


def _cli(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command line, inside the agent namespace (as root: outside the policy)."""
    return lab.run(lab.agent_ns, [sys.executable, "-m", "clawpolicy.cli", *args], check=False,
                   cwd=REPO)


def test_lock_file_against_real_dns(lab: Lab, tmp_path: Path) -> None:
    src = tmp_path / "dnslab.claw"
    _policy(src)
    r = _cli(lab, "resolve", "--resolver", UPSTREAM, str(src))
    assert r.returncode == 0, r.stderr
    assert "*.chat.test: wildcards cannot be locked" in r.stderr
    lock = load(lock_path(src))
    assert lock.addresses() == {"api.llm.test": NAMES["api.llm.test"]}
    assert lock.wildcards == ("*.chat.test",)
    assert lock.names["api.llm.test"].observed.ttl == {"A": 60, "AAAA": 60}

    result = compile_paths([src], ["nftables"], lock=True)
    assert result.ok, result.diagnostics
    text = result.outputs["dnslab/nftables/ruleset.nft"].decode()
    assert '198.18.1.10 comment "api.llm.test"' in text
    lab.load_ruleset(text)
    # no DNS at all: the locked name is reachable on both families, nothing else is
    v4, v6 = NAMES["api.llm.test"]
    assert _connect(lab, v4, v6, "198.18.2.20", "198.18.9.9") == [True, True, False, False]
    assert _connect(lab, v4, uid=0) == [True]  # another user is not fenced

    assert _cli(lab, "resolve", "--check", "--resolver", UPSTREAM, str(src)).returncode == 0
    stale = lock_path(src).read_text().replace('"2001:db8:1::10"', '"2001:db8:1::99"')
    lock_path(src).write_text(stale)
    r = _cli(lab, "resolve", "--check", "--resolver", UPSTREAM, str(src))
    assert r.returncode == 1
    assert "+ api.llm.test 2001:db8:1::10" in r.stdout and "- api.llm.test 2001:db8:1::99" in r.stdout
    r = _cli(lab, "resolve", "--update", "--resolver", UPSTREAM, str(src))
    assert r.returncode == 0 and load(lock_path(src)).addresses()["api.llm.test"] == (v4, v6)


# -------------------------------------------------------------------------- reloads


def test_reload_keeps_dns_filled_elements(lab: Lab, tmp_path: Path) -> None:
    policy = _policy(tmp_path / "dnslab.claw")
    table = table_name(policy)
    lab.load_ruleset(render(policy, CompileOptions()))
    set4 = _set_of(policy, "llm")
    lab.nft("add", "element", "inet", table, set4, "{ 198.18.1.10 }")  # as the resolver would
    assert _connect(lab, "198.18.1.10", "198.18.9.9") == [True, False]

    def reload(p: Policy, **options: object) -> None:  # no `flush ruleset`: a real reload
        lab.load_ruleset(render(p, CompileOptions(**options)), flush=False)  # type: ignore[arg-type]

    reload(policy)
    assert "198.18.1.10" in lab.set_elements("inet", table, set4)
    assert _connect(lab, "198.18.1.10") == [True]

    # a new mode, rule, reason and timeout: same names, so the same set, elements kept
    def with_static(reason: str) -> Policy:
        return _policy(tmp_path / "dnslab.claw", POLICY.replace(
            "}\n", f'  allow egress to 198.18.2.1 port 443/tcp reason "{reason}" id static\n}}\n'))
    reload(with_static("first words").with_mode(Mode.SHADOW))
    changed = with_static("second words")
    reload(changed, fqdn_timeout=900)
    assert _set_of(changed, "llm") == set4
    assert "198.18.1.10" in lab.set_elements("inet", table, set4)
    listing = lab.nft("list", "table", "inet", table)
    assert "timeout 15m" in listing  # the set's default timeout is updated in place
    assert "second words" in listing and "first words" not in listing  # comments are fresh
    assert _connect(lab, "198.18.1.10", "198.18.2.1", "198.18.9.9") == [True, True, False]

    # a rule removed: its chain stays behind, empty and unreferenced (harmless)
    reload(policy, fqdn_timeout=900)
    assert _connect(lab, "198.18.1.10", "198.18.2.1") == [True, False]
    assert not re.search(r"jump rule_static|@rule_static", lab.nft("list", "table", "inet", table))

    # a name added: the names' set changes, the old addresses are revoked at once
    more = _policy(tmp_path / "dnslab.claw", POLICY.replace("api.llm.test port", "api.llm.test, evil.test port"))
    reload(more)
    assert _set_of(more, "llm") != set4
    assert _connect(lab, "198.18.1.10") == [False]


def test_first_load_over_an_old_style_table(lab: Lab, tmp_path: Path) -> None:
    """A table a previous clawpolicy created (same names, no DNS sets of the new kind)."""
    policy = _policy(tmp_path / "dnslab.claw")
    table = table_name(policy)
    lab.load_ruleset(f"table inet {table} {{\n set egress_allow_fqdn4_tcp443 {{ type ipv4_addr; "
                     "flags timeout; timeout 1h; }\n chain output { type filter hook output priority "
                     "filter; policy accept; }\n}\n")
    lab.load_ruleset(render(policy, CompileOptions()), flush=False)
    assert _connect(lab, "198.18.1.10") == [False]




# ------------------------------------------------------------- run time: dnsmasq fills


def _resolver(lab: Lab, policy: Policy, options: CompileOptions) -> Daemon:
    """The agent's own resolver, in the agent namespace, with the generated fragment."""
    fragment, _ = dnsmasq.render(policy, options)
    path = lab.write_file("fragment.conf", fragment)
    config = "\n".join(["no-resolv", "no-hosts", "bind-interfaces", "listen-address=127.0.0.1",
                        f"server={UPSTREAM}", f"conf-file={path}", ""])
    return lab.start_dnsmasq(lab.agent_ns, config, name="local", user="dnsmasq")


def _lookup(lab: Lab, *names: str, server: str = LOCAL, uid: int = AGENT_UID,
            tcp: bool = False) -> list[DnsAnswer]:
    queries = [DnsQuery(server, n, "AAAA" if t == "6" else "A", tcp)
               for name in names for n, t in [name.split("/") if "/" in name else (name, "4")]]
    return lab.dns(queries, uid=uid)


@pytest.fixture
def runtime(lab: Lab, tmp_path: Path) -> Iterator[Callable[..., Policy]]:
    """start(policy_text, mode, **options): load the ruleset, start the agent's resolver."""
    daemons: list[Daemon] = []

    def start(text: str = POLICY, mode: Mode = Mode.ENFORCE, **options: int) -> Policy:
        policy = _policy(tmp_path / "dnslab.claw", text).with_mode(mode)
        opts = CompileOptions(**options)  # type: ignore[arg-type]
        lab.load_ruleset(render(policy, opts))
        daemons.append(_resolver(lab, policy, opts))
        return policy

    yield start
    for d in daemons:
        d.stop()


def test_dns_fills_the_sets_and_nothing_else(lab: Lab, runtime: Callable[..., Policy]) -> None:
    policy = runtime()
    table = table_name(policy)
    api4, api6 = NAMES["api.llm.test"]
    (files,), (evil,), (chat,), (below,) = (NAMES[n] for n in (
        "files.chat.test", "evil.test", "chat.test", "x.api.llm.test"))
    # before any lookup the allowed name's addresses are closed
    assert _connect(lab, api4, api6, files) == [False, False, False]

    answers = _lookup(lab, "api.llm.test", "api.llm.test/6", "files.chat.test", "evil.test",
                      "chat.test", "x.api.llm.test")
    got = {(a.query.name, a.query.type): (a.rcode, a.addresses) for a in answers}
    assert got == {
        ("api.llm.test", "A"): ("NOERROR", (api4,)), ("api.llm.test", "AAAA"): ("NOERROR", (api6,)),
        ("files.chat.test", "A"): ("NOERROR", (files,)),  # *.chat.test
        ("evil.test", "A"): ("NOERROR", (evil,)),  # resolvable, never admitted
        ("chat.test", "A"): ("NXDOMAIN", ()),  # *.chat.test does not name chat.test
        ("x.api.llm.test", "A"): ("NXDOMAIN", ()),  # api.llm.test does not name x.api.llm.test
    }
    assert all(a.ttl is None or a.ttl <= 600 for a in answers)  # capped at the set timeout
    # each rule's set holds its own names' addresses, and each counts on its own chain
    assert set(lab.set_elements("inet", table, _set_of(policy, "llm"))) == {api4}
    assert set(lab.set_elements("inet", table, _set_of(policy, "llm", 6))) == {api6}
    assert set(lab.set_elements("inet", table, _set_of(policy, "chat"))) == {files}
    assert set(lab.set_elements("inet", table, _set_of(policy, "chat", 6))) == set()
    before = lab.counters("inet", table)
    assert _connect(lab, api4, api6, files, evil, chat, below) == [True, True, True, False, False, False]
    after = lab.counters("inet", table)
    assert (after["rule_llm"] - before["rule_llm"], after["rule_chat"] - before["rule_chat"]) == (2, 1)

    # the agent's DNS goes to its resolver only: the upstream (or any server) is dropped,
    # over UDP and TCP, while root (outside the policy) still reaches it
    direct = _lookup(lab, "evil.test", server=UPSTREAM) + _lookup(lab, "evil.test", server=UPSTREAM, tcp=True)
    assert [a.outcome in ("timeout", "eperm") for a in direct] == [True, True], direct  # dropped
    assert _lookup(lab, "evil.test", server=UPSTREAM, uid=0)[0].addresses == (evil,)

    # a reload while elements are present keeps them
    lab.load_ruleset(render(policy, CompileOptions()), flush=False)
    assert set(lab.set_elements("inet", table, _set_of(policy, "llm"))) == {api4}
    assert set(lab.set_elements("inet", table, _set_of(policy, "chat"))) == {files}
    assert _connect(lab, api4, files) == [True, True]


def test_elements_expire_unless_in_use(lab: Lab, runtime: Callable[..., Policy]) -> None:
    policy = runtime(fqdn_timeout=2)
    set4 = _set_of(policy, "llm")
    api4 = NAMES["api.llm.test"][0]
    (answer,) = _lookup(lab, "api.llm.test")
    assert answer.addresses == (api4,) and answer.ttl is not None and answer.ttl <= 2
    for _ in range(4):  # new connections restart the timeout: 3.2 s of use outlive 2 s
        assert _connect(lab, api4) == [True]
        time.sleep(0.8)
    assert api4 in lab.set_elements("inet", table_name(policy), set4)
    time.sleep(2.3)  # unused for longer than the timeout: gone, and closed again
    assert lab.set_elements("inet", table_name(policy), set4) == {}
    assert _connect(lab, api4) == [False]
    assert _lookup(lab, "api.llm.test")[0].addresses == (api4,)  # dnsmasq's cache expired too
    assert _connect(lab, api4) == [True]


def test_shadow_drops_nothing_and_counts_would_deny(lab: Lab, runtime: Callable[..., Policy]) -> None:
    policy = runtime(mode=Mode.SHADOW)
    table = table_name(policy)
    api4, evil = NAMES["api.llm.test"][0], NAMES["evil.test"][0]
    before = lab.counters("inet", table)
    assert _connect(lab, api4, evil) == [True, True]  # before any lookup: would-deny, accepted
    assert _lookup(lab, "evil.test", server=UPSTREAM)[0].addresses == (evil,)  # would-deny
    assert _lookup(lab, "api.llm.test")[0].addresses == (api4,)
    assert _connect(lab, api4) == [True]
    after = lab.counters("inet", table)
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert delta == {"egress_default": 2, "rule_local-dns-only": 1, "rule_llm": 1}


def test_host_wide_policy_exempts_only_the_resolver(lab: Lab, runtime: Callable[..., Policy]) -> None:
    """`applies-to host` fences the resolver too: its own queries (user dnsmasq) pass the
    local-dns-only rule and go where the policy lets them; root's do not."""
    policy = runtime(POLICY.replace(f"applies-to user {AGENT_UID}", "applies-to host").replace(
        "}\n", f'  allow egress to {UPSTREAM} port 53/udp, 53/tcp reason "upstream for the resolver"\n}}\n'))
    api4 = NAMES["api.llm.test"][0]
    assert _lookup(lab, "api.llm.test", server=UPSTREAM, uid=0)[0].outcome in ("timeout", "eperm")
    assert _lookup(lab, "api.llm.test", uid=0)[0].addresses == (api4,)  # via the resolver
    assert _connect(lab, api4, NAMES["evil.test"][0], uid=0) == [True, False]
    assert policy.local_dns is not None and policy.local_dns.resolver_user == "dnsmasq"
