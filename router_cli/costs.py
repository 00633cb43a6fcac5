"""Spend and savings reports over the ledger, aggregated in SQL.

    report = cost_report(ledger, since=parse_when("7d"), by=["tier"])

Money is summed as integer nano-dollars in SQL and turned into ``Decimal`` at
the end, so totals are exact. Savings are net: every billed attempt counts as
spend (failed attempts included), and the baseline is the premium tier's
prices applied to the tokens of each request's answer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from .errors import UsageError
from .pricing import decimal_str

_COLUMNS = ("tier", "model", "provider", "user", "team", "command", "status")
GROUP_KEYS = _COLUMNS + ("day", "week")
_RELATIVE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
ACCEPTED_FORMS = "7d, 24h, 30m, 2w, YYYY-MM-DD or an ISO timestamp such as 2026-11-01T09:00"


def parse_when(text: str, *, now: datetime | None = None, utc: bool = False, option: str = "--since") -> datetime:
    """A point in time (aware, UTC) from a relative age or a date/timestamp.

    Dates and timestamps without a zone are read in the local zone, or UTC with ``utc``.
    """
    now = now or datetime.now(timezone.utc)
    try:
        match = _RELATIVE.match(text)
        if match:
            return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc) if utc else value.astimezone()
        return value.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise UsageError(f"{option}: cannot read {text!r}; use {ACCEPTED_FORMS}") from None


def parse_by(text: str | None) -> list[str]:
    """Grouping keys from ``tier,model``; an unknown key lists the valid ones."""
    if not text:
        return []
    keys = [k.strip() for k in text.split(",") if k.strip()]
    for key in keys:
        if key not in GROUP_KEYS:
            raise UsageError(f"--by: unknown key {key!r}; valid keys: {', '.join(GROUP_KEYS)}")
    return list(dict.fromkeys(keys))


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


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
    latency_p50_ms: float | None
    latency_p95_ms: float | None

    @property
    def savings(self) -> Decimal:
        return self.baseline - self.spend

    @property
    def savings_pct(self) -> float | None:
        return float(self.savings / self.baseline * 100) if self.baseline else None

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0

    def to_json(self) -> dict:
        return {
            **self.key,
            "calls": self.calls, "requests": self.requests,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "spend_usd": decimal_str(self.spend), "baseline_usd": decimal_str(self.baseline),
            "savings_usd": decimal_str(self.savings),
            "savings_pct": None if self.savings_pct is None else round(self.savings_pct, 2),
            "error_rate": round(self.error_rate, 4),
            "latency_p50_ms": self.latency_p50_ms, "latency_p95_ms": self.latency_p95_ms,
        }


@dataclass
class CostReport:
    since: datetime
    until: datetime
    by: list[str]
    rows: list[CostRow]
    total: CostRow

    BASELINE_NOTE = (
        "Baseline: the premium tier's first model at its prices, applied to the tokens of each "
        "answered request. Spend includes every billed attempt, failed ones too."
    )

    def to_json(self) -> dict:
        return {
            "since": _iso(self.since), "until": _iso(self.until), "by": self.by,
            "rows": [r.to_json() for r in self.rows], "total": self.total.to_json(),
            "baseline": self.BASELINE_NOTE,
        }


def empty_report(since: datetime, until: datetime | None = None, by: list[str] | None = None) -> CostReport:
    """The report of a ledger that does not exist yet: same shape, all zeros."""
    return CostReport(since, until or datetime.now(timezone.utc), by or [], [], _Acc().row({}))


def cost_report(ledger, since: datetime, until: datetime | None = None, by: list[str] | None = None, utc: bool = False) -> CostReport:
    """Aggregate the ``calls`` of ``ledger`` between ``since`` and ``until`` by ``by``.

    The window is cut at (local or UTC) midnights and each day is one SQL
    query, a range scan of the ``datetime_utc`` index grouped by the other keys
    and a latency bucket. Every measure is additive, so days, weeks and the
    total are rolled up from those small results. Cutting by day keeps each
    sort small and puts the time zone arithmetic in Python, not in every row.
    """
    until = until or datetime.now(timezone.utc)
    by = by or []
    if until <= since:
        raise UsageError(f"--until ({_iso(until)}) is not after --since ({_iso(since)})")
    other = [k for k in by if k not in ("day", "week")]
    keys = "".join(f'"{k}", ' for k in other)
    sql = (
        f"SELECT {keys}{_BUCKET} AS bucket, count(*), sum(attempt = 1), coalesce(sum(input_tokens), 0), "
        "coalesce(sum(output_tokens), 0), coalesce(sum(cost_nanousd), 0), coalesce(sum(baseline_cost_nanousd), 0), "
        "sum(status = 'error'), sum(status = 'ok' AND duration_ms IS NOT NULL) "
        f"FROM calls WHERE datetime_utc >= ? AND datetime_utc < ? GROUP BY {keys}bucket"
    )
    n = len(other)
    groups: dict[tuple, _Acc] = {}
    total = _Acc()
    for start, end, day in _days(since, until, utc):
        period = {"day": day.isoformat(), "week": "{}-W{:02d}".format(*day.isocalendar()[:2])}
        for row in ledger.conn.execute(sql, [_iso(start), _iso(end)]):
            values = dict(zip(other, row[:n]))
            bucket, measures = row[n], row[n + 1:]
            total.add(bucket, measures)
            if by:
                key = tuple(period[k] if k in period else values[k] for k in by)
                groups.setdefault(key, _Acc()).add(bucket, measures)
    rows = [acc.row(dict(zip(by, key))) for key, acc in groups.items()]
    if "day" in by or "week" in by:
        rows.sort(key=lambda r: tuple("" if v is None else str(v) for v in r.key.values()))
    else:
        rows.sort(key=lambda r: r.spend, reverse=True)
    return CostReport(since, until, by, rows, total.row({}))


def _days(since: datetime, until: datetime, utc: bool):
    """(start, end, local date) for each calendar day the window touches."""
    start = since
    while start < until:
        local = start.astimezone(timezone.utc) if utc else start.astimezone()
        day = local.date()
        midnight = datetime.combine(day + timedelta(days=1), datetime.min.time())
        # A naive datetime's astimezone() reads it in the local zone, DST included.
        next_midnight = midnight.replace(tzinfo=timezone.utc) if utc else midnight.astimezone()
        end = min(until, next_midnight)
        yield start, end, day
        start = end


# Latency histogram buckets at most 5 % wide (1 ms below 100 ms, 5 ms below 1 s,
# 50 ms below 10 s, ...), so percentiles are within 2.5 % (the bucket's middle is
# reported) without sorting every row. Plain integer arithmetic: SQLite's math
# functions are not in every build.
_BUCKET = (
    "CASE WHEN duration_ms IS NULL THEN NULL WHEN duration_ms < 100 THEN CAST(duration_ms AS INTEGER) "
    "WHEN duration_ms < 1000 THEN CAST(duration_ms / 5 AS INTEGER) * 5 "
    "WHEN duration_ms < 10000 THEN CAST(duration_ms / 50 AS INTEGER) * 50 "
    "WHEN duration_ms < 100000 THEN CAST(duration_ms / 500 AS INTEGER) * 500 "
    "ELSE CAST(duration_ms / 5000 AS INTEGER) * 5000 END"
)


def _bucket_middle(bucket: int) -> float:
    width = 1 if bucket < 100 else 5 if bucket < 1000 else 50 if bucket < 10000 else 500 if bucket < 100000 else 5000
    return bucket + width / 2


class _Acc:
    """Running sums of one group, plus its latency histogram."""

    def __init__(self) -> None:
        self.sums = [0] * 7
        self.histogram: dict[int, int] = {}

    def add(self, bucket, values) -> None:
        *additive, answered = values
        for i, v in enumerate(additive):
            self.sums[i] += v or 0
        if bucket is not None and answered:
            self.histogram[bucket] = self.histogram.get(bucket, 0) + answered

    def percentile(self, fraction: float) -> float | None:
        """Nearest rank: the smallest bucket holding at least ``fraction`` of answered calls."""
        count = sum(self.histogram.values())
        if not count:
            return None
        rank, seen = math.ceil(fraction * count), 0
        for bucket in sorted(self.histogram):
            seen += self.histogram[bucket]
            if seen >= rank:
                return _bucket_middle(bucket)
        return None  # pragma: no cover - the loop always reaches rank

    def row(self, key: dict) -> CostRow:
        calls, requests, tin, tout, spend, baseline, errors = self.sums
        return CostRow(
            key, calls, requests, tin, tout, Decimal(spend).scaleb(-9), Decimal(baseline).scaleb(-9), errors,
            self.percentile(0.5), self.percentile(0.95),
        )
