"""The ml classifier: training, pure-Python prediction equal to scikit-learn's, safe model files."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from router_cli.classify import get_classifier
from router_cli.config import load_config
from router_cli.errors import EXIT_CONFIG, ConfigError
from router_cli.evaluate import LabelledRow

sklearn = pytest.importorskip("sklearn", reason="training needs the ml extra (scikit-learn)")
from router_cli.classify.ml import MLModel, fit, predict_proba, to_json, train  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "tiers.example.yaml"
TIERS = ["simple", "medium", "complex"]
WORDS = {
    "simple": ["hello there", "what is the capital of", "define the word", "translate good morning", "how are you today"],
    "medium": ["summarise this article about", "explain how photosynthesis works", "rewrite this email to sound", "compare the two options for"],
    "complex": ["prove that the sum of", "write a python function that parses", "debug this stack trace from", "analyse the legal liability in"],
}


def synthetic_rows(n_per_tier: int = 40, seed: int = 1) -> list[LabelledRow]:
    rng = random.Random(seed)
    topics = ["rome", "graphs", "tax", "cells", "music", "rivers", "markets", "stars", "bread", "engines"]
    rows = []
    for tier in TIERS:
        for i in range(n_per_tier):
            text = f"{rng.choice(WORDS[tier])} {rng.choice(topics)} {rng.choice(topics)}"
            if tier == "complex":
                text += "\n" + "def f(x): return {x: [x]}" * rng.randint(0, 2)
            rows.append(LabelledRow(text, tier, len(rows) + 1))
    return rows


@pytest.fixture(scope="module")
def model_data():
    return train(synthetic_rows(), load_config(EXAMPLE), target_quality=0.95, folds=4, data_sha256="abc")


def test_pure_python_probabilities_equal_scikit_learns():
    import numpy as np

    rows = synthetic_rows()
    texts = [r.prompt for r in rows]
    good = np.array([[int(TIERS.index(t) >= TIERS.index(r.label)) for t in TIERS] for r in rows], dtype=float)
    vectorizer, models = fit(texts, good, TIERS)
    data = to_json(vectorizer, models, TIERS, {"simple": 0.5, "medium": 0.5}, {})
    model = MLModel(data, "test")
    probe = texts[:10] + ["completely new words here", "Prove that the sum of two odd numbers is even.", ""]
    expected = predict_proba(vectorizer, models, probe, TIERS)
    for text, row in zip(probe, expected):
        got = model.probabilities(text)
        for j, tier in enumerate(TIERS):
            assert got[tier] == pytest.approx(row[j], abs=1e-5)  # coefficients are stored to 6 decimals


def test_training_record_and_routing(model_data, tmp_path):
    t = model_data["training"]
    assert t["rows"] == 120 and t["data_sha256"] == "abc" and t["label_set"] == TIERS
    assert t["labels"] == {"simple": 40, "medium": 40, "complex": 40}
    assert set(t["held_out"]) == {"quality_vs_premium", "savings_vs_premium", "reached_target"}
    assert set(model_data["thresholds"]) == {"simple", "medium"}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(model_data))
    config = load_config(EXAMPLE)
    from dataclasses import replace

    classifier = get_classifier("ml", replace(config, ml_model=str(path)))
    assert classifier.classify("hello there rome music").tier == "simple"
    decision = classifier.classify("prove that the sum of stars engines\ndef f(x): return {x: [x]}")
    assert decision.tier == "complex" and decision.score > 0.5 and "P(simple good enough)" in decision.reason


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.update(version=99), "made by a newer mmr"),
    (lambda d: d["thresholds"].update(simple=0.01), "checksum does not match"),
    (lambda d: d.update(format="pickle"), "not an mmr model file"),
])
def test_bad_model_files(model_data, tmp_path, mutate, message):
    data = json.loads(json.dumps(model_data))
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        MLModel.load(path, TIERS)


def test_model_for_other_tiers_and_unreadable_files(model_data, tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(model_data))
    with pytest.raises(ConfigError, match="trained for tiers simple, medium, complex, but the config has cheap, dear"):
        MLModel.load(path, ["cheap", "dear"])
    (tmp_path / "junk.json").write_bytes(b"\x80\x04\x95 pickle bytes")
    with pytest.raises(ConfigError, match="not an mmr model file"):
        MLModel.load(tmp_path / "junk.json", TIERS)
    with pytest.raises(ConfigError, match="model file not found"):
        MLModel.load(tmp_path / "missing.json", TIERS)


def test_cli_train_then_classify_without_importing_sklearn(tmp_path, mmr):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": r.prompt, "label": r.label}) + "\n" for r in synthetic_rows()))
    model = tmp_path / "router.json"
    result = mmr("train", str(data), "-o", str(model), "--folds", "3", "--config", str(EXAMPLE), db=False)
    assert result.returncode == 0, result.stderr
    assert "held out:" in result.stderr.decode() and json.loads(model.read_text())["format"] == "mmr-ml-router"
    code = (
        "import sys, io, contextlib\n"
        "from router_cli.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    assert main(['classify', '--classifier', 'ml', '--ml-model', {str(model)!r}, '--config', {str(EXAMPLE)!r}, 'hello there rome']) == 0\n"
        "print(out.getvalue().strip(), sorted(m for m in ('sklearn', 'numpy', 'scipy', 'anthropic', 'openai') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "simple []", result.stderr


def test_cli_bad_model_is_a_config_error(tmp_path, mmr):
    (tmp_path / "m.json").write_text("{}")
    result = mmr("classify", "--classifier", "ml", "--ml-model", str(tmp_path / "m.json"), "--config", str(EXAMPLE), "hi", db=False)
    assert result.returncode == EXIT_CONFIG and "not an mmr model file" in result.stderr.decode()
