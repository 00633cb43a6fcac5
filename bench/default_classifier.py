"""What a user gets by default: the seed's keyword rules next to the ml model shipped with mmr, on the shared
routing data and on our own labelled set, and the cold start of `mmr classify` with each.

Run: nice python bench/default_classifier.py [--runs 5]

The shipped ml model (router_cli/models/default.json) was trained on our own 330 labelled prompts only, so its
RouterBench and RouteLLM figures are on data it never saw; on our own set they are in-sample (marked) -- the
held-out figure for ml on that set is nested cross-validation: `bench/knn_router.py --data labelled`.
Scored by `mmr eval`'s own code (router_cli/reports/evaluate.py) with tiers.example.yaml; quality and savings
against always-premium; RouteLLM and our set have no costs, so they are priced at the config's prices.
Cold start: `mmr classify --classifier NAME hello` in a fresh process, the two interleaved, median CPU seconds
(user + system) and wall seconds.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from embed_cache import DATA  # noqa: E402

from router_cli.classify import get_classifier  # noqa: E402
from router_cli.config import load_config  # noqa: E402
from router_cli.labelled import read_labelled  # noqa: E402
from router_cli.reports.evaluate import evaluate  # noqa: E402

LABELLED = ROOT / "router_cli" / "data" / "labelled.jsonl"


def cold_start(name: str, config: Path) -> tuple[float, float]:
    """(CPU s, wall s) of one `mmr classify` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "router_cli", "classify", "--classifier", name, "--config", str(config), "hello"],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="cold starts per classifier")
    args = parser.parse_args()
    example = ROOT / "tiers.example.yaml"
    config = load_config(example)
    names = ("rules", "ml")
    chosen = {n: get_classifier(n, config) for n in names}
    print(f"{'data':<34}{'classifier':<16}{'quality % prem':>15}{'saved %':>9}{'APGR':>7}{'accuracy':>10}")
    for label, path in (("RouterBench (2,217 rows, costs)", DATA / "routerbench.train.jsonl"),
                        ("RouteLLM (12,238 rows)", DATA / "routellm.train.jsonl"),
                        ("ours (330 rows, labels only)", LABELLED)):
        rows, _ = read_labelled(path, config.tier_names)
        if path == LABELLED:  # labels only: the tier at or above the label answers well
            from router_cli.labelled import LabelledRow

            tiers = config.tier_names
            rows = [LabelledRow(r.prompt, r.label, r.line, outcomes={t: float(tiers.index(t) >= tiers.index(r.label))
                                                                      for t in tiers}) for r in rows]
        report = evaluate(rows, chosen, config, confidence=None)
        for n in names:
            m = report["classifiers"][n]
            shown = n + (" (in-sample)" if n == "ml" and path == LABELLED else "")
            print(f"{label:<34}{shown:<16}{m['quality_vs_premium'] * 100:>15.1f}{m['savings_vs_premium'] * 100:>9.1f}"
                  f"{(m.get('apgr') or 0):>7.3f}{m['accuracy'] * 100:>9.1f}%")
    times: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for _ in range(args.runs):
        for n in names:
            times[n].append(cold_start(n, example))
    print()
    for n in names:
        cpu, wall = zip(*times[n])
        print(f"mmr classify --classifier {n:<6} cold start: {statistics.median(cpu):.2f} s CPU, "
              f"{statistics.median(wall):.2f} s wall (median of {args.runs}, interleaved)")
    print(f"\nshipped ml model: router_cli/models/default.json (trained on our 330 prompts only); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
