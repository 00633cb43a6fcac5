"""How often calibration to a bound holds on data the router never saw: a simulation over resampled splits.

Run: nice python bench/calibration.py [--data routerbench] [--splits 40] [--train-share 0.5] [--confidence 0.9]
(needs the ml and embed extras; vectors from bench/embed_cache.py's cache).

Each split shuffles the shared data with its own seed into a training part and a test part. On the
training part, four calibrations of the same routers (ml, knn, blend = mean of the two):
  cross - what `mmr train --confidence C` does now: lambda set by fixed-sequence testing of the lower
          bootstrap bound on the out-of-fold estimates of every training row, model refitted on every
          row (cross-fitting; calibration.py);
  split - what it did before: fitted on 75 % of the training part, lambda set on the other 25 % by the
          same fixed-sequence test;
  folds - before that: the cheapest lambda anywhere on the grid whose lower bound on the held-out folds
          reaches the target, model refitted on every row;
  mean  - lambda chosen so that the held-out folds' mean reaches the target (`--confidence 0`).
The test part is then routed. "held" is the share of splits whose test-part quality vs always-premium
reached the target. The test part is finite, so its own sampling noise (column "test sd": the bootstrap
standard deviation of a test part's quality for the routing it got) pulls "held" towards 50 % whatever
the quality on new data at large. "cover" estimates how often that quality at large reached the target:
the spread of the test quality over splits less the test parts' own noise (a normal deconvolution),
then the share of a normal with that mean and spread above the target; "-" when the noise explains all
the spread. Results per split are cached in /work/cache/routing so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from embed_cache import DATA, load_vectors  # noqa: E402

from router_cli.classify.calibration import calibrate_bound  # noqa: E402
from router_cli.classify.knn import neighbour_estimates, request_text  # noqa: E402
from router_cli.classify.knn_train import knn_out_of_fold, train_knn  # noqa: E402
from router_cli.classify.calibration import choose  # noqa: E402
from router_cli.classify.ml_train import calibrate, fit, fold_splits, out_of_fold, predict, priced, targets  # noqa: E402
from router_cli.config import load_config  # noqa: E402
from router_cli.labelled import read_labelled  # noqa: E402

CACHE = Path("/work/cache/routing")


def ratio(np, q, c, quality, costs, lam, premium):
    """(quality vs premium, saved vs premium, the quality's bootstrap sd on these rows) of routing (q, c)
    with lambda."""
    choice = choose(q, c, lam)
    rows = np.arange(len(q))
    chosen = quality[rows, choice]
    weights = np.random.default_rng(len(q)).poisson(1.0, (400, len(q)))
    return (float(chosen.sum() / quality[:, premium].sum()),
            float(1 - costs[rows, choice].sum() / costs[:, premium].sum()),
            float(((weights @ chosen) / (weights @ quality[:, premium])).std()))


def split(n: int, seed: int = 0, share: float = 0.25):
    """(fit, calibration) row indices of the earlier --confidence: a seeded shuffle, ``share`` to calibrate on."""
    import numpy as np

    order = np.random.default_rng(seed + 7919).permutation(n)
    n_cal = min(n - 10, max(10, int(round(n * share))))
    return np.sort(order[n_cal:]), np.sort(order[:n_cal])


def coverage(q: list[float], noise: list[float], target: float) -> float | None:
    """How often the quality at large reached ``target``: test qualities' spread less their own noise."""
    from statistics import NormalDist

    spread = statistics.variance(q) - statistics.mean(x * x for x in noise)
    return NormalDist().cdf((statistics.mean(q) - target) / spread ** 0.5) if spread > 0 else None


def split_routers(np, tr_rows, tr_good, tr_q, tr_c, tr_v, te_text, te_v, config, target, confidence, seed):
    """{router: (lambda, (test quality estimates, test cost estimates, held-out record))} of ml, knn and blend
    calibrated as `mmr train --confidence` did before cross-fitting: fitted on the fit part, lambda set on the
    calibration part."""
    tiers = config.tier_names
    premium = tiers.index(config.baseline_tier)
    fit_idx, cal_idx = split(len(tr_rows), seed)
    fitted = fit([tr_rows[i].prompt for i in fit_idx], tr_good[fit_idx], tr_c[fit_idx], tiers)
    ml_cal, ml_test = predict(fitted, [tr_rows[i].prompt for i in cal_idx]), predict(fitted, te_text)
    kh, _ = train_knn([tr_rows[i] for i in fit_idx], config, target_quality=target, folds=5, seed=seed, vectors=tr_v[fit_idx])
    args = (tr_v[fit_idx], tr_q[fit_idx], tr_c[fit_idx])
    kn_cal, kn_test = neighbour_estimates(np, *args, tr_v[cal_idx], kh["k"]), neighbour_estimates(np, *args, te_v, kh["k"])
    preds = {"ml": (ml_cal, ml_test), "knn": (kn_cal, kn_test),
             "blend": (tuple((a + b) / 2 for a, b in zip(ml_cal, kn_cal)), tuple((a + b) / 2 for a, b in zip(ml_test, kn_test)))}
    out = {}
    for name, (cal, test) in preds.items():
        lam, held = calibrate_bound(cal[0], cal[1], tr_q[cal_idx], tr_c[cal_idx], premium, target, confidence, seed=seed,
                                    method="split")
        out[name] = (lam, (test[0], test[1], held))
    return out


def one_split(np, rows, vectors, config, train_idx, test_idx, target, confidence, seed):
    """Per (router, calibration): test quality ratio, saved, and the training's expected/guaranteed figures."""
    tiers = config.tier_names
    premium = tiers.index(config.baseline_tier)
    good, quality, costs = targets(rows, config)
    tr_rows = [rows[i] for i in train_idx]
    tr_q, tr_c, tr_v = quality[train_idx], costs[train_idx], vectors[train_idx]
    te_q, te_c, te_v = quality[test_idx], costs[test_idx], vectors[test_idx]
    te_text = [rows[i].prompt for i in test_idx]
    out = {}
    # folds and mean: held-out folds of the whole training part, then a refit on every row.
    ml_oof = out_of_fold(tr_rows, config, folds=5, seed=seed)
    ml_all = predict(fit([r.prompt for r in tr_rows], good[train_idx], tr_c, tiers), te_text)
    header, _ = train_knn(tr_rows, config, target_quality=target, folds=5, seed=seed, vectors=tr_v)
    k = header["k"]
    kn_oof = knn_out_of_fold(np, tr_v, tr_q, tr_c, fold_splits(len(tr_rows), 5, seed), k)
    kn_all = neighbour_estimates(np, tr_v, tr_q, tr_c, te_v, k)
    preds = {"ml": (ml_oof, ml_all), "knn": (kn_oof, kn_all),
             "blend": (tuple((a + b) / 2 for a, b in zip(ml_oof, kn_oof)), tuple((a + b) / 2 for a, b in zip(ml_all, kn_all)))}
    for name, (oof, test) in preds.items():
        for how, conf in (("mean", None), ("folds", confidence)):
            lam, held = calibrate(oof[0], oof[1], tr_q, tr_c, premium, target, confidence=conf)
            out[f"{name}/{how}"] = (*ratio(np, test[0], test[1], te_q, te_c, lam, premium), held["quality_vs_premium"],
                                   held.get("guaranteed_quality_vs_premium"))
        lam, held = calibrate_bound(oof[0], oof[1], tr_q, tr_c, premium, target, confidence, seed=seed)
        out[f"{name}/cross"] = (*ratio(np, test[0], test[1], te_q, te_c, lam, premium), held["quality_vs_premium"],
                                held["guaranteed_quality_vs_premium"])
    # split: fitted on the fit part only, lambda on the calibration part (what mmr train --confidence does).
    for name, (lam, test) in split_routers(np, tr_rows, good[train_idx], tr_q, tr_c, tr_v, te_text, te_v, config,
                                           target, confidence, seed).items():
        held = test[2]
        out[f"{name}/split"] = (*ratio(np, test[0], test[1], te_q, te_c, lam, premium), held["quality_vs_premium"],
                               held["guaranteed_quality_vs_premium"])
    return out


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["routerbench", "routellm"], default="routerbench")
    parser.add_argument("--splits", type=int, default=40)
    parser.add_argument("--train-share", type=float, default=0.5)
    parser.add_argument("--target-quality", type=float, default=0.95)
    parser.add_argument("--confidence", type=float, default=0.9)
    args = parser.parse_args()
    config = load_config(ROOT / "tiers.example.yaml")
    rows, _ = read_labelled(DATA / f"{args.data}.train.jsonl", config.tier_names)
    config = priced(rows, config)  # RouteLLM has no costs: the config's prices, as mmr train does
    vectors = load_vectors(args.data, [request_text(r.prompt) for r in rows])
    code = hashlib.sha256((Path(__file__).read_bytes() + (ROOT / "router_cli/classify/calibration.py").read_bytes())).hexdigest()[:12]
    cache = CACHE / f"calibration-{args.data}-{args.train_share}-{args.target_quality}-{args.confidence}-{code}.jsonl"
    CACHE.mkdir(parents=True, exist_ok=True)
    done = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            entry = json.loads(line)
            done[entry["split"]] = entry["out"]
    n_train = int(round(len(rows) * args.train_share))
    for s in range(args.splits):
        if s in done:
            continue
        start = time.time()
        order = np.random.default_rng(5000 + s).permutation(len(rows))
        out = one_split(np, rows, vectors, config, np.sort(order[:n_train]), np.sort(order[n_train:]),
                        args.target_quality, args.confidence, seed=s)
        done[s] = out
        with open(cache, "a") as f:
            f.write(json.dumps({"split": s, "out": out}) + "\n")
        print(f"  {args.data}: split {s + 1}/{args.splits} ({time.time() - start:.0f}s)", file=sys.stderr, flush=True)
    results = [done[s] for s in range(args.splits)]
    print(f"{'router':<7}{'calibration':<12}{'held':>8}{'cover':>7}{'test quality % prem':>22}{'test sd':>8}"
          f"{'saved %':>15}{'expected':>10}{'guaranteed':>12}")
    for key in sorted(results[0], key=lambda k: (k.split("/")[0], "cross split folds mean".split().index(k.split("/")[1]))):
        got = [r[key] for r in results]
        q, saved, noise, expected, bound = (list(v) for v in zip(*got))
        held = sum(x >= args.target_quality for x in q)
        cover = coverage(q, noise, args.target_quality)
        g = f"{statistics.mean(bound) * 100:.1f}" if bound[0] is not None else "-"
        print(f"{key.split('/')[0]:<7}{key.split('/')[1]:<12}{held:>4}/{len(q):<3}"
              f"{(f'{cover:.0%}' if cover is not None else '-'):>7}"
              f"{statistics.mean(q) * 100:>14.1f} ± {statistics.stdev(q) * 100:.1f}{statistics.mean(noise) * 100:>8.1f}"
              f"{statistics.mean(saved) * 100:>9.1f} ± {statistics.stdev(saved) * 100:.1f}"
              f"{statistics.mean(expected) * 100:>10.1f}{g:>12}")
    print(f"\n{args.splits} resampled splits of {args.data} ({len(rows):,} rows): train {n_train:,}, test "
          f"{len(rows) - n_train:,}; target {args.target_quality}, confidence {args.confidence}; 'held' = splits whose "
          "test quality vs premium reached the target (the test part's own sampling noise included); ± = sd over "
          "splits; test sd = a test part's own sampling noise (mean); cover = share of the quality at large above the "
          "target (deconvolved); expected/guaranteed = what training reported (means)")


if __name__ == "__main__":
    main()
