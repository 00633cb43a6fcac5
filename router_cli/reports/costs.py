"""Spend and savings reports over the ledger, aggregated in SQL.

    report = cost_report(ledger, since=parse_when("7d"), by=["tier"])

Money is summed as integer nano-dollars in SQL and turned into ``Decimal`` at
the end, so totals are exact. Savings are net: every billed attempt counts as
spend (failed attempts included), and the baseline is the premium tier's
prices applied to the tokens of each request's answer.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from ..errors import UsageError
from ..ledger.queries import GROUP_COLUMNS, call_time_range, calls_in_day, feedback_counts, has_feedback
from ..pricing import decimal_str
from .cache_money import CacheUse
from .cost_rows import Accumulator, CostRow
from .drift import Drift, no_drift
from .when import MAX_CHART_WINDOW, checked_window, days, iso, period_of

GROUP_KEYS = GROUP_COLUMNS + ("day", "week")
_PERIODS = ("day", "week")


def parse_by(text: str | None) -> list[str]:
    """Grouping keys from ``tier,model``; an unknown key lists the valid ones."""
    if not text:
        return []
    keys = [k.strip() for k in text.split(",") if k.strip()]
    for key in keys:
        if key not in GROUP_KEYS:
            raise UsageError(f"--by: unknown key {key!r}; valid keys: {', '.join(GROUP_KEYS)}")
    return list(dict.fromkeys(keys))


@dataclass
class CostReport:
    since: datetime
    until: datetime
    by: list[str]
    rows: list[CostRow]
    total: CostRow
    daily_spend: dict[str, Decimal] = field(default_factory=dict)  # local (or UTC) date -> spend
    drift: Drift | None = None
    budgets: list[dict] = field(default_factory=list)  # each budget's use in its current period
    comparison: dict | None = None  # with --by variant: see experiments.compare
    cache: "CacheUse | None" = None  # prompt caching: its share of input tokens, what it saved
    reprice: dict | None = None  # with --reprice: the window at today's prices (see cache_money.reprice)
    hedging: dict | None = None  # hedged requests and what their cancelled calls cost (see hedge_summary)

    BASELINE_NOTE = (
        "Baseline: the premium tier's first model at its prices, applied to the tokens of each "
        "answered request. Spend includes every billed attempt, failed ones too."
    )

    def to_json(self) -> dict:
        return {
            "since": iso(self.since), "until": iso(self.until), "by": self.by,
            "rows": [r.to_json() for r in self.rows], "total": self.total.to_json(),
            "daily_spend": {day: decimal_str(v) for day, v in self.daily_spend.items()},
            "drift": self.drift.to_json() if self.drift else None,
            "budgets": self.budgets,
            **({"comparison": self.comparison} if self.comparison is not None else {}),
            "prompt_cache": (self.cache or CacheUse()).to_json(),
            "hedging": self.hedging or hedge_summary(None, self.since, self.until, self.total.spend),
            **({"reprice": self.reprice} if self.reprice is not None else {}),
            "baseline": self.BASELINE_NOTE,
        }


def hedge_summary(ledger, since: datetime, until: datetime, spend: Decimal) -> dict:
    """Hedged requests of the window, and what hedging added to spend: the calls it cancelled (the
    loser of each race, billed for what its provider reported), as a share of all spend."""
    from ..ledger.queries import hedge_use

    requests, lost, nano = hedge_use(ledger, since, until) if ledger is not None else (0, 0, 0)
    lost_usd = Decimal(nano).scaleb(-9)
    return {"requests": requests, "cancelled_calls": lost, "cancelled_usd": decimal_str(lost_usd),
            "share_of_spend": float(lost_usd / spend) if spend else 0.0}


def empty_report(since: datetime, until: datetime | None = None, by: list[str] | None = None,
                 utc: bool = False, threshold_points: float = 10.0) -> CostReport:
    """The report of a ledger that does not exist yet: the same shape, all zeros."""
    since, until = checked_window(since, until)
    daily = {} if until - since > MAX_CHART_WINDOW else {d.isoformat(): Decimal(0) for _, _, d in days(since, until, utc)}
    return CostReport(since, until, by or [], [], Accumulator().row({}), daily, no_drift(since, until, threshold_points))


def cost_report(ledger, since: datetime, until: datetime | None = None, by: list[str] | None = None, utc: bool = False) -> CostReport:
    """Aggregate the ``calls`` of ``ledger`` between ``since`` and ``until`` by ``by``.

    The window is cut at (local or UTC) midnights and each day is one SQL
    query, a range scan of the ``datetime_utc`` index grouped by the other keys
    and a latency bucket. Every measure is additive, so days, weeks and the
    total are rolled up from those small results. Cutting by day keeps each
    sort small and puts the time zone arithmetic in Python, not in every row.
    """
    since, until = checked_window(since, until)
    by = by or []
    start, stop = _span_with_calls(ledger, since, until)
    other = [k for k in by if k not in _PERIODS]
    groups: dict[tuple, Accumulator] = {}
    total = Accumulator()
    daily: dict[str, int] = {}
    for day_start, day_end, day in days(start, stop, utc):
        period = period_of(day)
        day_acc = _add_day(ledger, day_start, day_end, period, by, other, groups)
        # A day's rows go into the total (and, grouped by day or week alone, their group) in one merge.
        total.merge(day_acc)
        if by and not other and day_acc.sums[0]:
            groups.setdefault(tuple(period[k] for k in by), Accumulator()).merge(day_acc)
        daily[period["day"]] = day_acc.sums[4]
    _add_feedback(ledger, start, stop, by, other, utc, total, groups)
    rows = [acc.row(dict(zip(by, key))) for key, acc in groups.items()]
    if "day" in by or "week" in by:
        rows.sort(key=lambda r: tuple("" if v is None else str(v) for v in r.key.values()))
    else:
        rows.sort(key=lambda r: r.spend, reverse=True)
    spend = {day: Decimal(v).scaleb(-9) for day, v in daily.items()}
    report = CostReport(since, until, by, rows, total.row({}), spend)
    if "variant" in by:
        from .compare import compare

        report.comparison = compare(rows)
    return report


def _span_with_calls(ledger, since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """The window, cut to the calls it holds when it is too long to chart day by day."""
    if until - since <= MAX_CHART_WINDOW:
        return since, until
    first, last = call_time_range(ledger)
    if first is None or last is None:
        return until, until
    start = max(since, datetime.fromisoformat(first.replace("Z", "+00:00")))
    stop = min(until, datetime.fromisoformat(last.replace("Z", "+00:00")) + timedelta(milliseconds=1))
    return start, stop


def _add_day(ledger, start: datetime, end: datetime, period: dict[str, str], by: list[str], other: list[str],
             groups: dict[tuple, Accumulator]) -> Accumulator:
    """Sum one day's calls: into its groups (for keys other than day and week) and into the day's total, returned."""
    n = len(other)
    # Where each --by key comes from: this day's period, or a column of the row.
    sources = [(True, period[k]) if k in period else (False, other.index(k)) for k in by]
    day_acc = Accumulator()
    # Squared costs feed only the variant comparison's t-test; they cost ~10 % of the scan.
    for row in calls_in_day(ledger, start, end, other, squares="variant" in by):
        bucket, status, measures = row[n], row[n + 1], row[n + 2:]
        day_acc.add(bucket, status, measures)
        if other:
            key = tuple(value if fixed else row[value] for fixed, value in sources)
            acc = groups.get(key)
            if acc is None:
                acc = groups[key] = Accumulator()
            acc.add(bucket, status, measures)
    return day_acc


def _add_feedback(ledger, since: datetime, until: datetime, by: list[str], other: list[str], utc: bool,
                  total: Accumulator, groups: dict[tuple, Accumulator]) -> None:
    """Add the feedback on the window's calls (the latest verdict per call) to the groups.

    For day and week keys the counts come by minute too (midnights fall on whole
    minutes in every zone), and each minute is put in its day here.
    """
    if not has_feedback(ledger):
        return
    by_period = "day" in by or "week" in by
    starts: list[str] = []
    periods: list[dict] = []
    if by_period:
        for day_start, _, day in days(since, until, utc):
            starts.append(iso(day_start)[:16])
            periods.append(period_of(day))
    n = len(other) + (1 if by_period else 0)
    for row in feedback_counts(ledger, since, until, other, by_minute=by_period):
        verdict, higher, count = row[n], row[n + 1], row[n + 2]
        total.add_feedback(verdict, higher, count)
        if not by:
            continue
        period = periods[max(0, bisect.bisect_right(starts, row[n - 1]) - 1)] if by_period else {}
        key = tuple(period[k] if k in _PERIODS else row[other.index(k)] for k in by)
        groups.setdefault(key, Accumulator()).add_feedback(verdict, higher, count)
