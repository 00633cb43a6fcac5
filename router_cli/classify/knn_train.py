"""Training the knn router (``mmr train --router knn``; the blend is blend_train.py).

Embed every training prompt's request text, then on held-out folds pick k (from
:data:`K_GRID`) and lambda: the setting that saves the most while the held-out
quality keeps ``--target-quality`` of premium's. With ``--confidence``, lambda is
then set to a lower bound on the same out-of-fold estimates (calibration.py).
"""

from __future__ import annotations

import time
from typing import Any

from ..config import Config
from ..errors import UsageError
from .knn import neighbour_estimates, request_text
from .ml_train import calibrate, fold_splits, priced, targets

K_GRID = (25, 50, 100, 200, 400)


def embed_rows(rows, on_progress=None) -> Any:
    """The MiniLM vectors of the rows' request texts."""
    from .minilm import shared_model

    model = shared_model()
    texts = [request_text(r.prompt) for r in rows]
    if on_progress:
        on_progress(f"embedding {len(texts):,} prompts (about 15 ms each)")
    return model.encode(texts)


def knn_out_of_fold(np: Any, vectors: Any, quality: Any, costs: Any, splits: list, k: int) -> tuple[Any, Any]:
    oof_q, oof_c = np.zeros_like(quality, dtype=float), np.zeros_like(costs, dtype=float)
    for train_idx, test_idx in splits:
        oof_q[test_idx], oof_c[test_idx] = neighbour_estimates(
            np, vectors[train_idx], quality[train_idx], costs[train_idx], vectors[test_idx], k)
    return oof_q, oof_c


def _better(a: dict, b: dict | None) -> bool:
    """Reaching the target beats missing it; then more savings (or, both missing, more quality)."""
    if b is None:
        return True
    if a["reached_target"] != b["reached_target"]:
        return a["reached_target"]
    if a["reached_target"]:
        return a["savings_vs_premium"] > b["savings_vs_premium"]
    return a["quality_vs_premium"] > b["quality_vs_premium"]


def _check(rows, folds: int, target_quality: float) -> None:
    if not 0 < target_quality <= 1:
        raise UsageError(f"--target-quality must be in (0, 1], got {target_quality:g}")
    if len(rows) < max(20, folds * 2):
        raise UsageError(f"too few rows to train on ({len(rows)}); give at least {max(20, folds * 2)}")


def train_knn(rows, config: Config, *, target_quality: float = 0.95, folds: int = 5, seed: int = 0,
              data_sha256: str = "", on_progress=None, vectors: Any = None, k_grid=K_GRID,
              confidence: float | None = None) -> tuple[dict, dict]:
    """(header, arrays) of a knn model: k and lambda chosen on held-out folds of ``rows``."""
    import numpy as np

    _check(rows, folds, target_quality)
    config = priced(rows, config)
    tiers = config.tier_names
    _, quality, costs = targets(rows, config)
    vectors = embed_rows(rows, on_progress) if vectors is None else vectors
    if confidence:
        return _knn_to_bound(rows, config, target_quality=target_quality, folds=folds, seed=seed, data_sha256=data_sha256,
                             on_progress=on_progress, vectors=vectors, k_grid=k_grid, confidence=confidence)
    splits = fold_splits(len(rows), folds, seed)
    premium = tiers.index(config.baseline_tier)
    best = None
    for k in k_grid:
        oof_q, oof_c = knn_out_of_fold(np, vectors, quality, costs, splits, k)
        lam, held_out = calibrate(oof_q, oof_c, quality, costs, premium, target_quality)
        if on_progress:
            on_progress(f"k={k}: held-out quality {held_out['quality_vs_premium']:.1%}, saved {held_out['savings_vs_premium']:.1%}")
        if best is None or _better(held_out, best[2]):
            best = (k, lam, held_out)
    assert best is not None
    k, lam, held_out = best
    header = {"tiers": tiers, "k": k, "lambda": float(lam), "training": _record(rows, config, data_sha256, target_quality,
                                                                                 folds, held_out, confidence)}
    arrays = {"vectors": vectors.astype(np.float16), "quality": quality.astype(np.float32), "cost": costs.astype(np.float64)}
    return header, arrays


def _knn_to_bound(rows, config: Config, *, target_quality: float, folds: int, seed: int, data_sha256: str,
                  on_progress, vectors: Any, k_grid, confidence: float) -> tuple[dict, dict]:
    """train_knn with --confidence: k on the held-out folds, then lambda on the same rows' out-of-fold
    estimates to a lower bound at ``confidence`` (cross-fitted: calibration.py); the model keeps every row."""
    import numpy as np

    from .calibration import calibrate_bound

    header, arrays = train_knn(rows, config, target_quality=target_quality, folds=folds, seed=seed,
                               on_progress=on_progress, vectors=vectors, k_grid=k_grid)
    _, quality, costs = targets(rows, config)
    q, c = knn_out_of_fold(np, vectors, quality, costs, fold_splits(len(rows), folds, seed), header["k"])
    lam, held_out = calibrate_bound(q, c, quality, costs, config.tier_names.index(config.baseline_tier),
                                    target_quality, confidence, seed=seed)
    header["lambda"] = float(lam)
    header["training"] = _record(rows, config, data_sha256, target_quality, folds, held_out, confidence)
    return header, arrays


def _record(rows, config: Config, data_sha256: str, target_quality: float, folds: int, held_out: dict,
            confidence: float | None) -> dict:
    from ..version import __version__

    tiers = config.tier_names
    return {
        "rows": len(rows), "data_sha256": data_sha256, "labels": {t: sum(r.label == t for r in rows) for t in tiers},
        "premium": config.baseline_tier, "target_quality": target_quality, "confidence": confidence, "folds": folds,
        "held_out": held_out, "mmr_version": __version__, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
