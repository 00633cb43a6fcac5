"""Benchmark what mmr's latency protections buy against a model slow to start, and what they cost.

Run: python bench/latency.py [--requests 12] [--slow 3] [--limit 0.5]

The local provider server (tests/provider_server.py, 50 ms per call, in this process) answers
``claude-small`` (the simple tier's first model, Anthropic wire) with its first token ``--slow``
seconds late; ``gpt-small`` (its tier-mate, OpenAI wire) is healthy. Two scenarios: the model is
slow on every call, and on one call in four (a tail). Each case makes ``--requests`` requests,
one after another, with its own ledger:

- floor: no slow model at all (the same mmr, the same calls): what any case could reach;
- none: no protection, every slow first token waited for;
- first_token_timeout: the slow call abandoned after ``--limit`` s, gpt-small answers;
- slo (demotion): ``slo: {ttft: LIMIT, min_calls: 3}``: after three calls, a model over its SLO is
  tried after gpt-small until the breaker window (60 s) passes;
- hedge: ``hedge: LIMIT`` on the tier: gpt-small is called too when claude-small has not started.

Each case runs twice: ``Router.ask`` in this process (the request alone), then whole ``mmr ask``
processes. Printed per case: wall-time p50/p95 of both, which model answered (mmr ask), the spend
per 1,000 requests, and the part of it billed for calls that did not answer (abandoned or
cancelled: Anthropic reports the input tokens when a stream opens, so they count).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import KEYS, TEST_CONFIG  # noqa: E402
from tests.provider_server import ProviderServer, reply  # noqa: E402

PROMPT = "Summarize the plot of Hamlet in two short sentences for a student"
LATENCY = 0.05


def config_text(url: str, case: str, limit: float) -> str:
    text = TEST_CONFIG.format(url=url, timeout=30)
    if case == "first_token_timeout":
        text = text.replace("model: claude-small,", f"model: claude-small, first_token_timeout: {limit},")
    elif case == "slo":
        text = text.replace("model: claude-small,", f"model: claude-small, slo: {{ttft: {limit}, min_calls: 3}},")
    elif case == "hedge":
        text = text.replace("  - name: simple\n", f"  - name: simple\n    hedge: {limit}\n")
    return text


def script(server: ProviderServer, slow: float, every: int, calls: int) -> None:
    """claude-small's calls: slow on every ``every``-th (1: all), starting with the first."""
    server.reset()
    if slow:
        server.script("claude-small", *[reply(first_token_delay=slow if i % every == 0 else 0.0) for i in range(calls)])


def run_case(server: ProviderServer, case: str, args, every: int, workdir: Path, cli: bool) -> dict:
    """``args.requests`` requests of one case: whole ``mmr ask`` processes (``cli``), else ``Router.ask`` in this process."""
    directory = workdir / f"{case}-{every}-{'cli' if cli else 'lib'}"
    directory.mkdir()
    config = directory / "tiers.yaml"
    config.write_text(config_text(server.url, "none" if case == "floor" else case, args.limit))
    script(server, 0.0 if case == "floor" else args.slow, every, args.requests * 3)
    walls, models, spend, wasted = [], Counter(), Decimal(0), Decimal(0)
    router = None
    if not cli:
        from router_cli import Router
        from router_cli.config import load_config

        router = Router(load_config(config), directory / "ledger.db", env=KEYS)
    try:
        for _ in range(args.requests):
            started = time.perf_counter()
            out = _ask_cli(config, directory) if router is None else router.ask(PROMPT, tier="simple").to_json()
            walls.append(time.perf_counter() - started)
            models[out["model"]] += 1
            spend += Decimal(out["cost_usd"])
            wasted += sum((Decimal(a["cost_usd"]) for a in out["attempts"] if a["status"] != "ok"), Decimal(0))
    finally:
        if router is not None:
            router.close()
    return {"case": case, "p50": statistics.median(walls), "p95": _p95(walls), "models": models,
            "spend": spend * 1000 / args.requests, "wasted": wasted * 1000 / args.requests}


def _ask_cli(config: Path, directory: Path) -> dict:
    env = {**os.environ, **KEYS, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "router_cli", "ask", "--tier", "simple", "--json",
                             "--config", str(config), "--db", str(directory / "ledger.db"), PROMPT],
                            capture_output=True, env=env, cwd=directory, timeout=120)
    if result.returncode != 0:
        raise SystemExit(f"mmr ask failed: {result.stderr.decode()}")
    return json.loads(result.stdout)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=12, help="mmr ask processes per case")
    parser.add_argument("--slow", type=float, default=3.0, help="seconds claude-small's first token comes late")
    parser.add_argument("--limit", type=float, default=0.5, help="the first-token timeout, SLO and hedge delay")
    args = parser.parse_args()
    from router_cli.providers import import_sdk

    for sdk in ("anthropic", "openai"):  # in process, imported once beforehand: the requests are timed, not imports
        import_sdk(sdk)
    server = ProviderServer(latency=LATENCY, record=False).start()
    cases = ("floor", "none", "first_token_timeout", "slo", "hedge")
    labels = {"floor": "floor: no slow model", "none": "no protection",
              "first_token_timeout": f"first_token_timeout {args.limit:g} s",
              "slo": f"slo ttft {args.limit:g} s (demotion)", "hedge": f"hedge {args.limit:g} s"}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            warm = workdir / "warm"
            warm.mkdir()
            for cli in (False, True):  # untimed: SDK imports in this process, the file cache for mmr ask
                run_case(server, "floor", argparse.Namespace(**{**vars(args), "requests": 1}), 1, warm, cli)
            for every, scenario in ((1, "every call"), (4, "one call in four")):
                print(f"\nclaude-small's first token {args.slow:g} s late on {scenario}; server latency "
                      f"{LATENCY * 1000:.0f} ms; {args.requests} requests per case")
                print(f"{'case':32} {'in process':>19} {'mmr ask':>19}  {'answered by':28} {'USD/1k req':>10} "
                      f"{'not answering':>13}")
                print(f"{'':32} {'p50':>9} {'p95':>9} {'p50':>9} {'p95':>9}")
                for case in cases:
                    lib = run_case(server, case, args, every, workdir, cli=False)
                    r = run_case(server, case, args, every, workdir, cli=True)
                    answered = ", ".join(f"{m} {n}" for m, n in sorted(r["models"].items()))
                    print(f"{labels[case]:32} {lib['p50']:>8.2f}s {lib['p95']:>8.2f}s {r['p50']:>8.2f}s "
                          f"{r['p95']:>8.2f}s  {answered:28} {r['spend']:>10.5f} {r['wasted']:>13.5f}", flush=True)
    finally:
        server.stop()
    print(f"\nwall: the whole mmr ask process (Python start, SDK imports, ledger write); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
