"""Training the ``blend`` router (``mmr train --router blend --parts A,B``): two of ml, knn and rules.

Each part gives, per tier, an estimate of the answer's quality (ml and knn: the probability it is good
enough; rules: 1 from the tier the rules pick upwards, 0 below) and, ml and knn, of its cost. The blend
is ``w * A + (1 - w) * B`` for quality, and the same for cost over the parts that estimate one. The
weight ``w`` (from :data:`WEIGHTS`) is chosen on held-out folds of the training rows, as knn's k is:
the weight whose held-out routing keeps ``--target-quality`` of premium's quality and saves the most.
Without ``--confidence``, lambda is chosen on the same folds; with it, lambda is set to a lower bound on
the blend's out-of-fold estimates at that weight (cross-fitted: calibration.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import UsageError
from .knn_train import _better, _check, _record, embed_rows, knn_out_of_fold, train_knn
from .ml_train import calibrate, fold_splits, priced, targets

PARTS = ("ml", "knn", "rules")
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def parse_parts(text: str) -> list[str]:
    """``ml,knn`` -> ["ml", "knn"]: two different parts among :data:`PARTS`, at least one of ml and knn."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) != 2 or len(set(parts)) != 2 or not set(parts) <= set(PARTS):
        raise UsageError(f"--parts: expected two different routers of {', '.join(PARTS)} (e.g. ml,knn), got {text!r}")
    if "rules" in parts and not {"ml", "knn"} & set(parts):
        raise UsageError("--parts: one part must be ml or knn (rules estimate no cost)")
    return parts


def rules_estimates(np: Any, prompts: list[str], config: Config) -> Any:
    """Per prompt and tier: 1.0 from the tier the rules pick upwards, else 0.0."""
    from .rules import RulesClassifier

    tiers = config.tier_names
    rules = RulesClassifier(config)
    picked = [tiers.index(rules.classify(p).tier) for p in prompts]
    return (np.arange(len(tiers))[None, :] >= np.array(picked)[:, None]).astype(float)


def combine(np: Any, estimates: list[tuple[Any, Any]], w: float) -> tuple[Any, Any]:
    """The blend of two parts' (quality, cost); a part's cost is None when it estimates none."""
    (qa, ca), (qb, cb) = estimates
    quality = w * qa + (1 - w) * qb
    if ca is None or cb is None:
        return quality, ca if cb is None else cb
    return quality, w * ca + (1 - w) * cb


def _fit_parts(rows, config: Config, parts: list[str], vectors: Any, *, target_quality: float, folds: int, seed: int,
               data_sha256: str, on_progress) -> tuple[dict, list]:
    """Each part trained on ``rows`` ({name: model data}) and its held-out estimates on the same folds."""
    import numpy as np

    from .ml_train import train_with_estimates

    _, quality, costs = targets(rows, config)
    models: dict[str, Any] = {}
    held = []
    for part in parts:
        if on_progress:
            on_progress(f"{part} part")
        if part == "ml":
            models["ml"], estimates = train_with_estimates(rows, config, target_quality=target_quality, folds=folds,
                                                           seed=seed, data_sha256=data_sha256, on_progress=on_progress)
            held.append(estimates)
        elif part == "knn":
            models["knn"] = train_knn(rows, config, target_quality=target_quality, folds=folds, seed=seed,
                                      data_sha256=data_sha256, on_progress=on_progress, vectors=vectors)
            k = models["knn"][0]["k"]
            held.append(knn_out_of_fold(np, vectors, quality, costs, fold_splits(len(rows), folds, seed), k))
        else:
            held.append((rules_estimates(np, [r.prompt for r in rows], config), None))
    return models, held


def train_blend(rows, config: Config, output: str, *, parts: list[str] | None = None, target_quality: float = 0.95,
                folds: int = 5, seed: int = 0, data_sha256: str = "", on_progress=None,
                confidence: float | None = None) -> dict:
    """Train the two parts on ``rows``, write their files next to ``output`` and return the blend file's JSON."""
    import numpy as np

    from .blend import FORMAT, FORMAT_VERSION, blend_checksum
    from .calibration import calibrate_bound
    from .knn import save

    parts = parts or ["ml", "knn"]
    _check(rows, folds, target_quality)
    config = priced(rows, config)
    tiers = config.tier_names
    premium = tiers.index(config.baseline_tier)
    _, quality, costs = targets(rows, config)
    vectors = embed_rows(rows, on_progress) if "knn" in parts else np.zeros((len(rows), 384), dtype=np.float32)
    models, held = _fit_parts(rows, config, parts, vectors, target_quality=target_quality, folds=folds,
                              seed=seed, data_sha256=data_sha256, on_progress=on_progress)
    best = None
    for w in WEIGHTS:
        q, c = combine(np, held, w)
        lam, held_out = calibrate(q, c, quality, costs, premium, target_quality)
        if on_progress:
            on_progress(f"weight {w:g} on {parts[0]}: held-out quality {held_out['quality_vs_premium']:.1%}, "
                        f"saved {held_out['savings_vs_premium']:.1%}")
        if best is None or _better(held_out, best[2]):
            best = (w, lam, held_out)
    assert best is not None
    w, lam, held_out = best
    if confidence:
        q, c = combine(np, held, w)
        lam, held_out = calibrate_bound(q, c, quality, costs, premium, target_quality, confidence, seed=seed)
    entries = []
    base = Path(output)
    for part in parts:
        if part == "rules":
            from .rules import rules_sha256

            entries.append({"router": "rules", "sha256": rules_sha256(config)})
            continue
        path = base.with_suffix(f".{part}.json" if part == "ml" else f".{part}.npz")
        if part == "ml":
            path.write_text(json.dumps(models["ml"], separators=(",", ":")) + "\n")
        else:
            save(path, *models["knn"])
        entries.append({"router": part, "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    data = {"format": FORMAT, "version": FORMAT_VERSION, "tiers": tiers, "parts": entries,
            "weights": [w, 1 - w], "lambda": float(lam),
            "training": _record(rows, config, data_sha256, target_quality, folds, held_out, confidence)}
    data["checksum"] = blend_checksum(data)
    return data
