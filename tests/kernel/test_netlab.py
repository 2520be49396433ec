"""Self-tests of the kernel lab (netlab.py).

Every ruleset here is HAND-WRITTEN: these tests prove that the lab reports the
kernel's verdicts (pass vs drop) correctly, independently of clawpolicy's
compiler. Tests of generated rulesets build on this lab elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from netlab import Lab, LabError, NftError, Probe, ProbeResult, format_results

pytestmark = pytest.mark.root

V4_DNS = "10.0.0.53"
V4_WEB = "203.0.113.9"
V4_METADATA = "169.254.169.254"
V4_CGNAT = "100.64.0.7"
V4_LAN = "192.168.1.20"
V6_TAILNET = "fd7a:115c:a1e0::5"
V6_WEB = "2001:db8:ffff::9"
PEERS = (V4_DNS, V4_WEB, V4_METADATA, V4_CGNAT, V4_LAN, V6_TAILNET, V6_WEB)
V4_PEERS = PEERS[:5]
V6_PEERS = PEERS[5:]
MDNS4 = "224.0.0.251"
MDNS6 = "ff02::fb"

AGENT_UID = 4242


def E(remote: str, protocol: str, port: int | None = None, uid: int = 0) -> Probe:
    return Probe("egress", remote, protocol, port, uid=uid)  # type: ignore[arg-type]


def I(remote: str, protocol: str, port: int | None = None, local: str | None = None) -> Probe:  # noqa: E743
    return Probe("ingress", remote, protocol, port, local=local)  # type: ignore[arg-type]


def every_flow() -> list[Probe]:
    """tcp/udp/icmp, v4 and v6, egress (as root and as the agent uid) and ingress."""
    flows: list[Probe] = []
    for peer in PEERS:
        flows += [
            E(peer, "tcp", 443),
            E(peer, "udp", 53),
            E(peer, "icmp"),
            E(peer, "tcp", 443, uid=AGENT_UID),
            E(peer, "udp", 53, uid=AGENT_UID),
            E(peer, "icmp", uid=AGENT_UID),
            I(peer, "tcp", 18789),
            I(peer, "udp", 41641),
            I(peer, "icmp"),
        ]
    flows += [E(MDNS4, "udp", 5353), E(MDNS6, "udp", 5353), E(MDNS4, "udp", 5353, uid=AGENT_UID)]
    return flows


ND_ACCEPT = "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept"


@dataclass
class Case:
    name: str
    ruleset: str
    expect: list[tuple[Probe, bool]] = field(default_factory=list)


def _dns_only() -> Case:
    ruleset = f"""
table inet egress {{
    chain output {{
        type filter hook output priority filter; policy drop;
        oifname "lo" accept
        ct state established,related accept
        ip daddr {V4_DNS} udp dport 53 accept
    }}
}}
"""
    allowed = {E(V4_DNS, "udp", 53), E(V4_DNS, "udp", 53, uid=AGENT_UID)}
    expect = []
    for p in every_flow():
        if p.direction == "ingress":
            # No input chain; the replies leave through output as ct "established".
            # Except over IPv6: the agent's neighbour solicitations/advertisements
            # are not "established" and hit the output policy, so the peer never
            # learns where to send its packets.
            expect.append((p, ":" not in p.remote))
        else:
            expect.append((p, p in allowed))
    expect += [
        (E(V4_DNS, "tcp", 53), False),
        (E(V4_DNS, "udp", 5353), False),
        (E(V4_WEB, "udp", 53), False),
        (E(V6_WEB, "udp", 53), False),
    ]
    return Case("dns-only-egress", ruleset, expect)


CASES = [
    Case("no-ruleset", "", [(p, True) for p in every_flow()]),
    _dns_only(),
    Case(
        "skuid-drop",
        f"""
table inet egress {{
    chain output {{
        type filter hook output priority filter; policy accept;
        meta skuid {AGENT_UID} drop
    }}
}}
""",
        [
            (E(V4_WEB, "tcp", 443), True),
            (E(V4_WEB, "tcp", 443, uid=AGENT_UID), False),
            (E(V4_WEB, "udp", 53), True),
            (E(V4_WEB, "udp", 53, uid=AGENT_UID), False),
            (E(V4_WEB, "icmp"), True),
            (E(V4_WEB, "icmp", uid=AGENT_UID), False),
            (E(V6_WEB, "tcp", 443), True),
            (E(V6_WEB, "tcp", 443, uid=AGENT_UID), False),
            (E(V6_WEB, "icmp", uid=AGENT_UID), False),
            (E(V4_WEB, "tcp", 443, uid=AGENT_UID + 1), True),
            (E(MDNS4, "udp", 5353, uid=AGENT_UID), False),
            (I(V4_WEB, "tcp", 18789), True),  # the agent-side listener runs as root
        ],
    ),
    Case(
        "ingress-cgnat-only",
        """
