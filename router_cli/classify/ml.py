"""A trained router: for each tier, how good its answer will be and what it will cost.

Training (``mmr train``, needs the ``ml`` extra: scikit-learn) fits, for every
tier, a logistic regression for "this tier's answer is good enough" and a
ridge regression for the log of its cost, on TF-IDF word 1-2-grams plus a
few shape features of the whole prompt (length, lines, code-like characters,
digits, words) and, when examples or context come before it, of the request
itself, the text after the last blank line (its length and lines, how long its
lines and words are, how many answer options it lists and how long they are,
the length of the question, digits, a question mark). The
quality target comes from ``outcomes`` (>= 0.5) when rows have them, else from the label
(every tier at or above the label is good enough); the cost target from the
row's ``costs``, else from the config's prices at a token estimate.

A prompt goes to the tier with the best expected quality net of cost,
``P(good) - lambda * cost`` (ties to the cheaper tier): a cost-aware router
that sends long, expensive prompts down sooner and spends where a tier is
likely to make the difference. ``--target-quality Q`` picks ``lambda`` on
held-out folds of the training file: the cheapest setting that keeps at least
Q of the baseline (premium) tier's quality. One parameter, whatever the number
of tiers.

The model is saved as plain JSON (vocabulary, idf weights, coefficients,
lambda and the training record: data hash, label set, metrics), guarded by a
checksum and checked field by field when loaded: loading parses numbers, it
never runs code, and prediction is pure Python, so ``--classifier ml`` needs
neither scikit-learn nor numpy.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
import re
import statistics
import time
from collections import Counter
from pathlib import Path

from ..config import Config
from ..errors import ConfigError, UsageError
from ..labelled import row_costs
from .base import Decision

FORMAT = "mmr-ml-router"
FORMAT_VERSION = 3
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default.json"
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern
_CODE_CHARS = "{}()[];=<>_`$#\\/|"
_OPTION = re.compile(r"\s*(?:[A-Ha-h]|[1-8])[).:]\s")  # "A) ...", "b. ...", "3: ..."
# Word 1-2-grams: character n-grams scored no better in cross-validation and cost 10x the time per prompt.
VECTORIZER = {"analyzer": "word", "ngram": [1, 2]}
N_SHAPE = 15
# No weight, idf or intercept of a model we train comes near this; a file that has one was not made by mmr train.
_LIMIT = 1e6
# lambda is quality per USD: with calls costing a millionth of a dollar it is legitimately large.
_LAMBDA_LIMIT = 1e15
_COST_SCALE = 1e6  # cost models predict log1p(USD * 1e6): micro-dollars, and free tiers are fine


def shape_features(text: str) -> list[float]:
    """Length, line count, share of code-like characters and of digits, word count; then
    :func:`request_features`; each about [0, 1]."""
    n = len(text)
    return [
        math.log1p(n) / 8.0,
        math.log1p(text.count("\n")) / 4.0,
        min(1.0, 10.0 * sum(map(text.count, _CODE_CHARS)) / n) if n else 0.0,
        min(1.0, 5.0 * sum(map(text.count, "0123456789")) / n) if n else 0.0,
        math.log1p(len(text.split())) / 7.0,
    ] + request_features(text)


N_REQUEST = 10


def request_features(text: str) -> list[float]:
    """Shape of the request when examples or context come before it (the text after the last
    blank line): length, lines, mean and median line length, mean word length, number of answer
    options and their mean length, length of the question (its first line that is not an option),
    share of digits, a question mark; each about [0, 1]. All zero for a prompt of one paragraph,
    which the whole-prompt features already describe.

    Few-shot prompts repeat the same examples before every question, so whole-prompt features
    barely vary within a task; these do.
    """
    _, blank, request = text.strip().rpartition("\n\n")
    if not blank:
        return [0.0] * N_REQUEST
    lines = [line for line in request.split("\n") if line.strip()]
    lengths = [len(line) for line in lines]
    words = request.split()
    options = [length for line, length in zip(lines, lengths) if _OPTION.match(line)]
    question = next((length for line, length in zip(lines, lengths) if not _OPTION.match(line)), 0)
    n = len(request)
    return [
        math.log1p(n) / 8.0,
        math.log1p(len(lines)) / 4.0,
        math.log1p(statistics.fmean(lengths)) / 6.0 if lines else 0.0,
        math.log1p(statistics.median(lengths)) / 6.0 if lines else 0.0,
        statistics.fmean(map(len, words)) / 10.0 if words else 0.0,
        math.log1p(len(options)) / 2.0,
        math.log1p(statistics.fmean(options)) / 5.0 if options else 0.0,
        math.log1p(question) / 7.0,
        min(1.0, 5.0 * sum(map(request.count, "0123456789")) / n) if n else 0.0,
        1.0 if "?" in request else 0.0,
    ]


def terms(text: str) -> list[str]:
    """The word 1-2-grams scikit-learn's TfidfVectorizer extracts (lowercased), so weights line up."""
    tokens = _TOKEN.findall(text.lower())
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


