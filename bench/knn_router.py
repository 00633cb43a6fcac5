"""Nested cross-validation of the ml, knn and blend routers on the shared routing data, repeated over
resampled splits; and how often the calibrated quality held on the held-out fold.

Run: nice python bench/knn_router.py [--repeats 3] [--folds 5] [--data routerbench] [--confidence 0.9]
(needs the ml and embed extras; vectors come from bench/embed_cache.py's cache, computed on first use).

Each repeat shuffles the rows with its own seed and splits them into outer folds. On each outer
training part, exactly what `mmr train --router ml|knn|blend` does picks k and lambda on inner folds
(nothing is tuned on the held-out fold); the held-out fold is then routed. Per repeat the folds are
pooled: quality kept vs always-premium, savings vs always-premium, APGR (routing by score). The table
gives mean +- standard deviation over the repeats, and the share of held-out folds whose realised
quality reached the target ("held"), with calibration to the held-out mean ("mean"), to the lower
bootstrap bound at --confidence by fixed-sequence testing on the inner out-of-fold estimates of every
training row ("cross", cross-fitting: what `mmr train --confidence` does now; calibration.py), on a
held-out calibration split of 25 % ("split", what it did before) and by the cheapest lambda anywhere on
the grid whose bound passes ("folds", before that). A single held-out fold's quality has its own
sampling noise ("fold sd": its bootstrap standard deviation for the routing it got), which pulls
"held" towards 50 % whatever the quality at large; "cover" estimates how often the quality at large
reached the target (the folds' spread less that noise; bench/calibration.py's coverage()).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from calibration import coverage  # noqa: E402
from embed_cache import DATA, cached_hashes, load_vectors  # noqa: E402

from router_cli.classify.knn import request_text  # noqa: E402
from router_cli.classify.knn_train import K_GRID, knn_out_of_fold, train_knn  # noqa: E402
from router_cli.classify.calibration import calibrate_bound, choose  # noqa: E402
from router_cli.classify.ml_train import calibrate, fit, out_of_fold, predict, priced, targets  # noqa: E402
from router_cli.config import load_config  # noqa: E402
from router_cli.labelled import read_labelled  # noqa: E402
from router_cli.reports.evaluate import apgr  # noqa: E402

ROUTERS = ("rules", "ml", "knn", "blend")
LABELLED = ROOT / "router_cli" / "data" / "labelled.jsonl"  # our own set: labels only, costs from the config's prices


def fold_result(np, q, c, quality, costs, lam, tiers, premium):
    """(chosen quality sum, chosen cost sum, premium quality sum, premium cost sum, APGR rows) on one fold."""
    choice = choose(q, c, lam)
    rows = np.arange(len(q))
    scores = (1.0 + q[:, -1] - q[:, 0]) / 2.0
    chosen = quality[rows, choice]
    weights = np.random.default_rng(len(q)).poisson(1.0, (400, len(q)))
    return (chosen.sum(), costs[rows, choice].sum(), quality[:, premium].sum(), costs[:, premium].sum(),
            list(zip(scores.tolist(), quality[:, 0].tolist(), quality[:, premium].tolist())),
            float(((weights @ chosen) / (weights @ quality[:, premium])).std()))


def run_outer(np, rows, vectors, config, train_idx, test_idx, target, confidence, seed):
    """Per router and calibration ("mean", "folds", "cross", "split"): the held-out fold's fold_result."""
    tiers = config.tier_names
    premium = tiers.index(config.baseline_tier)
    _, quality, costs = targets(rows, config)
    tr_rows = [rows[i] for i in train_idx]
    tr_q, tr_c = quality[train_idx], costs[train_idx]
    ml_oof = out_of_fold(tr_rows, config, folds=5, seed=seed)
    fitted = fit([r.prompt for r in tr_rows], targets(tr_rows, config)[0], tr_c, tiers)
    ml_test = predict(fitted, [rows[i].prompt for i in test_idx])
    header, _ = train_knn(tr_rows, config, target_quality=target, folds=5, seed=seed, vectors=vectors[train_idx])
    k = header["k"]
    from router_cli.classify.knn import neighbour_estimates
    from router_cli.classify.ml_train import fold_splits

    knn_test = neighbour_estimates(np, vectors[train_idx], tr_q, tr_c, vectors[test_idx], k)
    knn_oof = knn_out_of_fold(np, vectors[train_idx], tr_q, tr_c, fold_splits(len(tr_rows), 5, seed), k)
    blend_oof = tuple((a + b) / 2 for a, b in zip(ml_oof, knn_oof))
    blend_test = tuple((a + b) / 2 for a, b in zip(ml_test, knn_test))
    out = {}
    from router_cli.classify.rules import RulesClassifier

    rules = RulesClassifier(config)
    decided = [rules.classify(rows[i].prompt) for i in test_idx]
    one_hot = np.zeros((len(test_idx), len(tiers)))
    one_hot[np.arange(len(test_idx)), [tiers.index(d.tier) for d in decided]] = 1.0
    scored = fold_result(np, one_hot, np.zeros_like(one_hot), quality[test_idx], costs[test_idx], 0.0, tiers, premium)
    out[("rules", "-")] = (*scored[:4], [(d.score, *s[1:]) for d, s in zip(decided, scored[4])], scored[5])
    for name, oof, test in (("ml", ml_oof, ml_test), ("knn", knn_oof, knn_test), ("blend", blend_oof, blend_test)):
        for how, conf in (("mean", None), ("folds", confidence)):
            lam, _ = calibrate(oof[0], oof[1], tr_q, tr_c, premium, target, confidence=conf)
            out[(name, how)] = fold_result(np, test[0], test[1], quality[test_idx], costs[test_idx], lam, tiers, premium)
        if confidence:  # what mmr train --confidence does now: cross-fitted (calibration.py)
            lam, _ = calibrate_bound(oof[0], oof[1], tr_q, tr_c, premium, target, confidence, seed=seed)
            out[(name, "cross")] = fold_result(np, test[0], test[1], quality[test_idx], costs[test_idx], lam, tiers, premium)
    if confidence:  # what it did before: fitted on 75 %, lambda set on the other 25 %
        from calibration import split_routers

        good = targets(tr_rows, config)[0]
        for name, (lam, test) in split_routers(np, tr_rows, good, tr_q, tr_c, vectors[train_idx],
                                               [rows[i].prompt for i in test_idx], vectors[test_idx], config, target,
                                               confidence, seed).items():
            out[(name, "split")] = fold_result(np, test[0], test[1], quality[test_idx], costs[test_idx], lam, tiers, premium)
    return out, k


