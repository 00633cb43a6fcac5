"""RouteLLM APGR: tuned TF-IDF, gap models, char n-grams, embeddings in ml, knn variants, ensembles, source shifts.

Run: nice python bench/routellm_variants.py --screen   (~15 min on 2 shared cores, then cached)
     nice python bench/routellm_variants.py --nested   (~30 min, then cached; needs bench/routellm_apgr.py's cache)

Both use the outer folds of bench/routellm_apgr.py (5 folds, seed 1000, 12,238 rows; vectors from
bench/embed_cache.py's cache); APGR pooled over the outer folds, and per source (MMLU, GSM8K).

--screen fits each variant below on the outer training part with fixed settings and scores the outer fold.
The settings are compared on the folds they are scored on, so a winner here is optimistic: it only says
what is worth nesting. It also scores averages of two or more variants (of probabilities, z-scores and
ranks), knn with a sharper kernel, a shift of GSM8K's scores, and how good each source's order would have
to be for a pooled 0.70 (the blend mixed with the true gap on one source).

  ml-C<c>       ml's two logistic regressions (TF-IDF word 1-2-grams + shape features) at regularisation C
  ml-ps/negpw   P(strong good) alone, -P(weak good) alone
  multi-C<c>    one multinomial regression over (neither, weak only, strong only, both): P(strong only) - P(weak only)
  ridge-a<a>    ridge regression on the (strong - weak) outcome
  disc-C<c>     logistic regression on the rows where exactly one model answered: P(strong only)
  char-C<c>     ml on character 2-5-grams (char_wb, min_df 3) instead of words
  ml+emb<s>     ml with the MiniLM vector (times s) appended to its features
  knn-<k>       knn over MiniLM vectors; tfknn-<k>: knn over the TF-IDF vectors (cosine)

--nested: on each outer training part, the components ml, mlemb (ml+emb0.5), multi (multi-C1.0), knn
(knn-100) and tfknn (tfknn-100) give inner out-of-fold estimates (5 inner folds); an ensemble (the mean of
z-scores, z with the inner estimates' mean and sd) and a shift of GSM8K's scores (in sd of the ensemble) are
chosen by inner APGR; the outer fold is scored with the components refitted on the whole training part.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from embed_cache import DATA, load_vectors  # noqa: E402

from router_cli.classify.knn import neighbour_estimates, request_text  # noqa: E402
from router_cli.classify.ml import shape_features  # noqa: E402
from router_cli.classify.ml_train import priced, targets  # noqa: E402
from router_cli.config import load_config  # noqa: E402
from router_cli.labelled import read_labelled  # noqa: E402
from router_cli.reports.evaluate import apgr  # noqa: E402

CACHE = Path("/work/cache/routing")
COMBOS = {"blend": ("ml", "knn"), "mlemb+knn": ("mlemb", "knn"), "ml+multi+knn": ("ml", "multi", "knn"),
          "avg4": ("mlemb", "multi", "knn", "tfknn"), "avg5": ("ml", "mlemb", "multi", "knn", "tfknn")}
SHIFTS = (-0.5, -0.25, 0.0, 0.25, 0.5, 1.0)
SCREEN_MIXES = ("ml-C1.0,knn-100", "ml-C0.3,knn-100", "multi-C1.0,knn-100", "ml+emb0.5,knn-100", "ml-C0.3,tfknn-100",
                "ml-C1.0,ridge-a10.0", "ml-C0.3,char-C0.3", "knn-100,tfknn-100", "multi-C1.0,ml-C0.3",
                "ml-C1.0,knn-100,tfknn-100", "ml-C1.0,knn-100,char-C0.3,tfknn-100", "ml+emb0.5,char-C0.3,tfknn-100",
                "ml+emb0.5,multi-C1.0,knn-100,tfknn-100")


class Data:
    """The rows, their outcomes (weak w, strong s), texts, MiniLM vectors, shape features and source."""

    def __init__(self, np):
        from scipy.sparse import csr_matrix

        config = load_config(ROOT / "tiers.example.yaml")
        rows, _ = read_labelled(DATA / "routellm.train.jsonl", config.tier_names)
        self.tiers = config.tier_names
        self.good, self.quality, self.costs = targets(rows, priced(rows, config))
        self.texts = [r.prompt for r in rows]
        self.vectors = load_vectors("routellm", [request_text(t) for t in self.texts]).astype(np.float32)
        self.gsm = np.array([float("gsm8k" in r.extra.get("source", "")) for r in rows])
        self.shape = csr_matrix(np.array([shape_features(t) for t in self.texts]))
        self.w, self.s = self.quality[:, 0], self.quality[:, -1]
        self.cls4 = (self.s * 2 + self.w).astype(int)  # 0 neither, 1 weak only, 2 strong only, 3 both
        self.n = len(rows)

    def apgr(self, score, idx) -> float:
        return apgr(list(zip(score.tolist(), self.w[idx].tolist(), self.s[idx].tolist()))) or 0.0

    def words(self, a, b):
        """TF-IDF as ml (fitted on rows a) for rows a and b, and the same with the shape features."""
        from scipy.sparse import hstack
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, max_features=20000)
        xa, xb = vec.fit_transform([self.texts[i] for i in a]), vec.transform([self.texts[i] for i in b])
        return xa, xb, hstack([xa, self.shape[a]]).tocsr(), hstack([xb, self.shape[b]]).tocsr()


def two_lr(d, x, xb, a, c=1.0):
    """ml's score: P(strong good) - P(weak good), two logistic regressions; also both parts."""
    from sklearn.linear_model import LogisticRegression

    ps = LogisticRegression(C=c, max_iter=3000).fit(x, d.s[a]).predict_proba(xb)[:, 1]
    pw = LogisticRegression(C=c, max_iter=3000).fit(x, d.w[a]).predict_proba(xb)[:, 1]
    return ps - pw, ps, pw


