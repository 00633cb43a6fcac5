"""The ``knn`` router: a cost-aware vote of the k labelled prompts nearest in meaning.

Prompts are embedded with all-MiniLM-L6-v2 (minilm.py; the request text only: the
part after the last blank line, since few-shot examples repeated before every
question would make all of a task's prompts look alike). For each tier, the
expected quality is the similarity-weighted share of the k nearest training
prompts that tier answered well, and the expected cost the weighted mean of what
it cost them. As with ``ml``, the prompt goes to the tier with the best quality
net of cost, ``quality - lambda * cost`` (ties to the cheaper); ``mmr train
--router knn`` picks lambda on held-out folds.

The model file is a NumPy ``.npz`` read with ``allow_pickle=False`` (arrays and
one JSON string, never code): the training vectors (float16), each row's
per-tier quality and cost, and a JSON header with the tiers, k, lambda and the
training record, with a SHA-256 over all of it that detects corruption (not
tampering, as for ``ml``). Shapes and ranges are checked before anything is used.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import zipfile
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import ConfigError
from .base import Decision

FORMAT = "mmr-knn-router"
FORMAT_VERSION = 1
EMBEDDING = "all-MiniLM-L6-v2"
MAX_ROWS = 200_000
MAX_TIERS = 100
MAX_K = 1000
MAX_MODEL_BYTES = 256 * 1024 * 1024
ARRAYS = ("vectors", "quality", "cost")


def request_text(prompt: str) -> str:
    """The part of ``prompt`` after its last blank line (the whole prompt when it has none)."""
    _, blank, request = prompt.strip().rpartition("\n\n")
    return request if blank and request.strip() else prompt.strip()


def checksum(header: dict, arrays: dict[str, Any]) -> str:
    """SHA-256 of the header (without its checksum, canonical JSON) and each array's dtype, shape and bytes."""
    digest = hashlib.sha256(json.dumps({k: v for k, v in header.items() if k != "checksum"},
                                       sort_keys=True, separators=(",", ":")).encode())
    for name in ARRAYS:
        a = arrays[name]
        digest.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def neighbour_estimates(np: Any, vectors: Any, quality: Any, cost: Any, queries: Any, k: int,
                        exclude_self: bool = False) -> tuple[Any, Any]:
    """Per query row: the weighted mean quality and cost of its k nearest ``vectors`` (cosine; weights
    are the similarities, floored at a small positive value so a vote is never empty)."""
    k = min(k, len(vectors) - int(exclude_self))
    q_out = np.zeros((len(queries), quality.shape[1]))
    c_out = np.zeros((len(queries), cost.shape[1]))
    for start in range(0, len(queries), 512):
        sims = queries[start:start + 512].astype(np.float32) @ vectors.astype(np.float32).T
        if exclude_self:
            sims[np.arange(len(sims)), np.arange(start, start + len(sims))] = -np.inf
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = np.maximum(np.take_along_axis(sims, nearest, axis=1), 1e-3)
        weights /= weights.sum(axis=1, keepdims=True)
        q_out[start:start + len(sims)] = np.einsum("nk,nkt->nt", weights, quality[nearest])
        c_out[start:start + len(sims)] = np.einsum("nk,nkt->nt", weights, cost[nearest])
    return q_out, c_out


