"""Score classifiers on labelled rows (see :mod:`router_cli.labelled`): agreement with
labels, and cost and quality when rows carry per-tier outcomes.

    rows, _ = read_labelled("labeled.jsonl", config.tier_names)
    report = evaluate(rows, {"rules": get_classifier("rules", config)}, config)
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass
from decimal import Decimal

from ..labelled import LabelledRow, row_costs
from ..pricing import decimal_str


@dataclass
class Prediction:
    tier: str
    score: float | None
    latency_ms: float


def evaluate(rows: list[LabelledRow], classifiers: dict, config, *, seed: int = 0, target_quality: float = 0.95,
             confidence: float | None = None) -> dict:
    """The ``eval --json`` object: metrics per classifier and per baseline; with ``confidence``, each
    classifier's quality also as the lower end of its bootstrap interval (:func:`quality_bound`)."""
    tiers = config.tier_names
    predictions = {}
    failures: dict[str, list[str]] = {}
    for name, classifier in classifiers.items():
        out = []
        failures[name] = []
        for row in rows:
            decision = classifier.classify(row.prompt)
            out.append(Prediction(decision.tier, decision.score, decision.latency_ms))
            if decision.failure is not None:
                failures[name].append(decision.failure)
        predictions[name] = out
    rng = random.Random(seed)
    baselines = {f"always_{t}": [Prediction(t, None, 0.0) for _ in rows] for t in tiers}
    baselines["random"] = [Prediction(rng.choice(tiers), rng.random(), 0.0) for _ in rows]
    baselines["oracle"] = [Prediction(row.label, None, 0.0) for row in rows]
    if any(row.costs is None for row in rows):
        from ..prices import resolve_prices

        config = resolve_prices(config)  # rows without costs are priced at the tiers' models' prices
    costs = [row_costs(row, config) for row in rows]
    premium = config.baseline_tier
    report: dict = {
        "rows": len(rows),
        "classifiers": {name: metrics(rows, p, tiers, costs, premium) for name, p in predictions.items()},
        "baselines": {name: metrics(rows, p, tiers, costs, premium) for name, p in baselines.items()},
    }
    for name, failed in failures.items():
        # Rows where a classifier that calls a model could not run: scored at its fallback tier.
        report["classifiers"][name]["failures"] = len(failed)
        if failed:
            report["classifiers"][name]["first_failure"] = failed[0]
    for name, p in predictions.items():
        if confidence:
            bound = quality_bound(rows, p, premium, confidence, seed)
            if bound is not None:
                report["classifiers"][name]["quality_vs_premium_bound"] = {"confidence": confidence, "lower": bound}
        curve = sweep(rows, p, tiers, costs, target_quality, premium=premium)
        if curve is not None:
            report["classifiers"][name]["sweep"] = curve
    return report


def mark_in_sample(report: dict, classifiers: dict, data_sha256: str) -> list[str]:
    """Set each classifier's ``in_sample``: True when its model was trained on exactly these bytes
    (a trained model records its data's hash). Returns the names of those that were."""
    marked = []
    for name, classifier in classifiers.items():
        training = training_record(classifier)
        in_sample = training.get("data_sha256") == data_sha256
        report["classifiers"][name]["in_sample"] = in_sample
        if in_sample:
            marked.append(name)
    return marked


def training_record(classifier) -> dict:
    """The training record of a trained classifier's model file (ml, knn, blend); {} for others."""
    record = getattr(classifier, "training", None) or getattr(getattr(classifier, "model", None), "training", None)
    return record if isinstance(record, dict) else {}


def mark_promised(report: dict, classifiers: dict) -> None:
    """For models trained with --confidence: what training promised (``promised``: target, confidence,
    expected and guaranteed quality vs premium) and, on rows with outcomes, whether these rows kept it."""
    for name, classifier in classifiers.items():
        record = training_record(classifier)
        held = record.get("held_out") or {}
        if "guaranteed_quality_vs_premium" not in held:
            continue
        m = report["classifiers"][name]
        m["promised"] = {"target": record.get("target_quality"), "confidence": held.get("confidence"),
                         "expected": held.get("quality_vs_premium"), "guaranteed": held["guaranteed_quality_vs_premium"]}
        if m.get("quality_vs_premium") is not None and record.get("target_quality") is not None:
            m["promised"]["kept"] = bool(m["quality_vs_premium"] >= record["target_quality"])


