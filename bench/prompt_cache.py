"""What prompt caching saves: 100 `mmr ask --batch` rows sharing a 3,000-token system prompt.

Run: python bench/prompt_cache.py [--rows 100] [--system-tokens 3000] [--model claude-sonnet-4-5]

The batch runs twice against the local provider server (which caches a prefix marked with
``cache_control`` as the Anthropic API does, and reports cache reads and writes like it):
with ``--prompt-cache auto`` and with ``--prompt-cache off``, each into its own ledger. The
model has no price in the config, so it is billed at genai-prices' prices (input, cache
read, cache write, output). The table is what ``mmr costs --json`` says of each ledger.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.provider_server import ProviderServer  # noqa: E402

CONFIG = """\
version: 1
providers:
  anthropic: {{type: anthropic, api_key_env: BENCH_KEY, base_url: "{url}", timeout: 30}}
tiers:
  - name: only
    models:
      - {{provider: anthropic, model: {model}}}
"""


def mmr(*args: str, env: dict) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "router_cli", *args], capture_output=True, env=env, cwd=ROOT, timeout=600)
    if run.returncode != 0:
        raise SystemExit(f"mmr {args[0]} failed: {run.stderr.decode()}")
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--system-tokens", type=int, default=3000)
    parser.add_argument("--model", default="claude-sonnet-4-5")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    import os

    server = ProviderServer(record=False).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            config = work / "tiers.yaml"
            config.write_text(CONFIG.format(url=server.url, model=args.model))
            system = " ".join(f"policy{i}" for i in range(args.system_tokens))  # the server counts words as tokens
            rows = work / "rows.jsonl"
            rows.write_text("".join(json.dumps({"id": i, "prompt": f"Summarize ticket number {i} in one line"}) + "\n"
                                    for i in range(args.rows)))
            env = {**os.environ, "BENCH_KEY": "sk-bench", "PYTHONPATH": str(ROOT), "XDG_CONFIG_HOME": str(work),
                   "XDG_DATA_HOME": str(work)}
            results = {}
            for mode in ("off", "auto"):
                db = work / f"{mode}.db"
                mmr("ask", "--batch", str(rows), "--system", system, "--prompt-cache", mode, "--config", str(config),
                    "--db", str(db), "--concurrency", str(args.concurrency), env=env)
                results[mode] = json.loads(mmr("costs", "--json", "--config", str(config), "--db", str(db), env=env).stdout)
    finally:
        server.stop()
    off = Decimal(results["off"]["total"]["spend_usd"])
    print(f"{args.rows} rows, a {args.system_tokens:,}-token system prompt, {args.model} at genai-prices' prices\n")
    print(f"{'prompt cache':<13}{'input tokens':>14}{'cache read':>12}{'cache write':>13}{'spend':>12}{'vs off':>9}")
    for mode in ("off", "auto"):
        cache, spend = results[mode]["prompt_cache"], Decimal(results[mode]["total"]["spend_usd"])
        print(f"{mode:<13}{cache['input_tokens']:>14,}{cache['cache_read_tokens']:>12,}{cache['cache_write_tokens']:>13,}"
              f"{'$' + format(spend.quantize(Decimal('0.000001')), 'f'):>12}{float((spend - off) / off):>9.1%}")


if __name__ == "__main__":
    main()
