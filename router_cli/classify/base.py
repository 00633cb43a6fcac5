"""The classifier protocol, what a classifier that calls a model may ask of its caller,
and the registry of classifiers by name."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

from ..config import CLASSIFIERS, Config, ProviderSpec
from ..errors import UsageError

# name -> "module:Class"; modules are imported only when that classifier is used.
_REGISTRY = {
    "rules": "router_cli.classify.rules:RulesClassifier",
    "llm": "router_cli.classify.llm:LLMClassifier",
    "ml": "router_cli.classify.ml:MLClassifier",
    "embedding": "router_cli.classify.embedding:EmbeddingClassifier",
    "knn": "router_cli.classify.knn:KNNClassifier",
    "blend": "router_cli.classify.blend:BlendClassifier",
}
# Classifiers that call a model: they are built with a ModelCaller.
NEEDS_CALLER = frozenset({"llm", "embedding"})


@dataclass(frozen=True)
class Decision:
    """Where a prompt should go and why.

    ``score`` in [0, 1] is how much capability the prompt needs.
    """

    tier: str
    score: float
    reason: str
    classifier: str
    latency_ms: float = 0.0
    calls: tuple = ()  # model calls the classifier made (router Attempts), billed to the request
    thresholds: dict[str, float] | None = None  # the cut-offs the score was compared with, when there are any
    failure: str | None = None  # a classifier that calls a model could not: why (``tier`` is then its fallback)


class Classifier(Protocol):
    name: str

    def classify(self, prompt: str) -> Decision: ...


@dataclass(frozen=True)
class ModelReply:
    """What :meth:`ModelCaller.ask_cheapest` brings back."""

    text: str | None  # the answer; None when no model answered
    model: str | None  # the model that answered
    failure: str | None  # why no model answered
    calls: tuple = ()  # every try in order (the engine's attempt records), to bill to the request


class EmbeddingCache(Protocol):
    """Embedding vectors kept by model and text hash (the ledger database keeps them)."""

    def cached_embeddings(self, model: str, hashes: list[str]) -> dict[str, list[float]]: ...

    def store_embeddings(self, model: str, vectors: dict[str, list[float]]) -> None: ...


class ModelCaller(Protocol):
    """All that a classifier which calls a model may ask of the engine (the Router is one)."""

    def ask_cheapest(self, prompt: str, system: str, max_tokens: int) -> ModelReply:
        """The cheapest tier's models in order with the usual retries and fallbacks, at temperature 0
        where the provider takes one; the calls are the classifier's (role ``classifier``)."""
        ...

    def api_key(self, spec: ProviderSpec) -> str | None:
        """The key to call provider ``spec`` with; None when it needs none or none is set."""
        ...

    def ledger(self) -> EmbeddingCache | None:
        """Where embedding vectors are cached; None without a ledger."""
        ...


def available_classifiers() -> list[str]:
    return list(CLASSIFIERS)


def get_classifier(name: str, config: Config, caller: ModelCaller | None = None) -> Classifier:
    """The classifier registered as ``name``, built from ``config``.

    Classifiers in :data:`NEEDS_CALLER` call a model through ``caller``, which is then required.
    """
    if name not in _REGISTRY:
        raise UsageError(f"unknown classifier {name!r}; valid classifiers: {', '.join(available_classifiers())}")
    module, _, cls = _REGISTRY[name].partition(":")
    factory = getattr(importlib.import_module(module), cls)
    if name not in NEEDS_CALLER:
        return factory(config)
    if caller is None:
        raise TypeError(f"the {name} classifier calls a model: get_classifier needs a caller (a ModelCaller such as a Router)")
    return factory(config, caller)
