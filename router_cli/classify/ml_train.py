"""Training the ml classifier's model (``mmr train``; needs the ``ml`` extra: scikit-learn).

For every tier, a logistic regression for "this tier's answer is good enough" and
a ridge regression for the log of its cost, on TF-IDF word 1-2-grams plus the
shape features of ml.py. The quality target comes from ``outcomes`` (>= 0.5) when
rows have them, else from the label (every tier at or above the label is good
enough); the cost target from the row's ``costs``, else from the config's prices
at a token estimate. ``--target-quality Q`` picks ``lambda`` on held-out folds of
the training file: the cheapest setting that keeps at least Q of the baseline
(premium) tier's quality (with ``--confidence C``, whose lower bound at C does:
calibration.py). One parameter, whatever the number of tiers.
"""

from __future__ import annotations

import time

from ..config import Config
from ..errors import UsageError
from .ml import COST_SCALE, FORMAT, FORMAT_VERSION, MAX_TERMS, N_SHAPE, VECTORIZER, checksum, shape_features


def priced(rows, config: Config) -> Config:
    """``config`` with every model priced when some row has no costs of its own: such rows are
    priced at the tiers' models' prices (a model with none is a ConfigError)."""
    if all(r.costs is not None for r in rows):
        return config
    from ..prices import resolve_prices

    return resolve_prices(config)


def train(rows, config: Config, *, target_quality: float = 0.95, folds: int = 5, seed: int = 0,
          data_sha256: str = "", on_progress=None, confidence: float | None = None) -> dict:
    """Fit the per-tier models on ``rows`` (LabelledRow) and calibrate lambda; return the model JSON."""
    return train_with_estimates(rows, config, target_quality=target_quality, folds=folds, seed=seed,
                                data_sha256=data_sha256, on_progress=on_progress, confidence=confidence)[0]


def train_with_estimates(rows, config: Config, *, target_quality: float = 0.95, folds: int = 5, seed: int = 0,
                         data_sha256: str = "", on_progress=None, confidence: float | None = None) -> tuple[dict, tuple]:
    """:func:`train`, and the out-of-fold (quality, cost) estimates it calibrated on (a blend reuses them)."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise UsageError("mmr train needs scikit-learn: pip install -e '.[ml]' (in the mmr checkout, as the README says)") from None
    config = priced(rows, config)
    tiers = config.tier_names
    if not 0 < target_quality <= 1:
        raise UsageError(f"--target-quality must be in (0, 1], got {target_quality:g}")
    if len(rows) < max(20, folds * 2):
        raise UsageError(f"too few rows to train on ({len(rows)}); give at least {max(20, folds * 2)}")
    texts = [r.prompt for r in rows]
    good, quality, costs = targets(rows, config)
    premium = tiers.index(config.baseline_tier)
    oof_q, oof_c = out_of_fold(rows, config, folds=folds, seed=seed, on_progress=on_progress)
    if confidence:  # cross-fitted: every row calibrates, predicted by a model fitted without it (calibration.py)
        from .calibration import calibrate_bound

        lam, held_out = calibrate_bound(oof_q, oof_c, quality, costs, premium, target_quality, confidence, seed=seed)
    else:
        lam, held_out = calibrate(oof_q, oof_c, quality, costs, premium, target_quality)
    if on_progress:
        on_progress("final fit on every row")
    fitted = fit(texts, good, costs, tiers)
    return to_json(fitted, tiers, lam, {
        "rows": len(rows), "data_sha256": data_sha256, "label_set": sorted({r.label for r in rows}, key=tiers.index),
        "labels": {t: sum(r.label == t for r in rows) for t in tiers}, "premium": config.baseline_tier,
        "target_quality": target_quality, "confidence": confidence, "folds": folds, "held_out": held_out,
    }), (oof_q, oof_c)


def targets(rows, config: Config):
    """Per row and tier: good enough (0/1, what the models learn), quality (what routing is scored by)
    and cost in USD (floats: they only rank settings and fit estimates; nothing is billed from them)."""
    import numpy as np

    from ..labelled import row_costs

    tiers = config.tier_names
    good = np.array([[_good(r, t, tiers) for t in tiers] for r in rows], dtype=float)
    quality = np.array([[(r.outcomes[t] if r.outcomes else float(_good(r, t, tiers))) for t in tiers] for r in rows])
    costs = np.array([[float(row_costs(r, config)[t]) for t in tiers] for r in rows])
    return good, quality, costs


def fold_splits(n: int, folds: int, seed: int) -> list:
    """The (train, test) index arrays every router's held-out predictions use, so blends line up."""
    import numpy as np
    from sklearn.model_selection import KFold

    return list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(np.arange(n)))