table inet ingress {
    chain input {
        type filter hook input priority filter; policy drop;
        iifname "lo" accept
        ip saddr 100.64.0.0/10 tcp dport 18789 accept
    }
}
""",
        [
            (I(V4_CGNAT, "tcp", 18789), True),
            (I(V4_CGNAT, "tcp", 18789, local="192.0.2.1"), True),
            (I(V4_LAN, "tcp", 18789), False),
            (I(V4_WEB, "tcp", 18789), False),
            (I(V4_CGNAT, "tcp", 22), False),
            (I(V4_CGNAT, "udp", 41641), False),
            (I(V4_CGNAT, "icmp"), False),
            (I(V6_TAILNET, "tcp", 18789), False),
            # No "ct state established" rule: replies to our own connections are dropped.
            (E(V4_CGNAT, "tcp", 443), False),
            (E(V4_CGNAT, "udp", 53), False),
        ],
    ),
    Case(
        "ipv6-both-directions",
        f"""
table inet fw {{
    chain output {{
        type filter hook output priority filter; policy drop;
        oifname "lo" accept
        ct state established,related accept
        {ND_ACCEPT}
        ip6 daddr {V6_WEB} tcp dport 443 accept
    }}
    chain input {{
        type filter hook input priority filter; policy drop;
        iifname "lo" accept
        ct state established,related accept
        {ND_ACCEPT}
        ip6 saddr fd7a:115c:a1e0::/48 tcp dport 18789 accept
    }}
}}
""",
        [
            (E(V6_WEB, "tcp", 443), True),
            (E(V6_WEB, "tcp", 443, uid=AGENT_UID), True),
            (E(V6_WEB, "tcp", 80), False),
            (E(V6_WEB, "udp", 443), False),
            (E(V6_WEB, "icmp"), False),
            (E(V6_TAILNET, "tcp", 443), False),
            (E(V4_WEB, "tcp", 443), False),
            (E(MDNS6, "udp", 5353), False),
            (I(V6_TAILNET, "tcp", 18789), True),
            (I(V6_WEB, "tcp", 18789), False),
            (I(V6_TAILNET, "tcp", 22), False),
            (I(V6_TAILNET, "udp", 41641), False),
            (I(V4_CGNAT, "tcp", 18789), False),
        ],
    ),
    # A ruleset that forgets neighbour discovery breaks IPv6 even for flows it
    # accepts: the lab must show that (neighbour caches are flushed on load).
    Case(
        "ipv6-without-nd",
        f"""
table inet egress {{
    chain output {{
        type filter hook output priority filter; policy drop;
        ip6 daddr {V6_WEB} accept
    }}
}}
""",
        [(E(V6_WEB, "tcp", 443), False), (E(V6_WEB, "udp", 53), False), (E(V6_WEB, "icmp"), False)],
    ),
    Case(
        "ipv6-with-nd",
        f"""
table inet egress {{
    chain output {{
        type filter hook output priority filter; policy drop;
        {ND_ACCEPT}
        ip6 daddr {V6_WEB} accept
    }}
}}
""",
        [
            (E(V6_WEB, "tcp", 443), True),
            (E(V6_WEB, "udp", 53), True),
            (E(V6_WEB, "icmp"), True),
            (E(V6_TAILNET, "tcp", 443), False),
        ],
    ),
    Case(
        "icmp-echo-only",
        f"""
table inet egress {{
    chain output {{
        type filter hook output priority filter; policy drop;
        ip daddr {V4_METADATA} drop
        icmp type echo-request accept
        icmpv6 type {{ echo-request, nd-neighbor-solicit, nd-neighbor-advert }} accept
    }}
}}
""",
        [
            *[(E(p, "icmp"), p != V4_METADATA) for p in PEERS],
            *[(E(p, "icmp", uid=AGENT_UID), p != V4_METADATA) for p in (V4_WEB, V6_WEB)],
            *[(E(p, "tcp", 443), False) for p in (V4_WEB, V6_WEB)],
            *[(E(p, "udp", 53), False) for p in (V4_DNS, V6_WEB)],
            (I(V4_WEB, "icmp"), False),  # the echo reply is not an echo-request
            (I(V6_WEB, "icmp"), False),
        ],
    ),
    Case(
        "icmp-ingress",
        """
table inet ingress {
    chain input {
        type filter hook input priority filter; policy drop;
        icmp type echo-request ip saddr 192.168.0.0/16 accept
        icmpv6 type { echo-request, nd-neighbor-solicit, nd-neighbor-advert } accept
    }
}
""",
        [
            (I(V4_LAN, "icmp"), True),
            (I(V4_WEB, "icmp"), False),
            (I(V6_WEB, "icmp"), True),
            (I(V4_LAN, "tcp", 22), False),
            (E(V4_LAN, "icmp"), False),  # echo reply dropped on input
        ],
    ),
    Case(
        "mdns-multicast",
        f"""
