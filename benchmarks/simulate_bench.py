#!/usr/bin/env python3
"""How fast `clawpolicy simulate` replays a week of traffic (`python benchmarks/simulate_bench.py`):
a table row, no assertions.

Generates a synthetic week (default 150,000 flows: an agent talking to its model APIs by name,
a CDN behind one address, a scatter of addresses in two /24s, DNS, SSH, ingress from a
tailnet, 1% noise) as JSON lines, then times parsing (flowfile), deciding (simulate: each kind
of flow, `RuleIndex.kind`, is decided once) and proposing (suggest) against the workstation example, and checks
the round trip (the proposal leaves nothing blocked). Best of --repeat runs.

    python benchmarks/simulate_bench.py
    python benchmarks/simulate_bench.py --flows 1000000 --repeat 1 --policy examples/x.claw
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from clawpolicy.lower import load_policies
from clawpolicy.operate import flowfile, simulate, suggest

REPO = Path(__file__).resolve().parents[1]
NAMES = ["api.openai.com", "api.anthropic.com", "slack.com", "files.slack.com", "a.slack-edge.com",
         "b.slack-edge.com", "github.com", "api.github.com", "objects.githubusercontent.com",
         "raw.githubusercontent.com", "codeload.githubusercontent.com", "pypi.org", "files.pythonhosted.org"]


def week(n: int, seed: int = 2026) -> list[str]:
    rng = random.Random(seed)
    start = 1_795_000_000
    lines = []
    for i in range(n):
        t = time_text(start + i * 7 * 86400 // n)
        roll = rng.random()
        if roll < 0.55:
            doc: dict[str, object] = {"dst": f"198.51.100.{rng.randrange(8)}", "name": rng.choice(NAMES), "port": 443}
        elif roll < 0.80:
            doc = {"dst": f"203.0.{113 + rng.randrange(2)}.{rng.randrange(256)}", "port": rng.choice([443, 8443])}
        elif roll < 0.90:
            doc = {"dst": "10.0.0.53", "port": 53, "proto": "udp"}
        elif roll < 0.95:
            doc = {"dst": f"10.20.{rng.randrange(4)}.{rng.randrange(256)}", "port": 22}
        elif roll < 0.99:
            src = f"100.{64 + rng.randrange(2)}.{rng.randrange(256)}.{rng.randrange(256)}"
            doc = {"direction": "ingress", "src": src, "port": 18789}
        else:
            doc = {"dst": f"192.0.2.{rng.randrange(256)}", "port": rng.randrange(1, 65536),
                   "proto": rng.choice(["tcp", "udp"])}
        lines.append(json.dumps({"time": t, **doc}))
    return lines


def time_text(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policy", type=Path, default=REPO / "examples/openclaw-workstation.claw")
    parser.add_argument("--flows", type=int, default=150_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    loaded = load_policies([args.policy])
    if not loaded.ok:
        print(f"{args.policy}: does not compile", file=sys.stderr)
        return 1
    policy = loaded.policies[0]
    lines = week(args.flows)
    best = {"parse": float("inf"), "simulate": float("inf"), "suggest": float("inf")}
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        flows = flowfile.parse_flows(lines).flows
        t1 = time.perf_counter()
        sim = simulate.simulate(policy, flows)
        t2 = time.perf_counter()
        proposal = suggest.suggest(policy.name, suggest.from_simulation(sim))
        t3 = time.perf_counter()
        for key, value in (("parse", t1 - t0), ("simulate", t2 - t1), ("suggest", t3 - t2)):
            best[key] = min(best[key], value)
    source = args.policy.read_text()
    widened_path = Path("/tmp") / f"simulate-bench-{policy.name}.claw"
    widened_path.write_text(suggest.insert(source, policy.name, proposal.text))
    widened = load_policies([widened_path])
    after = simulate.simulate(widened.policies[0], flows) if widened.ok else None
    distinct = len({(f.direction, f.peer, f.name, f.proto, f.port) for f in flows})
    print(f"{'policy':<22} {'flows':>8} {'distinct':>8} {'parse s':>8} {'simulate s':>10} "
          f"{'suggest s':>9} {'blocked':>8} {'rules':>5} {'after':>6}")
    print(f"{policy.name:<22} {len(flows):>8} {distinct:>8} {best['parse']:>8.2f} {best['simulate']:>10.2f} "
          f"{best['suggest']:>9.2f} {sim.blocked_flows:>8} {proposal.rules:>5} "
          f"{after.blocked_flows if after else 'error':>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
