"""The rows of a cost report: :class:`CostRow` (one group's measures and the rates derived
from them) and :class:`Accumulator`, which sums a group's query rows into one.

Every measure is additive, so a group's days, weeks and the report's total are
running sums of the per-day query rows; latency percentiles come from a histogram of
buckets at most 5 % wide, each read at its middle (within 2.5 %) without sorting
every call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from ..pricing import decimal_str


@dataclass
class CostRow:
    """One group of the report (or the totals, with an empty ``key``)."""

    key: dict[str, str | None]
    calls: int
    requests: int  # requests whose first attempt falls in this group
    input_tokens: int
    output_tokens: int
    spend: Decimal
    baseline: Decimal
    errors: int
    escalated: int  # requests answered by a higher tier than they were routed to
    cached: int
    discarded_spend: Decimal  # answers a cascade's gate rejected
    judging_spend: Decimal  # the gates' own judge calls
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    rated: int = 0  # answers with feedback (the latest verdict per call counts)
    good: int = 0
    bad_needing_higher: int = 0  # rated bad with --should-be a tier above the one that answered
    cost_squares: float = 0.0  # sum of squared per-call costs in nano-dollars, for significance tests

    @property
    def bad(self) -> int:
        return self.rated - self.good

    @property
    def feedback_score(self) -> float | None:
        """Share of rated answers marked good."""
        return self.good / self.rated if self.rated else None

    @property
    def misrouting_rate(self) -> float | None:
        """Share of rated answers marked bad."""
        return self.bad / self.rated if self.rated else None

    @property
    def needs_higher_share(self) -> float | None:
        """Of the answers marked bad, the share that says a higher tier was needed."""
        return self.bad_needing_higher / self.bad if self.bad else None

    @property
    def savings(self) -> Decimal:
        return self.baseline - self.spend

    @property
    def savings_pct(self) -> float | None:
        return float(self.savings / self.baseline * 100) if self.baseline else None

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0

    @property
    def escalation_rate(self) -> float:
        return self.escalated / self.requests if self.requests else 0.0

    @property
    def cache_hit_rate(self) -> float:
        return self.cached / self.requests if self.requests else 0.0

    @property
    def discarded_share(self) -> float:
        return float(self.discarded_spend / self.spend) if self.spend else 0.0

    @property
    def judging_share(self) -> float:
        return float(self.judging_spend / self.spend) if self.spend else 0.0

    def to_json(self) -> dict:
        return {
            **self.key,
            "calls": self.calls, "requests": self.requests,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "spend_usd": decimal_str(self.spend), "baseline_usd": decimal_str(self.baseline),
            "savings_usd": decimal_str(self.savings),
            "savings_pct": None if self.savings_pct is None else round(self.savings_pct, 2),
            "error_rate": round(self.error_rate, 4), "escalation_rate": round(self.escalation_rate, 4),
            "cache_hit_rate": round(self.cache_hit_rate, 4),
            "discarded_usd": decimal_str(self.discarded_spend), "discarded_share": round(self.discarded_share, 4),
            "judging_usd": decimal_str(self.judging_spend), "judging_share": round(self.judging_share, 4),
            "latency_p50_ms": self.latency_p50_ms, "latency_p95_ms": self.latency_p95_ms,
            "rated": self.rated, "feedback_score": _round(self.feedback_score),
            "misrouting_rate": _round(self.misrouting_rate), "needs_higher_share": _round(self.needs_higher_share),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def bucket_middle(bucket: int) -> float:
    """The middle of a latency bucket (widths as in the ledger's bucket query)."""
    width = 1 if bucket < 100 else 5 if bucket < 1000 else 50 if bucket < 10000 else 500 if bucket < 100000 else 5000
    return bucket + width / 2


class Accumulator:
    """Running sums of one group, plus its latency histogram."""

    def __init__(self) -> None:
        self.sums = [0] * 11
        self.histogram: dict[int, int] = {}
        self.feedback = [0, 0, 0]  # rated, good, bad needing a higher tier
        self.cost_squares = 0.0

    def add_feedback(self, verdict: str, higher: int, count: int) -> None:
        self.feedback[0] += count
        if verdict == "good":
            self.feedback[1] += count
        elif higher:
            self.feedback[2] += count

    def add(self, bucket, status: str | None, values) -> None:
        calls, requests, tin, tout, spend, baseline, escalated, judging, answers, squares = values
        self.cost_squares += squares
        s = self.sums
        s[0] += calls
        s[1] += requests
        s[2] += tin
        s[3] += tout
        s[4] += spend
        s[5] += baseline
        s[7] += escalated
        s[10] += judging
        if status == "error":
            s[6] += calls
        elif status == "cached":
            s[8] += requests
        elif status == "rejected":
            s[9] += spend
        # Latency: answers only (not judge calls, errors or cache hits).
        if bucket is not None and answers and status not in ("error", "cached", "cancelled"):
            self.histogram[bucket] = self.histogram.get(bucket, 0) + answers

    def merge(self, other: "Accumulator") -> None:
        self.sums = [a + b for a, b in zip(self.sums, other.sums)]
        for bucket, count in other.histogram.items():
            self.histogram[bucket] = self.histogram.get(bucket, 0) + count
        self.feedback = [a + b for a, b in zip(self.feedback, other.feedback)]
        self.cost_squares += other.cost_squares

    def percentile(self, fraction: float) -> float | None:
        """Nearest rank: the smallest bucket holding at least ``fraction`` of answered calls."""
        count = sum(self.histogram.values())
        if not count:
            return None
        rank, seen = math.ceil(fraction * count), 0
        for bucket in sorted(self.histogram):
            seen += self.histogram[bucket]
            if seen >= rank:
                return bucket_middle(bucket)
        return None  # pragma: no cover - the loop always reaches rank

    def row(self, key: dict) -> CostRow:
        calls, requests, tin, tout, spend, baseline, errors, escalated, cached, discarded, judging = self.sums
        nano = [Decimal(v).scaleb(-9) for v in (spend, baseline, discarded, judging)]
        return CostRow(
            key, calls, requests, tin, tout, nano[0], nano[1], errors, escalated, cached, nano[2], nano[3],
            self.percentile(0.5), self.percentile(0.95), rated=self.feedback[0], good=self.feedback[1],
            bad_needing_higher=self.feedback[2], cost_squares=self.cost_squares,
        )
