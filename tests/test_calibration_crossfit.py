"""Cross-fitted calibration (``mmr train --confidence``) against a population whose truth is known: a router
that is fitted (not given), calibrated on its out-of-fold estimates of every training row and then refitted on
every row, keeps the target on the population at about the stated confidence, and saves more than setting
lambda on a held-out quarter of the rows (what --confidence did before)."""

from __future__ import annotations

import pytest

EDGES = 7  # edges of the bins of the observed difficulty the toy router learns the cheap tier's quality in


@pytest.fixture(autouse=True)
def numpy():
    return pytest.importorskip("numpy")


def draw(np, n, rng):
    """Two tiers (cheap, premium) costing 1 and 10; the cheap one fails on hard prompts; the router sees the
    difficulty with noise."""
    difficulty = rng.random(n)
    quality = np.stack([(rng.random(n) > difficulty).astype(float), (rng.random(n) > 0.2 * difficulty).astype(float)], 1)
    return difficulty + rng.normal(0, 0.3, n), quality


def fit(np, seen, quality):
    """The toy router: per bin of what it sees, the cheap tier's success rate (shrunk to the overall one)."""
    bins = np.digitize(seen, np.linspace(-1, 2, EDGES))
    overall = quality[:, 0].mean()
    sums = np.bincount(bins, quality[:, 0], minlength=EDGES + 1)
    counts = np.bincount(bins, minlength=EDGES + 1)
    return (sums + 2 * overall) / (counts + 2), quality[:, 1].mean()


def predict(np, model, seen):
    cheap, premium = model
    q = np.stack([cheap[np.digitize(seen, np.linspace(-1, 2, EDGES))], np.full(len(seen), premium)], 1)
    return q, np.tile([1.0, 10.0], (len(seen), 1))


def test_cross_fitting_holds_at_its_confidence_and_saves_more_than_a_held_out_split():
    import numpy as np

    from router_cli.classify.calibration import calibrate_bound, choose
    from router_cli.classify.ml_train import calibrate

    rng = np.random.default_rng(23)
    pop_seen, pop_q = draw(np, 200_000, rng)
    grid = [0.0] + [float(x) for x in np.linspace(0.002, 0.1, 50)]
    target = 0.9

    def on_population(model, lam):
        q, c = predict(np, model, pop_seen)
        choice = choose(q, c, lam)
        return (pop_q[np.arange(len(pop_q)), choice].mean() / pop_q[:, 1].mean(),
                1 - c[np.arange(len(pop_q)), choice].mean() / 10.0)

    results: dict[str, list] = {"cross": [], "split": [], "mean": []}
    for d in range(100):
        seen, quality = draw(np, 400, rng)
        costs = np.tile([1.0, 10.0], (400, 1))
        folds = np.array_split(rng.permutation(400), 5)
        oof_q, oof_c = np.zeros((400, 2)), np.zeros((400, 2))
        for test in folds:
            train = np.setdiff1d(np.arange(400), test)
            oof_q[test], oof_c[test] = predict(np, fit(np, seen[train], quality[train]), seen[test])
        everything = fit(np, seen, quality)
        lam, held = calibrate_bound(oof_q, oof_c, quality, costs, 1, target, 0.9, grid=grid, seed=d)
        assert held["calibration_rows"] == 400 and held["method"] == "cross-fit"
        results["cross"].append(on_population(everything, lam))
        results["mean"].append(on_population(everything, calibrate(oof_q, oof_c, quality, costs, 1, target)[0]))
        fit_part, cal_part = np.arange(300), np.arange(300, 400)  # the rows are in random order already
        model = fit(np, seen[fit_part], quality[fit_part])
        q, c = predict(np, model, seen[cal_part])
        lam, _ = calibrate_bound(q, c, quality[cal_part], costs[cal_part], 1, target, 0.9, grid=grid, seed=d)
        results["split"].append(on_population(model, lam))
    held = {name: sum(r >= target for r, _ in got) / len(got) for name, got in results.items()}
    saved = {name: float(np.mean([s for _, s in got])) for name, got in results.items()}
    # Seeded, so exact: cross-fitted 93 of 100 draws, the held-out mean 82 (the refit on every row is a
    # little better than the out-of-fold routers, so even the mean holds more than half the time), the split
    # 100 while saving 2.3 points less. 90 % confidence, less the noise of 100 draws:
    assert held["cross"] >= 0.88, held
    assert held["mean"] <= 0.86, held
    assert saved["cross"] > saved["split"] + 0.015, saved
