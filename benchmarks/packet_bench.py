#!/usr/bin/env python3
"""Packet-path cost of the emitted rulesets, clawpolicy against Aerleon (issue 14).

Not a test: prints a table and asserts nothing. Called by benchmarks/aerleon_bench.py (which
compiles the rulesets) or run on its own with `--aerleon-python` to compile them here.

Each configuration gets its own lab (clawpolicy/operate/netlab/: an agent and a peer network
namespace joined by a veth pair; never the host's namespace). The agent routes 11.0.0.0/8
through the peer, whose ingress hook drops it, so a packet costs the same after it leaves
whatever the ruleset. benchmarks/blaster.py sends UDP to port 443 with sendmmsg from the agent,
every packet a new flow (its own source port), so conntrack creates an entry and the whole
output-hook ruleset runs for each one. Rounds alternate between the configurations, each round
to other destination addresses of the same rule (so no flow repeats), and the median
nanoseconds per packet is reported:

- 1 rule × 100,000 addresses: no ruleset / clawpolicy's / Aerleon's; the per-packet overhead is
  the difference to no ruleset;
- 1,000 rules × 10: a destination of the first rule against one of the last rule, per tool.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

BLASTER = Path(__file__).resolve().parent / "blaster.py"
AGENT, GATEWAY = "192.0.2.1", "198.51.100.1"
SINK = """table netdev clawbench_sink {
  chain in { type filter hook ingress device "%s" priority 0; policy accept; ip daddr 11.0.0.0/8 drop; }
}
"""


def _lab(ruleset: str | None, stack: contextlib.ExitStack) -> object:
    from clawpolicy.operate.netlab import Lab

    lab = stack.enter_context(Lab(peer_addresses=[GATEWAY], agent_addresses=[AGENT], tcp_ports=(), udp_ports=()))
    lab.run(lab.agent_ns, ["ip", "route", "add", "11.0.0.0/8", "via", GATEWAY, "dev", lab.agent_ifname])
    sink = Path(lab.write_file("sink.nft", SINK % lab.peer_ifname))
    lab.run(lab.peer_ns, ["nft", "-f", str(sink)])
    if ruleset is not None:
        lab.load_ruleset(ruleset)
    return lab


def _blast(lab: object, dsts: Sequence[str], count: int, sport_base: int = 1024) -> dict[str, float]:
    r = lab.run(lab.agent_ns, [sys.executable, str(BLASTER), AGENT, ",".join(dsts), "443", str(count),  # type: ignore[attr-defined]
                               "--sport-base", str(sport_base)])
    out: dict[str, float] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def measure(configs: dict[str, tuple[str | None, list[str]]], count: int, rounds: int) -> dict[str, list[float]]:
    """configs: label -> (ruleset text or None, destinations: one per round). Returns ns/packet
    per round and label; rounds alternate over the labels."""
    results: dict[str, list[float]] = {k: [] for k in configs}
    with contextlib.ExitStack() as stack:
        labs = {k: _lab(text, stack) for k, (text, _) in configs.items()}
        for k, lab in labs.items():  # ARP and routes warm; flows of their own (high ports)
            _blast(lab, [configs[k][1][-1]], 500, sport_base=65000)
        for r in range(rounds):
            for k, lab in labs.items():
                dsts = configs[k][1]
                res = _blast(lab, [dsts[r % len(dsts)]], count)
                if res["failed"]:
                    print(f"{k}: {res['failed']:.0f} sends refused (the ruleset dropped them)", file=sys.stderr)
                results[k].append(res["ns_per_packet"])
    return results


def report(title: str, results: dict[str, list[float]], baseline: str | None,
           pairs: Sequence[tuple[str, str, str]]) -> list[str]:
    lines = [f"{title}", "", "| configuration | ns/packet (median) | min | overhead over no ruleset, ns |",
             "|---|---|---|---|"]
    med = {k: statistics.median(v) for k, v in results.items()}
    for k, v in results.items():
        over = f"{med[k] - med[baseline]:,.0f}" if baseline and k != baseline else ""
        lines.append(f"| {k} | {med[k]:,.0f} | {min(v):,.0f} | {over} |")
    lines.append("")
    for label, a, b in pairs:
        if baseline:
            oa, ob = med[a] - med[baseline], med[b] - med[baseline]
            lines.append(f"- {label}: {oa:,.0f} ns against {ob:,.0f} ns = {oa / ob:.2f}×" if ob > 0 else
                         f"- {label}: {oa:,.0f} ns against {ob:,.0f} ns")
        else:
            lines.append(f"- {label}: {med[a]:,.0f} / {med[b]:,.0f} ns = {med[a] / med[b]:.2f}×")
    return lines


def packet_path(rulesets: dict[str, dict[str, str]], peers: dict[str, list[list[str]]],
                rounds: int = 5) -> list[str]:
    """rulesets: shape -> tool -> ruleset text; peers: shape -> the generated addresses."""
    out: list[str] = []
    if "1x100000" in rulesets:
        dsts = peers["1x100000"][0]
        picks = [dsts[len(dsts) * (2 * r + 1) // (2 * rounds)] for r in range(rounds)]
        configs: dict[str, tuple[str | None, list[str]]] = {"no ruleset": (None, picks)}
        for tool, text in rulesets["1x100000"].items():
            configs[tool] = (text, picks)
        res = measure(configs, 30_000, rounds)
        pairs = [("per-packet overhead clawpolicy / Aerleon", "clawpolicy", "aerleon")] \
            if "aerleon" in configs else []
        out += report("Packet path, 1 rule × 100,000 addresses (30,000 new flows a round)", res,
                      "no ruleset", pairs)
        out.append("")
    if "1000x10" in rulesets:
        first, last = peers["1000x10"][0], peers["1000x10"][-1]
        configs = {}
        for tool, text in rulesets["1000x10"].items():
            configs[f"{tool} first rule"] = (text, first)
            configs[f"{tool} last rule"] = (text, last)
        res = measure(configs, 3_000, rounds)
        pairs = [(f"{tool}: last rule / first rule", f"{tool} last rule", f"{tool} first rule")
                 for tool in rulesets["1000x10"]]
        out += report("Packet path, 1,000 rules × 10 (3,000 new flows a round)", res, None, pairs)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    import aerleon_bench as ab

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--aerleon-python", help="an interpreter with aerleon (else clawpolicy only)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    rulesets: dict[str, dict[str, str]] = {}
    peers: dict[str, list[list[str]]] = {}
    env = dict(__import__("os").environ, PYTHONPATH=str(REPO))
    with tempfile.TemporaryDirectory(prefix="clawpolicy-packets-") as tmpname:
        tmp = Path(tmpname)
        for name in ("1x100000", "1000x10"):
            n, m = ab.SHAPES[name]
            peers[name] = ab.addresses(n, m)
            claw = tmp / f"{name}.claw"
            claw.write_text(ab.claw_text(name, peers[name]), encoding="utf-8")
            subprocess.run(ab.claw_argv(claw, tmp / f"{name}-out"), check=True, env=env, capture_output=True)
            rulesets[name] = {"clawpolicy": ab.nft_files(tmp / f"{name}-out")[0].read_text()}
            if args.aerleon_python:
                pol = ab.aerleon_files(tmp / f"{name}-aer", name.replace("x", "_"), peers[name])
                subprocess.run(ab.aerleon_argv(args.aerleon_python, pol, tmp / f"{name}-aer-out"),
                               check=True, capture_output=True)
                rulesets[name]["aerleon"] = ab.nft_files(tmp / f"{name}-aer-out")[0].read_text()
    print("\n".join(packet_path(rulesets, peers, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
