"""A trained router: for each tier, the probability that its answer is good enough.

Training (``mmr train``, needs the ``ml`` extra: scikit-learn) fits one
logistic regression per tier below the top on TF-IDF word 1-2-grams plus a few
shape features (length, lines, code-like characters). The target for tier *t*
is "tier t's answer was good enough": from ``outcomes`` (>= 0.5) when rows have
them, else from the label (every tier at or above the label is good enough).
A prompt goes to the cheapest tier whose probability clears that tier's
threshold, else to the top tier.

``--target-quality Q`` picks the thresholds on held-out folds of the training
file: the cheapest setting that keeps at least Q of the premium tier's quality.

The model is saved as plain JSON (vocabulary, idf weights, coefficients,
thresholds and the training record: data hash, label set, metrics), guarded by
a checksum. Loading it parses numbers; it never runs code, and prediction is
pure Python, so ``--classifier ml`` needs neither scikit-learn nor numpy.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter
from pathlib import Path

from ..config import Config
from ..errors import ConfigError, UsageError
from ..evaluate import row_costs
from .base import Decision

FORMAT = "mmr-ml-router"
FORMAT_VERSION = 1
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default.json"
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern
_CODE_CHARS = set("{}()[];=<>_`$#\\/|")


def shape_features(text: str) -> list[float]:
    """Length, line count and share of code-like characters, scaled to about [0, 1]."""
    n = len(text)
    return [
        math.log1p(n) / 8.0,
        math.log1p(text.count("\n")) / 4.0,
        min(1.0, 10.0 * sum(c in _CODE_CHARS for c in text) / n) if n else 0.0,
    ]


def _terms(text: str) -> list[str]:
    tokens = _TOKEN.findall(text.lower())
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


class MLModel:
    """A loaded model file."""

    def __init__(self, data: dict, source: str):
        self.source = source
        self.tiers: list[str] = data["tiers"]
        self.vocabulary: dict[str, int] = data["vectorizer"]["vocabulary"]
        self.idf: list[float] = data["vectorizer"]["idf"]
        self.models: dict[str, dict] = data["models"]
        self.thresholds: dict[str, float] = data["thresholds"]
        self.training: dict = data.get("training", {})

    @classmethod
    def load(cls, path: str | Path, tiers: list[str] | None = None) -> "MLModel":
        """Read and check a model file; a clear error for anything wrong with it."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: model file not found (train one with: mmr train FILE.jsonl -o {path})") from None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise ConfigError(f"{path}: not an mmr model file ({type(e).__name__})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{path}: not an mmr model file")
        if not isinstance(data.get("version"), int) or data["version"] > FORMAT_VERSION:
            raise ConfigError(f"{path}: made by a newer mmr (format {data.get('version')!r}); upgrade mmr or retrain")
        if data.get("checksum") != _checksum(data):
            raise ConfigError(f"{path}: the checksum does not match: the file is corrupt or was edited; retrain it")
        try:
            model = cls(data, str(path))
            _check_shapes(model)
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{path}: malformed model ({e})") from None
        if tiers is not None and model.tiers != tiers:
            raise ConfigError(
                f"{path}: trained for tiers {', '.join(model.tiers)}, but the config has {', '.join(tiers)}; "
                "retrain with mmr train"
            )
        return model

    def probabilities(self, text: str) -> dict[str, float]:
        """For each tier, the probability that its answer is good enough (the top tier: 1)."""
        counts = Counter(t for t in _terms(text) if t in self.vocabulary)
        weights = {self.vocabulary[t]: (1.0 + math.log(c)) * self.idf[self.vocabulary[t]] for t, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in weights.values())) or 1.0
        extra = shape_features(text)
        out = {}
        for tier in self.tiers[:-1]:
            m = self.models[tier]
            coef = m["coef"]
            z = m["intercept"] + sum(coef[i] * v / norm for i, v in weights.items())
            z += sum(c * f for c, f in zip(m["extra"], extra))
            out[tier] = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))
        out[self.tiers[-1]] = 1.0
        return out

    def route(self, text: str) -> tuple[str, dict[str, float]]:
        probs = self.probabilities(text)
        for tier in self.tiers[:-1]:
            if probs[tier] >= self.thresholds[tier]:
                return tier, probs
        return self.tiers[-1], probs


