"""The ml classifier: training, pure-Python prediction equal to scikit-learn's, safe model files."""

from __future__ import annotations

import json
import math
import random
from decimal import Decimal
import subprocess
import sys
from pathlib import Path

import pytest

from router_cli.classify import get_classifier
from router_cli.config import load_config
from router_cli.errors import EXIT_CONFIG, EXIT_USAGE, ConfigError
from router_cli.labelled import LabelledRow

from router_cli.classify.ml import DEFAULT_MODEL, MLModel
from router_cli.classify.ml_train import fit, predict, to_json, train
from tests.conftest import require_ml

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
    require_ml()
    return train(synthetic_rows(), load_config(EXAMPLE), target_quality=0.95, folds=4, data_sha256="abc")


@pytest.fixture
def shipped_data():
    """The model file that ships with mmr: the validation tests below need no scikit-learn."""
    return json.loads(DEFAULT_MODEL.read_text())


def test_pure_python_predictions_equal_scikit_learns(ml):
    import numpy as np

    rows = synthetic_rows()
    texts = [r.prompt for r in rows]
    good = np.array([[int(TIERS.index(t) >= TIERS.index(r.label)) for t in TIERS] for r in rows], dtype=float)
    costs = np.array([[1e-4 * (1 + len(r.prompt) / 50) * 10 ** j for j in range(3)] for r in rows])
    fitted = fit(texts, good, costs, TIERS)
    model = MLModel(to_json(fitted, TIERS, 100.0, {}), "test")
    probe = texts[:10] + ["completely new words here", "Prove that the sum of two odd numbers is even.", "", "  x  ", "Ünïcode  wörds\tand\n\nspaces"]
    expected_q, expected_c = predict(fitted, probe)
    for text, q_row, c_row in zip(probe, expected_q, expected_c):
        quality, cost = model.predict(text)
        for j, tier in enumerate(TIERS):
            assert quality[tier] == pytest.approx(q_row[j], abs=1e-4)  # weights are stored to 6 decimals
            assert cost[tier] == pytest.approx(c_row[j], rel=1e-3)


def test_request_features_describe_the_last_paragraph():
    from router_cli.classify.ml import N_SHAPE, request_features, shape_features

    examples = "Which number is even?\nA) 3\nB) 4\nAnswer: B\n\n" * 5
    question = "Which gas do plants take in?\nA) oxygen\nB) carbon dioxide\nC) nitrogen\nD) helium"
    features = request_features(examples + question)
    # The examples before the request change the whole-prompt shape, not the request's.
    assert features == request_features("Some context.\n\n" + question)
    assert shape_features(examples + question)[:5] != shape_features("Some context.\n\n" + question)[:5]
    assert len(shape_features(question)) == N_SHAPE
    # A prompt of one paragraph is described by the whole-prompt features alone.
    assert request_features(question) == [0.0] * 10
    assert features[5] == pytest.approx(math.log1p(4) / 2.0)  # four answer options
    assert features[6] == pytest.approx(math.log1p((9 + 17 + 11 + 9) / 4) / 5.0)  # their mean length
    assert features[7] == pytest.approx(math.log1p(len("Which gas do plants take in?")) / 7.0)
    assert features[9] == 1.0  # it asks a question
    assert request_features("Context.\n\nWrite a haiku about rain")[5:7] == [0.0, 0.0]  # no options
    assert request_features("") == [0.0] * 10


def test_training_record_and_routing(model_data, tmp_path):
    t = model_data["training"]
    assert t["rows"] == 120 and t["data_sha256"] == "abc" and t["label_set"] == TIERS and t["premium"] == "complex"
    assert t["labels"] == {"simple": 40, "medium": 40, "complex": 40}
    assert set(t["held_out"]) == {"quality_vs_premium", "savings_vs_premium", "reached_target"}
    assert model_data["lambda"] >= 0 and set(model_data["quality"]) == set(model_data["cost"]) == set(TIERS)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(model_data))
    config = load_config(EXAMPLE)
    from dataclasses import replace

    classifier = get_classifier("ml", replace(config, ml_model=str(path)))
    assert classifier.classify("hello there rome music").tier == "simple"
    decision = classifier.classify("prove that the sum of stars engines\ndef f(x): return {x: [x]}")
    assert decision.tier == "complex" and decision.score > 0.5 and "simple: P(good enough)=" in decision.reason


