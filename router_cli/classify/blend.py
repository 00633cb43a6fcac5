"""The ``blend`` router: the mean of two routers' per-tier quality and cost estimates (ml and knn),
routed cost-aware with its own lambda (``mmr train --router blend``).

The blend file is JSON naming its two part files (relative to it) with their
SHA-256; a part that changed since training is refused, since lambda was chosen
for exactly those two.
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


def blend_checksum(data: dict) -> str:
    body = {k: v for k, v in data.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def load_blend(path: Path, tiers: list[str]):
    """(ml model, knn model, lambda, weights, training record) of a checked blend file."""
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
    if (not isinstance(parts, list) or [p.get("router") if isinstance(p, dict) else None for p in parts] != ["ml", "knn"]
            or not isinstance(lam, (int, float)) or isinstance(lam, bool) or not math.isfinite(lam) or lam < 0
            or not isinstance(weights, list) or len(weights) != 2
            or not all(isinstance(w, (int, float)) and 0 <= w <= 1 for w in weights)):
        raise ConfigError(f"{path}: malformed blend file (parts ml and knn, lambda >= 0, two weights in [0, 1])")
    files = []
    for part in parts:
        name = part.get("file")
        if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
            raise ConfigError(f"{path}: parts: {name!r} is not a file name next to the blend file")
        file = path.parent / name
        if not file.is_file() or hashlib.sha256(file.read_bytes()).hexdigest() != part.get("sha256"):
            raise ConfigError(f"{file}: missing or changed since the blend was trained (SHA-256 differs); retrain the blend")
        files.append(file)
    training = data.get("training") if isinstance(data.get("training"), dict) else {}
    return MLModel.load(files[0], tiers), KNNModel.load(files[1], tiers), float(lam), [float(w) for w in weights], training


class BlendClassifier:
    """``--classifier blend``: the file named by ``classifier.blend_model`` or ``--blend-model``."""

    name = "blend"

    def __init__(self, config: Config):
        from .minilm import shared_model

        if config.blend_model is None:
            raise ConfigError(f"{config.source}: classifier.blend_model: not set; train one with "
                              "mmr train FILE.jsonl --router blend -o blend.json and name it there or with --blend-model")
        self.tiers = config.tier_names
        self.ml, self.knn, self.lam, self.weights, self.training = load_blend(Path(config.blend_model), self.tiers)
        self.encoder = shared_model()

    def classify(self, prompt: str) -> Decision:
        from .knn import request_text

        start = time.perf_counter()
        ml_q, ml_c = self.ml.predict(prompt)
        kq, kc = self.knn.estimates(self.encoder.encode([request_text(prompt)]))
        a, b = self.weights
        quality = {t: a * ml_q[t] + b * float(kq[0, j]) for j, t in enumerate(self.tiers)}
        cost = {t: a * ml_c[t] + b * float(kc[0, j]) for j, t in enumerate(self.tiers)}
        tier = max(self.tiers, key=lambda t: (quality[t] - self.lam * cost[t], -self.tiers.index(t)))
        reason = ", ".join(f"{t}: P(good enough)={quality[t]:.2f} cost~${cost[t]:.2g}" for t in self.tiers)
        score = round((1.0 + quality[self.tiers[-1]] - quality[self.tiers[0]]) / 2.0, 4)
        return Decision(tier, score, reason, self.name, (time.perf_counter() - start) * 1000,
                        thresholds={"lambda": self.lam})
