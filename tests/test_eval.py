"""`mmr eval` and `mmr classify --jsonl`: labelled JSONL, metrics, baselines, bad lines."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from router_cli.classify import get_classifier
from router_cli.config import load_config
from router_cli.errors import EXIT_USAGE, UsageError
from router_cli.labelled import read_labelled
from router_cli.reports.evaluate import evaluate

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
    result = mmr("eval", str(path), "--json", "--classifier", "rules", "--config", str(EXAMPLE), db=False)
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
    assert result.returncode == EXIT_USAGE and "valid classifiers: blend, embedding, knn, llm, ml, rules" in result.stderr.decode()


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
    from router_cli.reports.evaluate import apgr

    # (score, weak outcome, strong outcome): the strong model helps exactly the high scores.
    perfect = [(0.9, 0, 1), (0.8, 0, 1), (0.2, 1, 1), (0.1, 1, 1)]
    assert apgr(perfect) == 0.75  # gap recovered after 0, 1, 2, 3, 4 calls: 0, .5, 1, 1, 1 (trapezoid)
    backwards = [(0.1, 0, 1), (0.2, 0, 1), (0.8, 1, 1), (0.9, 1, 1)]
    assert apgr(backwards) == 0.25
    assert apgr([(0.5, 1, 1), (0.4, 1, 1)]) is None  # no gap to recover


def test_threshold_sweep_finds_the_cheapest_setting(tmp_path):
    from router_cli.reports.evaluate import Prediction, sweep

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


def test_apgr_does_not_depend_on_the_order_of_tied_scores():
    import random

    from router_cli.reports.evaluate import apgr

    rows = [(0.9, 0, 1), (0.5, 0, 1), (0.5, 1, 1), (0.5, 1, 1), (0.5, 0, 1), (0.1, 1, 0), (0.1, 1, 1)]
    results = set()
    for seed in range(20):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        results.add(apgr(shuffled))
    assert len(results) == 1
    # weak 4, strong 6: gap 2. Gain after k = 0..7 calls: 0, 1, then the tie of four (+2 in all) in even steps:
    # 1.5, 2, 2.5, 3, then the tie of two (-1 in all): 2.5, 2; trapezoids .5 1.25 1.75 2.25 2.75 2.75 2.25 = 13.5
    assert results == {round(13.5 / 7 / 2, 4)}


def test_macro_f1_counts_tiers_that_are_only_predicted():
    from router_cli.labelled import LabelledRow
    from router_cli.reports.evaluate import Prediction, metrics

    rows = [LabelledRow(f"p{i}", "simple", i) for i in range(4)]
    predictions = [Prediction(t, None, 0.0) for t in ("simple", "simple", "complex", "complex")]
    costs = [{t: Decimal(1) for t in TIERS} for _ in rows]
    # scikit-learn: f1(simple) = 2/3 (precision 1, recall 1/2), f1(complex) = 0; medium is neither label nor prediction.
    assert metrics(rows, predictions, TIERS, costs)["macro_f1"] == round((2 / 3 + 0) / 2, 4)


@pytest.mark.parametrize("value", ["1" + "0" * 400, "9" * 5000])
def test_huge_numbers_are_bad_lines(tmp_path, value):
    path = tmp_path / "huge.jsonl"
    path.write_text('{"prompt": "ok", "label": "simple"}\n'
                    f'{{"prompt": "x", "outcomes": {{"simple": 1, "complex": 1}}, "costs": {{"simple": {value}, "complex": 1}}}}\n')
    with pytest.raises(UsageError, match=f"^{path}:2: "):
        read_labelled(path, TIERS)
    rows, problems = read_labelled(path, TIERS, skip_bad=True)
    assert len(rows) == 1 and problems[0].startswith(f"{path}:2: ") and len(problems[0]) < 200


def test_byte_order_mark_is_not_part_of_the_first_line(tmp_path, mmr):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "hello", "label": "simple"}\n{"prompt": "debug this", "label": "complex"}\n')
    rows, problems = read_labelled(path, TIERS)
    assert [r.label for r in rows] == ["simple", "complex"] and problems == []
    result = mmr("classify", "--jsonl", input=b'\xef\xbb\xbf{"prompt": "hello", "id": 7}\n', db=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["id"] == 7


def _brute_force_sweep(data, tiers, cuts):
    """The sweep as first written: every ascending combination, every row, in Decimal."""
    import itertools

    premium_q = sum(o[tiers[-1]] for _, o, _ in data)
    premium_c = sum((c[tiers[-1]] for _, _, c in data), Decimal(0))
    points = []
    for combo in itertools.combinations_with_replacement(cuts, len(tiers) - 1):
        q, c = 0.0, Decimal(0)
        for score, outcomes, cost in data:
            tier = tiers[sum(score >= cut for cut in combo)]
            q += outcomes[tier]
            c += cost[tier]
        points.append((float(c / premium_c), q / premium_q, combo))
    return points


@pytest.mark.parametrize("tiers", [["cheap", "dear"], TIERS])
def test_sweep_equals_the_brute_force_grid(tiers):
    import random

    from router_cli.labelled import LabelledRow
    from router_cli.reports.evaluate import Prediction, sweep

    rng = random.Random(3)
    rows, predictions = [], []
    for i in range(60):
        score = round(rng.random(), 2)  # ties on purpose
        outcomes = {t: float(rng.random() < 0.3 + 0.6 * score * j / (len(tiers) - 1) + 0.2 * j) for j, t in enumerate(tiers)}
        costs = {t: Decimal(10 ** j) * Decimal(rng.randint(1, 9)) for j, t in enumerate(tiers)}
        rows.append(LabelledRow(f"p{i}", tiers[0], i, outcomes, costs))
        predictions.append(Prediction(tiers[0], score, 0.0))
    result = sweep(rows, predictions, tiers, [r.costs for r in rows], 0.9)
    scores = sorted(p.score for p in predictions)
    n = len(scores)
    cuts = sorted({scores[min(n - 1, round(i * (n - 1) / 20))] for i in range(21)} | {0.0, 1.01})
    points = _brute_force_sweep([(p.score, r.outcomes, r.costs) for r, p in zip(rows, predictions)], tiers, cuts)
    frontier, best_q = [], -1.0
    for cost, quality, combo in sorted(points, key=lambda x: (x[0], -x[1])):
        if quality > best_q + 1e-12:
            frontier.append((round(cost, 4), round(quality, 4)))
            best_q = quality
    assert [(f["cost_vs_premium"], f["quality_vs_premium"]) for f in result["frontier"]] == frontier
    reaching = [(c, q) for c, q, _ in sorted(points, key=lambda x: (x[0], -x[1])) if q >= 0.9]
    assert result["cheapest_at_target"]["cost_vs_premium"] == round(reaching[0][0], 4)


@pytest.mark.timeout(60)
def test_sweep_with_five_tiers():
    from router_cli.labelled import LabelledRow
    from router_cli.reports.evaluate import MAX_SWEEP_SETTINGS, Prediction, sweep

    tiers = ["t0", "t1", "t2", "t3", "t4"]
    rows, predictions = [], []
    for i in range(500):  # prompt i needs tier i // 100, and its score says so
        need = i // 100
        rows.append(LabelledRow(f"p{i}", tiers[need], i, {t: float(j >= need) for j, t in enumerate(tiers)},
                                {t: Decimal(2 ** j) for j, t in enumerate(tiers)}))
        predictions.append(Prediction(tiers[need], need / 5 + 0.1, 0.0))
    result = sweep(rows, predictions, tiers, [r.costs for r in rows], 1.0)
    best = result["cheapest_at_target"]
    assert best["quality_vs_premium"] == 1.0 and best["cost_vs_premium"] == round((1 + 2 + 4 + 8 + 16) / 80, 4)
    assert best["thresholds"] == [0.3, 0.5, 0.7, 0.9]
    assert len(result["frontier"]) <= MAX_SWEEP_SETTINGS


def test_sweep_compares_exact_quality_with_the_target(tmp_path):
    from router_cli.reports.evaluate import Prediction, sweep

    rows, _ = read_labelled(_write(tmp_path, [
        {"prompt": "a", "outcomes": {"simple": 0.89992, "complex": 1}, "costs": {"simple": 1, "complex": 10}},
        {"prompt": "b", "outcomes": {"simple": 1, "complex": 1}, "costs": {"simple": 1, "complex": 10}},
    ]), TIERS)
    predictions = [Prediction("simple", 0.2, 0), Prediction("simple", 0.4, 0)]
    result = sweep(rows, predictions, TIERS, [r.costs for r in rows], 0.95)
    # all-simple keeps 0.94996 of premium quality, which rounds to 0.95 but does not reach it
    assert result["frontier"][0]["quality_vs_premium"] == 0.95
    assert result["cheapest_at_target"]["cost_vs_premium"] > result["frontier"][0]["cost_vs_premium"]


def test_eval_measures_against_the_baseline_tier(tmp_path):
    from dataclasses import replace

    config = replace(load_config(EXAMPLE), baseline_tier="medium")
    rows, _ = read_labelled(_write(tmp_path, [
        {"prompt": "hello", "outcomes": {"simple": 1, "medium": 1, "complex": 1}, "costs": {"simple": 1, "medium": 4, "complex": 10}},
        {"prompt": "hi there", "outcomes": {"simple": 0, "medium": 0.5, "complex": 1}, "costs": {"simple": 1, "medium": 4, "complex": 10}},
    ]), TIERS)
    report = evaluate(rows, {"rules": get_classifier("rules", config)}, config)
    simple = report["baselines"]["always_simple"]
    assert simple["quality_vs_premium"] == round(1 / 1.5, 4) and simple["savings_vs_premium"] == 0.75
    medium = report["baselines"]["always_medium"]
    assert medium["quality_vs_premium"] == 1.0 and medium["savings_vs_premium"] == 0.0 and medium["premium_share"] == 1.0
    assert report["baselines"]["always_complex"]["savings_vs_premium"] == -1.5