table inet egress {{
    chain output {{
        type filter hook output priority filter; policy drop;
        ip daddr {MDNS4} udp dport 5353 accept
        ip6 daddr {MDNS6} udp dport 5353 meta skuid 0 accept
    }}
}}
""",
        [
            (E(MDNS4, "udp", 5353), True),
            (E(MDNS4, "udp", 5353, uid=AGENT_UID), True),
            (E(MDNS4, "udp", 5354), False),
            (E(MDNS6, "udp", 5353), True),
            (E(MDNS6, "udp", 5353, uid=AGENT_UID), False),
            (E(V4_DNS, "udp", 5353), False),
        ],
    ),
]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(peer_addresses=PEERS) as the_lab:
        yield the_lab


def _report(results: list[ProbeResult]) -> str:
    return "lab saw:\n" + format_results(results)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_lab_reports_kernel_verdicts(lab: Lab, case: Case, subtests: Any) -> None:
    lab.load_ruleset(case.ruleset)
    probes = [p for p, _ in case.expect]
    results = lab.probe_results(probes)
    report = _report(results)
    for (probe, want), got in zip(case.expect, results, strict=True):
        with subtests.test(msg=str(probe)):
            assert got.ok is want, f"{probe}: expected {'pass' if want else 'drop'}, got {got.outcome}\n{report}"


def test_probe_matches_probe_results(lab: Lab) -> None:
    lab.load_ruleset(_dns_only().ruleset)
    probes = [E(V4_DNS, "udp", 53), E(V4_WEB, "udp", 53), I(V4_WEB, "tcp", 18789)]
    assert lab.probe(probes) == [True, False, True]


def test_output_drop_signals(lab: Lab) -> None:
    """Pin how the kernel reports a drop on OUTPUT to the sender (what makes
    most blocked egress probes fast): sendmsg fails with EPERM for UDP (v4 and
    v6) and for ICMPv4 ping sockets; TCP connect() does not see it (the SYN is
    silently retried) and ICMPv6 ping sockets ignore the error, so those two
    are only detected by the timeout."""
    lab.load_ruleset(
        "table inet t { chain output { type filter hook output priority filter; policy drop; }; }"
    )
    got = {
        (r.probe.protocol, r.probe.remote): r
        for r in lab.probe_results(
            [E(V4_WEB, "udp", 53), E(V6_WEB, "udp", 53), E(V4_WEB, "icmp"), E(V6_WEB, "icmp"),
             E(V4_WEB, "tcp", 443), E(V6_WEB, "tcp", 443), E(MDNS4, "udp", 5353), E(MDNS6, "udp", 5353)],
            timeout=0.4,
        )  # fmt: skip
    }
    for key in [("udp", V4_WEB), ("udp", V6_WEB), ("icmp", V4_WEB), ("udp", MDNS4), ("udp", MDNS6)]:
        assert (got[key].outcome, got[key].errno) == ("eperm", "EPERM"), got[key]
        assert got[key].elapsed < 0.2, got[key]
    for key in [("icmp", V6_WEB), ("tcp", V4_WEB), ("tcp", V6_WEB)]:
        assert got[key].outcome == "timeout", got[key]


def test_counters_rise(lab: Lab) -> None:
    lab.load_ruleset(
        f"""
table inet acct {{
    chain output {{
        type filter hook output priority filter; policy accept;
        ip daddr {V4_DNS} udp dport 53 counter
        ip daddr {V4_DNS} udp dport 53 counter accept
        ip daddr {V4_WEB} counter
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        ip saddr {V4_DNS} udp sport 53 counter
    }}
    chain unhooked {{
        counter
    }}
}}
"""
    )
    assert lab.counters("inet", "acct") == {"output": 0, "input": 0, "unhooked": 0}
    assert lab.probe([E(V4_DNS, "udp", 53)]) == [True]
    # one datagram out (two counters in its path), the echo back in
    assert lab.counters("inet", "acct") == {"output": 2, "input": 1, "unhooked": 0}
    assert lab.probe([E(V4_DNS, "udp", 53)] * 3 + [E(V4_WEB, "icmp")]) == [True] * 4
    assert lab.counters("inet", "acct") == {"output": 9, "input": 4, "unhooked": 0}


def _passwd_fingerprint() -> tuple[str, int, int, int]:
    st = os.stat("/etc/passwd")
    return (hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest(), st.st_ino, st.st_mtime_ns, st.st_size)


def test_named_users_resolve_without_touching_host_passwd(lab: Lab) -> None:
    ruleset = """