def multi(d, x, xb, a, c=1.0):
    from sklearn.linear_model import LogisticRegression

    p = LogisticRegression(C=c, max_iter=3000).fit(x, d.cls4[a]).predict_proba(xb)
    return p[:, 2] - p[:, 1]


def with_vectors(d, x, xb, a, b, scale):
    from scipy.sparse import csr_matrix, hstack

    return (hstack([x, csr_matrix(d.vectors[a] * scale)]).tocsr(), hstack([xb, csr_matrix(d.vectors[b] * scale)]).tocsr())


def tfidf_knn(np, d, xa, xb, a, k):
    sims = (xb @ xa.T).toarray()
    nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    weights = np.maximum(np.take_along_axis(sims, nearest, axis=1), 1e-3)
    weights /= weights.sum(1, keepdims=True)
    q = np.einsum("nk,nkt->nt", weights, d.quality[a][nearest])
    return q[:, -1] - q[:, 0]


def minilm_knn(np, d, a, b, k):
    q, _ = neighbour_estimates(np, d.vectors[a], d.quality[a], d.costs[a], d.vectors[b], k)
    return q[:, -1] - q[:, 0]


def screen_fold(np, d, a, b) -> dict:
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge

    out = {}
    xa, xb, x, x_b = d.words(a, b)
    for c in (0.1, 0.3, 1.0, 3.0):
        out[f"ml-C{c}"], ps, pw = two_lr(d, x, x_b, a, c)
        if c == 1.0:
            out["ml-ps"], out["ml-negpw"] = ps, -pw
    for c in (0.1, 0.3, 1.0):
        out[f"multi-C{c}"] = multi(d, x, x_b, a, c)
    for alpha in (1.0, 3.0, 10.0):
        out[f"ridge-a{alpha}"] = Ridge(alpha=alpha).fit(x, d.s[a] - d.w[a]).predict(x_b)
    one = d.cls4[a] % 3 != 0  # exactly one model answered
    for c in (0.3, 1.0):
        lr = LogisticRegression(C=c, max_iter=3000).fit(x[one], (d.cls4[a][one] == 2).astype(int))
        out[f"disc-C{c}"] = lr.predict_proba(x_b)[:, 1]
    vc = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=3, max_features=50000)
    xc = hstack([vc.fit_transform([d.texts[i] for i in a]), d.shape[a]]).tocsr()
    xc_b = hstack([vc.transform([d.texts[i] for i in b]), d.shape[b]]).tocsr()
    for c in (0.3, 1.0):
        out[f"char-C{c}"] = two_lr(d, xc, xc_b, a, c)[0]
    for scale in (0.5, 1.0):
        out[f"ml+emb{scale}"] = two_lr(d, *with_vectors(d, x, x_b, a, b, scale), a)[0]
    for k in (50, 100, 200):
        out[f"knn-{k}"] = minilm_knn(np, d, a, b, k)
    for k in (50, 100):
        out[f"tfknn-{k}"] = tfidf_knn(np, d, xa, xb, a, k)
    return out


