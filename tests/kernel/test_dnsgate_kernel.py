"""The DNS gate in namespaces (tests/kernel/dnsgate_lab.py): a real upstream whose query log is
read, the generated ruleset, the agent as uid AGENT_UID. What only the gate guarantees is
here; the timeline suite it shares with the dnsmasq fragment is test_dnsgate_timeline.py."""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from collections.abc import Callable, Iterator

import pytest
from dnsgate_lab import (
    EDGE,
    NAMES,
    PEERS,
    POLICY,
    TIMED,
    TTL,
    UPSTREAM,
    Resolver,
    asked,
    connect,
    load_ruleset,
    lookup,
    start_gate,
    start_upstream,
    write_policy,
)
from netlab import Daemon, Lab

from clawpolicy.backends.nftables import fqdn_groups
from clawpolicy.dnsgate.logline import parse_lines
from clawpolicy.dnsgate.privileges import CAP_NET_ADMIN, effective_capabilities
from clawpolicy.ir import Mode

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Lab, Daemon]]:
    with Lab(peer_addresses=PEERS, tcp_ports=(443,), udp_ports=(443,)) as lab:
        yield lab, start_upstream(lab)


@pytest.fixture
def gate(lab: tuple[Lab, Daemon]) -> Iterator[Callable[..., Resolver]]:
    """start(policy_text, *gate_args, mode=...): load the ruleset, start the gate."""
    started: list[Resolver] = []

    def start(text: str = POLICY, *args: str, mode: Mode = Mode.ENFORCE,
              prefix: tuple[str, ...] = (), timeout: int = TTL) -> Resolver:
        path, policy = write_policy(lab[0], text.replace("mode enforce", f"mode {mode.value}"))
        load_ruleset(lab[0], policy, timeout=timeout)
        started.append(start_gate(lab[0], path, *args, prefix=prefix))
        return started[-1]

    yield start
    for r in started:
        if r.alive():
            r.proc.terminate()
            r.proc.wait(timeout=5)


def test_kernel_refreshes_only_with_expires(lab: tuple[Lab, Daemon], subtests: pytest.Subtests) -> None:
    """Why the gate writes `expires`: on this kernel a re-add, plain (as dnsmasq sends it) or
    with the same `timeout`, leaves an existing element's expiry where it was; only
    `timeout T expires E` restarts it."""
    lab_ = lab[0]
    lab_.load_ruleset("table inet probe {\n set s { type ipv4_addr; flags dynamic,timeout; timeout 20s; }\n}\n")
    for readd in ("{ 192.0.2.1 }", "{ 192.0.2.1 timeout 20s }"):
        with subtests.test(readd=readd):
            lab_.nft("flush", "set", "inet", "probe", "s")
            lab_.nft("add", "element", "inet", "probe", "s", "{ 192.0.2.1 }")  # as dnsmasq does
            time.sleep(2.2)
            lab_.nft("add", "element", "inet", "probe", "s", readd)
            assert _seconds(lab_.set_elements("inet", "probe", "s")["192.0.2.1"]) < 18.5  # not restarted
    lab_.nft("add", "element", "inet", "probe", "s", "{ 192.0.2.1 timeout 20s expires 20s }")
    assert _seconds(lab_.set_elements("inet", "probe", "s")["192.0.2.1"]) > 18.5  # restarted


def _seconds(expires: str) -> float:
    """`Lab.set_elements` reports nft's JSON `expires`: whole seconds left."""
    return float(expires)


def test_unlisted_names_never_reach_the_upstream(lab: tuple[Lab, Daemon], gate: Callable[..., Resolver]) -> None:
    lab_, upstream = lab
    resolver = gate()
    secret = f"s{secrets.token_hex(6)}.attacker.test"
    answers = lookup(lab_, secret, "evil.test", "cdn.test", "x.api.llm.test", "api.llm.test")
    assert [a.rcode for a in answers] == ["REFUSED"] * 4 + ["NOERROR"]
    answers = lookup(lab_, secret, tcp=True)  # over TCP too
    assert answers[0].rcode == "REFUSED"
    log = asked(upstream)
    assert secret not in log and "x.api.llm.test" not in log and "api.llm.test" in log
    assert connect(lab_, NAMES["evil.test"][0]) == [False]
    refused = [g for g in parse_lines(resolver.lines()) if g.verdict == "refuse"]
    assert {g.name for g in refused} == {secret, "evil.test", "cdn.test", "x.api.llm.test"}
    assert all(g.policy == "gatelab" and g.rcode == "REFUSED" for g in refused)


