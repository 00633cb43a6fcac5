"""The classifier protocol and the registry of classifiers by name."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

from ..config import Config
from ..errors import UsageError

# name -> "module:Class"; modules are imported only when that classifier is used.
_REGISTRY = {
    "rules": "router_cli.classify.rules:RulesClassifier",
    "llm": "router_cli.classify.llm:LLMClassifier",
    "ml": "router_cli.classify.ml:MLClassifier",
    "embedding": "router_cli.classify.embedding:EmbeddingClassifier",
}
# Classifiers that call models: they take the router for its providers, retries and ledger.
_USES_ROUTER = {"llm", "embedding"}


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


class Classifier(Protocol):
    name: str

    def classify(self, prompt: str) -> Decision: ...


def available_classifiers() -> list[str]:
    return sorted(_REGISTRY)


def get_classifier(name: str, config: Config, router=None) -> Classifier:
    """The classifier registered as ``name``, built from ``config``.

    ``router`` lends classifiers that call a model its providers and retries.
    """
    if name not in _REGISTRY:
        raise UsageError(f"unknown classifier {name!r}; valid classifiers: {', '.join(available_classifiers())}")
    module, _, cls = _REGISTRY[name].partition(":")
    factory = getattr(importlib.import_module(module), cls)
    return factory(config, router) if name in _USES_ROUTER else factory(config)
