"""Benchmark the cold start of `mmr ask` with the local-embedding knn router against the ml router,
side by side, against the local provider server; and `mmr classify` with ml (it must not get slower).

Run: python bench/embed_start.py [--runs 10]
A knn model is trained once on 60 synthetic rows (the model load, not the neighbour search,
dominates the cold start). Target (issue 19): knn within 10% of ml.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def run_once(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child): on a busy machine the CPU time is the steadier figure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - start, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    server = ProviderServer(record=False).start()
    tmp = Path(tempfile.mkdtemp(prefix="mmr-bench-embed-"))
    config = tmp / "tiers.yaml"
    config.write_text(TEST_CONFIG.format(url=server.url, timeout=10))
    env = {**os.environ, "TEST_ANTHROPIC_KEY": "sk-bench", "TEST_OPENAI_KEY": "sk-bench", "MMR_CONFIG": str(config),
           "MMR_DB": str(tmp / "ledger.db"), "PYTHONDONTWRITEBYTECODE": "0"}
    data = tmp / "rows.jsonl"
    with open(data, "w") as f:
        for i in range(20):
            for prompt, outcomes in ((f"Say hello to friend {i}", [1, 1, 1]), (f"Summarise report {i} in bullets", [0, 1, 1]),
                                     (f"Prove theorem {i} about primes", [0, 0, 1])):
                f.write(json.dumps({"prompt": prompt, "outcomes": dict(zip(("simple", "medium", "complex"), outcomes))}) + "\n")
    py = sys.executable
    knn = tmp / "knn.npz"
    subprocess.run([py, "-m", "router_cli", "train", str(data), "--router", "knn", "-o", str(knn)], env=env, check=True,
                   capture_output=True)
    cases = {
        "mmr ask --classifier ml": [py, "-m", "router_cli", "ask", "--classifier", "ml", "hello there"],
        "mmr ask --classifier knn": [py, "-m", "router_cli", "ask", "--classifier", "knn", "hello there"],
        "mmr classify --classifier ml": [py, "-m", "router_cli", "classify", "--classifier", "ml", "hello there"],
    }
    with open(config, "a") as f:
        f.write(f"classifier:\n  knn_model: {knn}\n")
    for argv in cases.values():  # warm the bytecode caches and the ledger
        subprocess.run(argv, env=env, check=True, capture_output=True)
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):  # turn about, so a busy moment of the machine hits every case alike
        for name, argv in cases.items():
            w, c = run_once(argv, env)
            wall[name].append(w)
            cpu[name].append(c)
    ml_wall, ml_cpu = statistics.median(wall["mmr ask --classifier ml"]), statistics.median(cpu["mmr ask --classifier ml"])
    print(f"{'command':<30} {'wall median s':>13} {'vs ml ask':>10} {'CPU median s':>13} {'vs ml ask':>10}")
    for name in cases:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"{name:<30} {w:>13.3f} {w / ml_wall - 1:>+10.1%} {c:>13.3f} {c / ml_cpu - 1:>+10.1%}")
    print(f"\n{args.runs} runs each, interleaved; cold processes against the local provider server; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    server.stop()


if __name__ == "__main__":
    main()