def test_cheap_calls_make_a_large_lambda_that_still_loads(tmp_path, ml):
    import numpy as np

    rows = synthetic_rows()
    for r in rows:  # a local model and a cheap API: micro-dollars per call
        r.costs = {"simple": Decimal("0"), "medium": Decimal("0.000001"), "complex": Decimal("0.000003")}
    data = train(rows, load_config(EXAMPLE), target_quality=0.9, folds=3)
    good = np.array([[int(TIERS.index(t) >= TIERS.index(r.label)) for t in TIERS] for r in rows], dtype=float)
    costs = np.array([[float(r.costs[t]) for t in TIERS] for r in rows])
    big = to_json(fit([r.prompt for r in rows], good, costs, TIERS), TIERS, 1e9, {})
    for i, content in enumerate((data, big)):
        path = tmp_path / f"m{i}.json"
        path.write_text(json.dumps(content))
        assert MLModel.load(path, TIERS).lam == content["lambda"]
    model = MLModel.load(tmp_path / "m1.json", TIERS)
    assert model.predict("hello there")[1]["simple"] == pytest.approx(0.0, abs=1e-7)


def test_routing_follows_quality_net_of_cost(model_data):
    model = MLModel(json.loads(json.dumps(model_data)), "test")
    text = "summarise this article about rome"
    model.lam = 0.0  # cost does not matter: the most likely good tier (the top one: always good)
    assert model.route(text)[0] == "complex"
    model.lam = 1e9  # only cost matters: the cheapest tier
    assert model.route(text)[0] == "simple"


def test_calibration_scales_with_tiers(ml):
    import numpy as np

    from router_cli.classify.ml_train import calibrate

    rng = np.random.default_rng(0)
    n, t = 400, 6
    need = rng.integers(0, t, n)  # row i is answered well by tier need[i] and above
    quality = (np.arange(t)[None, :] >= need[:, None]).astype(float)
    costs = np.tile(2.0 ** np.arange(t), (n, 1))
    pred_q = np.clip(quality + rng.normal(0, 0.05, quality.shape), 0, 1)
    _, held = calibrate(pred_q, costs, quality, costs, t - 1, 0.95)
    assert held["reached_target"] and held["quality_vs_premium"] >= 0.95
    assert held["savings_vs_premium"] > 0.5  # most rows need less than the top tier, and the router sees it


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.update(version=99), "made by a newer mmr"),
    (lambda d: d.update(version=1), "made by an older mmr"),
    (lambda d: d.update(version="2"), "not an mmr model file"),
    (lambda d: d.update({"lambda": 0.0}), "checksum does not match"),
    (lambda d: d.update(format="pickle"), "not an mmr model file"),
])
def test_bad_model_files(shipped_data, tmp_path, mutate, message):
    data = json.loads(json.dumps(shipped_data))
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        MLModel.load(path, TIERS)


def _resigned(data: dict) -> dict:
    """A tampered model whose checksum was recomputed, as a forger would."""
    from router_cli.classify.ml import checksum

    data = {k: v for k, v in data.items() if k != "checksum"}
    data["checksum"] = checksum(data)
    return data


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.update({"lambda": "0.5"}), "lambda: expected a number, got str"),
    (lambda d: d.update({"lambda": -1.0}), "lambda: must be >= 0"),
    (lambda d: d.update({"lambda": True}), "lambda: expected a number, got bool"),
    (lambda d: d.update(tiers="simple"), "tiers: expected list"),
    (lambda d: d.update(tiers=["simple", "simple", "complex"]), "tiers: expected two or more distinct"),
    (lambda d: d.update(vectorizer=[]), "vectorizer: expected dict, got list"),
    (lambda d: d["vectorizer"].update(analyzer="eval"), "vectorizer: unknown analyzer"),
    (lambda d: d["vectorizer"].update(idf=d["vectorizer"]["idf"][:-1]), "vectorizer.vocabulary"),
    (lambda d: d["vectorizer"]["idf"].__setitem__(0, None), "vectorizer.idf[0]: expected a number, got NoneType"),
    (lambda d: d["vectorizer"]["vocabulary"].update(hello=-1), "vectorizer.vocabulary['hello']: index out of range"),
    (lambda d: d["vectorizer"]["vocabulary"].update(hello=1.5), "vectorizer.vocabulary['hello']"),
    (lambda d: d["quality"].pop("medium"), "quality.medium: expected dict, got NoneType"),
    (lambda d: d["quality"]["simple"].update(coef=d["quality"]["simple"]["coef"][:-1]), "quality.simple.coef: "),
    (lambda d: d["quality"]["simple"]["coef"].__setitem__(3, "1"), "quality.simple.coef[3]: expected a number, got str"),
    (lambda d: d["cost"]["complex"].update(intercept=10 ** 400), "cost.complex.intercept: number out of range"),
    (lambda d: d["cost"]["complex"].update(intercept=1e300), "cost.complex.intercept: number out of range"),
    (lambda d: d["quality"]["simple"]["coef"].__setitem__(0, 1e7), "quality.simple.coef[0]: number out of range"),
    (lambda d: d["quality"].update(simple=[1, 2]), "quality.simple: expected dict, got list"),
])
def test_tampered_models_with_a_valid_checksum(shipped_data, tmp_path, mutate, message):
    data = json.loads(json.dumps(shipped_data))
    mutate(data)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(_resigned(data)))
    with pytest.raises(ConfigError) as caught:
        MLModel.load(path, TIERS)
    assert f"malformed model: {message}" in str(caught.value)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_a_model(shipped_data, tmp_path, literal):
    text = json.dumps(_resigned(json.loads(json.dumps(shipped_data))), separators=(",", ":"))
    first = json.dumps(shipped_data["quality"]["simple"]["coef"][0])
    text = text.replace(f'"coef":[{first},', f'"coef":[{literal},', 1)
    path = tmp_path / "nan.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match="not an mmr model file|checksum does not match|number out of range"):
        MLModel.load(path, TIERS)