def out_of_fold(rows, config: Config, *, folds: int = 5, seed: int = 0, on_progress=None):
    """Held-out (quality, cost) predictions of the ml model for every row, fold by fold."""
    import numpy as np

    tiers = config.tier_names
    texts = [r.prompt for r in rows]
    good, _, costs = targets(rows, config)
    oof_q, oof_c = np.ones((len(rows), len(tiers))), np.ones((len(rows), len(tiers)))
    for k, (train_idx, test_idx) in enumerate(fold_splits(len(rows), folds, seed), 1):
        if on_progress:
            on_progress(f"fold {k}/{folds}")
        fitted = fit([texts[i] for i in train_idx], good[train_idx], costs[train_idx], tiers)
        oof_q[test_idx], oof_c[test_idx] = predict(fitted, [texts[i] for i in test_idx])
    return oof_q, oof_c


class Fitted:
    """What fit() returns: the vectorizer and, per tier, the quality and cost models (scikit-learn)."""

    def __init__(self, vectorizer, quality: dict, cost: dict, tiers: list[str]):
        self.vectorizer, self.quality, self.cost, self.tiers = vectorizer, quality, cost, tiers

    def matrix(self, texts: list[str]):
        from scipy.sparse import csr_matrix, hstack

        return hstack([self.vectorizer.transform(texts), csr_matrix([shape_features(t) for t in texts])]).tocsr()


def fit(texts: list[str], good, costs, tiers: list[str]) -> Fitted:
    """Fit the vectorizer, then per tier a logistic regression (good enough?) and a ridge (log cost)."""
    import numpy as np
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge

    vectorizer = TfidfVectorizer(ngram_range=tuple(VECTORIZER["ngram"]), sublinear_tf=True, min_df=2, max_features=MAX_TERMS)
    try:
        words = vectorizer.fit_transform(texts)
    except ValueError:  # scikit-learn: "empty vocabulary" or "no terms remain"
        raise UsageError(
            "nothing to learn from: no word of two or more letters or digits occurs in two or more prompts "
            "(are they only punctuation?)"
        ) from None
    x = hstack([words, csr_matrix([shape_features(t) for t in texts])]).tocsr()
    quality, cost = {}, {}
    for j, tier in enumerate(tiers):
        y = good[:, j]
        if y.min() == y.max():  # one class only: a constant model
            quality[tier] = ("constant", float(y[0]))
        else:
            quality[tier] = ("lr", LogisticRegression(C=1.0, max_iter=3000).fit(x, y))
        cost[tier] = Ridge(alpha=1.0).fit(x, np.log1p(costs[:, j] * COST_SCALE))
    return Fitted(vectorizer, quality, cost, tiers)


def predict(fitted: Fitted, texts: list[str]):
    """scikit-learn's predictions (quality, cost), for held-out folds and to check the pure-Python ones."""
    import numpy as np

    x = fitted.matrix(texts)
    q = np.ones((len(texts), len(fitted.tiers)))
    c = np.ones((len(texts), len(fitted.tiers)))
    for j, tier in enumerate(fitted.tiers):
        kind, m = fitted.quality[tier]
        q[:, j] = m if kind == "constant" else m.predict_proba(x)[:, list(m.classes_).index(1.0)]
        c[:, j] = np.expm1(np.clip(fitted.cost[tier].predict(x), 0.0, 60.0)) / COST_SCALE
    return q, c