table inet egress {
    chain output {
        type filter hook output priority filter; policy accept;
        meta skuid "cpt_user" drop
    }
}
"""
    assert "cpt_user:" not in Path("/etc/passwd").read_text()
    before = _passwd_fingerprint()
    lab.load_ruleset(ruleset, users={"cpt_user": 4243})
    assert _passwd_fingerprint() == before
    assert "cpt_user" not in Path("/etc/passwd").read_text()
    assert " /etc/passwd " not in Path("/proc/self/mountinfo").read_text()
    # nft stored the uid (the name is unknown outside the load)
    assert "4243" in lab.list_ruleset()
    assert "cpt_user" not in lab.run(lab.agent_ns, ["cat", "/etc/passwd"]).stdout
    assert lab.probe(
        [E(V4_WEB, "tcp", 443), E(V4_WEB, "tcp", 443, uid=4243), E(V4_WEB, "tcp", 443, uid=AGENT_UID)]
    ) == [True, False, True]
    # Without the mapping nft cannot resolve the name: the error carries nft's message.
    with pytest.raises(NftError, match="cpt_user"):
        lab.load_ruleset(ruleset)
    assert _passwd_fingerprint() == before


def test_nft_errors_are_raised_with_stderr(lab: Lab) -> None:
    with pytest.raises(NftError) as info:
        lab.load_ruleset("table inet broken {\n  chain c { nonsense }\n}\n")
    message = str(info.value)
    assert "Error" in message and "nonsense" in message
    # the failed load is atomic: the previous ruleset is still there
    lab.load_ruleset("table inet kept { }")
    with pytest.raises(NftError):
        lab.load_ruleset("table inet other { }\ntable inet broken { chain c { nonsense } }")
    assert "table inet kept" in lab.list_ruleset()
    assert "table inet other" not in lab.list_ruleset()


def test_probe_validation(lab: Lab) -> None:
    with pytest.raises(ValueError, match="no tcp listener"):
        lab.probe([E(V4_WEB, "tcp", 9)])
    with pytest.raises(ValueError, match="need a port"):
        lab.probe([E(V4_WEB, "udp")])
    with pytest.raises(ValueError, match="not a peer address"):
        lab.probe([I("198.51.100.1", "tcp", 22)])
    with pytest.raises(ValueError, match="egress"):
        lab.probe([Probe("ingress", V4_WEB, "tcp", 22, uid=5)])


def test_probes_run_concurrently(lab: Lab) -> None:
    lab.load_ruleset(
        "table inet t { chain input { type filter hook input priority filter; policy drop; }; }"
    )
    probes = [E(p, "tcp", 443, uid=u) for p in PEERS for u in (0, AGENT_UID, AGENT_UID + 1)]
    probes += [I(p, "udp", 41641) for p in PEERS]
    start = time.monotonic()
    assert lab.probe(probes, timeout=0.5) == [False] * len(probes)
    assert time.monotonic() - start < 3.0


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_cleanup() -> None:
    with Lab(peer_addresses=[V4_WEB]) as lab:
        names = {lab.agent_ns, lab.peer_ns}
        assert names <= _namespaces()
        listeners = [p.pid for p in lab._listeners]
    assert not names & _namespaces()
    for pid in listeners:
        assert not Path(f"/proc/{pid}").exists()

    # __enter__ failing halfway (a listener cannot bind) still cleans up
    broken = Lab(peer_addresses=[V4_WEB], tcp_ports=(70000,))
    with pytest.raises(LabError, match="listener"):
        broken.__enter__()
    assert not {broken.agent_ns, broken.peer_ns} & _namespaces()

    # an exception inside the with-block too
    with pytest.raises(RuntimeError):
        with Lab(peer_addresses=[V4_WEB]) as lab2:
            names = {lab2.agent_ns, lab2.peer_ns}
            raise RuntimeError("boom")
    assert not names & _namespaces()


def test_custom_agent_addresses_and_default_local(lab_factory: Any) -> None:
    lab = lab_factory(
        peer_addresses=[V4_WEB, V6_WEB],
        agent_addresses=("198.18.0.1", "198.18.0.2", "fd00::1"),
        tcp_ports=(22,),
        udp_ports=(53,),
    )
    lab.load_ruleset(
        """
table inet ingress {
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        ip daddr 198.18.0.2 tcp dport 22 accept
    }
}
"""
    )
    assert lab.probe(
        [
            I(V4_WEB, "tcp", 22),  # default local: the first IPv4 agent address, 198.18.0.1
            I(V4_WEB, "tcp", 22, local="198.18.0.2"),
            I(V6_WEB, "tcp", 22),  # to fd00::1 (and ND is dropped anyway)
            E(V4_WEB, "tcp", 22),
            E(V4_WEB, "udp", 53),
        ]
    ) == [False, True, False, True, True]