class KNNModel:
    """A loaded knn model file (checked by :meth:`load`)."""

    def __init__(self, header: dict, arrays: dict[str, Any], source: str):
        import numpy as np

        self.np = np
        self.source = source
        self.tiers: list[str] = header["tiers"]
        self.k: int = header["k"]
        self.lam: float = header["lambda"]
        self.training: dict = header.get("training", {})
        self.vectors = arrays["vectors"].astype(np.float32)
        self.quality = arrays["quality"].astype(np.float64)
        self.cost = arrays["cost"].astype(np.float64)

    @classmethod
    def load(cls, path: str | Path, tiers: list[str] | None = None) -> "KNNModel":
        """Read and check a model file; a one-line ConfigError for anything wrong with it."""
        path = Path(path)
        try:
            import numpy as np
        except ImportError:
            raise ConfigError("the knn router needs numpy: pip install 'mmr-router[embed]'") from None
        if not path.is_file():
            raise ConfigError(f"{path}: model file not found (train one with: mmr train FILE.jsonl --router knn -o {path})")
        if path.stat().st_size > MAX_MODEL_BYTES:
            raise ConfigError(f"{path}: more than {MAX_MODEL_BYTES // 2**20} MiB; not a model mmr train made")
        try:
            with np.load(path, allow_pickle=False) as z:
                if set(z.files) != {*ARRAYS, "header"}:
                    raise ValueError(f"arrays {sorted(z.files)}")
                header = json.loads(str(z["header"]))
                arrays = {name: z[name] for name in ARRAYS}
        except (OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not an mmr knn model file ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ConfigError(f"{path}: not an mmr knn model file")
        if header.get("version") != FORMAT_VERSION:
            raise ConfigError(f"{path}: knn model format {header.get('version')!r}; this mmr reads {FORMAT_VERSION}: retrain it")
        try:
            check(np, header, arrays)
        except ValueError as e:
            raise ConfigError(f"{path}: malformed knn model: {e}") from None
        if header.get("checksum") != checksum(header, arrays):
            raise ConfigError(f"{path}: the checksum does not match: the file is corrupt or was edited; retrain it")
        if tiers is not None and header["tiers"] != list(tiers):
            raise ConfigError(f"{path}: trained for tiers {', '.join(header['tiers'])}, but the config has {', '.join(tiers)}")
        return cls(header, arrays, str(path))

    def estimates(self, vectors: Any) -> tuple[Any, Any]:
        """(quality, cost) arrays, one row per query vector."""
        return neighbour_estimates(self.np, self.vectors, self.quality, self.cost, vectors, self.k)

    def route_vector(self, vector: Any) -> tuple[str, dict[str, float], dict[str, float]]:
        q, c = self.estimates(vector[None, :])
        quality = {t: float(q[0, j]) for j, t in enumerate(self.tiers)}
        cost = {t: float(c[0, j]) for j, t in enumerate(self.tiers)}
        tier = max(self.tiers, key=lambda t: (quality[t] - self.lam * cost[t], -self.tiers.index(t)))
        return tier, quality, cost


def check(np: Any, header: dict, arrays: dict[str, Any]) -> None:
    """Types, shapes and ranges of everything prediction reads; ValueError naming the first bad one."""
    tiers = header.get("tiers")
    if (not isinstance(tiers, list) or not 2 <= len(tiers) <= MAX_TIERS or len(set(tiers)) != len(tiers)
            or not all(isinstance(t, str) and t for t in tiers)):
        raise ValueError("tiers: expected two or more distinct tier names")
    k = header.get("k")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f"k: expected an integer in 1..{MAX_K}")
    lam = header.get("lambda")
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or not 0 <= lam < 1e15:
        raise ValueError("lambda: expected a number >= 0")
    if header.get("embedding") != EMBEDDING:
        raise ValueError(f"embedding: expected {EMBEDDING}")
    vectors, quality, cost = (arrays[n] for n in ARRAYS)
    n = vectors.shape[0] if vectors.ndim == 2 else -1
    if vectors.ndim != 2 or vectors.shape[1] != 384 or not 1 <= n <= MAX_ROWS or vectors.dtype.kind != "f":
        raise ValueError(f"vectors: expected (rows, 384) floats, got {vectors.shape} {vectors.dtype}")
    for name, a in (("quality", quality), ("cost", cost)):
        if a.shape != (n, len(tiers)) or a.dtype.kind != "f":
            raise ValueError(f"{name}: expected ({n}, {len(tiers)}) floats, got {a.shape} {a.dtype}")
        if not np.isfinite(a).all() or (a < 0).any():
            raise ValueError(f"{name}: values must be finite and >= 0")
    if not np.isfinite(vectors).all():
        raise ValueError("vectors: values must be finite")


def save(path: str | Path, header: dict, arrays: dict[str, Any]) -> None:
    """Write a model file (header checksummed here)."""
    import numpy as np

    header = {**header, "format": FORMAT, "version": FORMAT_VERSION, "embedding": EMBEDDING}
    header["checksum"] = checksum(header, arrays)
    with open(path, "wb") as f:
        np.savez_compressed(f, header=np.array(json.dumps(header, sort_keys=True)), **arrays)


class KNNClassifier:
    """``--classifier knn``: the model named by ``classifier.knn_model`` or ``--knn-model``."""

    name = "knn"

    def __init__(self, config: Config):
        from .minilm import shared_model

        path = config.knn_model
        if path is None:
            raise ConfigError(f"{config.source}: classifier.knn_model: not set; train one with "
                              "mmr train FILE.jsonl --router knn -o knn.npz and name it there or with --knn-model")
        self.tiers = config.tier_names
        self.model = KNNModel.load(path, self.tiers)
        self.encoder = shared_model()

    def classify(self, prompt: str) -> Decision:
        start = time.perf_counter()
        vector = self.encoder.encode([request_text(prompt)])[0]
        tier, quality, cost = self.model.route_vector(vector)
        reason = ", ".join(f"{t}: P(good enough)={quality[t]:.2f} cost~${cost[t]:.2g}" for t in self.tiers)
        score = round((1.0 + quality[self.tiers[-1]] - quality[self.tiers[0]]) / 2.0, 4)
        return Decision(tier, score, reason, self.name, (time.perf_counter() - start) * 1000,
                        thresholds={"lambda": self.model.lam})
