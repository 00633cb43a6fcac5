"""RouteLLM APGR: can combining the ml and knn estimates with per-source features pass 0.70? And where is the ceiling?

Run: nice python bench/routellm_apgr.py [--repeats 2] [--folds 5]
(needs the ml and embed extras; vectors from bench/embed_cache.py's cache; out-of-fold predictions are cached
in /work/cache/routing).

Nested: each repeat shuffles the 12,238 rows into outer folds. On each outer training part, the ml model
(TF-IDF, as `mmr train`) and knn-k (MiniLM, k in 50/100/200/400) give inner out-of-fold estimates; every
stacker below is fitted on those inner estimates only, then applied to the outer fold, whose base estimates
come from the base models fitted on the whole outer training part. APGR (RouteLLM's area under the quality-
gap-recovered curve, routing by score) is pooled over a repeat's folds; mean ± sd over repeats, and per source.

  ml, knn-k         the base routers' own score: predicted P(strong good) - P(weak good)
  blend             their half-and-half mean (what `mmr train --router blend` does), k=100
  blend-w           the weight and k chosen on the inner folds (grid of 5 weights x 4 k)
  stack-lr          a logistic regression on [ml and knn estimates, source, request shape features]
                    predicting "only the strong model answered", score = its probability
  stack-gbm         the same features, gradient-boosted trees (scikit-learn's HistGradientBoosting)
  smooth            knn with single-sample labels smoothed towards the source's mean (alpha 5)
  oracle-in-sample  the stack-gbm fitted on the outer fold itself: an optimistic ceiling for these features
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from embed_cache import DATA, load_vectors  # noqa: E402

from router_cli.classify.knn import neighbour_estimates, request_text  # noqa: E402
from router_cli.classify.ml import request_features, shape_features  # noqa: E402
from router_cli.classify.ml_train import fit, predict, targets  # noqa: E402
from router_cli.config import load_config  # noqa: E402
from router_cli.labelled import read_labelled  # noqa: E402
from router_cli.reports.evaluate import apgr  # noqa: E402

CACHE = Path("/work/cache/routing")
KS = (50, 100, 200, 400)
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def hand_features(np, rows) -> object:
    """Source (GSM8K or MMLU), and what differs within a source: numbers, steps, lengths (both shapes of ml.py)."""
    out = []
    for r in rows:
        text = request_text(r.prompt)
        numbers = _NUMBER.findall(text)
        sentences = max(1, len(re.findall(r"[.?!](?:\s|$)", text)))
        out.append([float("gsm8k" in r.extra.get("source", "")), np.log1p(len(numbers)), np.log1p(len(text)),
                    np.log1p(sentences), np.log1p(max((float(n) for n in numbers), default=0.0)),
                    float(any("." in n for n in numbers)), float("%" in text or "percent" in text.lower()),
                    *shape_features(r.prompt), *request_features(r.prompt)])
    return np.array(out)


def ml_estimates(np, texts, good, costs, tiers, train_idx, test_idx, inner, key):
    """(inner out-of-fold P(good), outer-fold P(good)) of the ml model, cached on disk."""
    path = CACHE / f"apgr-ml-{key}.npz"
    if path.exists():
        z = np.load(path)
        return z["inner"], z["outer"]
    inner_q = np.zeros((len(train_idx), len(tiers)))
    for tr, te in inner:
        a, b = train_idx[tr], train_idx[te]
        inner_q[te] = predict(fit([texts[i] for i in a], good[a], costs[a], tiers), [texts[i] for i in b])[0]
    outer_q = predict(fit([texts[i] for i in train_idx], good[train_idx], costs[train_idx], tiers),
                      [texts[i] for i in test_idx])[0]
    np.savez(path, inner=inner_q, outer=outer_q)
    return inner_q, outer_q


def knn_estimates(np, vectors, quality, costs, train_idx, test_idx, inner, k):
    inner_q = np.zeros((len(train_idx), quality.shape[1]))
    for tr, te in inner:
        a, b = train_idx[tr], train_idx[te]
        inner_q[te] = neighbour_estimates(np, vectors[a], quality[a], costs[a], vectors[b], k)[0]
    outer_q = neighbour_estimates(np, vectors[train_idx], quality[train_idx], costs[train_idx], vectors[test_idx], k)[0]
    return inner_q, outer_q


def gap(q):
    return q[:, -1] - q[:, 0]


def scored(score, quality):
    return list(zip(score.tolist(), quality[:, 0].tolist(), quality[:, -1].tolist()))


def stack_matrix(np, ml_q, kn, hand):
    return np.column_stack([gap(ml_q), ml_q[:, 0], ml_q[:, -1], *[c for q in kn for c in (gap(q), q[:, 0], q[:, -1])], hand])


def outer_fold(np, rows, texts, vectors, hand, good, quality, costs, tiers, train_idx, test_idx, seed, key):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    inner = list(KFold(5, shuffle=True, random_state=seed).split(train_idx))
    ml_in, ml_out = ml_estimates(np, texts, good, costs, tiers, train_idx, test_idx, inner, key)
    kn = {k: knn_estimates(np, vectors, quality, costs, train_idx, test_idx, inner, k) for k in KS}
    tr_q = quality[train_idx]
    out = {"ml": gap(ml_out)}
    for k in KS:
        out[f"knn-{k}"] = gap(kn[k][1])
    out["blend"] = (gap(ml_out) + gap(kn[100][1])) / 2
    best = max(((w, k) for w in WEIGHTS for k in KS),
               key=lambda wk: apgr(scored(wk[0] * gap(ml_in) + (1 - wk[0]) * gap(kn[wk[1]][0]), tr_q)) or 0.0)
    out["blend-w"] = best[0] * gap(ml_out) + (1 - best[0]) * gap(kn[best[1]][1])
    # Label smoothing: each training row's outcome pulled towards its source's mean (one sample per model is noisy).
    src = hand[:, 0]
    smooth_q = quality.astype(float).copy()
    for s in (0.0, 1.0):
        rows_s = train_idx[src[train_idx] == s]
        smooth_q[src == s] = (quality[src == s] + 5 * quality[rows_s].mean(axis=0)) / 6
    out["smooth"] = gap(neighbour_estimates(np, vectors[train_idx], smooth_q[train_idx], costs[train_idx], vectors[test_idx], 100)[0])
    x_in = stack_matrix(np, ml_in, [kn[k][0] for k in KS], hand[train_idx])
    x_out = stack_matrix(np, ml_out, [kn[k][1] for k in KS], hand[test_idx])
    y_in = ((tr_q[:, -1] >= 0.5) & (tr_q[:, 0] < 0.5)).astype(int)  # only the strong model answered
    lr = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(x_in, y_in)
    out["stack-lr"] = lr.predict_proba(x_out)[:, 1]
    gbm = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=40,
                                         random_state=seed).fit(x_in, y_in)
    out["stack-gbm"] = gbm.predict_proba(x_out)[:, 1]
    te_q = quality[test_idx]
    y_out = ((te_q[:, -1] >= 0.5) & (te_q[:, 0] < 0.5)).astype(int)
    oracle = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=40,
                                            random_state=seed).fit(x_out, y_out)
    out["oracle-in-sample"] = oracle.predict_proba(x_out)[:, 1]
    return out, best


def main() -> None:
    import numpy as np
    from sklearn.model_selection import KFold

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    config = load_config(ROOT / "tiers.example.yaml")
    tiers = config.tier_names
    rows, _ = read_labelled(DATA / "routellm.train.jsonl", tiers)
    config_priced = __import__("router_cli.classify.ml_train", fromlist=["priced"]).priced(rows, config)
    good, quality, costs = targets(rows, config_priced)
    texts = [r.prompt for r in rows]
    vectors = load_vectors("routellm", [request_text(t) for t in texts])
    hand = hand_features(np, rows)
    source = hand[:, 0]
    per_repeat: dict[str, list] = {}
    per_source: dict[str, dict] = {}
    per_fold: dict[str, list] = {}
    chosen = []
    for repeat in range(args.repeats):
        scores: dict[str, np.ndarray] = {}
        outer = KFold(args.folds, shuffle=True, random_state=1000 + repeat).split(np.arange(len(rows)))
        for f, (train_idx, test_idx) in enumerate(outer, 1):
            start = time.time()
            out, best = outer_fold(np, rows, texts, vectors, hand, good, quality, costs, tiers, train_idx, test_idx,
                                   seed=repeat, key=f"{1000 + repeat}-{f}")
            chosen.append(best)
            for name, s in out.items():
                scores.setdefault(name, np.zeros(len(rows)))[test_idx] = s
                per_fold.setdefault(name, []).append(apgr(scored(s, quality[test_idx])) or 0.0)
            print(f"  repeat {repeat + 1} fold {f}/{args.folds} ({time.time() - start:.0f}s)", file=sys.stderr, flush=True)
        for name, s in scores.items():
            per_repeat.setdefault(name, []).append(apgr(scored(s, quality)) or 0.0)
            for label, mask in (("MMLU", source == 0), ("GSM8K", source == 1)):
                per_source.setdefault(name, {}).setdefault(label, []).append(apgr(scored(s[mask], quality[mask])) or 0.0)
    print(f"{'score':<18}{'APGR (pooled)':>18}{'sd over folds':>15}{'MMLU':>10}{'GSM8K':>10}")
    for name, values in per_repeat.items():
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:<18}{statistics.mean(values):>11.3f} ± {sd:.3f}{statistics.stdev(per_fold[name]):>15.3f}"
              f"{statistics.mean(per_source[name]['MMLU']):>10.3f}{statistics.mean(per_source[name]['GSM8K']):>10.3f}")
    only_strong = ((quality[:, -1] >= 0.5) & (quality[:, 0] < 0.5))
    only_weak = ((quality[:, 0] >= 0.5) & (quality[:, -1] < 0.5))
    print(f"\nnested {args.folds}-fold CV x {args.repeats} repeats (± sd over repeats; sd over single outer folds beside it), {len(rows):,} rows (MMLU {int((source == 0).sum()):,}, "
          f"GSM8K {int(source.sum()):,}); mean ± sd over repeats; blend-w (weight of ml, k) chosen per outer fold: "
          f"{sorted(set(chosen))}")
    print(f"labels: only the strong model answered {only_strong.mean():.1%}, only the weak one {only_weak.mean():.1%}, "
          f"both {((quality[:, 0] >= 0.5) & (quality[:, -1] >= 0.5)).mean():.1%}, neither "
          f"{((quality[:, 0] < 0.5) & (quality[:, -1] < 0.5)).mean():.1%}; one sample per model and prompt")


if __name__ == "__main__":
    main()