def test_cli_tampered_model_is_one_line_and_exit_3(shipped_data, tmp_path, mmr):
    data = json.loads(json.dumps(shipped_data))
    data["cost"]["simple"]["coef"] = {"0": 1}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(_resigned(data)))
    result = mmr("classify", "--classifier", "ml", "--ml-model", str(path), "--config", str(EXAMPLE), "hi", db=False)
    assert result.returncode == EXIT_CONFIG
    assert result.stderr.decode() == f"Error: {path}: malformed model: cost.simple.coef: expected list, got dict\n"


def test_train_with_nothing_to_learn_from(tmp_path, mmr, ml):
    data = tmp_path / "punct.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "label": t}) + "\n" for p, t in
                            [("?!", "simple"), ("...", "complex"), ("!", "medium"), ("?", "simple")] * 10))
    result = mmr("train", str(data), "-o", str(tmp_path / "m.json"), "--config", str(EXAMPLE), db=False)
    assert result.returncode == EXIT_USAGE, result.stderr
    err = result.stderr.decode().splitlines()
    assert err[-1].startswith("Error: nothing to learn from") and not any("Traceback" in line for line in err)
    assert not (tmp_path / "m.json").exists()


def test_train_measures_against_the_baseline_tier(tmp_path, ml):
    from dataclasses import replace

    config = replace(load_config(EXAMPLE), baseline_tier="medium")
    rows = synthetic_rows()
    for r in rows:  # only medium and complex answer well; medium is the premium the router must keep
        r.outcomes = {"simple": 0.0, "medium": 1.0, "complex": 1.0}
    data = train(rows, config, target_quality=0.95, folds=4)
    assert data["training"]["premium"] == "medium" and data["training"]["held_out"]["reached_target"]
    # Savings against medium: nearly nothing to save (against complex it would be over 70 %).
    assert data["training"]["held_out"]["savings_vs_premium"] < 0.1


def test_cli_train_hashes_the_file_it_read_and_closes_it(tmp_path, ml):
    import hashlib

    data = tmp_path / "train.jsonl"
    data.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps({"prompt": r.prompt, "label": r.label}) + "\n"
                                                  for r in synthetic_rows()).encode())
    model = tmp_path / "router.json"
    result = subprocess.run([sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-m", "router_cli", "train", str(data),
                             "-o", str(model), "--folds", "3", "--config", str(EXAMPLE)], capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "ResourceWarning" not in result.stderr
    assert json.loads(model.read_text())["training"]["data_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()


def test_model_for_other_tiers_and_unreadable_files(shipped_data, tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(shipped_data))
    with pytest.raises(ConfigError, match="trained for tiers simple, medium, complex, but the config has cheap, dear"):
        MLModel.load(path, ["cheap", "dear"])
    (tmp_path / "junk.json").write_bytes(b"\x80\x04\x95 pickle bytes")
    with pytest.raises(ConfigError, match="not an mmr model file"):
        MLModel.load(tmp_path / "junk.json", TIERS)
    with pytest.raises(ConfigError, match="model file not found"):
        MLModel.load(tmp_path / "missing.json", TIERS)


def test_cli_train_then_classify_without_importing_sklearn(tmp_path, mmr, ml):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": r.prompt, "label": r.label}) + "\n" for r in synthetic_rows()))
    model = tmp_path / "router.json"
    result = mmr("train", str(data), "-o", str(model), "--folds", "3", "--config", str(EXAMPLE), db=False)
    assert result.returncode == 0, result.stderr
    assert "guaranteed at least" in result.stderr.decode() and json.loads(model.read_text())["format"] == "mmr-ml-router"
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