def _check_shapes(model: MLModel) -> None:
    size = len(model.idf)
    if any(not isinstance(i, int) or not 0 <= i < size for i in model.vocabulary.values()):
        raise ValueError("vocabulary index out of range")
    for tier in model.tiers[:-1]:
        m = model.models[tier]
        if len(m["coef"]) != size or len(m["extra"]) != 3 or not isinstance(m["intercept"], (int, float)):
            raise ValueError(f"coefficients of {tier} do not fit the vocabulary")
        if not 0 <= model.thresholds[tier] <= 1:
            raise ValueError(f"threshold of {tier} outside [0, 1]")


def _checksum(data: dict) -> str:
    body = {k: v for k, v in data.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class MLClassifier:
    """``--classifier ml``: the model named by ``classifier.ml_model`` or ``--ml-model``, else the shipped one."""

    name = "ml"

    def __init__(self, config: Config):
        self.tiers = config.tier_names
        self.model = MLModel.load(config.ml_model or DEFAULT_MODEL, self.tiers)
        if config.ml_thresholds:  # an experiment's variant or a replay tries other thresholds
            self.model.thresholds = {**self.model.thresholds, **config.ml_thresholds}

    def classify(self, prompt: str) -> Decision:
        start = time.perf_counter()
        tier, probs = self.model.route(prompt)
        cheapest = self.tiers[0]
        reason = ", ".join(f"P({t} good enough)={probs[t]:.2f}" for t in self.tiers[:-1])
        # Score: how likely the cheapest tier falls short, so higher means more capability needed.
        return Decision(tier, round(1.0 - probs[cheapest], 4), reason, self.name, (time.perf_counter() - start) * 1000,
                        thresholds=dict(self.model.thresholds))


# ------------------------------------------------------------------ training


def train(rows, config: Config, *, target_quality: float = 0.95, folds: int = 5, seed: int = 0,
          data_sha256: str = "", on_progress=None) -> dict:
    """Fit the per-tier models on ``rows`` (LabelledRow) and calibrate thresholds; return the model JSON."""
    try:
        import numpy as np
        from sklearn.model_selection import KFold
    except ImportError:
        raise UsageError("mmr train needs scikit-learn: pip install 'mmr-router[ml]'") from None
    tiers = config.tier_names
    if not 0 < target_quality <= 1:
        raise UsageError(f"--target-quality must be in (0, 1], got {target_quality:g}")
    if len(rows) < max(20, folds * 2):
        raise UsageError(f"too few rows to train on ({len(rows)}); give at least {max(20, folds * 2)}")
    texts = [r.prompt for r in rows]
    good = np.array([[_good(r, t, tiers) for t in tiers] for r in rows], dtype=float)
    quality = np.array([[(r.outcomes[t] if r.outcomes else float(_good(r, t, tiers))) for t in tiers] for r in rows])
    # Floats are fine here: they only rank threshold settings; nothing is billed from them.
    costs = np.array([[float(row_costs(r, config)[t]) for t in tiers] for r in rows])

    oof = np.ones((len(rows), len(tiers)))
    for k, (train_idx, test_idx) in enumerate(KFold(n_splits=folds, shuffle=True, random_state=seed).split(texts), 1):
        if on_progress:
            on_progress(f"fold {k}/{folds}")
        vectorizer, models = fit([texts[i] for i in train_idx], good[train_idx], tiers)
        oof[test_idx] = predict_proba(vectorizer, models, [texts[i] for i in test_idx], tiers)
    thresholds, held_out = _calibrate(oof, quality, costs, tiers, target_quality)
    if on_progress:
        on_progress("final fit on every row")
    vectorizer, models = fit(texts, good, tiers)
    return to_json(vectorizer, models, tiers, thresholds, {
        "rows": len(rows), "data_sha256": data_sha256, "label_set": sorted({r.label for r in rows}, key=tiers.index),
        "labels": {t: sum(r.label == t for r in rows) for t in tiers},
        "target_quality": target_quality, "folds": folds, "held_out": held_out,
    })


def fit(texts: list[str], good, tiers: list[str]):
    """Fit the vectorizer and one logistic regression per tier below the top (scikit-learn)."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, max_features=20000)
    x = hstack([vectorizer.fit_transform(texts), csr_matrix([shape_features(t) for t in texts])]).tocsr()
    models = {}
    for j, tier in enumerate(tiers[:-1]):
        y = good[:, j]
        if y.min() == y.max():  # one class only: a constant model
            models[tier] = ("constant", float(y[0]))
            continue
        lr = LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced")
        lr.fit(x, y)
        models[tier] = ("lr", lr)
    return vectorizer, models


def predict_proba(vectorizer, models, texts: list[str], tiers: list[str]):
    """scikit-learn's probabilities, for held-out folds (and to check the pure-Python ones)."""
    import numpy as np
    from scipy.sparse import csr_matrix, hstack

    x = hstack([vectorizer.transform(texts), csr_matrix([shape_features(t) for t in texts])]).tocsr()
    out = np.ones((len(texts), len(tiers)))
    for j, tier in enumerate(tiers[:-1]):
        kind, m = models[tier]
        out[:, j] = m if kind == "constant" else m.predict_proba(x)[:, list(m.classes_).index(1.0)]
    return out


def to_json(vectorizer, models, tiers: list[str], thresholds: dict[str, float], training: dict) -> dict:
    """The model file's content, checksummed."""
    vocab = {term: int(i) for term, i in vectorizer.vocabulary_.items()}
    idf = [float(v) for v in vectorizer.idf_]
    size = len(idf)
    out_models = {}
    for tier in tiers[:-1]:
        kind, m = models[tier]
        if kind == "constant":
            logit = 60.0 if m >= 1 else -60.0
            out_models[tier] = {"coef": [0.0] * size, "extra": [0.0, 0.0, 0.0], "intercept": logit}
        else:
            coef = m.coef_[0]
            out_models[tier] = {"coef": [round(float(c), 6) for c in coef[:size]],
                                "extra": [round(float(c), 6) for c in coef[size:]], "intercept": float(m.intercept_[0])}
    from .. import __version__

    data = {
        "format": FORMAT, "version": FORMAT_VERSION, "tiers": tiers,
        "vectorizer": {"kind": "tfidf-words-1-2", "vocabulary": vocab, "idf": idf},
        "models": out_models, "thresholds": {t: round(float(v), 4) for t, v in thresholds.items()},
        "training": {**training, "mmr_version": __version__, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    data["checksum"] = _checksum(data)
    return data


def _good(row, tier: str, tiers: list[str]) -> int:
    if row.outcomes is not None:
        return int(row.outcomes[tier] >= 0.5)
    return int(tiers.index(tier) >= tiers.index(row.label))


def _calibrate(probs, quality, costs, tiers: list[str], target: float) -> tuple[dict[str, float], dict]:
    """The cheapest thresholds (on a 0.05 grid, per tier below the top) whose held-out
    quality is at least ``target`` of always-premium; the best quality if none is."""
    import itertools

    import numpy as np

    grid = [round(0.05 * i, 2) for i in range(1, 20)]
    n = len(probs)
    premium_quality = quality[:, -1].mean()
    premium_cost = costs[:, -1].mean()
    best = None
    for combo in itertools.product(grid, repeat=len(tiers) - 1):
        choice = np.full(n, len(tiers) - 1)
        for j in reversed(range(len(tiers) - 1)):  # the cheapest passing tier wins
            choice = np.where(probs[:, j] >= combo[j], j, choice)
        q = quality[np.arange(n), choice].mean()
        c = costs[np.arange(n), choice].mean()
        ratio = q / premium_quality if premium_quality else 1.0
        key = (ratio >= target, -c if ratio >= target else ratio)
        if best is None or key > best[0]:
            best = (key, combo, ratio, c)
    assert best is not None
    _, combo, ratio, c = best
    held_out = {
        "quality_vs_premium": round(float(ratio), 4),
        "savings_vs_premium": round(float(1 - c / premium_cost), 4) if premium_cost else 0.0,
        "reached_target": bool(ratio >= target),
    }
    return dict(zip(tiers[:-1], combo)), held_out
