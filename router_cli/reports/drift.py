"""Drift: a window's tier mix and escalation and error rates against the window of equal
length just before it, with what moved flagged.

    report.drift = drift(ledger, report.since, report.until, threshold_points=10, current=report.total)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..ledger.queries import routed_tiers, tier_requests, tier_window_counts
from .cost_rows import CostRow
from .when import iso, previous_since

MIN_REQUESTS_FOR_DRIFT = 20


@dataclass
class Drift:
    """This window against the previous one of the same length."""

    previous_since: datetime
    previous_until: datetime
    previous_requests: int
    current_requests: int
    tier_mix: dict[str, tuple[float, float]]  # routed tier -> (previous share, current share) of requests
    rates: dict[str, tuple[float, float]]  # escalation_rate, error_rate -> (previous, current)
    flags: list[str]
    threshold_points: float

    def to_json(self) -> dict:
        return {
            "previous_since": iso(self.previous_since), "previous_until": iso(self.previous_until),
            "previous_requests": self.previous_requests, "current_requests": self.current_requests,
            "threshold_points": self.threshold_points,
            "tier_mix": {t: {"previous": round(p, 4), "current": round(c, 4), "shift_points": round((c - p) * 100, 1)}
                         for t, (p, c) in self.tier_mix.items()},
            "rates": {k: {"previous": round(p, 4), "current": round(c, 4)} for k, (p, c) in self.rates.items()},
            "flags": self.flags,
        }


def no_drift(since: datetime, until: datetime, threshold_points: float = 10.0) -> Drift:
    """The drift of an empty ledger: nothing in either window."""
    nothing = {"escalation_rate": (0.0, 0.0), "error_rate": (0.0, 0.0)}
    return Drift(previous_since(since, until), since, 0, 0, {}, nothing, [], threshold_points)


def drift(ledger, since: datetime, until: datetime, threshold_points: float = 10.0, current: CostRow | None = None,
          where: dict[str, str] | None = None) -> Drift:
    """Compare the tier mix and the escalation and error rates of [since, until)
    with the window of equal length just before it; flag what moved.

    A tier's share of requests (by routed tier) is flagged when it moves more
    than ``threshold_points`` points; a rate when it rises by half that many
    points or at least doubles (rising a point or more). Nothing is flagged
    when either window has fewer than 20 requests. ``current``, the report's
    total for [since, until), saves counting that window's rates again. ``where``: only the
    calls of these user/team values (both windows).
    """
    before_since = previous_since(since, until)
    before = _window_mix(ledger, before_since, since, where)
    if current is None:
        now = _window_mix(ledger, since, until, where)
    else:
        now = {"tiers": _tier_counts(ledger, since, until, where), "requests": current.requests,
               "escalated": current.escalated, "errors": current.errors, "calls": current.calls}
    # Ties by name, so every process (the page, `mmr costs`) lists the same flags in the same order.
    tiers = sorted(set(before["tiers"]) | set(now["tiers"]),
                   key=lambda t: (-(now["tiers"].get(t, 0) + before["tiers"].get(t, 0)), t))
    mix = {t: (_share(before["tiers"].get(t, 0), before["requests"]), _share(now["tiers"].get(t, 0), now["requests"])) for t in tiers}
    rates = {
        "escalation_rate": (_share(before["escalated"], before["requests"]), _share(now["escalated"], now["requests"])),
        "error_rate": (_share(before["errors"], before["calls"]), _share(now["errors"], now["calls"])),
    }
    flags = []
    if min(before["requests"], now["requests"]) >= MIN_REQUESTS_FOR_DRIFT:
        flags = _flags(mix, rates, threshold_points)
    return Drift(before_since, since, before["requests"], now["requests"], mix, rates, flags, threshold_points)


def _flags(mix: dict[str, tuple[float, float]], rates: dict[str, tuple[float, float]], threshold_points: float) -> list[str]:
    flags = []
    for tier, (p, c) in mix.items():
        if abs(c - p) * 100 > threshold_points:
            flags.append(f"tier {tier}: {p:.0%} -> {c:.0%} of requests ({(c - p) * 100:+.0f} points)")
    for name, (p, c) in rates.items():
        rise = (c - p) * 100
        if rise >= threshold_points / 2 or (c >= 2 * p and rise >= 1):
            flags.append(f"{name.replace('_', ' ')}: {p:.1%} -> {c:.1%}")
    return flags


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _tier_counts(ledger, since: datetime, until: datetime, where: dict[str, str] | None = None) -> dict[str, int]:
    """Requests per routed tier: index-only counts."""
    counts = {}
    for tier in routed_tiers(ledger):
        n = tier_requests(ledger, tier, since, until, where)
        if n:
            counts[tier] = n
    return counts


def _window_mix(ledger, since: datetime, until: datetime, where: dict[str, str] | None = None) -> dict:
    """Requests by routed tier, escalations, errors and calls, from the routed-tier index alone."""
    out: dict = {"tiers": {}, "requests": 0, "escalated": 0, "errors": 0, "calls": 0}
    for tier in routed_tiers(ledger):
        requests, escalated, errors, calls = tier_window_counts(ledger, tier, since, until, where)
        if requests:
            out["tiers"][tier] = requests
        out["requests"] += requests
        out["escalated"] += escalated
        out["errors"] += errors
        out["calls"] += calls
    return out
