"""Benchmark rule patterns on hostile text: the slowest pattern the config check accepts, and the seed's.

Run: python bench/rule_patterns.py [--runs 5]
The rules read at most the first and last 1,000 characters of a prompt
(router_cli/classify/rules.py). On a 100 KB prompt built to make them backtrack:
`.*abc.*def` (the slowest shape the check lets through) on "abc" x 33,000, and
the seed config's patterns (tiers.example.yaml) on "compar and" x 10,000, whose
`compar.*and.*contrast` is the seed's slowest. The floor, next to each: a
pattern that cannot backtrack (`\\bhello\\b`) on the same text.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from router_cli.classify.rules import RulesClassifier, rule_text  # noqa: E402
from router_cli.config import load_config  # noqa: E402


def timed(action, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    floor = re.compile(r"\bhello\b")
    slowest, hostile = re.compile(r".*abc.*def"), "abc" * 33_000
    seed, seed_text = RulesClassifier(load_config(ROOT / "tiers.example.yaml")), "compar and" * 10_000
    rows = [
        ("`.*abc.*def` on 'abc' x 33,000", timed(lambda: slowest.search(rule_text(hostile.lower().strip())), args.runs),
         timed(lambda: floor.search(rule_text(hostile.lower().strip())), args.runs)),
        ("the seed's rules on 'compar and' x 10,000", timed(lambda: seed.classify(seed_text), args.runs),
         timed(lambda: floor.search(rule_text(seed_text.lower().strip())), args.runs)),
    ]
    print(f"{'case':<44} {'median':>10} {'floor':>9}")
    for name, value, low in rows:
        print(f"{name:<44} {value:>7.1f} ms {low:>6.2f} ms")
    print(f"\nmedians of {args.runs} runs; floor: \\bhello\\b on the same text; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
