"""Calibration to a bound that holds (``mmr train --confidence``): lambda set by fixed-sequence testing on
cross-fitted estimates (every row predicted by a router fitted without it), the router then fitted on every
row; how often the bound holds over resampled draws; what train and eval report."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from router_cli.labelled import LabelledRow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tiers.example.yaml"


@pytest.fixture(autouse=True)
def numpy():
    return pytest.importorskip("numpy")


def population(np, n, rng):
    """Two tiers: the cheap one answers well when a hidden difficulty is low; the router sees it with noise."""
    difficulty = rng.random(n)
    quality = np.stack([(rng.random(n) > difficulty).astype(float), (rng.random(n) > 0.2 * difficulty).astype(float)], 1)
    pred_q = np.stack([1 - difficulty + rng.normal(0, 0.3, n), np.full(n, 0.9)], 1)
    return difficulty, quality, pred_q


def test_fixed_sequence_stops_at_the_first_lambda_that_fails():
    """A cheaper lambda further up the grid that passes again is not taken: the order was fixed before looking."""
    import numpy as np

    from router_cli.classify.calibration import calibrate_bound

    # 20 rows only premium answers (A), 20 only the cheap tier answers (B), 160 both answer (C). Costs 1 and 10:
    # a row goes cheap once 9 * lambda exceeds its predicted gap (A 0.9, B 1.8, C 5).
    quality = np.array([[0.0, 1.0]] * 20 + [[1.0, 0.0]] * 20 + [[1.0, 1.0]] * 160)
    pred_q = np.array([[0.0, 0.9]] * 20 + [[0.0, 1.8]] * 20 + [[0.0, 5.0]] * 160)
    costs = np.tile([1.0, 10.0], (200, 1))
    # lambda 0: all premium, 100 %; 0.15: A goes cheap, 160/180 = 88.9 %: fails; 0.25: B too, 180/180: passes, cheaper.
    lam, held = calibrate_bound(pred_q, costs, quality, costs, 1, 0.95, 0.9, grid=[0.0, 0.15, 0.25])
    assert lam == 0.0 and held["reached_target"] and held["savings_vs_premium"] == 0.0
    assert held["method"] == "cross-fit" and held["calibration_rows"] == 200
    later, alone = calibrate_bound(pred_q, costs, quality, costs, 1, 0.95, 0.9, grid=[0.25])
    assert later == 0.25 and alone["reached_target"] and alone["savings_vs_premium"] > 0  # what a grid search would keep


def test_when_even_lambda_zero_misses_it_is_kept_and_said():
    import numpy as np

    from router_cli.classify.calibration import calibrate_bound

    n = 100
    quality = np.stack([np.zeros(n), np.ones(n)], 1)
    pred_q = np.stack([np.ones(n), np.zeros(n)], 1)  # a router sure the cheap tier is good: it is never
    costs = np.tile([1.0, 2.0], (n, 1))
    lam, held = calibrate_bound(pred_q, costs, quality, costs, 1, 0.95, 0.9)
    assert lam == 0.0 and not held["reached_target"] and held["guaranteed_quality_vs_premium"] == 0.0


def test_the_bound_holds_over_resampled_splits_at_its_confidence():
    """Simulation: draw training sets from a known population, set lambda on their calibration split, and
    measure the quality the kept lambda really has on the whole population. The lower bound at 90 %
    confidence must hold in at least ~90 % of draws (85 % allowing for the simulation's own noise); the
    held-out mean calibration, for contrast, misses about half the time."""
    import numpy as np

    from router_cli.classify.calibration import calibrate_bound
    from router_cli.classify.calibration import choose
    from router_cli.classify.ml_train import calibrate

    rng = np.random.default_rng(11)
    _, pop_q, pop_pred = population(np, 200_000, rng)
    pop_c = np.tile([1.0, 10.0], (len(pop_q), 1))
    grid = [0.0] + [float(x) for x in np.linspace(0.005, 0.12, 40)]

    def population_ratio(lam):
        chosen = pop_q[np.arange(len(pop_q)), choose(pop_pred, pop_c, lam)]
        return chosen.mean() / pop_q[:, 1].mean()

    ratio_at = {lam: population_ratio(lam) for lam in grid}
    held, mean_held, draws = 0, 0, 120
    for d in range(draws):
        idx = rng.choice(len(pop_q), 400, replace=False)
        q, p, c = pop_q[idx], pop_pred[idx], pop_c[idx]
        lam, _ = calibrate_bound(p, c, q, c, 1, 0.9, 0.9, grid=grid, seed=d)
        held += ratio_at[lam] >= 0.9
        lam_mean, _ = calibrate(p, c, q, c, 1, 0.9)
        mean_held += population_ratio(lam_mean) >= 0.9
    assert held / draws >= 0.85, (held, draws)
    assert mean_held / draws <= 0.75, (mean_held, draws)


def rows(n: int = 120, seed: int = 2) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        hard = rng.random() < 0.4
        prompt = (f"prove the theorem about primes number {i}" if hard else f"say hello to friend number {i}")
        out.append({"prompt": prompt, "outcomes": {"simple": float(not hard or rng.random() < 0.2),
                                                   "medium": float(not hard or rng.random() < 0.5), "complex": 1.0}})
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import subprocess
    import sys

    pytest.importorskip("sklearn")
    d = tmp_path_factory.mktemp("cal")
    data = d / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    out = {"data": data}
    for name, extra in (("bound", []), ("mean", ["--confidence", "0"])):
        result = subprocess.run([sys.executable, "-m", "router_cli", "train", str(data), "-o", str(d / f"{name}.json"),
                                 "--config", str(EXAMPLE), "--folds", "3", *extra], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        out[name] = (d / f"{name}.json", result.stderr)
    return out


def test_train_reports_expected_and_guaranteed_and_where_lambda_was_set(trained):
    path, stderr = trained["bound"]
    held = json.loads(path.read_text())["training"]["held_out"]
    assert held["calibration_rows"] == 120 and held["method"] == "cross-fit" and held["confidence"] == 0.9
    assert held["guaranteed_quality_vs_premium"] <= held["quality_vs_premium"]
    assert (f"expected {held['quality_vs_premium']:.1%} of premium quality, guaranteed at least "
            f"{held['guaranteed_quality_vs_premium']:.1%} at 90% confidence on 120 rows, each routed by a router "
            "fitted without it") in stderr
    path, stderr = trained["mean"]
    held = json.loads(path.read_text())["training"]["held_out"]
    assert "guaranteed_quality_vs_premium" not in held and "held out: " in stderr and "guaranteed" not in stderr


def test_eval_reports_the_promise_and_whether_these_rows_kept_it(trained, mmr):
    data = trained["data"]
    path, _ = trained["bound"]
    held = json.loads(path.read_text())["training"]["held_out"]
    result = mmr("eval", str(data), "--classifier", "ml", "--ml-model", str(path), "--config", str(EXAMPLE), "--json", db=False)
    assert result.returncode == 0, result.stderr
    ml = json.loads(result.stdout)["classifiers"]["ml"]
    assert ml["promised"] == {"target": 0.95, "confidence": 0.9, "expected": held["quality_vs_premium"],
                              "guaranteed": held["guaranteed_quality_vs_premium"],
                              "kept": ml["quality_vs_premium"] >= 0.95}
    table = mmr("eval", str(data), "--classifier", "ml", "--ml-model", str(path), "--config", str(EXAMPLE), db=False)
    assert (f"ml: trained to expect {held['quality_vs_premium']:.1%} of premium quality, guaranteed at least "
            f"{held['guaranteed_quality_vs_premium']:.1%} at 90% confidence; here {ml['quality_vs_premium']:.1%}: ") in " ".join(
        table.stdout.decode().split())  # rich wraps long lines at 80 columns
    mean_path, _ = trained["mean"]
    plain = json.loads(mmr("eval", str(data), "--classifier", "ml", "--ml-model", str(mean_path), "--config", str(EXAMPLE),
                           "--json", db=False).stdout)
    assert "promised" not in plain["classifiers"]["ml"]


def test_lambda_is_set_on_every_rows_out_of_fold_estimates_and_the_model_keeps_every_row(trained):
    """Cross-fitting: the bound is computed on the out-of-fold estimates of all 120 rows (the same folds as
    --confidence 0 uses), and the model that ships is fitted on every row."""
    from router_cli.classify.calibration import calibrate_bound
    from router_cli.classify.ml_train import fit, out_of_fold, priced, targets
    from router_cli.config import load_config

    path, _ = trained["bound"]
    data = json.loads(path.read_text())
    config = load_config(EXAMPLE)
    labelled = [LabelledRow(r["prompt"], "complex", i, outcomes=r["outcomes"]) for i, r in enumerate(rows(), 1)]
    config = priced(labelled, config)
    good, quality, costs = targets(labelled, config)
    oof_q, oof_c = out_of_fold(labelled, config, folds=3, seed=0)
    lam, held = calibrate_bound(oof_q, oof_c, quality, costs, config.tier_names.index("complex"), 0.95, 0.9, seed=0)
    assert data["lambda"] == lam and data["training"]["held_out"] == held
    fitted = fit([r.prompt for r in labelled], good, costs, config.tier_names)
    assert sorted(data["vectorizer"]["vocabulary"]) == sorted(fitted.vectorizer.vocabulary_)
