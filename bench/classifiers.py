"""Benchmark classifiers: per-prompt latency in process and `mmr eval` wall time.

Run: python bench/classifiers.py [--rows 10000]
Uses ../shared/data/routellm.train.jsonl (public routing data; not part of the repo).
Targets (issue 3): rules under 50 µs and ml under 1 ms per prompt; `mmr eval` of 10,000 rows with
rules under 2 s; `mmr classify` cold start of ml next to rules (ml is trained here on the sample).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "routellm.train.jsonl"
sys.path.insert(0, str(ROOT))

from router_cli.classify import get_classifier  # noqa: E402
from router_cli.config import load_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"needs {DATA} (the shared routing data)")
    lines = list(itertools.islice(DATA.open(encoding="utf-8"), args.rows))
    prompts = [json.loads(line)["prompt"] for line in lines]
    sample = Path(tempfile.mkdtemp(prefix="mmr-eval-")) / "sample.jsonl"
    sample.write_text("".join(lines))
    config = load_config(ROOT / "tiers.example.yaml")
    print(f"{'measure':<36} {'value':>12} {'target':>10}  ok")
    for name, target_us in (("rules", 50),):
        classifier = get_classifier(name, config)
        start = time.perf_counter()
        for prompt in prompts:
            classifier.classify(prompt)
        per = (time.perf_counter() - start) / len(prompts) * 1e6
        print(f"{name + ' per prompt (in process)':<36} {per:>10.1f}µs {target_us:>8}µs  {'yes' if per <= target_us else 'NO'}")
    walls = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "router_cli", "eval", str(sample), "--json",
                        "--config", str(ROOT / "tiers.example.yaml")], check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - start)
    wall = statistics.median(walls)
    print(f"{f'mmr eval, {len(lines):,} rows, rules':<36} {wall:>11.2f}s {'2s':>10}  {'yes' if wall <= 2 else 'NO'}")
    model = sample.with_name("router.json")
    subprocess.run([sys.executable, "-m", "router_cli", "train", str(sample), "-o", str(model), "--config",
                    str(ROOT / "tiers.example.yaml")], check=True, stderr=subprocess.DEVNULL)
    from dataclasses import replace

    ml = get_classifier("ml", replace(config, ml_model=str(model)))
    start = time.perf_counter()
    for prompt in prompts:
        ml.classify(prompt)
    per = (time.perf_counter() - start) / len(prompts) * 1e6
    print(f"{'ml per prompt (in process)':<36} {per:>10.1f}µs {1000:>8}µs  {'yes' if per <= 1000 else 'NO'}")
    for name, extra in (("rules", []), ("ml", ["--ml-model", str(model)])):
        cold = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "router_cli", "classify", "--classifier", name, *extra,
                            "--config", str(ROOT / "tiers.example.yaml"), "hello"], check=True, stdout=subprocess.DEVNULL)
            cold.append(time.perf_counter() - start)
        print(f"{f'mmr classify ({name}) cold start':<36} {statistics.median(cold) * 1000:>10.0f}ms")


if __name__ == "__main__":
    main()
