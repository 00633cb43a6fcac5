"""Benchmark classifiers: per-prompt latency in process and `mmr eval` wall time.

Run: python bench/classifiers.py [--rows 10000] [--data PATH]
Uses ../shared/data/routellm.train.jsonl (public routing data; not part of the repo).
Next to each figure, its floor: a bare loop over the same prompts doing only the
classifier's own work (rules: the rule text and the regex searches; ml: the
model's predict), a bare Python process that reads the same rows and calls the
classifier's classify() on each (for `mmr eval`), and one that loads the config and
classifies one prompt without the CLI (for `mmr classify`'s cold start).
Targets (issue 3): rules under 50 µs and ml under 1 ms per prompt; `mmr eval` of 10,000 rows with
rules under 2 s; `mmr classify` cold start of ml next to rules (ml is trained here on the sample).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = next((d / "routellm.train.jsonl" for d in (ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data")
             if (d / "routellm.train.jsonl").exists()), ROOT.parent / "shared" / "data" / "routellm.train.jsonl")
BARE_EVAL = """
import json, sys
from router_cli.classify import get_classifier
from router_cli.config import load_config
classifier = get_classifier("rules", load_config(sys.argv[2]))
with open(sys.argv[1], encoding="utf-8") as f:
    tiers = [classifier.classify(json.loads(line)["prompt"]).tier for line in f]
print(len(tiers))
"""
BARE_CLASSIFY = """
import sys
from dataclasses import replace
from router_cli.classify import get_classifier
from router_cli.config import load_config
config = load_config(sys.argv[2])
if sys.argv[3]:
    config = replace(config, ml_model=sys.argv[3])
print(get_classifier(sys.argv[1], config).classify("hello").tier)
"""
sys.path.insert(0, str(ROOT))

from router_cli.classify import get_classifier  # noqa: E402
from router_cli.config import load_config  # noqa: E402


def per_prompt(action, prompts: list[str]) -> float:
    start = time.perf_counter()
    for prompt in prompts:
        action(prompt)
    return (time.perf_counter() - start) / len(prompts) * 1e6


def process(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--data", type=Path, default=DATA, help="RouteLLM-style JSONL with a prompt per row")
    parser.add_argument("--runs", type=int, default=3, help="runs of each process timing (alternated with its floor)")
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"needs {args.data} (the shared routing data)")
    lines = list(itertools.islice(args.data.open(encoding="utf-8"), args.rows))
    prompts = [json.loads(line)["prompt"] for line in lines]
    sample = Path(tempfile.mkdtemp(prefix="mmr-eval-")) / "sample.jsonl"
    sample.write_text("".join(lines))
    example = str(ROOT / "tiers.example.yaml")
    config = load_config(example)
    print(f"{'measure':<40} {'value':>10} {'floor':>10} {'ratio':>6} {'target':>8}  ok")

    def show(name: str, value: float, floor: float, unit: str, target: float | None = None) -> None:
        ok = "" if target is None else ("yes" if value <= target else "NO")
        goal = "" if target is None else f"{target:g}{unit}"
        print(f"{name:<40} {value:>8.1f}{unit:<2} {floor:>8.1f}{unit:<2} {value / floor:>6.2f} {goal:>8}  {ok}")

    from router_cli.classify.rules import rule_text

    rules = get_classifier("rules", config)

    def bare_rules(prompt: str) -> None:
        scanned = rule_text(prompt.lower().strip())
        for _, patterns in rules.patterns:
            if any(regex.search(scanned) for _, regex in patterns):
                return

    show("rules per prompt (in process)", per_prompt(rules.classify, prompts), per_prompt(bare_rules, prompts), "µs", 50)
    walls, floors = [], []
    for _ in range(args.runs):  # alternated: mmr eval, then the bare loop in a process of its own
        walls.append(process([sys.executable, "-m", "router_cli", "eval", str(sample), "--json", "--config", example]))
        floors.append(process([sys.executable, "-c", BARE_EVAL, str(sample), example]))
    show(f"mmr eval, {len(lines):,} rows, rules", statistics.median(walls), statistics.median(floors), "s",
         2 if len(lines) == 10_000 else None)  # the target is for 10,000 rows
    model = sample.with_name("router.json")
    subprocess.run([sys.executable, "-m", "router_cli", "train", str(sample), "-o", str(model), "--config", example],
                   check=True, stderr=subprocess.DEVNULL)
    from dataclasses import replace

    ml = get_classifier("ml", replace(config, ml_model=str(model)))
    from router_cli.classify.ml import MLModel

    bare_model = MLModel.load(model, config.tier_names)
    show("ml per prompt (in process)", per_prompt(ml.classify, prompts), per_prompt(bare_model.predict, prompts), "µs", 1000)
    for name, extra in (("rules", []), ("ml", ["--ml-model", str(model)])):
        cold, floor = [], []
        for _ in range(max(5, args.runs)):
            cold.append(process([sys.executable, "-m", "router_cli", "classify", "--classifier", name, *extra,
                                 "--config", example, "hello"]))
            floor.append(process([sys.executable, "-c", BARE_CLASSIFY, name, example, str(model) if extra else ""]))
        show(f"mmr classify ({name}) cold start", statistics.median(cold) * 1000, statistics.median(floor) * 1000, "ms")
    print(f"\n{len(prompts):,} prompts of {args.data.name}; process timings alternate with their floor, medians of "
          f"{args.runs} (cold starts: {max(5, args.runs)}); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

if __name__ == "__main__":
    main()
