"""The labelled set and the default ml model that ship with mmr stay in step."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from router_cli.classify import get_classifier
from router_cli.classify.embedding import DEFAULT_LABELLED
from router_cli.classify.ml import DEFAULT_MODEL, MLModel
from router_cli.config import load_config
from router_cli.labelled import read_labelled
from tests.conftest import require_ml

EXAMPLE = Path(__file__).resolve().parent.parent / "tiers.example.yaml"


def test_our_labelled_set():
    config = load_config(EXAMPLE)
    rows, problems = read_labelled(DEFAULT_LABELLED, config.tier_names)
    assert problems == [] and len(rows) >= 300
    per_tier = Counter(r.label for r in rows)
    assert all(per_tier[t] >= 90 for t in config.tier_names)
    assert len({r.extra["id"] for r in rows}) == len(rows)
    assert len({r.extra["category"] for r in rows}) >= 15


def test_the_default_model_was_trained_on_the_shipped_set():
    # If this fails, rebuild: mmr train router_cli/data/labelled.jsonl -o router_cli/models/default.json --config tiers.example.yaml
    model = MLModel.load(DEFAULT_MODEL, load_config(EXAMPLE).tier_names)
    assert model.training["data_sha256"] == hashlib.sha256(DEFAULT_LABELLED.read_bytes()).hexdigest()
    assert model.training["label_set"] == ["simple", "medium", "complex"]
    assert model.training["held_out"]["reached_target"] is True
    assert json.loads(DEFAULT_MODEL.read_text())["format"] == "mmr-ml-router"


def test_ml_works_out_of_the_box():
    classifier = get_classifier("ml", load_config(EXAMPLE))
    assert classifier.classify("hi!").tier == "simple"
    assert classifier.classify("Prove that there are infinitely many primes of the form 4k+3.").tier == "complex"


def test_retraining_on_the_shipped_set_reproduces_the_shipped_model():
    require_ml()
    from router_cli.classify.ml_train import train

    config = load_config(EXAMPLE)
    shipped = MLModel.load(DEFAULT_MODEL, config.tier_names)
    rows, _ = read_labelled(DEFAULT_LABELLED, config.tier_names)
    record = shipped.training
    data = train(rows, config, target_quality=record["target_quality"], folds=record["folds"],
                 data_sha256=hashlib.sha256(DEFAULT_LABELLED.read_bytes()).hexdigest())
    retrained = MLModel(data, "retrained")
    assert data["training"]["held_out"] == record["held_out"]
    assert data["lambda"] == pytest.approx(shipped.lam, rel=1e-6)
    probes = [r.prompt for r in rows] + ["hi!", "Prove that there are infinitely many primes of the form 4k+3.",
                                         "Write a haiku about rain", "", "Ünïcode  wörds"]
    assert [retrained.route(p)[0] for p in probes] == [shipped.route(p)[0] for p in probes]
    for p in probes[::25]:
        (q_new, c_new), (q_old, c_old) = retrained.predict(p), shipped.predict(p)
        assert q_new == pytest.approx(q_old, abs=1e-5) and c_new == pytest.approx(c_old, rel=1e-4)


def test_the_shipped_default_classifier_is_ml_and_a_config_naming_none_keeps_rules(tmp_path, mmr):
    """The built-in config and tiers.example.yaml route with the shipped ml model (chosen by measurement:
    docs/routing.md); a config of one's own that names no classifier gets the rules, which work with any tiers."""
    from router_cli.config import parse_config

    assert load_config(EXAMPLE).classifier == "ml"
    text = EXAMPLE.read_text()
    start = text.index("\nclassifier:\n")
    end = text.index("\n# Retries")
    assert parse_config(text[:start] + "\n" + text[end:], "own.yaml").classifier == "rules"
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "MMR_CONFIG": ""}
    result = mmr("classify", "--json", "hi there", config=False, db=False, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["classifier"] == "ml"