def test_cname_then_direct_lookup_connects(lab: tuple[Lab, Daemon], gate: Callable[..., Resolver]) -> None:
    """dnsmasq's cache hid the second answer from its sets; the gate has no cache."""
    lab_, _ = lab
    gate()
    (c1,) = NAMES["c1.cdn.test"]
    assert lookup(lab_, "pointer.test")[0].rcode == "REFUSED"  # unlisted, however it ends
    assert lookup(lab_, "c1.cdn.test")[0].addresses == (c1,)
    assert connect(lab_, c1) == [True]
    # an allowed name that is a CNAME to an unlisted one: its addresses go to the allowed set
    alias = lookup(lab_, "alias.llm.test")[0]
    assert EDGE[1] in alias.addresses
    assert connect(lab_, EDGE[1]) == [True]
    assert lookup(lab_, EDGE[0])[0].rcode == "REFUSED"


def test_reload_revokes_removed_names(lab: tuple[Lab, Daemon], gate: Callable[..., Resolver]) -> None:
    lab_, upstream = lab
    resolver = gate(POLICY)
    other, api = NAMES["other.test"][0], NAMES["api.llm.test"][0]
    assert [a.addresses for a in lookup(lab_, "other.test", "api.llm.test")] == [(other,), (api,)]
    assert connect(lab_, other, api) == [True, True]
    path, policy = write_policy(lab_, POLICY.replace(
        '  allow egress to other.test port 443/tcp reason "other" id other\n', ""))
    load_ruleset(lab_, policy, flush=False)  # the ruleset first, then the gate
    resolver.reload()
    assert connect(lab_, other) == [False]  # its set is gone from the rules
    mark = len(asked(upstream))
    assert lookup(lab_, "other.test")[0].rcode == "REFUSED"
    assert "other.test" not in asked(upstream)[mark:]
    assert lookup(lab_, "api.llm.test")[0].addresses == (api,)
    assert connect(lab_, api) == [True]


def test_shadow_forwards_everything_and_counts(lab: tuple[Lab, Daemon], gate: Callable[..., Resolver]) -> None:
    lab_, upstream = lab
    resolver = gate(mode=Mode.SHADOW)
    evil = NAMES["evil.test"][0]
    assert lookup(lab_, "evil.test")[0].addresses == (evil,)
    assert "evil.test" in asked(upstream)
    assert connect(lab_, evil) == [True]  # the shadow ruleset logs would-deny and accepts
    would = [g for g in parse_lines(resolver.lines()) if g.verdict == "would-refuse"]
    assert [g.name for g in would] == ["evil.test"] and would[0].rcode == "NOERROR"
    resolver.proc.terminate()  # the gate counts its verdicts and says so when it stops
    resolver.proc.wait(timeout=10)
    (summary,) = [line for line in resolver.lines() if "stopped policy=gatelab" in line]
    assert "would-refuse=1" in summary.split()


HOSTILE = r"""
import json, socket, sys, os
import dns.message, dns.query
out = {}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
packets = [b"", b"\x00", os.urandom(11), b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6 + b"\x3f" * 50,
           b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
           b"\x12\x34\x81\x80" + b"\x00" * 8, os.urandom(4000)] + [os.urandom(60) for _ in range(50)]
replies = []
for p in packets:
    s.sendto(p, ("127.0.0.1", 53))
    try:
        replies.append(dns.message.from_wire(s.recv(65535)).rcode())
    except (socket.timeout, Exception) as exc:
        replies.append(type(exc).__name__)
out["formerr"] = replies[3:5]
t = socket.create_connection(("127.0.0.1", 53)); t.sendall(b"\xff\xff" + b"\x00" * 10); t.close()
t = socket.create_connection(("127.0.0.1", 53)); t.sendall(b"\x00\x05abc"); t.close()
q = dns.message.make_query("api.llm.test", "A")
out["after"] = [r.to_text() for rr in dns.query.udp(q, "127.0.0.1", timeout=2).answer for r in rr]
print(json.dumps(out))
"""


def test_hostile_packets_do_not_stop_the_gate(lab: tuple[Lab, Daemon], gate: Callable[..., Resolver]) -> None:
    lab_, _ = lab
    resolver = gate()
    out = json.loads(lab_.run(lab_.agent_ns, [lab_.python, "-c", HOSTILE]).stdout)
    assert out["formerr"] == [1, 1]  # FORMERR
    assert out["after"] == [NAMES["api.llm.test"][0]]
    assert resolver.alive() and not any("internal error" in line for line in resolver.lines())