def main() -> None:
    import numpy as np
    from sklearn.model_selection import KFold

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target-quality", type=float, default=0.95)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--data", choices=["routerbench", "routellm", "labelled"], action="append",
                        help="labelled: mmr's own 330-prompt set (labels only)")
    parser.add_argument("--cached-only", action="store_true",
                        help="use only the rows whose vectors are already cached (say so when reporting)")
    args = parser.parse_args()
    config = load_config(ROOT / "tiers.example.yaml")
    lines = []
    for name in args.data or ("routerbench", "routellm"):
        rows, _ = read_labelled(LABELLED if name == "labelled" else DATA / f"{name}.train.jsonl", config.tier_names)
        config = priced(rows, load_config(ROOT / "tiers.example.yaml"))  # rows without costs: the config's prices
        if args.cached_only:
            import hashlib

            ready = cached_hashes(name)
            rows = [r for r in rows if hashlib.sha256(request_text(r.prompt).encode()).hexdigest() in ready]
            print(f"  {name}: {len(rows):,} rows with cached vectors", file=sys.stderr)
        vectors = load_vectors(name, [request_text(r.prompt) for r in rows])
        per_repeat: dict = {}
        held: dict = {}
        per_fold: dict = {}
        noise: dict = {}
        ks = []
        for repeat in range(args.repeats):
            pooled: dict = {}
            outer = KFold(n_splits=args.folds, shuffle=True, random_state=1000 + repeat).split(np.arange(len(rows)))
            for f, (train_idx, test_idx) in enumerate(outer, 1):
                start = time.time()
                out, k = run_outer(np, rows, vectors, config, train_idx, test_idx, args.target_quality,
                                   args.confidence, seed=repeat)
                ks.append(k)
                for key, (q, c, pq, pc, scored, sd) in out.items():
                    noise.setdefault(key, []).append(sd)
                    acc = pooled.setdefault(key, [0.0, 0.0, 0.0, 0.0, []])
                    for i, v in enumerate((q, c, pq, pc)):
                        acc[i] += v
                    acc[4].extend(scored)
                    held.setdefault(key, []).append(q / pq >= args.target_quality)
                    per_fold.setdefault(key, []).append((q / pq, 1 - c / pc, apgr(scored) or 0.0))
                print(f"  {name}: repeat {repeat + 1}/{args.repeats} fold {f}/{args.folds} ({time.time() - start:.0f}s, k={k})",
                      file=sys.stderr, flush=True)
            for key, (q, c, pq, pc, scored) in pooled.items():
                per_repeat.setdefault(key, []).append((q / pq, 1 - c / pc, apgr(scored) or 0.0))
        for key in sorted(per_repeat, key=lambda k: (ROUTERS.index(k[0]), "- cross split folds mean".split().index(k[1]))):
            cols = list(zip(*per_repeat[key]))
            spread = [f"{statistics.mean(v) * (100 if i < 2 else 1):>{6 if i < 2 else 6}.{1 if i < 2 else 3}f} "
                      f"± {(statistics.stdev(v) if len(v) > 1 else 0.0) * (100 if i < 2 else 1):.{1 if i < 2 else 3}f}"
                      for i, v in enumerate(cols)]
            rate = sum(held[key]) / len(held[key])
            folds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in zip(*per_fold[key])]
            cover = coverage([f[0] for f in per_fold[key]], noise[key], args.target_quality)
            lines.append(f"{name:<12} {key[0]:<6} {key[1]:<6} {spread[0]:>14} {spread[1]:>14} {spread[2]:>14} {rate:>6.0%}"
                         f"{(f'{cover:.0%}' if cover is not None else '-'):>7}{statistics.mean(noise[key]) * 100:>8.1f}"
                         f"   (sd over folds: {folds[0] * 100:.1f}, {folds[1] * 100:.1f}, {folds[2]:.3f})")
        lines.append(f"{name:<12} {len(rows):,} rows; knn k chosen per outer fold: {sorted(ks)}")
    print(f"{'data':<12} {'router':<6} {'calib':<6} {'quality % prem':>14} {'saved %':>14} {'APGR':>14} {'held':>6}"
          f"{'cover':>7}{'fold sd':>8}")
    print("\n".join(lines))
    print(f"\nnested {args.folds}-fold CV x {args.repeats} repeats (mean ± sd over repeats); target quality "
          f"{args.target_quality}; 'folds'/'split' = lower bootstrap bound at {args.confidence:.0%} confidence on the same folds / on a calibration split; "
          f"'held' = share of held-out folds whose quality reached the target; 'cover' = share of the quality at large "
          f"above it (the folds' spread less their own noise, 'fold sd'); 'cross' = what mmr train --confidence does; "
          f"k grid {K_GRID}")


if __name__ == "__main__":
    main()