def to_json(fitted: Fitted, tiers: list[str], lam: float, training: dict) -> dict:
    """The model file's content, checksummed."""
    v = fitted.vectorizer
    vectorizer = {**VECTORIZER, "vocabulary": {term: int(i) for term, i in v.vocabulary_.items()},
                  "idf": [float(x) for x in v.idf_]}
    size = len(v.idf_)
    quality, cost = {}, {}
    for tier in tiers:
        kind, m = fitted.quality[tier]
        if kind == "constant":
            quality[tier] = {"coef": [0.0] * (size + N_SHAPE), "intercept": 60.0 if m >= 1 else -60.0}
        else:
            quality[tier] = {"coef": [round(float(c), 6) for c in m.coef_[0]], "intercept": float(m.intercept_[0])}
        r = fitted.cost[tier]
        cost[tier] = {"coef": [round(float(c), 6) for c in r.coef_], "intercept": float(r.intercept_)}
    from ..version import __version__

    data = {
        "format": FORMAT, "version": FORMAT_VERSION, "tiers": tiers, "vectorizer": vectorizer,
        "quality": quality, "cost": cost, "lambda": float(lam),
        "training": {**training, "mmr_version": __version__, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    data["checksum"] = checksum(data)
    return data


def _good(row, tier: str, tiers: list[str]) -> int:
    if row.outcomes is not None:
        return int(row.outcomes[tier] >= 0.5)
    return int(tiers.index(tier) >= tiers.index(row.label))


BOOTSTRAP = 400  # resamples behind a lower bound: its 5 % quantile moves by well under 0.1 point between seeds


def calibrate(pred_q, pred_c, quality, costs, premium: int, target: float, *, confidence: float | None = None,
              seed: int = 0) -> tuple[float, dict]:
    """The cheapest lambda whose held-out quality is at least ``target`` of always-premium's;
    the best quality if none is. A geometric grid over the range where decisions change.

    With ``confidence`` (e.g. 0.9) the quality that must reach ``target`` is not the held-out
    mean but the lower bound of its bootstrap interval at that confidence (held-out rows
    resampled with replacement): new data of the same kind then falls short of the target in
    about 1 - confidence of cases, rather than in half of them.
    """
    import numpy as np

    from .calibration import choose

    n = len(pred_q)
    rows = np.arange(n)
    premium_quality, premium_cost = quality[:, premium].mean(), costs[:, premium].mean()
    # Poisson(1) weights per row and resample: the bootstrap without materialising the resamples.
    weights = np.random.default_rng(seed).poisson(1.0, (BOOTSTRAP, n)).astype(np.float32) if confidence else None
    boot_premium = weights @ quality[:, premium].astype(np.float32) if weights is not None else None
    # lambda * cost trades against probabilities: from a tiny fraction to many times 1 / typical cost.
    typical = float(np.median(pred_c[pred_c > 0])) if (pred_c > 0).any() else 1.0
    grid = [0.0] + [float(x) / typical for x in np.logspace(-4, 4, 321)]
    best = None
    for lam in grid:
        choice = choose(pred_q, pred_c, lam)
        chosen = quality[rows, choice]
        q = chosen.mean()
        c = costs[rows, choice].mean()
        ratio = q / premium_quality if premium_quality else 1.0
        bound = ratio
        if weights is not None and boot_premium is not None and premium_quality:
            ratios = (weights @ chosen.astype(np.float32)) / np.maximum(boot_premium, 1e-9)
            bound = float(np.quantile(ratios, 1.0 - float(confidence or 0)))
        key = (bool(bound >= target), -c if bound >= target else bound)
        if best is None or key > best[0]:
            best = (key, lam, ratio, c, bound)
    assert best is not None
    _, lam, ratio, c, bound = best
    held_out = {
        "quality_vs_premium": round(float(ratio), 4),
        "savings_vs_premium": round(float(1 - c / premium_cost), 4) if premium_cost else 0.0,
        "reached_target": bool(bound >= target),
    }
    if confidence:
        held_out["confidence"] = confidence
        held_out["guaranteed_quality_vs_premium"] = round(float(bound), 4)
    return lam, held_out
