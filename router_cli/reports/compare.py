"""Experiments compared: each variant's metrics against its reference, with significance.

Read from the rows of a ``costs --by variant`` report (see reports/costs.py); the
tests are in reports/stats.py.
"""

from __future__ import annotations

from decimal import Decimal

ALPHA = 0.05  # a difference is called significant below this p-value...
MIN_N = 30  # ...and only with at least this many observations on each side
_METRICS = (  # name, numerator, denominator, how to show a value
    ("cost_per_call", "spend", "calls", "usd"),
    ("error_rate", "errors", "calls", "pct"),
    ("escalation_rate", "escalated", "requests", "pct"),
    ("feedback_score", "good", "rated", "pct"),
)


def compare(rows) -> dict:
    """Each experiment's variants against its reference (``control`` if there is one, else
    the variant with the most requests), from the rows of a ``costs --by variant`` report.

    With several experiments running, the variant label holds one ``experiment/variant``
    pair per experiment and each experiment is compared on its own, over the others'
    variants. Cost per call: Welch's t-test; rates: the two-proportion z-test.
    """
    from .stats import two_proportions, welch

    sums: dict[str, dict[str, dict]] = {}
    for row in rows:
        label = row.key.get("variant")
        for pair in (label or "").split(","):
            experiment, _, variant = pair.partition("/")
            if not variant:
                continue
            acc = sums.setdefault(experiment, {}).setdefault(variant, dict.fromkeys(
                ("calls", "requests", "errors", "escalated", "rated", "good", "spend", "cost_squares"), 0))
            for name in acc:
                acc[name] += getattr(row, name)
    out: dict = {"alpha": ALPHA, "min_n": MIN_N, "experiments": {}, "statements": []}
    if not sums:
        out["statements"].append("no calls in this window ran under an experiment")
    for experiment, variants in sorted(sums.items()):
        reference = "control" if "control" in variants else max(sorted(variants), key=lambda v: variants[v]["requests"])
        tests: dict = {}
        for name, v in sorted(variants.items()):
            if name == reference:
                continue
            r = variants[reference]
            tests[name] = {}
            for metric, num, den, _ in _METRICS:
                if metric == "cost_per_call":
                    p = welch(*_mean_var(r), r["calls"], *_mean_var(v), v["calls"])
                else:
                    p = two_proportions(r[num], r[den], v[num], v[den])
                tests[name][metric] = {
                    "reference": _value(r, num, den), "variant": _value(v, num, den),
                    "n": [r[den], v[den]], "p_value": None if p is None else round(p, 4),
                    "significant": p is not None and p < ALPHA and min(r[den], v[den]) >= MIN_N,
                }
            out["statements"].extend(_statements(experiment, name, reference, tests[name]))
        out["experiments"][experiment] = {
            "reference": reference,
            "variants": {n: {"calls": v["calls"], "requests": v["requests"], "rated": v["rated"]} for n, v in sorted(variants.items())},
            "tests": tests,
        }
        if len(variants) == 1:
            out["statements"].append(f"{experiment}: only {reference} has calls in this window; nothing to compare yet")
    return out


def _mean_var(side: dict) -> tuple[float, float]:
    n = side["calls"]
    if not n:
        return 0.0, 0.0
    mean = float(side["spend"].scaleb(9)) / n
    var = (side["cost_squares"] - n * mean * mean) / (n - 1) if n > 1 else 0.0
    return mean, var


def _value(side: dict, num: str, den: str):
    if not side[den]:
        return None
    if num == "spend":
        from ..pricing import decimal_str

        return decimal_str((side["spend"] / side["calls"]).quantize(Decimal("1e-12")))
    return round(side[num] / side[den], 4)


def _statements(experiment: str, variant: str, reference: str, tests: dict) -> list[str]:
    from ..pricing import format_usd

    out = []
    units = {"cost_per_call": "calls", "error_rate": "calls", "escalation_rate": "requests", "feedback_score": "rated answers"}
    for metric, _, _, kind in _METRICS:
        t = tests[metric]
        a, b = t["reference"], t["variant"]
        what = f"{experiment}: {metric.replace('_', ' ')} of {variant} vs {reference}"
        counts = f"{t['n'][1]:,} vs {t['n'][0]:,} {units[metric]}"
        if a is None or b is None:
            out.append(f"{what}: no data on one side yet ({counts})")
            continue
        shown = (f"{format_usd(Decimal(b))} vs {format_usd(Decimal(a))}" if kind == "usd" else f"{b:.1%} vs {a:.1%}")
        p = "n/a" if t["p_value"] is None else f"{t['p_value']:.3g}"
        if t["significant"]:
            out.append(f"{what}: {shown} ({counts}); the difference is significant (p = {p})")
        elif min(t["n"]) < MIN_N:
            out.append(f"{what}: {shown} ({counts}); not yet significant: fewer than {MIN_N} on a side")
        else:
            out.append(f"{what}: {shown} ({counts}); not yet significant (p = {p})")
    return out


__all__ = ["compare"]