def components(np, d, a, b) -> dict:
    """The nested run's components for rows b, fitted on rows a."""
    xa, xb, x, x_b = d.words(a, b)
    return {"mlemb": two_lr(d, *with_vectors(d, x, x_b, a, b, 0.5), a)[0], "multi": multi(d, x, x_b, a),
            "knn": minilm_knn(np, d, a, b, 100), "tfknn": tfidf_knn(np, d, xa, xb, a, 100)}


def outer_folds(np, d, repeat=0):
    from sklearn.model_selection import KFold

    return list(KFold(5, shuffle=True, random_state=1000 + repeat).split(np.arange(d.n)))


def report(np, d, name, score, folds=None):
    every = np.arange(d.n)
    mmlu, gsm = every[d.gsm == 0], every[d.gsm == 1]
    spread = f"  sd over folds {np.std([d.apgr(score[b], b) for _, b in folds], ddof=1):.3f}" if folds else ""
    print(f"{name:<40}{d.apgr(score, every):.3f}{spread}  MMLU {d.apgr(score[mmlu], mmlu):.3f}  "
          f"GSM8K {d.apgr(score[gsm], gsm):.3f}", flush=True)


def screen(np, d) -> None:
    from scipy.stats import rankdata

    path = CACHE / "apgr-screen-1000.pkl"
    if path.exists():
        scores = pickle.loads(path.read_bytes())
    else:
        scores = {}
        for f, (a, b) in enumerate(outer_folds(np, d), 1):
            start = time.time()
            for name, v in screen_fold(np, d, a, b).items():
                scores.setdefault(name, np.zeros(d.n))[b] = v
            print(f"  fold {f}/5 ({time.time() - start:.0f}s)", file=sys.stderr, flush=True)
        path.write_bytes(pickle.dumps(scores))
    print("screen: fixed settings, scored on the outer folds (optimistic where a setting is picked from these)")
    for name, v in scores.items():
        report(np, d, name, v)

    def z(v):
        return (v - v.mean()) / v.std()

    every = np.arange(d.n)
    print("\naverages (of probabilities / z-scores / ranks)")
    for mix in SCREEN_MIXES:
        vs = [scores[n] for n in mix.split(",")]
        print(f"{mix:<40}{d.apgr(sum(vs), every):.3f} / {d.apgr(sum(map(z, vs)), every):.3f} / "
              f"{d.apgr(sum(rankdata(v) / d.n for v in vs), every):.3f}")
    print("\nGSM8K scores shifted by s sd (s chosen here: optimistic)")
    for name in ("ml-C1.0", "knn-100", "ml+emb0.5"):
        v = scores[name]
        print(f"{name:<40}" + "  ".join(f"{s:+g}: {d.apgr(v + s * v.std() * d.gsm, every):.3f}" for s in (-0.5, 0, 0.5, 1, 2)))
    print("\nknn-k over MiniLM with weights exp((sim - best sim) / t) (t=1 is nearly the plain vote)")
    knn_kernels(np, d)
    print("\nwhat would reach 0.70: blend (z of ml-C1.0 + knn-100) mixed with the true gap on one source only")
    blend = z(scores["ml-C1.0"]) + z(scores["knn-100"])
    blend /= blend.std()
    gap = d.s - d.w
    for label, mask in (("GSM8K", d.gsm == 1), ("MMLU", d.gsm == 0)):
        for t in (0.05, 0.1, 0.15, 0.2):
            v = blend.copy()
            v[mask] = (1 - t) * blend[mask] + t * gap[mask] / gap.std()
            report(np, d, f"{label} mixed {t:g}", v)


def knn_kernels(np, d) -> None:
    out: dict = {}
    for a, b in outer_folds(np, d):
        sims = d.vectors[b] @ d.vectors[a].T
        nearest = np.argpartition(-sims, 399, axis=1)[:, :400]
        top = np.take_along_axis(sims, nearest, axis=1)
        order = np.argsort(-top, axis=1)
        nearest, top = np.take_along_axis(nearest, order, 1), np.take_along_axis(top, order, 1)
        gap = (d.s - d.w)[a][nearest]
        for k in (100, 400):
            for t in (0.02, 0.05, 0.1, 1.0):
                weights = np.exp((top[:, :k] - top[:, :1]) / t)
                out.setdefault(f"k{k} t{t}", np.zeros(d.n))[b] = (weights * gap[:, :k]).sum(1) / weights.sum(1)
    print("  ".join(f"{name}: {d.apgr(v, np.arange(d.n)):.3f}" for name, v in out.items()))