BOOTSTRAP = 200


def quality_bound(rows: list[LabelledRow], predictions: list[Prediction], premium: str, confidence: float,
                  seed: int = 0) -> float | None:
    """The (1 - confidence) quantile of quality vs premium over rows resampled with replacement: what the
    router keeps at least, at that confidence, on data like these rows. None without outcomes."""
    pairs = [(r.outcomes[p.tier], r.outcomes[premium]) for r, p in zip(rows, predictions) if r.outcomes is not None]
    if not pairs:
        return None
    rng = random.Random(seed)
    ratios = []
    for _ in range(BOOTSTRAP):
        sample = rng.choices(pairs, k=len(pairs))
        strong = sum(s for _, s in sample)
        ratios.append(sum(q for q, _ in sample) / strong if strong else 1.0)
    ratios.sort()
    return round(ratios[max(0, math.floor((1 - confidence) * BOOTSTRAP) - 1)], 4)


# The sweep evaluates at most this many threshold settings; with many tiers its grid coarsens.
MAX_SWEEP_SETTINGS = 20_000


def sweep(rows: list[LabelledRow], predictions: list[Prediction], tiers: list[str], costs: list[dict[str, Decimal]],
          target_quality: float, steps: int = 20, premium: str | None = None) -> dict | None:
    """Route by score alone over a grid of thresholds: the cost-quality frontier, and the
    cheapest thresholds that keep ``target_quality`` of the premium tier's quality
    (``premium``: the config's baseline tier, by default the top one).

    With n tiers, n - 1 ascending thresholds cut the score range: a score below the first
    goes to the cheapest tier, and so on. The candidate cuts are score quantiles; every
    ascending combination of them is scored, each in O(tiers) from prefix sums over the
    rows sorted by score. With many tiers the quantile grid coarsens so that at most
    ``MAX_SWEEP_SETTINGS`` combinations are scored. Needs outcomes and scores on every row.
    """
    data = sorted(((p.score, r.outcomes, cost) for r, p, cost in zip(rows, predictions, costs)
                   if r.outcomes is not None and p.score is not None), key=lambda d: d[0])
    if len(data) != len(rows):
        return None
    premium = premium or tiers[-1]
    n, gaps = len(rows), len(tiers) - 1
    scores = [score for score, _, _ in data]
    while steps > 1 and math.comb(steps + 3 + gaps - 1, gaps) > MAX_SWEEP_SETTINGS:
        steps -= 1
    cuts = sorted({scores[min(n - 1, round(i * (n - 1) / steps))] for i in range(steps + 1)} | {0.0, 1.01})
    # prefix[t][i]: quality and cost of sending the i lowest scores to tier t. Costs are
    # floats here: they only rank settings and give rounded ratios; nothing is billed.
    prefix_q = {t: list(itertools.accumulate((o[t] for _, o, _ in data), initial=0.0)) for t in tiers}
    prefix_c = {t: list(itertools.accumulate((float(c[t]) for _, _, c in data), initial=0.0)) for t in tiers}
    below = [bisect.bisect_left(scores, cut) for cut in cuts]  # rows with a score under each cut
    premium_q, premium_c = prefix_q[premium][n], prefix_c[premium][n]
    points = []
    for combo in itertools.combinations_with_replacement(range(len(cuts)), gaps):
        q = c = 0.0
        start = 0
        for tier, end in zip(tiers, [below[i] for i in combo] + [n]):
            q += prefix_q[tier][end] - prefix_q[tier][start]
            c += prefix_c[tier][end] - prefix_c[tier][start]
            start = end
        points.append((c / premium_c if premium_c else 0.0, q / premium_q if premium_q else 1.0, combo))
    frontier: list[dict] = []
    cheapest = None
    best_q = -1.0
    for relative_cost, quality, combo in sorted(points, key=lambda x: (x[0], -x[1])):
        if quality > best_q:
            point = {"thresholds": [round(cuts[i], 4) for i in combo], "cost_vs_premium": round(relative_cost, 4),
                     "quality_vs_premium": round(quality, 4)}
            frontier.append(point)
            if cheapest is None and quality >= target_quality:  # exact, not the rounded value
                cheapest = point
            best_q = quality
    return {"target_quality": target_quality, "frontier": frontier, "cheapest_at_target": cheapest}


