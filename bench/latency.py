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
  tried after gpt-small until the breaker window passes (10 minutes here: the cases take turns, so
  each sees a request about every 20 s);
- hedge: ``hedge: LIMIT`` on the tier: gpt-small is called too when claude-small has not started.

Each case runs twice: ``Router.ask`` in this process (the request alone), then whole ``mmr ask``
processes; the cases take turns (request 1 of each, then request 2 of each...), so a shared
machine's load falls on all alike (each case's slow model has its own name on the server). Printed per case: wall-time p50/p95 of both, which model answered (mmr ask), the spend
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


def config_text(url: str, case: str, limit: float, slow_model: str) -> str:
    """The test config with the simple tier's first model renamed ``slow_model`` (its own script on the
    server, so cases can take turns) and the case's protection."""
    text = TEST_CONFIG.format(url=url, timeout=30).replace("model: claude-small,", f"model: {slow_model},")
    # Cases take turns, so one case's requests come about 20 s apart: a 10-minute window holds what a
    # busier router would see within the default minute.
    text += "breaker:\n  window: 10m\n"
    if case == "first_token_timeout":
        text = text.replace(f"model: {slow_model},", f"model: {slow_model}, first_token_timeout: {limit},")
    elif case == "slo":
        text = text.replace(f"model: {slow_model},", f"model: {slow_model}, slo: {{ttft: {limit}, min_calls: 3}},")
    elif case == "hedge":
        text = text.replace("  - name: simple\n", f"  - name: simple\n    hedge: {limit}\n")
    return text


class Case:
    """One case of one scenario, in process (``Router.ask``) or through ``mmr ask`` processes (``cli``)."""

    def __init__(self, server: ProviderServer, name: str, args, every: int, workdir: Path, cli: bool):
        self.name, self.cli = name, cli
        self.directory = workdir / f"{name}-{every}-{'cli' if cli else 'lib'}"
        self.directory.mkdir()
        self.slow_model = f"claude-small-{name}-{every}-{'cli' if cli else 'lib'}"
        self.config = self.directory / "tiers.yaml"
        self.config.write_text(config_text(server.url, "none" if name == "floor" else name, args.limit,
                                           self.slow_model))
        if name != "floor":  # slow on every ``every``-th call of the model, starting with the first
            server.script(self.slow_model, *[reply(first_token_delay=args.slow if i % every == 0 else 0.0)
                                             for i in range(args.requests * 3)])
        self.walls: list[float] = []
        self.models: Counter = Counter()
        self.spend = self.wasted = Decimal(0)
        self.router = None
        if not cli:
            from router_cli import Router
            from router_cli.config import load_config

            self.router = Router(load_config(self.config), self.directory / "ledger.db", env=KEYS)

    def ask(self) -> None:
        started = time.perf_counter()
        out = _ask_cli(self.config, self.directory) if self.router is None else \
            self.router.ask(PROMPT, tier="simple").to_json()
        self.walls.append(time.perf_counter() - started)
        self.models["claude-small" if out["model"] == self.slow_model else out["model"]] += 1
        self.spend += Decimal(out["cost_usd"])
        self.wasted += sum((Decimal(a["cost_usd"]) for a in out["attempts"] if a["status"] != "ok"), Decimal(0))

    def close(self) -> None:
        if self.router is not None:
            self.router.close()


def run_cases(server: ProviderServer, names, args, every: int, workdir: Path, cli: bool) -> dict[str, Case]:
    """Every case's requests, taking turns (request 1 of each case, then request 2 of each...), so the
    load of a shared machine falls on all cases alike."""
    cases = {name: Case(server, name, args, every, workdir, cli) for name in names}
    try:
        for _ in range(args.requests):
            for case in cases.values():
                case.ask()
    finally:
        for case in cases.values():
            case.close()
    return cases


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
            for cli in (False, True):  # untimed: the ledger code in this process, the file cache for mmr ask
                run_cases(server, ["floor"], argparse.Namespace(**{**vars(args), "requests": 1}), 1, warm, cli)
            for every, scenario in ((1, "every call"), (4, "one call in four")):
                lib = run_cases(server, cases, args, every, workdir, cli=False)
                cli_runs = run_cases(server, cases, args, every, workdir, cli=True)
                print(f"\nclaude-small's first token {args.slow:g} s late on {scenario}; server latency "
                      f"{LATENCY * 1000:.0f} ms; {args.requests} requests per case")
                print(f"{'case':32} {'in process':>19} {'mmr ask':>19}  {'answered by':28} {'USD/1k req':>10} "
                      f"{'not answering':>13}")
                print(f"{'':32} {'p50':>9} {'p95':>9} {'p50':>9} {'p95':>9}")
                for name in cases:
                    a, r = lib[name], cli_runs[name]
                    answered = ", ".join(f"{m} {n}" for m, n in sorted(r.models.items()))
                    per_k = Decimal(1000) / args.requests
                    print(f"{labels[name]:32} {statistics.median(a.walls):>8.2f}s {_p95(a.walls):>8.2f}s "
                          f"{statistics.median(r.walls):>8.2f}s {_p95(r.walls):>8.2f}s  {answered:28} "
                          f"{r.spend * per_k:>10.5f} {r.wasted * per_k:>13.5f}", flush=True)
    finally:
        server.stop()
    print(f"\nwall: the whole mmr ask process (Python start, SDK imports, ledger write); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
