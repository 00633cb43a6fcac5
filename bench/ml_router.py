"""Benchmark the ml router with nested cross-validation on the shared routing data.

Run: python bench/ml_router.py [--folds 5]   (needs the ml extra: scikit-learn)
Outer folds hold data out; `mmr train`'s own inner folds pick lambda on
the rest; the held-out fold is then routed. Nothing is tuned on what it is
scored on. Targets (issue 3): RouterBench (three tiers, real costs) keep >= 95 %
of premium quality while saving >= 50 %; RouteLLM (two tiers) APGR >= 0.70.
"""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from router_cli.classify.ml import MLModel, score  # noqa: E402
from router_cli.classify.ml_train import train  # noqa: E402
from router_cli.classify.rules import RulesClassifier  # noqa: E402
from router_cli.config import load_config  # noqa: E402
from router_cli.labelled import read_labelled, row_costs  # noqa: E402
from router_cli.reports.evaluate import apgr  # noqa: E402


def folds_of(n: int, k: int) -> list[list[int]]:
    return [list(range(i, n, k)) for i in range(k)]


TARGETS = {"routerbench": "quality >= 95.0%, savings >= 50.0%", "routellm": "APGR >= 0.700"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--target-quality", type=float, default=0.95)
    parser.add_argument("--data", choices=["routerbench", "routellm"], action="append",
                        help="one data set only (repeatable; default: both)")
    args = parser.parse_args()
    config = load_config(ROOT / "tiers.example.yaml")
    tiers = config.tier_names
    premium = config.baseline_tier
    rules = RulesClassifier(config)
    lines = []
    for name in args.data or ("routerbench", "routellm"):
        rows, _ = read_labelled(DATA / f"{name}.train.jsonl", tiers)
        results: dict[str, list] = {"ml": [Decimal(0), 0.0, []], "rules": [Decimal(0), 0.0, []]}
        premium_q, premium_c = 0.0, Decimal(0)
        for k, test in enumerate(folds_of(len(rows), args.folds), 1):
            held = set(test)
            train_rows = [r for i, r in enumerate(rows) if i not in held]
            model = MLModel(train(train_rows, config, target_quality=args.target_quality), "fold")
            for i in test:
                row = rows[i]
                costs = row_costs(row, config)
                premium_q += row.outcomes[premium]
                premium_c += costs[premium]
                tier, quality, _ = model.route(row.prompt)
                decision = rules.classify(row.prompt)
                for key, chosen, s in (("ml", tier, score(quality, tiers)), ("rules", decision.tier, decision.score)):
                    r = results[key]
                    r[0] += costs[chosen]
                    r[1] += row.outcomes[chosen]
                    r[2].append((s, row.outcomes[tiers[0]], row.outcomes[premium]))
            print(f"  {name}: fold {k}/{args.folds} done", file=sys.stderr)
        for key, (cost, quality, scored) in results.items():
            kept, saved, area = quality / premium_q, float(1 - cost / premium_c), apgr(scored) or 0.0
            met = (kept >= 0.95 and saved >= 0.5) if name == "routerbench" else area >= 0.7
            target = f"{TARGETS[name]}: {'met' if met else 'NOT met'}" if key == "ml" else ""
            lines.append(f"{name:<12} {key:<6} {kept:>19.1%} {saved:>8.1%} {area:>6.3f}   {target}")
    print(f"{'data':<12} {'router':<6} {'quality vs premium':>19} {'savings':>8} {'APGR':>6}   target (issue 3)")
    print("\n".join(lines))
    print(f"\nnested {args.folds}-fold cross-validation; lambda from mmr train --target-quality {args.target_quality} "
          "on inner folds of the outer training part; savings and quality against always-premium")


if __name__ == "__main__":
    main()