def metrics(rows: list[LabelledRow], predictions: list[Prediction], tiers: list[str], costs: list[dict[str, Decimal]],
            premium: str | None = None) -> dict:
    """Agreement with labels, routing errors and, with outcomes, quality and cost against
    always-``premium`` (the config's baseline tier, by default the top one)."""
    premium = premium or tiers[-1]
    n = len(rows)
    index = {t: i for i, t in enumerate(tiers)}
    confusion = {t: {u: 0 for u in tiers} for t in tiers}
    for row, p in zip(rows, predictions):
        confusion[row.label][p.tier] += 1
    per_tier = {}
    for t in tiers:
        tp = confusion[t][t]
        predicted = sum(confusion[u][t] for u in tiers)
        actual = sum(confusion[t].values())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_tier[t] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "support": actual}
    # scikit-learn's convention: every tier that is a label or a prediction counts.
    present = [t for t in tiers if per_tier[t]["support"] or any(confusion[u][t] for u in tiers)]
    latencies = sorted(p.latency_ms for p in predictions)
    out = {
        "accuracy": round(sum(confusion[t][t] for t in tiers) / n, 4),
        "macro_f1": round(sum(per_tier[t]["f1"] for t in present) / len(present), 4) if present else 0.0,
        "under_routing": round(sum(index[p.tier] < index[r.label] for r, p in zip(rows, predictions)) / n, 4),
        "over_routing": round(sum(index[p.tier] > index[r.label] for r, p in zip(rows, predictions)) / n, 4),
        "per_tier": per_tier,
        "confusion": confusion,
        "latency_ms_p50": round(latencies[math.ceil(0.5 * n) - 1], 4),
        "latency_ms_p95": round(latencies[math.ceil(0.95 * n) - 1], 4),
        "premium_share": round(sum(p.tier == premium for p in predictions) / n, 4),
    }
    spent = sum((c[p.tier] for c, p in zip(costs, predictions)), Decimal(0))
    premium_cost = sum((c[premium] for c in costs), Decimal(0))
    out["cost_per_call"] = decimal_str((spent / n).quantize(Decimal("1e-12")))
    out["savings_vs_premium"] = round(float(1 - spent / premium_cost), 4) if premium_cost else 0.0
    judged = [(r.outcomes, p) for r, p in zip(rows, predictions) if r.outcomes is not None]
    if judged:
        quality = sum(o[p.tier] for o, p in judged) / len(judged)
        best_possible = sum(o[premium] for o, _ in judged) / len(judged)
        out["quality"] = round(quality, 4)
        out["quality_vs_premium"] = round(quality / best_possible, 4) if best_possible else None
        scored = [(p.score, o[tiers[0]], o[premium]) for o, p in judged if p.score is not None]
        if len(scored) == len(judged):
            out["apgr"] = apgr(scored)
    return out


def apgr(rows: list[tuple[float, float, float]]) -> float | None:
    """RouteLLM's average performance gap recovered, between the cheapest and the premium tier.

    ``rows`` are (score, weak outcome, strong outcome). Sending the k highest
    scores to the strong tier, for every k from 0 to n, recovers
    (quality - weak) / (strong - weak) of the gap; APGR is the mean over k
    (0.5 for a random order, 1 for a perfect one). None when there is no gap.
    Prompts with the same score cannot be told apart by a threshold: within a
    tie group the gain is interpolated linearly (the expected gain of taking
    them in a random order), so the order of the rows never changes the result.
    """
    n = len(rows)
    weak = sum(r[1] for r in rows)
    strong = sum(r[2] for r in rows)
    if strong <= weak:
        return None
    gains = [0.0]  # gap recovered after k calls to the strong tier, k = 0..n
    for _, group in itertools.groupby(sorted(rows, key=lambda r: -r[0]), key=lambda r: r[0]):
        deltas = [s - w for _, w, s in group]
        base, step = gains[-1], sum(deltas) / len(deltas)
        gains.extend(base + step * i for i in range(1, len(deltas) + 1))
    total = sum((gains[i] + gains[i + 1]) / 2 for i in range(n))  # trapezoid over the share sent up
    return round(total / n / (strong - weak), 4)
