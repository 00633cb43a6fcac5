"""Slow counts as unhealthy: each model's latency over the breaker window against its ``slo``.

A model whose p95 time to first token, or p95 time of the whole call, is above its
SLO (with at least ``slo.min_calls`` calls seen) is demoted: tried after its
tier-mates, until its slow calls age out of the window. A demoted model is called
less, so it recovers by itself once the window has passed without slow calls, or
sooner if the calls it still gets are fast. The samples come from the ledger
(``calls.ttft_ms`` and ``duration_ms``); a call abandoned before its first token (for
want of one, or beaten by a hedge) counts with the time it was given: its real time to
first token was longer still.

    stats = model_latency(latency_samples(ledger, since))
    why = demotion(model, stats.get((model.provider, model.model)), window=60)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config import ModelSpec


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest rank: the smallest value with at least ``fraction`` of ``values`` at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass
class LatencyStats:
    """One model's latency samples in milliseconds: times to first token, and whole calls."""

    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    abandoned: int = 0  # calls given up before their first token

    def to_json(self) -> dict:
        return {"calls": len(self.total), "abandoned": self.abandoned,
                "ttft_p50_ms": _ms(percentile(self.ttft, 0.5)), "ttft_p95_ms": _ms(percentile(self.ttft, 0.95)),
                "total_p50_ms": _ms(percentile(self.total, 0.5)), "total_p95_ms": _ms(percentile(self.total, 0.95))}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def model_latency(samples) -> dict[tuple[str, str], LatencyStats]:
    """``samples`` (provider, model, ttft_ms, duration_ms, error_kind) gathered per provider/model."""
    out: dict[tuple[str, str], LatencyStats] = {}
    for provider, model, ttft, duration, kind in samples:
        stats = out.setdefault((provider, model), LatencyStats())
        if kind in ("first_token_timeout", "hedge_lost"):
            stats.abandoned += 1
            ttft = duration  # at least this long
        if ttft is not None:
            stats.ttft.append(float(ttft))
        stats.total.append(float(duration or 0.0))
    return out


def demotion(model: ModelSpec, stats: LatencyStats | None, window: float) -> str | None:
    """Why ``model`` is demoted now (its SLO missed over the last ``window`` seconds), or None."""
    slo = model.slo
    if slo is None or stats is None:
        return None
    for name, limit, values in (("time to first token", slo.ttft, stats.ttft), ("latency", slo.total, stats.total)):
        if limit is None or len(values) < slo.min_calls:
            continue
        p95 = percentile(values, 0.95)
        if p95 is not None and p95 > limit * 1000:
            return (f"p95 {name} {p95:,.0f} ms over its last {len(values)} calls in {window:g} s is above "
                    f"its SLO of {limit * 1000:,.0f} ms")
    return None


def demote(chain: list, reasons: dict[tuple[str, str], str]) -> list:
    """``chain`` ((tier, model) pairs) with each tier's demoted models moved behind its other models."""
    out: list = []
    for tier in dict.fromkeys(t.name for t, _ in chain):
        links = [link for link in chain if link[0].name == tier]
        out += sorted(links, key=lambda link: (link[1].provider, link[1].model) in reasons)
    return out


__all__ = ["LatencyStats", "demote", "demotion", "model_latency", "percentile"]
