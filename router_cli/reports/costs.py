"""Spend and savings reports over the ledger, aggregated in SQL.

    report = cost_report(ledger, since=parse_when("7d"), by=["tier"])

Money is summed as integer nano-dollars in SQL and turned into ``Decimal`` at
the end, so totals are exact. Savings are net: every billed attempt counts as
spend (failed attempts included), and the baseline is the premium tier's
prices applied to the tokens of each request's answer.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from ..errors import UsageError
from ..pricing import decimal_str

_COLUMNS = ("tier", "routed_tier", "model", "provider", "user", "team", "command", "status", "role", "variant")
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
            "previous_since": _iso(self.previous_since), "previous_until": _iso(self.previous_until),
            "previous_requests": self.previous_requests, "current_requests": self.current_requests,
            "threshold_points": self.threshold_points,
            "tier_mix": {t: {"previous": round(p, 4), "current": round(c, 4), "shift_points": round((c - p) * 100, 1)}
                         for t, (p, c) in self.tier_mix.items()},
            "rates": {k: {"previous": round(p, 4), "current": round(c, 4)} for k, (p, c) in self.rates.items()},
            "flags": self.flags,
        }


MIN_REQUESTS_FOR_DRIFT = 20


def drift(ledger, since: datetime, until: datetime, threshold_points: float = 10.0, current: CostRow | None = None) -> Drift:
    """Compare the tier mix and the escalation and error rates of [since, until)
    with the window of equal length just before it; flag what moved.

    A tier's share of requests (by routed tier) is flagged when it moves more
    than ``threshold_points`` points; a rate when it rises by half that many
    points or at least doubles (rising a point or more). Nothing is flagged
    when either window has fewer than 20 requests. ``current``, the report's
    total for [since, until), saves counting that window's rates again.
    """
    previous_since = _previous_since(since, until)
    before = _window_mix(ledger, previous_since, since)
    if current is None:
        now = _window_mix(ledger, since, until)
    else:
        now = {"tiers": _tier_counts(ledger, since, until), "requests": current.requests,
               "escalated": current.escalated, "errors": current.errors, "calls": current.calls}
    tiers = sorted(set(before["tiers"]) | set(now["tiers"]), key=lambda t: -(now["tiers"].get(t, 0) + before["tiers"].get(t, 0)))
    mix = {t: (_share(before["tiers"].get(t, 0), before["requests"]), _share(now["tiers"].get(t, 0), now["requests"])) for t in tiers}
    rates = {
        "escalation_rate": (_share(before["escalated"], before["requests"]), _share(now["escalated"], now["requests"])),
        "error_rate": (_share(before["errors"], before["calls"]), _share(now["errors"], now["calls"])),
    }
    flags = []
    if min(before["requests"], now["requests"]) >= MIN_REQUESTS_FOR_DRIFT:
        for tier, (p, c) in mix.items():
            if abs(c - p) * 100 > threshold_points:
                flags.append(f"tier {tier}: {p:.0%} -> {c:.0%} of requests ({(c - p) * 100:+.0f} points)")
        for name, (p, c) in rates.items():
            rise = (c - p) * 100
            if rise >= threshold_points / 2 or (c >= 2 * p and rise >= 1):
                flags.append(f"{name.replace('_', ' ')}: {p:.1%} -> {c:.1%}")
    return Drift(previous_since, since, before["requests"], now["requests"], mix, rates, flags, threshold_points)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


# The routed tiers in the ledger, one index seek each (a "loose index scan").
_ROUTED_TIERS = (
    "WITH RECURSIVE t(tier) AS (SELECT min(routed_tier) FROM calls UNION ALL "
    "SELECT (SELECT min(routed_tier) FROM calls WHERE routed_tier > t.tier) FROM t WHERE t.tier IS NOT NULL) "
    "SELECT tier FROM t WHERE tier IS NOT NULL"
)


def _tier_counts(ledger, since: datetime, until: datetime) -> dict[str, int]:
    """Requests per routed tier: index-only counts."""
    sql = "SELECT count(*) FROM calls WHERE routed_tier = ? AND datetime_utc >= ? AND datetime_utc < ? AND attempt = 1"
    counts = {}
    for (tier,) in ledger.conn.execute(_ROUTED_TIERS).fetchall():
        n = ledger.conn.execute(sql, [tier, _iso(since), _iso(until)]).fetchone()[0]
        if n:
            counts[tier] = n
    return counts


def _window_mix(ledger, since: datetime, until: datetime) -> dict:
    """Requests by routed tier, escalations, errors and calls, from the routed-tier index alone."""
    out: dict = {"tiers": {}, "requests": 0, "escalated": 0, "errors": 0, "calls": 0}
    sql = (
        "SELECT coalesce(sum(attempt = 1), 0), coalesce(sum(attempt = 1 AND escalated), 0), "
        "coalesce(sum(status = 'error'), 0), count(*) "
        "FROM calls WHERE routed_tier = ? AND datetime_utc >= ? AND datetime_utc < ?"
    )
    for (tier,) in ledger.conn.execute(_ROUTED_TIERS).fetchall():
        requests, escalated, errors, calls = ledger.conn.execute(sql, [tier, _iso(since), _iso(until)]).fetchone()
        if requests:
            out["tiers"][tier] = requests
        out["requests"] += requests
        out["escalated"] += escalated
        out["errors"] += errors
        out["calls"] += calls
    return out


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

    BASELINE_NOTE = (
        "Baseline: the premium tier's first model at its prices, applied to the tokens of each "
        "answered request. Spend includes every billed attempt, failed ones too."
    )

    def to_json(self) -> dict:
        return {
            "since": _iso(self.since), "until": _iso(self.until), "by": self.by,
            "rows": [r.to_json() for r in self.rows], "total": self.total.to_json(),
            "daily_spend": {day: decimal_str(v) for day, v in self.daily_spend.items()},
            "drift": self.drift.to_json() if self.drift else None,
            "budgets": self.budgets,
            **({"comparison": self.comparison} if self.comparison is not None else {}),
            "baseline": self.BASELINE_NOTE,
        }


def empty_report(since: datetime, until: datetime | None = None, by: list[str] | None = None,
                 utc: bool = False, threshold_points: float = 10.0) -> CostReport:
    """The report of a ledger that does not exist yet: the same shape, all zeros."""
    since, until = _window(since, until)
    days = {} if until - since > MAX_CHART_WINDOW else {d.isoformat(): Decimal(0) for _, _, d in _days(since, until, utc)}
    previous = _previous_since(since, until)
    nothing = {"escalation_rate": (0.0, 0.0), "error_rate": (0.0, 0.0)}
    return CostReport(since, until, by or [], [], _Acc().row({}), days,
                      Drift(previous, since, 0, 0, {}, nothing, [], threshold_points))


# Past this, reports cover only the days that hold calls (not thousands of empty ones).
MAX_CHART_WINDOW = timedelta(days=400)


def _window(since: datetime, until: datetime | None) -> tuple[datetime, datetime]:
    """The window, its end no later than now (nothing is recorded in the future)."""
    now = datetime.now(timezone.utc)
    until = min(until or now, now)
    if until <= since:
        raise UsageError(f"--until ({_iso(until)}) is not after --since ({_iso(since)})")
    return since, until


def _previous_since(since: datetime, until: datetime) -> datetime:
    try:
        return since - (until - since)
    except OverflowError:
        return datetime.min.replace(tzinfo=timezone.utc)


def cost_report(ledger, since: datetime, until: datetime | None = None, by: list[str] | None = None, utc: bool = False) -> CostReport:
    """Aggregate the ``calls`` of ``ledger`` between ``since`` and ``until`` by ``by``.

    The window is cut at (local or UTC) midnights and each day is one SQL
    query, a range scan of the ``datetime_utc`` index grouped by the other keys
    and a latency bucket. Every measure is additive, so days, weeks and the
    total are rolled up from those small results. Cutting by day keeps each
    sort small and puts the time zone arithmetic in Python, not in every row.
    """
    since, until = _window(since, until)
    by = by or []
    start, stop = since, until
    if until - since > MAX_CHART_WINDOW:
        first, last = ledger.conn.execute("SELECT min(datetime_utc), max(datetime_utc) FROM calls").fetchone()
        if first is None:
            start = stop = until
        else:
            start = max(since, datetime.fromisoformat(first.replace("Z", "+00:00")))
            stop = min(until, datetime.fromisoformat(last.replace("Z", "+00:00")) + timedelta(milliseconds=1))
    other = [k for k in by if k not in ("day", "week")]
    keys = "".join(f'"{k}", ' for k in other)
    # Grouping by status is cheaper than a conditional sum per status (measured).
    # Squared costs feed only the variant comparison's t-test; they cost ~10 % of the scan.
    squares = "total(cost_nanousd * cost_nanousd)" if "variant" in by else "0"
    sql = (
        f"SELECT {keys}{_BUCKET} AS bucket, status, count(*), coalesce(sum(attempt = 1), 0), coalesce(sum(input_tokens), 0), "
        "coalesce(sum(output_tokens), 0), coalesce(sum(cost_nanousd), 0), coalesce(sum(baseline_cost_nanousd), 0), "
        "coalesce(sum(attempt = 1 AND escalated), 0), coalesce(sum((role = 'judge') * cost_nanousd), 0), "
        f"sum(role = 'answer'), {squares} "
        f"FROM calls WHERE datetime_utc >= ? AND datetime_utc < ? GROUP BY {keys}bucket, status"
    )
    n = len(other)
    groups: dict[tuple, _Acc] = {}
    total = _Acc()
    daily: dict[str, int] = {}
    for day_start, day_end, day in _days(start, stop, utc):
        period = {"day": day.isoformat(), "week": "{}-W{:02d}".format(*day.isocalendar()[:2])}
        # Where each --by key comes from: this day's period, or a column of the row.
        sources = [(True, period[k]) if k in period else (False, other.index(k)) for k in by]
        day_acc = _Acc()
        for row in ledger.conn.execute(sql, [_iso(day_start), _iso(day_end)]):
            bucket, status, measures = row[n], row[n + 1], row[n + 2:]
            day_acc.add(bucket, status, measures)
            if other:
                key = tuple(value if fixed else row[value] for fixed, value in sources)
                acc = groups.get(key)
                if acc is None:
                    acc = groups[key] = _Acc()
                acc.add(bucket, status, measures)
        # A day's rows go into the total (and, grouped by day or week alone, their group) in one merge.
        total.merge(day_acc)
        if by and not other and day_acc.sums[0]:
            key = tuple(period[k] for k in by)
            groups.setdefault(key, _Acc()).merge(day_acc)
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
        from ..experiments import compare

        report.comparison = compare(rows)
    return report


def _add_feedback(ledger, since: datetime, until: datetime, by: list[str], other: list[str], utc: bool,
                  total: "_Acc", groups: dict[tuple, "_Acc"]) -> None:
    """Add the feedback on the window's calls to the groups, in one query.

    Driven from the (small) feedback table: the latest verdict of each rated call
    (SQLite takes bare columns from the max(id) row), joined to its call by key.
    For day and week keys the query groups by minute too (midnights fall on whole
    minutes in every zone), and each minute is put in its day here.
    """
    if ledger.conn.execute("SELECT 1 FROM feedback LIMIT 1").fetchone() is None:
        return
    keys = "".join(f'calls."{k}", ' for k in other)
    by_period = "day" in by or "week" in by
    minute = "substr(calls.datetime_utc, 1, 16), " if by_period else ""
    sql = (
        f"SELECT {keys}{minute}f.verdict, coalesce(f.needs_higher, 0), count(*) FROM "
        "(SELECT call_id, verdict, needs_higher, max(id) FROM feedback GROUP BY call_id) AS f "
        "CROSS JOIN calls ON calls.id = f.call_id "
        f"WHERE calls.datetime_utc >= ? AND calls.datetime_utc < ? GROUP BY {keys}{minute}f.verdict, f.needs_higher"
    )
    starts: list[str] = []
    periods: list[dict] = []
    if by_period:
        for day_start, _, day in _days(since, until, utc):
            starts.append(_iso(day_start)[:16])
            periods.append({"day": day.isoformat(), "week": "{}-W{:02d}".format(*day.isocalendar()[:2])})
    n = len(other) + (1 if by_period else 0)
    for row in ledger.conn.execute(sql, [_iso(since), _iso(until)]):
        verdict, higher, count = row[n], row[n + 1], row[n + 2]
        total.add_feedback(verdict, higher, count)
        if not by:
            continue
        period = periods[max(0, bisect.bisect_right(starts, row[n - 1]) - 1)] if by_period else {}
        key = tuple(period[k] if k in ("day", "week") else row[other.index(k)] for k in by)
        groups.setdefault(key, _Acc()).add_feedback(verdict, higher, count)


def _days(since: datetime, until: datetime, utc: bool):
    """(start, end, local date) for each calendar day the window touches."""
    start = since
    while start < until:
        local = start.astimezone(timezone.utc) if utc else start.astimezone()
        day = local.date()
        midnight = datetime.combine(day + timedelta(days=1), datetime.min.time())
        # A naive datetime's astimezone() reads it in the local zone, DST included.
        next_midnight = midnight.replace(tzinfo=timezone.utc) if utc else midnight.astimezone()
        # Where DST skips midnight (Santiago, Cairo...), that time reads as the hour
        # before: step on by hours until the date really changes.
        while next_midnight <= start or (not utc and next_midnight.astimezone().date() == day):
            next_midnight += timedelta(hours=1)
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
        if bucket is not None and answers and status not in ("error", "cached"):
            self.histogram[bucket] = self.histogram.get(bucket, 0) + answers

    def merge(self, other: "_Acc") -> None:
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
                return _bucket_middle(bucket)
        return None  # pragma: no cover - the loop always reaches rank

    def row(self, key: dict) -> CostRow:
        calls, requests, tin, tout, spend, baseline, errors, escalated, cached, discarded, judging = self.sums
        nano = [Decimal(v).scaleb(-9) for v in (spend, baseline, discarded, judging)]
        return CostRow(
            key, calls, requests, tin, tout, nano[0], nano[1], errors, escalated, cached, nano[2], nano[3],
            self.percentile(0.5), self.percentile(0.95), rated=self.feedback[0], good=self.feedback[1],
            bad_needing_higher=self.feedback[2], cost_squares=self.cost_squares,
        )