CONCURRENT = r"""
import json, sys, concurrent.futures as cf, dns.message, dns.query
names = json.loads(sys.argv[1])
def ask(i):
    q = dns.message.make_query(names[i % len(names)], "A")
    try:
        r = (dns.query.tcp if i % 5 == 0 else dns.query.udp)(q, "127.0.0.1", timeout=5)
        return dns.rcode.to_text(r.rcode())
    except Exception as exc:
        return type(exc).__name__
with cf.ThreadPoolExecutor(64) as pool:
    print(json.dumps(sorted(pool.map(ask, range(400)))))
"""


def test_many_concurrent_clients(lab: tuple[Lab, Daemon], gate: Callable[..., Resolver]) -> None:
    lab_, _ = lab
    resolver = gate()
    names = ["api.llm.test", "c1.cdn.test", "evil.test", "other.test"]
    out = json.loads(lab_.run(lab_.agent_ns, [lab_.python, "-c", CONCURRENT, json.dumps(names)],
                              timeout=120).stdout)
    assert out.count("NOERROR") == 300 and out.count("REFUSED") == 100, out
    assert resolver.alive()
    group = fqdn_groups(write_policy(lab_)[1])
    filled = {a for g in group for a in lab_.set_elements("inet", "clawpolicy_gatelab", g.set_name(4))}
    assert filled == {NAMES[n][0] for n in ("api.llm.test", "c1.cdn.test", "other.test")}


def test_runs_with_only_cap_net_admin(lab: tuple[Lab, Daemon], gate: Callable[..., Resolver]) -> None:
    lab_, _ = lab
    resolver = gate(POLICY, "--user", "nobody")
    caps = effective_capabilities(resolver.proc.pid)
    assert caps == 1 << CAP_NET_ADMIN, hex(caps)
    status = open(f"/proc/{resolver.proc.pid}/status").read()
    assert "\nUid:\t65534\t65534\t65534\t65534" in status and "NoNewPrivs:\t1" in status
    api = NAMES["api.llm.test"]
    assert [a.addresses for a in lookup(lab_, "api.llm.test", "api.llm.test/6")] == [(api[0],), (api[1],)]
    assert connect(lab_, *api) == [True, True]  # the sets were written with that one capability


def test_runs_as_the_systemd_unit_does(lab: tuple[Lab, Daemon], gate: Callable[..., Resolver]) -> None:
    """The unit's way (backends/dnsgate.py): an unprivileged user with CAP_NET_ADMIN and
    CAP_NET_BIND_SERVICE as ambient capabilities; once bound, only CAP_NET_ADMIN is left."""
    lab_, _ = lab
    caps = "+net_admin,+net_bind_service"
    resolver = gate(POLICY, prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                    f"--inh-caps={caps}", f"--ambient-caps={caps}",
                                    f"--bounding-set=-all,{caps}"))
    assert effective_capabilities(resolver.proc.pid) == 1 << CAP_NET_ADMIN
    api = NAMES["api.llm.test"][0]
    assert lookup(lab_, "api.llm.test")[0].addresses == (api,)
    assert connect(lab_, api) == [True]


def test_host_wide_policy_gate_as_the_resolver_user(lab: tuple[Lab, Daemon], gate: Callable[..., Resolver]) -> None:
    """`applies-to host` fences the gate too: as user dnsmasq (what local-dns-only exempts) its
    queries reach the upstream the policy allows; root's direct queries do not."""
    lab_, _ = lab
    text = POLICY.replace("applies-to user 4242", "applies-to host").replace(
        "}\n", f'  allow egress to {UPSTREAM} port 53/udp, 53/tcp reason "upstream for the gate"\n}}\n')
    resolver = gate(text, "--user", "dnsmasq")
    api = NAMES["api.llm.test"][0]
    assert lookup(lab_, "api.llm.test", uid=0)[0].addresses == (api,)
    assert lookup(lab_, "api.llm.test", server=UPSTREAM, uid=0)[0].outcome in ("timeout", "eperm")
    assert connect(lab_, api, NAMES["evil.test"][0], uid=0) == [True, False]
    assert resolver.alive()


