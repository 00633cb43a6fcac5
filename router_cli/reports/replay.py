"""``mmr eval --replay``: route past prompts again with another classifier or thresholds,
and price the traffic from the ledger's token counts at the config's prices.

    report = replay(ledger, config, {"ml": get_classifier("ml", config)}, since, until)

No model is called. For each request whose prompt was stored in full and that
got an answer, the new route's tier is priced at its first model's prices for
the tokens the answer actually used (each class as recorded: uncached input, cache
reads and writes, output; priced by the engine's own cost function), so each figure is an estimate: another model would
have written a different number of tokens. The same arithmetic at the recorded
routes (``as_routed``) makes the comparison like for like; ``actual`` is what
the ledger says was billed, retries, escalations and judges included.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import Decimal

from ..classify.base import NEEDS_CALLER
from ..errors import UsageError
from ..pricing import Usage, cost, decimal_str
from .feedback import RETURNED
from .labels import NOT_STORED, label_request, requests_with_feedback
from .when import iso

NO_ANSWER = "no answer (every attempt failed)"
UNKNOWN_TIER = "routed to or answered by a tier that is not in the config"


def check_classifiers(names: list[str]) -> None:
    """Replays call no model, so classifiers that do are refused."""
    calling = [n for n in names if n in NEEDS_CALLER]
    if calling:
        raise UsageError(f"--replay makes no provider calls, but the {', '.join(calling)} classifier calls a model; "
                         "replay with rules or ml")


def replay(ledger, config, classifiers: dict, since: datetime, until: datetime) -> dict:
    """The replay report: per classifier, the tier mix, changed routes and estimated costs."""
    from ..prices import resolve_prices

    config = resolve_prices(config)
    tiers = config.tier_names
    price = {t.name: t.models[0].price for t in config.tiers}
    baseline_price = config.baseline_model.price
    skipped: Counter = Counter()
    types = {name: spec.type for name, spec in config.providers.items()}
    requests = []  # (prompt, routed tier, the answer's Usage, actual nano-dollars, label)
    for _, calls, feedback in requests_with_feedback(ledger, since, until):
        first = calls[0]
        if first["stored"] != "full" or not first["prompt"]:
            skipped[NOT_STORED] += 1
            continue
        answer = next((c for c in reversed(calls) if c["role"] == "answer" and c["status"] in RETURNED), None)
        if answer is None:
            skipped[NO_ANSWER] += 1
            continue
        if first["routed_tier"] not in price:
            skipped[UNKNOWN_TIER] += 1
            continue
        label, _, _ = label_request(calls, feedback, tiers)
        requests.append((first["prompt"], first["routed_tier"], _usage(answer, types),
                         sum(c["cost_nanousd"] or 0 for c in calls), label))

    as_routed = sum((cost(price[r[1]], r[2]) for r in requests), Decimal(0))
    actual = Decimal(sum(r[3] for r in requests)).scaleb(-9)
    baseline = sum((cost(baseline_price, r[2]) for r in requests), Decimal(0))
    report: dict = {
        "requests": len(requests),
        "skipped": dict(skipped.most_common()),
        "since": iso(since), "until": iso(until),
        "as_routed": {"tier_mix": _mix(Counter(r[1] for r in requests), tiers), "estimated_cost_usd": decimal_str(as_routed),
                      "actual_cost_usd": decimal_str(actual), "baseline_cost_usd": decimal_str(baseline),
                      **_label_metrics([r[1] for r in requests], requests, tiers)},
        "classifiers": {},
    }
    for name, classifier in classifiers.items():
        routes = [classifier.classify(r[0]).tier for r in requests]
        estimated = sum((cost(price[t], r[2]) for t, r in zip(routes, requests)), Decimal(0))
        report["classifiers"][name] = {
            "tier_mix": _mix(Counter(routes), tiers),
            "changed_routes": sum(t != r[1] for t, r in zip(routes, requests)),
            "estimated_cost_usd": decimal_str(estimated),
            "vs_as_routed_usd": decimal_str(estimated - as_routed),
            "savings_vs_baseline": round(float(1 - estimated / baseline), 4) if baseline else None,
            **_label_metrics(routes, requests, tiers),
        }
    return report


def _usage(call: dict, types: dict[str, str]) -> Usage:
    """The billed classes of a ledger row, counted as its provider reported them (as the engine bills)."""
    return Usage.reported(call["input_tokens"] or 0, call["output_tokens"] or 0, call["cache_read_tokens"] or 0,
                          call["cache_write_tokens"] or 0, call["reasoning_tokens"] or 0,
                          cache_in_input=types.get(call["provider"]) == "openai")


def _mix(counts: Counter, tiers: list[str]) -> dict[str, int]:
    return {t: counts.get(t, 0) for t in tiers}


def _label_metrics(routes: list[str], requests: list, tiers: list[str]) -> dict:
    """Agreement with what cascades and feedback said a prompt needed, where they said it."""
    known = [(tiers.index(t), tiers.index(r[4])) for t, r in zip(routes, requests) if r[4] is not None]
    if not known:
        return {"labelled": 0}
    n = len(known)
    return {
        "labelled": n,
        "accuracy": round(sum(a == b for a, b in known) / n, 4),
        "under_routing": round(sum(a < b for a, b in known) / n, 4),
        "over_routing": round(sum(a > b for a, b in known) / n, 4),
    }

