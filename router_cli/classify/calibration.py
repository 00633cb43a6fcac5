"""Calibrating a trained router to a bound that holds on new data (``mmr train --confidence C``).

The training rows are split in two before anything is fitted: the router is fitted (and
its hyperparameters, such as knn's k, chosen on inner folds) on the fit part only, and
lambda, the price of quality, is set on the calibration part, which the fitted router has
never seen. Lambdas are tried in a fixed order, from 0 (best quality) upwards, and each must
show, on the calibration rows, a lower bootstrap bound (at confidence C) on its quality vs
premium's of at least the target; the last one before the first that fails is kept. Trying
them in an order fixed before looking (fixed-sequence testing, as in Learn-Then-Test) is what
makes choosing among many lambdas cost no extra confidence: the chance that the kept lambda's
quality on new data like these rows is below the target is at most about 1 - C, where choosing
the cheapest passing lambda anywhere in the grid (what the held-out folds did before) is
optimistic. The bound is about the quality the router keeps on average over prompts like the
training ones; a small batch of new prompts has its own sampling noise on top.
"""

from __future__ import annotations

from typing import Any

CALIBRATION_SHARE = 0.25  # of the training rows, held out to set lambda; the router is fitted on the rest
BOOTSTRAP = 1000  # Poisson resamples of the calibration rows behind each lower bound



def choose(q, c, lam: float):
    """Vectorised route(): per row, the tier with the best quality net of cost (ties to the cheaper)."""
    return (q - lam * c).argmax(axis=1)

def split(n: int, seed: int = 0, share: float = CALIBRATION_SHARE) -> tuple[Any, Any]:
    """(fit, calibration) row indices: a seeded shuffle, ``share`` of the rows (at least 10) to calibrate on."""
    import numpy as np

    order = np.random.default_rng(seed + 7919).permutation(n)
    n_cal = min(n - 10, max(10, int(round(n * share))))
    return np.sort(order[n_cal:]), np.sort(order[:n_cal])


def lambda_grid(pred_c: Any) -> list[float]:
    """0, then a geometric grid over the range where decisions change, ascending (the fixed testing order)."""
    import numpy as np

    typical = float(np.median(pred_c[pred_c > 0])) if (pred_c > 0).any() else 1.0
    return [0.0] + [float(x) / typical for x in np.logspace(-4, 4, 321)]


def lower_bounds(chosen: Any, premium_quality: Any, weights: Any, confidence: float) -> float:
    """The (1 - confidence) quantile of the resampled ratio sum(chosen) / sum(premium)."""
    import numpy as np

    boot = (weights @ chosen.astype(np.float64)) / np.maximum(weights @ premium_quality.astype(np.float64), 1e-12)
    return float(np.quantile(boot, 1.0 - confidence))


def calibrate_bound(pred_q: Any, pred_c: Any, quality: Any, costs: Any, premium: int, target: float,
                    confidence: float, *, grid: list[float] | None = None, seed: int = 0) -> tuple[float, dict]:
    """lambda by fixed-sequence testing on calibration rows (predictions of a router fitted without them).

    Returns lambda and the held-out record: the calibration rows' mean quality vs premium at it
    (expected), its lower bound at ``confidence`` (guaranteed), savings, and whether the bound
    reached ``target``. When even lambda 0 misses, lambda 0 is kept (the best quality it can do).
    """
    import numpy as np


    n = len(pred_q)
    rows = np.arange(n)
    weights = np.random.default_rng(seed).poisson(1.0, (BOOTSTRAP, n)).astype(np.float64)
    premium_q = quality[:, premium]
    premium_quality, premium_cost = premium_q.mean(), costs[:, premium].mean()
    kept = None
    for lam in grid if grid is not None else lambda_grid(pred_c):
        choice = choose(pred_q, pred_c, lam)
        chosen = quality[rows, choice]
        bound = lower_bounds(chosen, premium_q, weights, confidence) if premium_quality else 1.0
        if kept is not None and bound < target:
            break
        kept = (lam, chosen.mean(), costs[rows, choice].mean(), bound)
        if bound < target:  # lambda 0 already misses: keep it, nothing cheaper is tried
            break
    assert kept is not None
    lam, q, c, bound = kept
    ratio = q / premium_quality if premium_quality else 1.0
    return lam, {
        "quality_vs_premium": round(float(ratio), 4),
        "savings_vs_premium": round(float(1 - c / premium_cost), 4) if premium_cost else 0.0,
        "reached_target": bool(bound >= target),
        "confidence": confidence,
        "guaranteed_quality_vs_premium": round(float(bound), 4),
        "calibration_rows": n,
        "method": "split",
    }