def test_short_ttls_are_honoured_and_never_shorten_a_promise(lab: tuple[Lab, Daemon],
                                                             gate: Callable[..., Resolver]) -> None:
    """Sets time out after 8 s, the floor is 1 s: an address lasts as long as its answers say.
    long.cdn.test (TTL 6) and short.cdn.test (TTL 2) share an address: the short answer given
    after the long one must not bring its expiry forward; brief.cdn.test (TTL 2) alone goes
    after 2 s although the set would keep it 8."""
    lab_, _ = lab
    gate(POLICY, "--min-ttl", "1", timeout=8)
    shared, brief = TIMED["long.cdn.test"][0], TIMED["brief.cdn.test"][0]
    answers = lookup(lab_, "long.cdn.test", "brief.cdn.test")
    assert [(a.addresses, a.ttl) for a in answers] == [((shared,), 6), ((brief,), 2)]
    time.sleep(1)
    assert lookup(lab_, "short.cdn.test")[0].ttl == 2
    time.sleep(2.6)  # t+3.6: brief's answer and short's have expired, long's has not
    assert connect(lab_, shared, brief) == [True, False]


def test_a_connection_restarts_the_sets_timeout(lab: tuple[Lab, Daemon]) -> None:
    """What CAP is: a new connection's `update @set` restarts an element to the set's own
    timeout, whatever timeout the element carries, so the gate caps TTLs at the set's."""
    lab_, _ = lab
    _, policy = write_policy(lab_)
    load_ruleset(lab_, policy, timeout=20)
    (group,) = [g for g in fqdn_groups(policy) if any(r.id == "llm" for r in g.rules)]
    api = NAMES["api.llm.test"][0]
    lab_.nft("add", "element", "inet", "clawpolicy_gatelab", group.set_name(4),
             f"{{ {api} timeout 3s expires 3s }}")
    assert connect(lab_, api) == [True]
    assert _seconds(lab_.set_elements("inet", "clawpolicy_gatelab", group.set_name(4))[api]) > 17


def test_workers_share_the_port_and_the_signals(lab: tuple[Lab, Daemon], gate: Callable[..., Resolver]) -> None:
    """--workers 2: two processes answer on one address (SO_REUSEPORT); SIGHUP and SIGTERM
    to the first reach both, and neither is left behind."""
    lab_, _ = lab
    resolver = gate(POLICY, "--workers", "2")
    deadline = time.monotonic() + 20
    while sum("serving policy=" in line for line in resolver.lines()) < 2:
        assert time.monotonic() < deadline, resolver.lines()
        time.sleep(0.05)
    pids = {line.split("pid=")[1].split()[0] for line in resolver.lines() if "serving policy=" in line}
    assert len(pids) == 2
    names = ["api.llm.test", "other.test", "evil.test"] * 10
    assert [a.rcode for a in lookup(lab_, *names)] == ["NOERROR", "NOERROR", "REFUSED"] * 10
    os.kill(resolver.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 60  # a reload parses the policy again: slow on a loaded machine
    while sum("reloaded policy=gatelab" in line for line in resolver.lines()) < 2:
        assert time.monotonic() < deadline, "\n".join(resolver.lines())
        time.sleep(0.05)
    resolver.proc.terminate()
    assert resolver.proc.wait(timeout=10) == 0
    assert sum("stopped policy=gatelab" in line for line in resolver.lines()) == 2, "\n".join(resolver.lines())
    assert all(not os.path.exists(f"/proc/{pid}/status") or "Z" in open(f"/proc/{pid}/status").read().split("State:")[1][:4]
               for pid in pids)


def _serving_pids(resolver: Resolver, count: int) -> list[str]:
    """The pids of the first `count` "serving" lines, waiting for them."""
    deadline = time.monotonic() + 30
    while True:
        pids = [line.split("pid=")[1].split()[0] for line in resolver.lines() if "serving policy=" in line]
        if len(pids) >= count:
            return pids[:count]
        assert time.monotonic() < deadline, "\n".join(resolver.lines())
        time.sleep(0.05)


def test_a_worker_that_dies_is_replaced(lab: tuple[Lab, Daemon], gate: Callable[..., Resolver]) -> None:
    """--workers 2: kill -9 one worker; the supervisor says so, starts another, which serves
    (two distinct serving pids again), and SIGTERM still stops everything with status 0."""
    lab_, _ = lab
    resolver = gate(POLICY, "--workers", "2")
    first = _serving_pids(resolver, 2)
    os.kill(int(first[0]), signal.SIGKILL)
    third = _serving_pids(resolver, 3)[2]
    assert third not in first
    assert any(f"worker pid={first[0]} killed by SIGKILL: started another" in line
               for line in resolver.lines())
    names = ["api.llm.test", "evil.test"] * 10
    assert [a.rcode for a in lookup(lab_, *names)] == ["NOERROR", "REFUSED"] * 10
    resolver.proc.terminate()
    assert resolver.proc.wait(timeout=10) == 0
    assert sum("stopped policy=gatelab" in line for line in resolver.lines()) == 2, "\n".join(resolver.lines())
