"""The ``blend`` router: a weighted mean of two routers' per-tier quality and cost estimates (two of
ml, knn and rules; rules give 1 from their tier up and no cost), routed cost-aware with its own
lambda (``mmr train --router blend --parts A,B``; the weight is chosen on held-out folds).

The blend file is JSON naming its parts and their files (relative to it) with their SHA-256; a part
that changed since training is refused, since the weight and lambda were chosen for exactly those.
The rules part has no file: it is the config's rules, refused when they differ from those it was
trained with (their SHA-256 is in the blend file).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

from ..config import Config
from ..errors import ConfigError
from .base import Decision

FORMAT = "mmr-blend-router"
FORMAT_VERSION = 1
MAX_BYTES = 1024 * 1024
PARTS = ("ml", "knn", "rules")


def blend_checksum(data: dict) -> str:
    body = {k: v for k, v in data.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def load_blend(path: Path, tiers: list[str], rules_sha256: str | None = None):
    """([(part name, its model or None for rules)], lambda, weights, training record) of a checked blend file;
    ``rules_sha256``: the config's rules (classify/rules.py ``rules_sha256``), which a rules part must match."""
    from .knn import KNNModel
    from .ml import MLModel

    if not path.is_file():
        raise ConfigError(f"{path}: model file not found (train one with: mmr train FILE.jsonl --router blend -o {path})")
    if path.stat().st_size > MAX_BYTES:
        raise ConfigError(f"{path}: not an mmr blend file (too big)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{path}: not an mmr blend file") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
        raise ConfigError(f"{path}: not an mmr blend file (format {FORMAT} version {FORMAT_VERSION})")
    if data.get("checksum") != blend_checksum(data):
        raise ConfigError(f"{path}: the checksum does not match: the file is corrupt or was edited; retrain it")
    parts, lam, weights = data.get("parts"), data.get("lambda"), data.get("weights")
    names = [p.get("router") if isinstance(p, dict) else None for p in parts] if isinstance(parts, list) else []
    if (len(names) != 2 or len(set(names)) != 2 or not set(names) <= set(PARTS) or not {"ml", "knn"} & set(names)
            or not isinstance(lam, (int, float)) or isinstance(lam, bool) or not math.isfinite(lam) or lam < 0
            or not isinstance(weights, list) or len(weights) != 2
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and 0 <= w <= 1 for w in weights)):
        raise ConfigError(f"{path}: malformed blend file (two different parts of ml, knn and rules, at least one "
                          "ml or knn, lambda >= 0, two weights in [0, 1])")
    models: list = []
    assert isinstance(parts, list)
    for part in parts:
        if part["router"] == "rules":
            if part.get("sha256") != rules_sha256:
                raise ConfigError(f"{path}: the config's classifier.rules changed since the blend was trained "
                                  "(SHA-256 differs); retrain the blend")
            models.append(None)
            continue
        name = part.get("file")
        if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
            raise ConfigError(f"{path}: parts: {name!r} is not a file name next to the blend file")
        file = path.parent / name
        if not file.is_file() or hashlib.sha256(file.read_bytes()).hexdigest() != part.get("sha256"):
            raise ConfigError(f"{file}: missing or changed since the blend was trained (SHA-256 differs); retrain the blend")
        models.append(MLModel.load(file, tiers) if part["router"] == "ml" else KNNModel.load(file, tiers))
    training = data.get("training") if isinstance(data.get("training"), dict) else {}
    return list(zip(names, models)), float(lam), [float(w) for w in weights], training


class BlendClassifier:
    """``--classifier blend``: the file named by ``classifier.blend_model`` or ``--blend-model``."""

    name = "blend"

    def __init__(self, config: Config):
        if config.blend_model is None:
            raise ConfigError(f"{config.source}: classifier.blend_model: not set; train one with "
                              "mmr train FILE.jsonl --router blend -o blend.json and name it there or with --blend-model")
        self.tiers = config.tier_names
        from .rules import rules_sha256

        self.parts, self.lam, self.weights, self.training = load_blend(Path(config.blend_model), self.tiers,
                                                                       rules_sha256(config))
        self.encoder = None
        if any(name == "knn" for name, _ in self.parts):
            from .minilm import shared_model

            self.encoder = shared_model()
        self.rules = None
        if any(name == "rules" for name, _ in self.parts):
            from .rules import RulesClassifier

            self.rules = RulesClassifier(config)

    def _part(self, name: str, model, prompt: str) -> tuple[dict[str, float], dict[str, float] | None]:
        if name == "ml":
            return model.predict(prompt)
        if name == "knn":
            from .knn import request_text

            assert self.encoder is not None
            kq, kc = model.estimates(self.encoder.encode([request_text(prompt)]))
            return ({t: float(kq[0, j]) for j, t in enumerate(self.tiers)}, {t: float(kc[0, j]) for j, t in enumerate(self.tiers)})
        assert self.rules is not None
        picked = self.tiers.index(self.rules.classify(prompt).tier)
        return {t: float(j >= picked) for j, t in enumerate(self.tiers)}, None

    def classify(self, prompt: str) -> Decision:
        start = time.perf_counter()
        (qa, ca), (qb, cb) = [self._part(name, model, prompt) for name, model in self.parts]
        a, b = self.weights
        quality = {t: a * qa[t] + b * qb[t] for t in self.tiers}
        if ca is None or cb is None:  # rules estimate no cost: the other part's
            cost = ca if cb is None else cb
        else:
            cost = {t: a * ca[t] + b * cb[t] for t in self.tiers}
        assert cost is not None
        tier = max(self.tiers, key=lambda t: (quality[t] - self.lam * cost[t], -self.tiers.index(t)))
        reason = ", ".join(f"{t}: P(good enough)={quality[t]:.2f} cost~${cost[t]:.2g}" for t in self.tiers)
        score = round((1.0 + quality[self.tiers[-1]] - quality[self.tiers[0]]) / 2.0, 4)
        return Decision(tier, score, reason, self.name, (time.perf_counter() - start) * 1000,
                        thresholds={"lambda": self.lam})
