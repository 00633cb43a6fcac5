"""The embedding classifier through the real openai SDK to the local server's /v1/embeddings, with its cache."""

from __future__ import annotations

import json

import pytest

from router_cli.classify import get_classifier
from router_cli.config import load_config
from router_cli.errors import ConfigError
from router_cli import Router
from tests.conftest import write_config
from tests.provider_server import embeddings, error

LABELLED = [
    ("hello there friend", "simple"), ("hi there how are you", "simple"), ("good morning friend", "simple"),
    ("summarise this report on sales", "medium"), ("summarise the meeting notes report", "medium"),
    ("summarise this long report please", "medium"),
    ("prove the theorem about primes rigorously", "complex"), ("prove this lemma on primes", "complex"),
    ("prove rigorously that primes are infinite", "complex"),
]


@pytest.fixture
def embedding_config(tmp_path, server):
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps({"prompt": p, "label": t}) + "\n" for p, t in LABELLED))

    def make(method="centroid"):
        extra = (f"classifier:\n  embedding:\n    provider: openai\n    model: embed-small\n"
                 f"    labelled: {labelled}\n    method: {method}\n    k: 3\n")
        return load_config(write_config(tmp_path / f"emb-{method}.yaml", server.url, extra=extra))

    return make


@pytest.mark.parametrize("method", ["centroid", "knn"])
def test_nearest_tier(server, embedding_config, db_path, method):
    with Router(embedding_config(method), db_path) as router:
        classifier = get_classifier("embedding", embedding_config(method), router)
        assert classifier.classify("hello friend").tier == "simple"
        assert classifier.classify("please summarise this report").tier == "medium"
        decision = classifier.classify("prove that primes go on forever")
        assert decision.tier == "complex" and decision.score > 0.5 and decision.classifier == "embedding"
    body = server.calls("embed-small")[0]["body"]
    assert body["encoding_format"] == "float" and len(body["input"]) == len(LABELLED)


def test_embeddings_are_cached_in_the_ledger(server, embedding_config, db_path):
    config = embedding_config()
    with Router(config, db_path) as router:
        get_classifier("embedding", config, router).classify("hello friend")
    first = len(server.calls("embed-small"))
    assert first == 2  # the labelled set in one batch, then the prompt
    with Router(config, db_path) as router:
        get_classifier("embedding", config, router).classify("hello friend")
    assert len(server.calls("embed-small")) == first  # everything came from the cache


def test_embedding_endpoint_failure_is_a_clear_error(server, embedding_config, db_path):
    server.always("embed-small", error(404, message="no such model"))
    config = embedding_config()
    with Router(config, db_path) as router, pytest.raises(ConfigError, match="embeddings from openai/embed-small failed"):
        get_classifier("embedding", config, router)


def test_fewer_vectors_than_texts_is_a_clear_error(server, embedding_config, db_path):
    server.script("embed-small", embeddings(drop_last=1))
    config = embedding_config()
    with Router(config, db_path) as router, pytest.raises(ConfigError, match=f"asked for {len(LABELLED)} vectors, got {len(LABELLED) - 1}"):
        get_classifier("embedding", config, router)


def test_not_configured(config):
    with pytest.raises(ConfigError, match="classifier.embedding: not configured"):
        get_classifier("embedding", config, Router(config))


def test_ask_with_the_embedding_classifier(server, embedding_config, db_path):
    config = embedding_config()
    with Router(config, db_path) as router:
        answer = router.ask("prove that primes never end", classifier="embedding")
    assert answer.final.tier == "complex" and answer.decision.classifier == "embedding"
