"""The DNS lab the gate's kernel tests share (tests/kernel/test_dnsgate*.py).

Peer namespace: a small internet with an upstream dnsmasq, authoritative for the test names
(short TTLs, CNAMEs), logging every query it receives (`Daemon.log`: the proof that a name
never reached it). Agent namespace: the generated ruleset and the agent's resolver, either
the DNS gate (`clawpolicy dns serve`) or dnsmasq with the generated fragment; both fill the
ruleset's sets, which belong to the agent namespace. The agent is uid AGENT_UID; the
resolvers run as root or another user, outside the policy (`applies-to user`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from netlab import Daemon, DnsAnswer, DnsQuery, Lab, Probe, format_results

from clawpolicy.backends import dnsmasq
from clawpolicy.backends.base import CompileOptions
from clawpolicy.backends.nftables import render
from clawpolicy.ir import Mode, Policy
from clawpolicy.lower import load_policies

REPO = Path(__file__).resolve().parents[2]
AGENT_UID = 4242
UPSTREAM = "198.18.0.53"
LOCAL = "127.0.0.1"
TTL = 4  # the upstream's TTL and the sets' timeout: timelines take seconds
NAMES = {
    "api.llm.test": ("198.18.1.10", "2001:db8:1::10"),
    "c1.cdn.test": ("198.18.3.1",),
    "evil.test": ("198.18.9.9",),
    "other.test": ("198.18.4.4",),
}
CNAMES = {"pointer.test": "c1.cdn.test", "alias.llm.test": "edge.provider.test"}
EDGE = ("edge.provider.test", "198.18.5.5")
TIMED = {  # names with their own TTL (host-record's last field): one address, two TTLs
    "long.cdn.test": ("198.18.3.9", 6), "short.cdn.test": ("198.18.3.9", 2),
    "brief.cdn.test": ("198.18.3.8", 2)}
PEERS = (UPSTREAM, *sorted({a for addrs in NAMES.values() for a in addrs}), EDGE[1],
         *sorted({a for a, _ in TIMED.values()}))
POLICY = f"""policy gatelab {{
  mode enforce
  applies-to user {AGENT_UID}
  dns local
  allow egress to api.llm.test, alias.llm.test port 443/tcp reason "model API" id llm
  allow egress to *.cdn.test port 443/tcp reason "cdn" id cdn
  allow egress to other.test port 443/tcp reason "other" id other
}}
"""
UPSTREAM_CONF = "\n".join([
    "no-resolv", "no-hosts", "bind-interfaces", f"listen-address={UPSTREAM}", "local=/test/",
    f"local-ttl={TTL}", "auth-ttl=4",
    *(f"host-record={name},{','.join(addrs)}" for name, addrs in NAMES.items()),
    f"host-record={EDGE[0]},{EDGE[1]}",
    *(f"host-record={name},{addr},{ttl}" for name, (addr, ttl) in TIMED.items()),
    *(f"cname={a},{b}" for a, b in CNAMES.items()), ""])


def start_upstream(lab: Lab) -> Daemon:
    return lab.start_dnsmasq(lab.peer_ns, UPSTREAM_CONF, name="upstream", user="dnsmasq")


def write_policy(lab: Lab, text: str = POLICY) -> tuple[Path, Policy]:
    path = lab.write_file("gatelab.claw", text)
    loaded = load_policies([path])
    assert loaded.ok, loaded.diagnostics
    return path, loaded.policies[0]


def load_ruleset(lab: Lab, policy: Policy, *, flush: bool = True, timeout: int = TTL) -> None:
    lab.load_ruleset(render(policy, CompileOptions(fqdn_timeout=timeout)), flush=flush)


@dataclass
class Resolver:
    """The agent's resolver under test: the gate or dnsmasq, in the agent namespace."""

    kind: str
    proc: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def reload(self) -> None:
        mark = len(self.lines())
        os.kill(self.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not any("reload" in line for line in self.lines()[mark:]):
            assert time.monotonic() < deadline, "the gate did not reload"
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_gate(lab: Lab, path: Path, *args: str, prefix: tuple[str, ...] = ()) -> Resolver:
    """`clawpolicy dns serve` in the agent namespace, stderr into a file (a pipe nobody reads
    would fill up and stall it). `ip netns exec` execs, so the process is the gate itself."""
    log = lab.write_file(f"gate-{time.monotonic_ns()}.log", "")
    argv = ["sh", "-c", f'exec "$@" 2>>{log}', "sh", *prefix, sys.executable, "-m", "clawpolicy.cli", "dns",
            "serve", str(path), "--listen", f"{LOCAL}:53", "--upstream", UPSTREAM,
            "--upstream-timeout", "1", *args]
    proc = lab.spawn(lab.agent_ns, argv, ready=lambda: "serving policy=" in log.read_text(),
                     timeout=30)
    return Resolver("gate", proc, log)


def start_dnsmasq_fragment(lab: Lab, policy: Policy, timeout: int = TTL) -> Resolver:
    """dnsmasq with the generated fragment and nothing else: the fragment names the upstream
    per policy name (`compile --dns-upstream`), so the daemon has no default server."""
    fragment, _ = dnsmasq.render(policy, CompileOptions(fqdn_timeout=timeout, dns_upstreams=(UPSTREAM,)))
    frag = lab.write_file("fragment.conf", fragment)
    config = "\n".join(["no-hosts", "bind-interfaces", f"listen-address={LOCAL}",
                        f"conf-file={frag}", ""])
    daemon = lab.start_dnsmasq(lab.agent_ns, config, name=f"local{time.monotonic_ns()}", user="dnsmasq")
    return Resolver("dnsmasq", daemon.proc, daemon.log)


def lookup(lab: Lab, *names: str, server: str = LOCAL, uid: int = AGENT_UID,
           tcp: bool = False) -> list[DnsAnswer]:
    queries = [DnsQuery(server, n, "AAAA" if t == "6" else "A", tcp)  # type: ignore[arg-type]
               for name in names for n, t in [name.split("/") if "/" in name else (name, "4")]]
    return lab.dns(queries, uid=uid)


def connect(lab: Lab, *addresses: str, uid: int = AGENT_UID) -> list[bool]:
    results = lab.probe_results([Probe("egress", a, "tcp", 443, uid=uid) for a in addresses])
    print(format_results(results))
    return [r.ok for r in results]


def asked(upstream: Daemon) -> str:
    """Everything the upstream was asked so far (its query log)."""
    return upstream.log.read_text(errors="replace")


def with_mode(policy: Policy, mode: Mode) -> Policy:
    return policy.with_mode(mode)
