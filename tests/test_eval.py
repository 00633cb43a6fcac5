"""`mmr eval` and `mmr classify --jsonl`: labelled JSONL, metrics, baselines, bad lines."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from router_cli.classify import get_classifier
from router_cli.config import load_config
from router_cli.errors import EXIT_USAGE, UsageError
from router_cli.evaluate import evaluate, read_labelled

EXAMPLE = Path(__file__).resolve().parent.parent / "tiers.example.yaml"
TIERS = ["simple", "medium", "complex"]


def _write(tmp_path, rows, name="labeled.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_labels_from_outcomes_and_upward_fill(tmp_path):
    path = _write(tmp_path, [
        {"prompt": "a", "outcomes": {"simple": 0, "complex": 1}},  # medium takes complex's outcome
        {"prompt": "b", "outcomes": {"simple": 1, "medium": 1, "complex": 1}},
        {"prompt": "c", "label": "medium", "id": "x1", "source": "mine"},
        {"prompt": "d", "outcomes": {"simple": 0.2, "medium": 0.9, "complex": 0.9}, "costs": {"simple": 0.0001, "complex": 0.005}},
    ])
    rows, problems = read_labelled(path, TIERS)
    assert problems == []
    assert [r.label for r in rows] == ["medium", "simple", "medium", "medium"]
    assert rows[0].outcomes == {"simple": 0.0, "medium": 1.0, "complex": 1.0}
    assert rows[2].extra == {"id": "x1", "source": "mine"}
    assert rows[3].costs == {"simple": Decimal("0.0001"), "medium": Decimal("0.005"), "complex": Decimal("0.005")}


@pytest.mark.parametrize("line,message", [
    ("{not json", "labeled.jsonl:2: not JSON"),
    ('["a list"]', "labeled.jsonl:2: expected a JSON object"),
    ('{"label": "simple"}', "labeled.jsonl:2: 'prompt' is missing or empty"),
    ('{"prompt": "x"}', "labeled.jsonl:2: needs a 'label' or 'outcomes'"),
    ('{"prompt": "x", "label": "premium"}', "labeled.jsonl:2: label 'premium' is not a tier of the config"),
    ('{"prompt": "x", "outcomes": {"simple": 1.5, "complex": 1}}', "labeled.jsonl:2: 'outcomes.simple' must be a number in [0, 1]"),
    ('{"prompt": "x", "outcomes": {"huge": 1}}', "labeled.jsonl:2: 'outcomes' names 'huge'"),
    ('{"prompt": "x", "outcomes": {"simple": 1}}', "labeled.jsonl:2: 'outcomes' has no value for medium, complex"),
    ('{"prompt": "x", "label": "simple", "costs": {"simple": -1, "complex": 1}}', "'costs.simple' must be a number in >= 0"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = _write(tmp_path, [{"prompt": "fine", "label": "simple"}, line])
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_labelled(path, TIERS)
    rows, problems = read_labelled(path, TIERS, skip_bad=True)
    assert len(rows) == 1 and len(problems) == 1 and message in problems[0]


def test_empty_file(tmp_path):
    with pytest.raises(UsageError, match="no labelled rows"):
        read_labelled(_write(tmp_path, []), TIERS)


def test_metrics_on_a_constructed_set(tmp_path):
    config = load_config(EXAMPLE)
    rows, _ = read_labelled(_write(tmp_path, [
        {"prompt": "hello", "outcomes": {"simple": 1, "medium": 1, "complex": 1}, "costs": {"simple": 1, "medium": 2, "complex": 10}},
        {"prompt": "debug this crash", "outcomes": {"simple": 0, "medium": 0, "complex": 1}, "costs": {"simple": 1, "medium": 2, "complex": 10}},
        {"prompt": "hi, please debug my code", "outcomes": {"simple": 1, "medium": 1, "complex": 1}, "costs": {"simple": 1, "medium": 2, "complex": 10}},
        {"prompt": "Tell me about the history of the Roman empire and its long decline",
         "outcomes": {"simple": 0, "medium": 0, "complex": 1}, "costs": {"simple": 1, "medium": 2, "complex": 10}},
    ]), TIERS)
    report = evaluate(rows, {"rules": get_classifier("rules", config)}, config)
    rules = report["classifiers"]["rules"]
    # routed: simple, complex, complex (debug wins over the greeting), medium; labels: simple, complex, simple, complex
    assert rules["accuracy"] == 0.5
    assert rules["under_routing"] == 0.25 and rules["over_routing"] == 0.25
    assert rules["confusion"]["simple"] == {"simple": 1, "medium": 0, "complex": 1}
    assert rules["cost_per_call"] == "5.75"  # (1 + 10 + 10 + 2) / 4
    assert rules["savings_vs_premium"] == 0.425
    assert rules["quality"] == 0.75 and rules["quality_vs_premium"] == 0.75
    assert rules["premium_share"] == 0.5
    oracle = report["baselines"]["oracle"]
    assert oracle["accuracy"] == 1.0 and oracle["quality"] == 1.0 and oracle["cost_per_call"] == "5.5"
    assert report["baselines"]["always_complex"]["savings_vs_premium"] == 0.0
    assert set(report["baselines"]) == {"always_simple", "always_medium", "always_complex", "random", "oracle"}


def test_cli_eval_json_and_table(tmp_path, mmr):
    path = _write(tmp_path, [{"prompt": "hello", "label": "simple"}, {"prompt": "debug this", "label": "complex"}])
    result = mmr("eval", str(path), "--json", "--config", str(EXAMPLE), db=False)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["rows"] == 2 and out["classifiers"]["rules"]["accuracy"] == 1.0
    assert {"accuracy", "macro_f1", "under_routing", "over_routing", "confusion", "latency_ms_p50"} <= set(out["classifiers"]["rules"])
    table = mmr("eval", str(path), "--config", str(EXAMPLE), db=False).stdout.decode()
    assert "always_complex" in table and "oracle" in table and "label (rows) x routed (columns)" in table


def test_cli_eval_bad_line_and_skip(tmp_path, mmr):
    path = _write(tmp_path, [{"prompt": "hello", "label": "simple"}, "{oops"])
    result = mmr("eval", str(path), "--config", str(EXAMPLE), db=False)
    assert result.returncode == EXIT_USAGE
    assert result.stderr.decode().startswith(f"Error: {path}:2: not JSON")
    result = mmr("eval", str(path), "--skip-bad", "--json", "--config", str(EXAMPLE), db=False)
    assert result.returncode == 0 and json.loads(result.stdout)["rows"] == 1
    assert f"skipped {path}:2" in result.stderr.decode()


def test_cli_eval_unknown_classifier(tmp_path, mmr):
    path = _write(tmp_path, [{"prompt": "hello", "label": "simple"}])
    result = mmr("eval", str(path), "--classifier", "rules,magic", "--config", str(EXAMPLE), db=False)
    assert result.returncode == EXIT_USAGE and "valid classifiers: embedding, llm, ml, rules" in result.stderr.decode()


def test_classify_jsonl(mmr):
    stdin = '{"prompt": "hello", "id": 1}\n\n{"prompt": "debug this"}\n{"nope": 1}\n'
    result = mmr("classify", "--jsonl", "--skip-bad", input=stdin, db=False)
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [line.get("tier") for line in lines] == ["simple", "complex", None]
    assert lines[0]["id"] == 1 and "id" not in lines[1]
    assert lines[2] == {"line": 4, "error": "stdin:4: expected an object with a non-empty prompt"}
    result = mmr("classify", "--jsonl", input=stdin, db=False)
    assert result.returncode == EXIT_USAGE and result.stderr.decode() == "Error: stdin:4: expected an object with a non-empty prompt\n"


def test_apgr():
    from router_cli.evaluate import apgr

    # (score, weak outcome, strong outcome): the strong model helps exactly the high scores.
    perfect = [(0.9, 0, 1), (0.8, 0, 1), (0.2, 1, 1), (0.1, 1, 1)]
    assert apgr(perfect) == 0.75  # gap recovered after 0, 1, 2, 3, 4 calls: 0, .5, 1, 1, 1 (trapezoid)
    backwards = [(0.1, 0, 1), (0.2, 0, 1), (0.8, 1, 1), (0.9, 1, 1)]
    assert apgr(backwards) == 0.25
    assert apgr([(0.5, 1, 1), (0.4, 1, 1)]) is None  # no gap to recover


def test_threshold_sweep_finds_the_cheapest_setting(tmp_path):
    from router_cli.evaluate import Prediction, sweep

    rows, _ = read_labelled(_write(tmp_path, [
        {"prompt": "a", "outcomes": {"simple": 1, "medium": 1, "complex": 1}, "costs": {"simple": 1, "medium": 2, "complex": 10}},
        {"prompt": "b", "outcomes": {"simple": 0, "medium": 1, "complex": 1}, "costs": {"simple": 1, "medium": 2, "complex": 10}},
        {"prompt": "c", "outcomes": {"simple": 0, "medium": 0, "complex": 1}, "costs": {"simple": 1, "medium": 2, "complex": 10}},
    ]), TIERS)
    predictions = [Prediction("simple", 0.1, 0), Prediction("medium", 0.5, 0), Prediction("complex", 0.9, 0)]
    costs = [r.costs for r in rows]
    result = sweep(rows, predictions, TIERS, costs, 1.0)
    best = result["cheapest_at_target"]
    assert best["quality_vs_premium"] == 1.0 and best["cost_vs_premium"] == round(13 / 30, 4)  # 1 + 2 + 10 of 30
    qualities = [f["quality_vs_premium"] for f in result["frontier"]]
    assert qualities == sorted(qualities)  # a frontier: paying more only where it buys quality
    assert sweep(rows, predictions, TIERS, costs, 1.0) is not None
    rows[0].outcomes = None
    assert sweep(rows, predictions, TIERS, costs, 1.0) is None


def test_cli_eval_plot_and_target(tmp_path, mmr):
    path = _write(tmp_path, [{"prompt": p, "outcomes": {"simple": s, "complex": 1}} for p, s in
                             (("hello", 1), ("debug this", 0), ("what is rust", 1), ("prove it", 0))])
    plot = tmp_path / "curve.svg"
    result = mmr("eval", str(path), "--plot", str(plot), "--target-quality", "0.9", "--config", str(EXAMPLE), db=False)
    assert result.returncode == 0, result.stderr
    assert "cheapest thresholds keeping 90% quality" in result.stdout.decode()
    assert plot.read_text().startswith("<svg") and "<polyline" in plot.read_text()
    result = mmr("eval", str(path), "--target-quality", "1.5", "--config", str(EXAMPLE), db=False)
    assert result.returncode == EXIT_USAGE and "--target-quality must be in (0, 1]" in result.stderr.decode()
