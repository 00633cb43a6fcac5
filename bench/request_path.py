"""Benchmark the request path: cold start, `mmr ask` against the local provider
server versus a bare SDK script, and the ledger write per call.

Run: python bench/request_path.py [--runs N]
Targets (issue 2): `mmr --help` < 0.15 s; `mmr ask --json` within 10% of the
bare SDK script; ledger write median < 2 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import TEST_CONFIG  # noqa: E402
from tests.provider_server import ProviderServer  # noqa: E402

BARE_SDK = """
import anthropic
client = anthropic.Anthropic(api_key="sk-bench", base_url={url!r}, max_retries=0)
message = client.messages.create(model="claude-small", max_tokens=64, messages=[{{"role": "user", "content": "hello"}}])
print(message.content[0].text)
"""


def timed(argv: list[str], runs: int, env: dict) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def interleaved(cases: list[tuple[str, list[str]]], runs: int, env: dict) -> list[tuple[str, list[float], None]]:
    """Time the cases turn about, so a busy moment of the machine hits both alike."""
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    for _ in range(runs):
        for name, argv in cases:
            times[name] += timed(argv, 1, env)
    return [(name, times[name], None) for name, _ in cases]


def ledger_writes(path: Path, n: int) -> list[float]:
    from router_cli.ledger import open_ledger
    from router_cli.ids import new_id

    times = []
    with open_ledger(path) as ledger:
        for i in range(n):
            request = new_id()
            row = {"id": new_id(), "request_id": request, "attempt": 1, "status": "ok", "tier": "simple",
                   "model": "claude-small", "cost_usd": "0.0000123", "cost_nanousd": 12300}
            prompt = {"request_id": request, "prompt_hash": f"{i:064x}", "stored": "full", "prompt": f"prompt {i}"}
            start = time.perf_counter()
            ledger.record({"calls": [row], "prompts": [prompt], "responses": [{"call_id": row["id"], "response": "answer"}]})
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    server = ProviderServer().start()
    tmp = Path(tempfile.mkdtemp(prefix="mmr-bench-"))
    config = tmp / "tiers.yaml"
    config.write_text(TEST_CONFIG.format(url=server.url, timeout=10))
    env = {**os.environ, "TEST_ANTHROPIC_KEY": "sk-bench", "TEST_OPENAI_KEY": "sk-bench",
           "MMR_CONFIG": str(config), "MMR_DB": str(tmp / "ledger.db"), "PYTHONDONTWRITEBYTECODE": "0"}
    py = sys.executable
    bare = tmp / "bare_sdk.py"
    bare.write_text(BARE_SDK.format(url=server.url))
    # Warm the bytecode caches and create the ledger so every timed run is alike.
    subprocess.run([py, "-m", "router_cli", "ask", "hello"], env=env, check=True, capture_output=True)
    rows = [
        ("python -c pass", timed([py, "-c", "pass"], args.runs, env), None),
        ("mmr --help", timed([py, "-m", "router_cli", "--help"], args.runs, env), 0.15),
        ("mmr ask --dry-run hello", timed([py, "-m", "router_cli", "ask", "--dry-run", "hello"], args.runs, env), None),
        ("mmr classify hello", timed([py, "-m", "router_cli", "classify", "hello"], args.runs, env), None),
        *interleaved([("bare anthropic SDK call", [py, str(bare)]),
                      ("mmr ask --json hello", [py, "-m", "router_cli", "ask", "--json", "hello"])], args.runs, env),
    ]
    bare_median = statistics.median(rows[4][1])
    rows[5] = (rows[5][0], rows[5][1], bare_median * 1.10)
    writes = ledger_writes(tmp / "write-bench.db", 500)
    server.stop()

    print(f"{'measure':<28} {'median':>10} {'min':>10} {'target':>10}  ok")
    for name, times, target in rows:
        med = statistics.median(times)
        ok = "" if target is None else ("yes" if med <= target else "NO")
        print(f"{name:<28} {med * 1000:>8.1f}ms {min(times) * 1000:>8.1f}ms {'' if target is None else f'{target * 1000:.0f}ms':>10}  {ok}")
    med = statistics.median(writes)
    print(f"{'ledger write per call':<28} {med * 1000:>8.3f}ms {min(writes) * 1000:>8.3f}ms {'2ms':>10}  {'yes' if med <= 0.002 else 'NO'}")
    print(f"\nruns={args.runs}; python {sys.version.split()[0]}; mmr ask is compared with the bare SDK script (target: within 10%)")


if __name__ == "__main__":
    main()