def nested_repeat(np, d, repeat: int) -> tuple[dict, list, list]:
    """One repeat: outer folds seeded 1000 + repeat, inner folds seeded repeat (as bench/routellm_apgr.py)."""
    from routellm_apgr import ml_estimates
    from sklearn.model_selection import KFold

    scores: dict = {}
    chosen = []
    folds = outer_folds(np, d, repeat)
    for f, (tr, te) in enumerate(folds, 1):
        start = time.time()
        path = CACHE / f"apgr-ens-{1000 + repeat}-{f}.pkl"
        if path.exists():
            inner_c, outer_c = pickle.loads(path.read_bytes())
        else:
            inner = list(KFold(5, shuffle=True, random_state=repeat).split(tr))
            # ml's estimates as bench/routellm_apgr.py makes and caches them (same folds)
            ml_in, ml_out = ml_estimates(np, d.texts, d.good, d.costs, d.tiers, tr, te, inner, f"{1000 + repeat}-{f}")
            inner_c = {"ml": ml_in[:, -1] - ml_in[:, 0]}
            for itr, ite in inner:
                for n, v in components(np, d, tr[itr], tr[ite]).items():
                    inner_c.setdefault(n, np.zeros(len(tr)))[ite] = v
            outer_c = {"ml": ml_out[:, -1] - ml_out[:, 0], **components(np, d, tr, te)}
            path.write_bytes(pickle.dumps((inner_c, outer_c)))
        ref = {n: (v.mean(), v.std()) for n, v in inner_c.items()}
        best = None
        for name, parts in COMBOS.items():
            inner_s = sum((inner_c[n] - ref[n][0]) / ref[n][1] for n in parts)
            outer_s = sum((outer_c[n] - ref[n][0]) / ref[n][1] for n in parts)
            scores.setdefault(name, np.zeros(d.n))[te] = outer_s
            for shift in SHIFTS:
                a = d.apgr(inner_s + shift * inner_s.std() * d.gsm[tr], tr)
                if best is None or a > best[0]:
                    best = (a, name, shift, outer_s + shift * inner_s.std() * d.gsm[te])
        scores.setdefault("chosen on inner folds", np.zeros(d.n))[te] = best[3]
        chosen.append(f"{best[1]} shift {best[2]:+g} (inner {best[0]:.3f})")
        print(f"  repeat {repeat + 1} fold {f}/5 ({time.time() - start:.0f}s): {chosen[-1]}", file=sys.stderr, flush=True)
    return scores, chosen, folds


def nested(np, d, repeats: int) -> None:
    import statistics

    every = np.arange(d.n)
    mmlu, gsm = every[d.gsm == 0], every[d.gsm == 1]
    table: dict = {}
    chosen = []
    for repeat in range(repeats):
        scores, picks, folds = nested_repeat(np, d, repeat)
        chosen += picks
        for name, v in scores.items():
            row = table.setdefault(name, {"pooled": [], "folds": [], "MMLU": [], "GSM8K": []})
            row["pooled"].append(d.apgr(v, every))
            row["folds"] += [d.apgr(v[b], b) for _, b in folds]
            row["MMLU"].append(d.apgr(v[mmlu], mmlu))
            row["GSM8K"].append(d.apgr(v[gsm], gsm))
    print(f"nested 5-fold CV x {repeats} repeats: ensembles (means of z-scores) and a GSM8K shift chosen on inner "
          "folds; the fixed ensembles beside it. APGR pooled over a repeat's folds, mean ± sd over repeats")
    print(f"{'score':<24}{'APGR':>16}{'sd over folds':>15}{'MMLU':>8}{'GSM8K':>8}")
    for name, row in table.items():
        sd = statistics.stdev(row["pooled"]) if repeats > 1 else 0.0
        print(f"{name:<24}{statistics.mean(row['pooled']):>9.3f} ± {sd:.3f}{statistics.stdev(row['folds']):>15.3f}"
              f"{statistics.mean(row['MMLU']):>8.3f}{statistics.mean(row['GSM8K']):>8.3f}")
    print("chosen per outer fold: " + "; ".join(chosen))


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--screen", action="store_true")
    mode.add_argument("--nested", action="store_true")
    parser.add_argument("--repeats", type=int, default=1, help="with --nested: outer splits (seeds 1000, 1001, ...)")
    args = parser.parse_args()
    d = Data(np)
    if args.screen:
        screen(np, d)
    else:
        nested(np, d, args.repeats)


if __name__ == "__main__":
    main()
