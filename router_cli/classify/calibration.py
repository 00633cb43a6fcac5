"""Calibrating a trained router to a bound that holds on new data (``mmr train --confidence C``).

Cross-fitting: every training row is a calibration row. The rows are split into folds; each fold is
routed by a router fitted without it, so every row has an estimate from a router that never saw it
(knn's k and a blend's weight are then chosen on these same estimates: a small choice that leaves the
bound slightly optimistic, see docs/routing.md). Lambda, the price of quality, is set on those
out-of-fold estimates: lambdas are tried in a fixed order, from 0 (best quality) upwards, and each
must show a lower bootstrap bound (at confidence C) on its quality vs premium's of at least the
target; the last one before the first that fails is kept. The router that ships is then fitted on
every row (as in CV+ and cross-conformal prediction). Trying lambdas in an order fixed before
looking (fixed-sequence testing, as in Learn-Then-Test) is what makes choosing among many cost no
extra confidence: the chance that the kept lambda's quality on new prompts like the training ones
falls below the target is about 1 - C. The bound is about the quality kept on average over that
population; a small batch of new prompts has its own sampling noise on top.

Bounding the ratio sum(chosen) / sum(premium) and bounding the paired difference
sum(chosen - target * premium) are the same test (each resample's ratio reaches the target exactly
when its difference reaches 0); a normal bound on the difference kept the same lambdas on RouterBench.
"""

from __future__ import annotations

from typing import Any

BOOTSTRAP = 1000  # Poisson resamples of the calibration rows behind each lower bound
METHOD = "cross-fit"  # the training record's held_out.method: every row calibrates, predicted without it


def choose(q, c, lam: float):
    """Vectorised route(): per row, the tier with the best quality net of cost (ties to the cheaper)."""
    return (q - lam * c).argmax(axis=1)


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
                    confidence: float, *, grid: list[float] | None = None, seed: int = 0,
                    method: str = METHOD) -> tuple[float, dict]:
    """lambda by fixed-sequence testing on calibration rows (each predicted by a router fitted without it).

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
        "method": method,
    }
