"""Benchmark `mmr costs` on a large generated ledger.

Run: python bench/costs_report.py [--calls 1000000] [--db PATH] [--runs 5]
Generates (once, then reuses) a ledger with a realistic mix over 30 days:
tiers 65/25/10 %, two models per tier, 50 users in 5 teams, 3 % failed attempts
followed by a fallback, and every prompt (~600 characters) and answer (~1,200)
stored in full, as the default `ledger.store: full` does. Users are split 50/50
between two variants of an experiment, and 1 % of answers carry feedback.
Targets (issue 5): `mmr costs --since 7d` under 1 s and `mmr costs --since 30d --by day`
under 1.5 s. Also timed: `--by variant` (with its significance tests), `mmr labels` and
`mmr eval --replay` over a day of traffic.

Next to each `mmr costs` command, its floor: a bare Python process that runs one
SQL aggregate over the same rows with sqlite3 (count, distinct requests, token
and nano-dollar sums, errors; grouped the same way), the least any report of
those rows must do. Runs alternate (mmr, floor, mmr, floor...) and the median
of the pairs' ratios is printed.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from router_cli.policy.experiments import bucket  # noqa: E402
from router_cli.ledger import open_ledger  # noqa: E402
from router_cli.pricing import cost_usd, decimal_str, to_nanousd  # noqa: E402
from router_cli.config import Price  # noqa: E402

MODELS = {
    "simple": [("anthropic", "claude-haiku-4-5", Price(Decimal("1"), Decimal("5"))), ("openai", "gpt-5-mini", Price(Decimal("0.25"), Decimal("2")))],
    "medium": [("anthropic", "claude-sonnet-4-5", Price(Decimal("3"), Decimal("15"))), ("openai", "gpt-4.1", Price(Decimal("2"), Decimal("8")))],
    "complex": [("anthropic", "claude-opus-4-5", Price(Decimal("5"), Decimal("25"))), ("openai", "gpt-5", Price(Decimal("1.25"), Decimal("10")))],
}
BASELINE = MODELS["complex"][0][2]


def generate(path: Path, calls: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    start = now - timedelta(days=30)
    span = (now - start).total_seconds()
    users = [(f"user{i:02d}", f"team{i % 5}") for i in range(50)]
    words = "the router sends each prompt to the cheapest tier that should answer it well".split()
    with open_ledger(path) as ledger:
        batch: list[dict] = []
        prompts: list[dict] = []
        responses: list[dict] = []
        feedback: list[dict] = []
        n = 0
        times = sorted(rng.random() * span for _ in range(calls))
        request = 0
        while n < calls:
            request += 1
            tier = rng.choices(["simple", "medium", "complex"], [65, 25, 10])[0]
            user, team = rng.choice(users)
            tin, tout = rng.randint(20, 2000), rng.randint(10, 800)
            prompts.append({"request_id": f"r{request:010d}", "prompt_hash": f"{rng.getrandbits(128):032x}", "stored": "full",
                            "prompt": " ".join(rng.choices(words, k=90)), "system": None})
            attempts = [("error", 0)] if rng.random() < 0.03 else []
            attempts.append(("ok", 1 if attempts else 0))
            for number, (status, index) in enumerate(attempts, 1):
                if n >= calls:
                    break
                provider, model, price = MODELS[tier][index]
                when = start + timedelta(seconds=times[n])
                ok = status == "ok"
                cost = cost_usd(price, tin, tout) if ok else Decimal(0)
                baseline = cost_usd(BASELINE, tin, tout) if ok else Decimal(0)
                batch.append({
                    "id": f"{n:012d}", "request_id": f"r{request:010d}", "attempt": number,
                    "datetime_utc": when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", "command": "ask",
                    "tier": tier, "provider": provider, "model": model, "classifier": "rules", "score": 0.5,
                    "routed_tier": tier, "escalated": 0,
                    "status": status, "error": None if ok else "HTTP 529 overloaded", "error_kind": None if ok else "overloaded",
                    "input_tokens": tin if ok else 0, "output_tokens": tout if ok else 0,
                    "cost_usd": decimal_str(cost), "cost_nanousd": to_nanousd(cost),
                    "baseline_cost_usd": decimal_str(baseline), "baseline_cost_nanousd": to_nanousd(baseline),
                    "duration_ms": rng.lognormvariate(6.5, 0.6), "user": user, "team": team,
                    "variant": "router-test/" + ("control" if bucket("router-test", user) < 0.5 else "ml"),
                })
                if ok:
                    responses.append({"call_id": f"{n:012d}", "response": " ".join(rng.choices(words, k=180))})
                    if rng.random() < 0.01:
                        good = rng.random() < 0.8
                        feedback.append({"id": f"f{n:012d}", "call_id": f"{n:012d}", "request_id": f"r{request:010d}",
                                         "datetime_utc": batch[-1]["datetime_utc"], "verdict": "good" if good else "bad",
                                         "should_be": None if good else "complex", "needs_higher": None if good else 1,
                                         "note": None, "user": user})
                n += 1
            if len(batch) >= 20000:
                ledger.record({"calls": batch, "prompts": prompts, "responses": responses, "feedback": feedback})
                batch, prompts, responses, feedback = [], [], [], []
        ledger.record({"calls": batch, "prompts": prompts, "responses": responses, "feedback": feedback})


BARE_SQL = """
import sqlite3, sys
from datetime import datetime, timedelta, timezone
days, group = int(sys.argv[2]), sys.argv[3]
since = (datetime.now(timezone.utc) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
key = {"none": "''", "day": "substr(datetime_utc, 1, 10)", "tier,model": "tier || '/' || model", "user": "user",
       "variant": "variant"}[group]
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
rows = db.execute(f"SELECT {key}, count(*), count(DISTINCT request_id), sum(input_tokens), sum(output_tokens), "
                  "sum(cost_nanousd), sum(baseline_cost_nanousd), sum(status = 'error') "
                  f"FROM calls WHERE datetime_utc >= ? GROUP BY 1 ORDER BY 1", (since,)).fetchall()
print(len(rows))
"""


def alternated(pairs: list[tuple[list[str], list[str] | None]], runs: int, env: dict) -> list[tuple[list[float], list[float]]]:
    """Each command and its floor timed in turn, A B A B, ``runs`` times."""
    out: list[tuple[list[float], list[float]]] = [([], []) for _ in pairs]
    for _ in range(runs):
        for (argv, floor), (times, floors) in zip(pairs, out):
            times.extend(timed(argv, 1, env))
            if floor is not None:
                floors.extend(timed(floor, 1, env))
    return out


def timed(argv: list[str], runs: int, env: dict) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "mmr-bench-1m-v6.db")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.db.exists():
        try:
            with open_ledger(args.db) as ledger:
                have = ledger.read("SELECT count(*) FROM calls").fetchone()[0]
        except Exception:  # noqa: BLE001 - an old or broken bench file: rebuild it
            have = -1
        if have != args.calls:
            args.db.unlink()
    if not args.db.exists():
        start = time.perf_counter()
        generate(args.db, args.calls)
        print(f"generated {args.calls:,} calls in {time.perf_counter() - start:.1f} s -> {args.db}")
    env = {**os.environ, "MMR_DB": str(args.db)}
    py = sys.executable
    def floor(days: int, group: str) -> list[str]:
        return [py, "-c", BARE_SQL, str(args.db), str(days), group]

    mmr = [py, "-m", "router_cli"]
    cases = [
        ("python -c pass", [py, "-c", "pass"], None, None),
        ("mmr costs --since 7d", mmr + ["costs", "--since", "7d"], 1.0, floor(7, "none")),
        ("mmr costs --since 30d --by day", mmr + ["costs", "--since", "30d", "--by", "day"], 1.5, floor(30, "day")),
        ("mmr costs --since 30d --by tier,model", mmr + ["costs", "--since", "30d", "--by", "tier,model"], None,
         floor(30, "tier,model")),
        ("mmr costs --since 7d --by user", mmr + ["costs", "--since", "7d", "--by", "user"], None, floor(7, "user")),
        ("mmr costs --since 30d --by variant", mmr + ["costs", "--since", "30d", "--by", "variant"], None,
         floor(30, "variant")),
        ("mmr labels --since 1d", mmr + ["labels", "--since", "1d"], None, None),
        ("mmr eval --replay --since 1d", mmr + ["eval", "--replay", "--since", "1d", "--classifier", "rules"], None, None),
    ]
    if args.calls != 1_000_000:  # the targets are for a million calls
        cases = [(name, argv, None, bare) for name, argv, _, bare in cases]
    timings = alternated([(argv, bare) for _, argv, _, bare in cases], args.runs, env)
    print(f"{'command':<40} {'median':>8} {'min':>8} {'target':>7}  ok  {'bare SQL':>8}  {'ratio':>6}")
    for (name, _, target, bare), (times, floors) in zip(cases, timings):
        med = statistics.median(times)
        ok = "" if target is None else ("yes" if med <= target else "NO")
        side = (f"{statistics.median(floors):>7.3f}s  {statistics.median(a / b for a, b in zip(times, floors)):>6.2f}"
                if floors else "")
        print(f"{name:<40} {med:>7.3f}s {min(times):>7.3f}s {'' if target is None else f'{target:.1f}s':>7}  "
              f"{ok:<3} {side}")
    print(f"\n{args.calls:,} calls over 30 days; runs={args.runs}, alternating each command with its bare SQL floor "
          f"(ratio: median of the pairs' ratios); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

if __name__ == "__main__":
    main()