class MLModel:
    """A loaded model file (checked by :meth:`load`)."""

    def __init__(self, data: dict, source: str):
        self.source = source
        self.tiers: list[str] = data["tiers"]
        self.vocabulary: dict[str, int] = data["vectorizer"]["vocabulary"]
        self.idf: list[float] = data["vectorizer"]["idf"]
        self.lam: float = data["lambda"]
        self.training: dict = data.get("training", {})
        # Quality models first, then cost models, in tier order.
        self._models = [(m["coef"], float(m["intercept"])) for m in
                        [data["quality"][t] for t in self.tiers] + [data["cost"][t] for t in self.tiers]]

    @classmethod
    def load(cls, path: str | Path, tiers: list[str] | None = None) -> "MLModel":
        """Read and check a model file; a clear error for anything wrong with it."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
        except FileNotFoundError:
            raise ConfigError(f"{path}: model file not found (train one with: mmr train FILE.jsonl -o {path})") from None
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ConfigError(f"{path}: not an mmr model file ({type(e).__name__})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{path}: not an mmr model file")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ConfigError(f"{path}: not an mmr model file (version {version!r})")
        if version > FORMAT_VERSION:
            raise ConfigError(f"{path}: made by a newer mmr (format {version}); upgrade mmr or retrain")
        if version < FORMAT_VERSION:
            raise ConfigError(f"{path}: made by an older mmr (format {version}); retrain it with mmr train")
        if data.get("checksum") != _checksum(data):
            raise ConfigError(f"{path}: the checksum does not match: the file is corrupt or was edited; retrain it")
        try:
            check(data)
        except ValueError as e:
            raise ConfigError(f"{path}: malformed model: {e}") from None
        model = cls(data, str(path))
        if tiers is not None and model.tiers != tiers:
            raise ConfigError(
                f"{path}: trained for tiers {', '.join(model.tiers)}, but the config has {', '.join(tiers)}; "
                "retrain with mmr train"
            )
        return model

    def features(self, text: str) -> dict[int, float]:
        """The sparse feature vector: TF-IDF (L2-normalised), then the shape features."""
        vocabulary, idf = self.vocabulary, self.idf
        counts = Counter(t for t in terms(text) if t in vocabulary)
        weights = {vocabulary[t]: (1.0 + math.log(c)) * idf[vocabulary[t]] for t, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in weights.values())) or 1.0
        out = {i: v / norm for i, v in weights.items()}
        offset = len(idf)
        out.update((offset + i, v) for i, v in enumerate(shape_features(text)) if v)
        return out

    def predict(self, text: str) -> tuple[dict[str, float], dict[str, float]]:
        """For each tier: the probability that its answer is good enough, and its expected cost in USD."""
        x = self.features(text)
        index, values = list(x), list(x.values())
        if len(index) == 1:  # itemgetter of one index returns the item, not a tuple
            index.append(0)
            values.append(0.0)
        pick = operator.itemgetter(*index) if index else (lambda coef: ())
        z = [intercept + sum(map(operator.mul, pick(coef), values)) for coef, intercept in self._models]
        n = len(self.tiers)
        quality = {t: 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z[j])))) for j, t in enumerate(self.tiers)}
        cost = {t: math.expm1(max(0.0, min(60.0, z[n + j]))) / _COST_SCALE for j, t in enumerate(self.tiers)}
        return quality, cost

    def route(self, text: str) -> tuple[str, dict[str, float], dict[str, float]]:
        """The tier with the best quality net of cost, and the predictions behind it."""
        quality, cost = self.predict(text)
        tier = max(self.tiers, key=lambda t: (quality[t] - self.lam * cost[t], -self.tiers.index(t)))
        return tier, quality, cost


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number a model may hold")


def _finite(value, where: str, limit: float = _LIMIT) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: expected a number, got {type(value).__name__}")
    try:
        f = float(value)
    except OverflowError:
        raise ValueError(f"{where}: number out of range") from None
    if not math.isfinite(f) or abs(f) > limit:
        raise ValueError(f"{where}: number out of range")
    return f


def _expect(value, kind: type, where: str):
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{where}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def check(data: dict) -> None:
    """Every field a prediction reads, with its type, length and range; ValueError naming the first bad one."""
    tiers = _expect(data.get("tiers"), list, "tiers")
    if len(tiers) < 2 or not all(isinstance(t, str) and t for t in tiers) or len(set(tiers)) != len(tiers):
        raise ValueError("tiers: expected two or more distinct tier names")
    vectorizer = _expect(data.get("vectorizer"), dict, "vectorizer")
    if vectorizer.get("analyzer") != VECTORIZER["analyzer"] or vectorizer.get("ngram") != VECTORIZER["ngram"]:
        raise ValueError("vectorizer: unknown analyzer or n-gram range")
    vocabulary = _expect(vectorizer.get("vocabulary"), dict, "vectorizer.vocabulary")
    idf = _expect(vectorizer.get("idf"), list, "vectorizer.idf")
    for i, v in enumerate(idf):
        _finite(v, f"vectorizer.idf[{i}]")
    seen = set()
    for term, i in vocabulary.items():
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(idf) or i in seen:
            raise ValueError(f"vectorizer.vocabulary[{term!r}]: index out of range or repeated")
        seen.add(i)
    size = len(idf) + N_SHAPE
    for part in ("quality", "cost"):
        models = _expect(data.get(part), dict, part)
        for tier in tiers:
            m = _expect(models.get(tier), dict, f"{part}.{tier}")
            coef = _expect(m.get("coef"), list, f"{part}.{tier}.coef")
            if len(coef) != size:
                raise ValueError(f"{part}.{tier}.coef: {len(coef)} weights for {size} features")
            for i, c in enumerate(coef):
                _finite(c, f"{part}.{tier}.coef[{i}]")
            _finite(m.get("intercept"), f"{part}.{tier}.intercept")
    if _finite(data.get("lambda"), "lambda", _LAMBDA_LIMIT) < 0:
        raise ValueError("lambda: must be >= 0")


def _checksum(data: dict) -> str:
    body = {k: v for k, v in data.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class MLClassifier:
    """``--classifier ml``: the model named by ``classifier.ml_model`` or ``--ml-model``, else the shipped one."""

    name = "ml"

    def __init__(self, config: Config):
        self.tiers = config.tier_names
        self.model = MLModel.load(config.ml_model or DEFAULT_MODEL, self.tiers)
        # An experiment's variant or a replay may route by thresholds instead of the model's own lambda.
        self.thresholds = dict(config.ml_thresholds or {})

    def classify(self, prompt: str) -> Decision:
        start = time.perf_counter()
        tier, quality, cost = self.model.route(prompt)
        if self.thresholds:
            # Threshold routing (an experiment's variant, a replay): the cheapest tier whose chance of a good
            # enough answer reaches its threshold; tiers without one are passed over.
            tier = next((t for t in self.tiers[:-1] if t in self.thresholds and quality[t] >= self.thresholds[t]), self.tiers[-1])
        reason = ", ".join(f"{t}: P(good enough)={quality[t]:.2f} cost~${cost[t]:.2g}" for t in self.tiers)
        return Decision(tier, score(quality, self.tiers), reason, self.name, (time.perf_counter() - start) * 1000,
                        thresholds=dict(self.thresholds) if self.thresholds else {"lambda": self.model.lam})


def score(quality: dict[str, float], tiers: list[str]) -> float:
    """How much the top tier is expected to add over the cheapest, mapped to [0, 1]: higher needs more capability."""
    return round((1.0 + quality[tiers[-1]] - quality[tiers[0]]) / 2.0, 4)


# ------------------------------------------------------------------ training


def train(rows, config: Config, *, target_quality: float = 0.95, folds: int = 5, seed: int = 0,
          data_sha256: str = "", on_progress=None) -> dict:
    """Fit the per-tier models on ``rows`` (LabelledRow) and calibrate lambda; return the model JSON."""
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
    # Floats are fine here: they only rank settings and fit cost estimates; nothing is billed from them.
    costs = np.array([[float(row_costs(r, config)[t]) for t in tiers] for r in rows])
    premium = tiers.index(config.baseline_tier)

    oof_q, oof_c = np.ones((len(rows), len(tiers))), np.ones((len(rows), len(tiers)))
    for k, (train_idx, test_idx) in enumerate(KFold(n_splits=folds, shuffle=True, random_state=seed).split(texts), 1):
        if on_progress:
            on_progress(f"fold {k}/{folds}")
        fitted = fit([texts[i] for i in train_idx], good[train_idx], costs[train_idx], tiers)
        oof_q[test_idx], oof_c[test_idx] = predict(fitted, [texts[i] for i in test_idx])
    lam, held_out = calibrate(oof_q, oof_c, quality, costs, premium, target_quality)
    if on_progress:
        on_progress("final fit on every row")
    fitted = fit(texts, good, costs, tiers)
    return to_json(fitted, tiers, lam, {
        "rows": len(rows), "data_sha256": data_sha256, "label_set": sorted({r.label for r in rows}, key=tiers.index),
        "labels": {t: sum(r.label == t for r in rows) for t in tiers}, "premium": config.baseline_tier,
        "target_quality": target_quality, "folds": folds, "held_out": held_out,
    })


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

    vectorizer = TfidfVectorizer(ngram_range=tuple(VECTORIZER["ngram"]), sublinear_tf=True, min_df=2, max_features=20000)
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
        cost[tier] = Ridge(alpha=1.0).fit(x, np.log1p(costs[:, j] * _COST_SCALE))
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
        c[:, j] = np.expm1(np.clip(fitted.cost[tier].predict(x), 0.0, 60.0)) / _COST_SCALE
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
    from .. import __version__

    data = {
        "format": FORMAT, "version": FORMAT_VERSION, "tiers": tiers, "vectorizer": vectorizer,
        "quality": quality, "cost": cost, "lambda": float(lam),
        "training": {**training, "mmr_version": __version__, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    data["checksum"] = _checksum(data)
    return data


def _good(row, tier: str, tiers: list[str]) -> int:
    if row.outcomes is not None:
        return int(row.outcomes[tier] >= 0.5)
    return int(tiers.index(tier) >= tiers.index(row.label))


def choose(q, c, lam: float):
    """Vectorised route(): per row, the tier with the best quality net of cost (ties to the cheaper)."""
    return (q - lam * c).argmax(axis=1)


def calibrate(pred_q, pred_c, quality, costs, premium: int, target: float) -> tuple[float, dict]:
    """The cheapest lambda whose held-out quality is at least ``target`` of always-premium's;
    the best quality if none is. A geometric grid over the range where decisions change."""
    import numpy as np

    n = len(pred_q)
    rows = np.arange(n)
    premium_quality, premium_cost = quality[:, premium].mean(), costs[:, premium].mean()
    # lambda * cost trades against probabilities: from a tiny fraction to many times 1 / typical cost.
    typical = float(np.median(pred_c[pred_c > 0])) if (pred_c > 0).any() else 1.0
    grid = [0.0] + [float(x) / typical for x in np.logspace(-4, 4, 321)]
    best = None
    for lam in grid:
        choice = choose(pred_q, pred_c, lam)
        q = quality[rows, choice].mean()
        c = costs[rows, choice].mean()
        ratio = q / premium_quality if premium_quality else 1.0
        key = (bool(ratio >= target), -c if ratio >= target else ratio)
        if best is None or key > best[0]:
            best = (key, lam, ratio, c)
    assert best is not None
    _, lam, ratio, c = best
    held_out = {
        "quality_vs_premium": round(float(ratio), 4),
        "savings_vs_premium": round(float(1 - c / premium_cost), 4) if premium_cost else 0.0,
        "reached_target": bool(ratio >= target),
    }
    return lam, held_out
