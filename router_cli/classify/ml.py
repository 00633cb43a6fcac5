"""A trained router: for each tier, how good its answer will be and what it will cost.

Training (ml_train.py: ``mmr train``, needs the ``ml`` extra: scikit-learn) fits,
for every tier, a logistic regression for "this tier's answer is good enough" and
a ridge regression for the log of its cost, on TF-IDF word 1-2-grams plus a
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
lambda and the training record: data hash, label set, metrics) with a checksum
that detects corruption, not tampering (anyone can recompute it). Loading
accepts only a regular file under ``MAX_MODEL_BYTES``, checks sizes before
reading any array and then every field: it parses numbers, never runs code,
and prediction is pure Python, so ``--classifier ml`` needs neither
scikit-learn nor numpy. A forged model that passes the checks can still route
any prompt anywhere: a model file is as trusted as the config.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
import os
import re
import stat
import statistics
import time
from collections import Counter
from pathlib import Path

from ..config import Config
from ..errors import ConfigError
from ..jsonl import NotJSON, loads
from .base import Decision

# mmr train keeps at most this many terms (the vectorizer's max_features), so no model has more.
MAX_TERMS = 20_000
MAX_TIERS = 100
# At MAX_TERMS a three-tier model is about 2 MB (the shipped one, 1,599 terms, is 134 KB), and each
# further tier adds about 0.4 MB: 16 MiB holds any model mmr train makes for up to ~35 tiers, and a
# bigger file, made by something else, is refused before it is parsed (which would take seconds).
MAX_MODEL_BYTES = 16 * 1024 * 1024
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
COST_SCALE = 1e6  # cost models predict log1p(USD * 1e6): micro-dollars, and free tiers are fine


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
            data = loads(read_model_bytes(path).decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not an mmr model file ({type(e).__name__})") from None
        except NotJSON as e:
            raise ConfigError(f"{path}: not an mmr model file ({e})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{path}: not an mmr model file")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ConfigError(f"{path}: not an mmr model file (version {version!r})")
        if version > FORMAT_VERSION:
            raise ConfigError(f"{path}: made by a newer mmr (format {version}); upgrade mmr or retrain")
        if version < FORMAT_VERSION:
            raise ConfigError(f"{path}: made by an older mmr (format {version}); retrain it with mmr train")
        try:
            check_sizes(data)  # before the checksum, which reads every number
        except ValueError as e:
            raise ConfigError(f"{path}: malformed model: {e}") from None
        if data.get("checksum") != checksum(data):
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
        cost = {t: math.expm1(max(0.0, min(60.0, z[n + j]))) / COST_SCALE for j, t in enumerate(self.tiers)}
        return quality, cost

    def route(self, text: str) -> tuple[str, dict[str, float], dict[str, float]]:
        """The tier with the best quality net of cost, and the predictions behind it."""
        quality, cost = self.predict(text)
        tier = max(self.tiers, key=lambda t: (quality[t] - self.lam * cost[t], -self.tiers.index(t)))
        return tier, quality, cost


def read_model_bytes(path: Path) -> bytes:
    """The bytes of a model file: a regular file of at most ``MAX_MODEL_BYTES``, else ConfigError.

    Opened without blocking, so a FIFO is refused rather than waited on; a device such
    as /dev/zero is refused rather than read until memory runs out."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(f"{path}: model file not found (train one with: mmr train FILE.jsonl -o {path})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the model file: {e.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: not a regular file; a model is the JSON file mmr train writes")
        chunks, size = [], 0
        while size <= MAX_MODEL_BYTES and (chunk := os.read(fd, MAX_MODEL_BYTES + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the model file: {e.strerror}") from None
    finally:
        os.close(fd)
    if max(info.st_size, size) > MAX_MODEL_BYTES:
        raise ConfigError(f"{path}: {max(info.st_size, size):,} bytes, more than a model file can be "
                          f"({MAX_MODEL_BYTES // (1024 * 1024)} MiB at most); not a model mmr train made")
    return b"".join(chunks)


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


def check_sizes(data: dict) -> None:
    """How many tiers and terms a model has, checked before anything loops over its arrays
    (ValueError): a file that was not made by mmr train cannot make loading slow."""
    tiers, vectorizer = data.get("tiers"), data.get("vectorizer")
    if isinstance(tiers, list) and len(tiers) > MAX_TIERS:
        raise ValueError(f"tiers: {len(tiers):,} tiers, more than the {MAX_TIERS} a model may have")
    if not isinstance(vectorizer, dict):
        return
    idf, vocabulary = vectorizer.get("idf"), vectorizer.get("vocabulary")
    if isinstance(idf, list) and len(idf) > MAX_TERMS:
        raise ValueError(f"vectorizer.idf: {len(idf):,} terms, more than the {MAX_TERMS:,} mmr train keeps")
    if isinstance(vocabulary, dict) and len(vocabulary) > MAX_TERMS:
        raise ValueError(f"vectorizer.vocabulary: {len(vocabulary):,} terms, more than the {MAX_TERMS:,} mmr train keeps")


def check(data: dict) -> None:
    """Every field a prediction reads, with its type, length and range; ValueError naming the first bad one."""
    check_sizes(data)
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


def checksum(data: dict) -> str:
    """The SHA-256 of a model file's fields other than its checksum (canonical JSON)."""
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
