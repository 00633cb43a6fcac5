"""Benchmark `mmr cascade` over a scripted mix where a set share of prompts pass at the cheapest tier.

Run: python bench/cascade_mix.py [--requests 200] [--latency 0.05] [--pass-rate 0.8]
Against the local provider server (fixed latency per call), for each gate:
escalation rate, total cost against always-premium, mean latency per request,
and the latency the judge adds over the heuristic gate.

The share of prompts that get a good answer at the cheapest tier is this
script's setting (--pass-rate), not a measurement: the escalation rate printed
is what the gates made of those scripted answers (it equals the setting when
every gate judges them as scripted). Next to each figure, its floor: an oracle
that sends each prompt straight to the tier that answers it well (one call, no
judge), at the same tokens and latency.
"""

from __future__ import annotations

import argparse
from decimal import Decimal
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from router_cli import cascade  # noqa: E402
from router_cli.config import parse_config  # noqa: E402
from router_cli.pricing import cost_usd  # noqa: E402
from router_cli import Router  # noqa: E402
from tests.conftest import TEST_CONFIG  # noqa: E402
from tests.provider_server import ProviderServer, reply  # noqa: E402

GOOD = " ".join(["Sunlight scatters off air molecules and blue light scatters the most."] * 4)  # 48 words: under max_tokens
WEAK = "I don't know."


def script(server: ProviderServer, passes: bool, gate: str) -> None:
    """Queue one request's calls, in the order the cascade makes them.

    A failing prompt gets a weak answer at simple (caught by the free checks)
    under the heuristic and both gates, and a plausible answer the judge
    scores 0.3 under the judge gate; medium's answer then passes.
    """
    judged = gate != "heuristic"
    answer = reply(GOOD if passes or gate == "judge" else WEAK, input_tokens=200, output_tokens=48)
    verdict = reply("0.9" if passes else "0.3", input_tokens=520, output_tokens=2)
    small = [answer]
    if judged and (passes or gate == "judge"):
        small.append(verdict)
    if not passes:
        server.script("claude-mid", reply(GOOD, input_tokens=200, output_tokens=48))
        if judged:
            small.append(reply("0.9", input_tokens=520, output_tokens=2))
    server.script("claude-small", *small)


def run(gate: str, requests: int, latency: float, pass_rate: float, seed: int = 3) -> dict:
    rng = random.Random(seed)
    server = ProviderServer(latency=latency).start()
    os.environ.update({"TEST_ANTHROPIC_KEY": "sk-bench", "TEST_OPENAI_KEY": "sk-bench"})
    config = parse_config(TEST_CONFIG.format(url=server.url, timeout=10), "bench")
    db = Path(tempfile.mkdtemp(prefix="mmr-cascade-")) / "ledger.db"
    router = Router(config, db)
    escalated, cost, baseline, latencies, oracle, scripted = 0, Decimal(0), Decimal(0), [], Decimal(0), 0
    prices = {m.model: m.price for t in config.tiers for m in t.models}
    for i in range(requests):
        passes = rng.random() < pass_rate
        scripted += passes
        oracle += cost_usd(prices["claude-small" if passes else "claude-mid"], 200, 48)
        script(server, passes, gate)
        start = time.perf_counter()
        answer = cascade(router, f"Explain why the sky is blue ({i})", gate=gate)
        latencies.append(time.perf_counter() - start)
        escalated += answer.final.tier != "simple"
        cost += answer.cost
        baseline += answer.baseline_cost
    router.close()
    server.stop()
    return {"gate": gate, "requests": requests, "escalation": escalated / requests, "cost": cost,
            "baseline": baseline, "latency": statistics.mean(latencies), "oracle": oracle,
            "scripted_pass": scripted / requests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the server adds to every call")
    parser.add_argument("--pass-rate", type=float, default=0.8, help="share of prompts scripted to pass at the cheapest tier")
    args = parser.parse_args()
    results = [run(gate, args.requests, args.latency, args.pass_rate) for gate in ("heuristic", "judge", "both")]
    print(f"{'gate':<10} {'escalated':>9} {'cost':>10} {'oracle':>10} {'premium':>10} {'cost/premium':>12} "
          f"{'mean latency':>12} {'floor':>7} {'judge adds':>10}")
    heuristic_latency = results[0]["latency"]
    for r in results:
        adds = "" if r["gate"] == "heuristic" else f"{(r['latency'] - heuristic_latency) * 1000:+.0f} ms"
        print(f"{r['gate']:<10} {r['escalation']:>9.1%} ${r['cost']:>9.4f} ${r['oracle']:>9.4f} ${r['baseline']:>9.4f} "
              f"{float(r['cost'] / r['baseline']):>12.1%} {r['latency'] * 1000:>9.0f} ms {args.latency * 1000:>4.0f} ms {adds:>10}")
    print(f"\n{args.requests} requests per gate; {results[0]['scripted_pass']:.1%} were scripted to pass at simple "
          f"(this script's setting, --pass-rate {args.pass_rate:g}): the escalation rate follows from it; oracle: each "
          f"prompt sent once to the tier scripted to answer it well; floor: one call's server latency "
          f"({args.latency * 1000:.0f} ms); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

if __name__ == "__main__":
    main()
