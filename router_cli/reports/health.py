"""``mmr health``: each provider/model's circuit state, recent error rate and latency.

Reads the ``breakers`` table (shared state, see :mod:`router_cli.policy.breakers`) and
the ``calls`` of a recent window; makes no provider call.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..config import Config, ModelSpec
from ..ledger.queries import answer_durations, breaker_rows, latency_samples, model_call_counts
from ..policy.latency import LatencyStats, demotion, model_latency, percentile


@dataclass
class ModelHealth:
    provider: str
    model: str
    tiers: list[str]
    state: str  # closed | open | half_open | probe_due (open, cooldown over: the next call probes)
    recent_failures: int  # counted towards opening, within the breaker window
    calls: int
    errors: int
    latency_p50_ms: float | None
    retry_at: datetime | None
    last_error: str | None
    failures_to_open: int = 0  # the breaker's threshold: this many recent failures open the circuit
    latency_p95_ms: float | None = None
    ttft_p50_ms: float | None = None  # time to first token, of streamed calls (abandoned ones: their wait)
    ttft_p95_ms: float | None = None
    slo: dict | None = None  # the model's latency SLO in ms, as configured
    demoted: str | None = None  # why it is tried after its tier-mates now (its SLO missed over the breaker window)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None

    def to_json(self) -> dict:
        return {
            "provider": self.provider, "model": self.model, "tiers": self.tiers, "state": self.state,
            "recent_failures": self.recent_failures, "failures_to_open": self.failures_to_open, "calls": self.calls, "errors": self.errors,
            "error_rate": self.error_rate, "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms, "ttft_p50_ms": self.ttft_p50_ms, "ttft_p95_ms": self.ttft_p95_ms,
            "slo": self.slo, "demoted": self.demoted is not None, "demoted_reason": self.demoted,
            "retry_at": None if self.retry_at is None else self.retry_at.isoformat(timespec="seconds"),
            "last_error": self.last_error,
        }


def health_report(ledger, config: Config, window: timedelta, now: float | None = None) -> list[ModelHealth]:
    """One row per configured provider/model, plus any the breakers remember that the config dropped."""
    now = time.time() if now is None else now
    # Whole seconds: the window's start as the report has always cut it.
    since = datetime.fromtimestamp(now - window.total_seconds(), timezone.utc).replace(microsecond=0)
    tiers: dict[tuple[str, str], list[str]] = {}
    specs: dict[tuple[str, str], ModelSpec] = {}
    for tier in config.tiers:
        for m in tier.models:
            tiers.setdefault((m.provider, m.model), []).append(tier.name)
            specs.setdefault((m.provider, m.model), m)
    breakers = {}
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    durations: dict[tuple[str, str], list[float]] = {}
    latency: dict[tuple[str, str], LatencyStats] = {}
    recent: dict[tuple[str, str], LatencyStats] = {}  # over the breaker window: what demotes a model
    if ledger is not None:
        latency = model_latency(latency_samples(ledger, since))
        if any(m.slo is not None for m in specs.values()):
            recent = model_latency(latency_samples(ledger, datetime.fromtimestamp(now - config.breaker.window,
                                                                                  timezone.utc)))
        for breaker in breaker_rows(ledger):
            breakers[(breaker[0], breaker[1])] = breaker
        for provider, model, calls, errors in model_call_counts(ledger, since):
            counts[(provider, model)] = (calls, errors)
        for provider, model, duration in answer_durations(ledger, since):
            durations.setdefault((provider, model), []).append(duration)
    out = []
    for key in [*tiers, *[k for k in breakers if k not in tiers]]:
        row = breakers.get(key)
        state, failures, open_until, last_error = ("closed", "[]", None, None) if row is None else row[2:]
        window_s = config.breaker.window
        counted = sum(1 for t in json.loads(failures or "[]") if now - min(t, now) < window_s)
        if state == "open" and open_until is not None and now >= open_until:
            state = "probe_due"
        retry_at = None
        if state in ("open", "half_open") and open_until is not None:
            retry_at = datetime.fromtimestamp(open_until, timezone.utc).astimezone()
        calls, errors = counts.get(key, (0, 0))
        times = durations.get(key, [])
        stats = latency.get(key, LatencyStats())
        spec = specs.get(key)
        out.append(ModelHealth(
            key[0], key[1], tiers.get(key, []), state, counted, calls, errors,
            times[(len(times) - 1) // 2] if times else None, retry_at, last_error, config.breaker.failures,
            percentile(times, 0.95), percentile(stats.ttft, 0.5), percentile(stats.ttft, 0.95), _slo(spec),
            None if spec is None else demotion(spec, recent.get(key), window_s),
        ))
    return out


def _slo(model: ModelSpec | None) -> dict | None:
    if model is None or model.slo is None:
        return None
    slo = model.slo
    return {"ttft_p95_ms": None if slo.ttft is None else slo.ttft * 1000,
            "latency_p95_ms": None if slo.total is None else slo.total * 1000, "min_calls": slo.min_calls}


__all__ = ["ModelHealth", "health_report"]
