"""The routing dashboard's figures (``mmr report --html``, ``GET /dashboard`` of ``mmr serve``):
one JSON-ready dict for a window of the ledger.

    data = dashboard(ledger, parse_when("30d"), period="day", budgets=config.budgets)

Everything comes from one scan per day (as ``mmr costs`` does it), grouped by the tier that
answered, the routed tier and the model, so the dashboard costs about one ``mmr costs``
and not one per chart; the day's totals and the window's total are the same sums
``mmr costs`` makes, so the page shows the figures ``mmr costs --json`` prints. Money is
nano-dollars (int) inside and decimal strings out.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Sequence

from ..ledger.dashboard_reads import breaker_openings, costliest_requests, feedback_matrix
from ..ledger.queries import calls_in_day, feedback_counts, has_feedback
from ..pricing import decimal_str
from .cost_rows import Accumulator
from .costs import _span_with_calls
from .drift import drift, no_drift
from .gate_checks import gate_report
from .when import checked_window, days, iso, period_of

PERIODS = ("day", "week")
_KEYS = ["tier", "routed_tier", "model", "command"]


def usd(nanos: int) -> str:
    """Nano-dollars as the decimal string ``mmr costs --json`` prints."""
    return decimal_str(Decimal(nanos).scaleb(-9))


class _Scan:
    """The sums one pass over the window's calls gives every chart."""

    def __init__(self) -> None:
        self.total = Accumulator()
        self.daily: dict[str, int] = {}  # day -> spend, as in mmr costs
        self.periods: list[str] = []
        self.spend: dict[str, dict[str, int]] = {}  # tier -> period -> spend
        self.baseline: dict[str, int] = {}  # period -> baseline
        self.routed: dict[str, dict[str, int]] = {}  # routed tier -> period -> requests
        self.models: dict[str, dict[str, int]] = {}  # model -> period -> calls
        self.groups: dict[tuple, Accumulator] = {}  # (tier, routed tier, model, command) over the window
        self.gated: dict[str, list[int]] = {}  # tier -> [cascade answers, rejected]

    def add_day(self, ledger, start: datetime, end: datetime, day, period: str, where: dict | None) -> None:
        if period not in self.baseline:
            self.periods.append(period)
            self.baseline[period] = 0
        # Each row goes into one accumulator (its group's, over the whole window) and the day's
        # small per-group sums; totals, days and the per-tier and per-model views are folded from
        # those afterwards (a row per latency bucket: thousands a day, so the loop stays lean).
        sums: dict[tuple, list[int]] = {}
        groups = self.groups
        for row in calls_in_day(ledger, start, end, _KEYS, where=where):
            key, bucket, status, measures = row[:4], row[4], row[5], row[6:]
            acc = groups.get(key)
            if acc is None:
                acc = groups[key] = Accumulator()
            acc.add(bucket, status, measures)
            cell = sums.get(key)
            if cell is None:
                cell = sums[key] = [0, 0, 0, 0]
            cell[0] += measures[4]
            cell[1] += measures[5]
            cell[2] += measures[1]
            cell[3] += measures[0]
            if key[3] == "cascade" and measures[8] and status in ("ok", "rejected", "best_effort"):
                gated = self.gated.setdefault(key[0] or "?", [0, 0])
                gated[0] += measures[8]
                # best_effort: no tier passed and the best failed answer was returned
                gated[1] += measures[8] if status != "ok" else 0
        spent = 0
        for (tier, routed, model, _), (spend, baseline, requests, calls) in sums.items():
            spent += spend
            self.baseline[period] += baseline
            _bump(self.spend, tier or "?", period, spend)
            if requests:
                _bump(self.routed, routed or "?", period, requests)
            _bump(self.models, model or "?", period, calls)
        self.daily[day.isoformat()] = spent

    def finish(self) -> None:
        """The window's total from its groups."""
        for acc in self.groups.values():
            self.total.merge(acc)

    def by(self, position: int) -> dict[str, Accumulator]:
        """The groups merged by one of their keys (0 tier, 1 routed tier, 2 model)."""
        out: dict[str, Accumulator] = {}
        for key, acc in self.groups.items():
            out.setdefault(key[position] or "?", Accumulator()).merge(acc)
        return out

    def series(self, table: dict[str, dict[str, int]], order: Sequence[str] = ()) -> dict[str, list[int]]:
        """Each key's values per period (0 where it has none): keys in ``order`` first (the config's
        tiers, so a tier keeps its colour in every chart), then the largest total first."""
        out = {k: [v.get(p, 0) for p in self.periods] for k, v in table.items()}
        rank = {name: i for i, name in enumerate(order)}
        return dict(sorted(out.items(), key=lambda kv: (rank.get(kv[0], len(rank)), -sum(kv[1]), kv[0])))


def dashboard(ledger, since: datetime, until: datetime | None = None, *, period: str = "day", utc: bool = False,
              where: dict[str, str] | None = None, budgets: list | None = None, drift_points: float = 10.0,
              top: int = 10, tiers: Sequence[str] = ()) -> dict:
    """The dashboard of [since, until) (``ledger`` None: an empty one). ``where`` keeps only the
    calls of these user/team values; ``budgets`` are the rows of :func:`policy.budgets.budget_use`;
    ``tiers``: the config's tier names, cheapest first (the charts' order)."""
    since, until = checked_window(since, until)
    scan = _Scan()
    feedback: list[tuple] = []
    if ledger is not None:
        start, stop = _span_with_calls(ledger, since, until)
        for day_start, day_end, day in days(start, stop, utc):
            scan.add_day(ledger, day_start, day_end, day, period_of(day)[period], where)
        scan.finish()
        if has_feedback(ledger):
            for verdict, higher, count in feedback_counts(ledger, start, stop, where=where):
                scan.total.add_feedback(verdict, higher, count)
        moved = drift(ledger, since, until, drift_points, current=scan.total.row({}), where=where)
        feedback = feedback_matrix(ledger, since, until, where)
        gates = gate_report(ledger, since, until, where=where)["gates"]
        costly = costliest_requests(ledger, since, until, top, where)
        breakers = [] if where else breaker_openings(ledger)
    else:
        moved, gates, costly, breakers = no_drift(since, until, drift_points), [], [], []
        for _, _, day in days(since, until, utc):
            if period_of(day)[period] not in scan.baseline:
                scan.periods.append(period_of(day)[period])
                scan.baseline[period_of(day)[period]] = 0
            scan.daily[day.isoformat()] = 0
    total = scan.total.row({})
    return {
        "since": iso(since), "until": iso(until), "period": period, "filters": dict(where or {}),
        "generated": iso(datetime.now(timezone.utc)),
        "total": total.to_json(),
        "daily_spend": {d: usd(v) for d, v in scan.daily.items()},
        "periods": scan.periods,
        "spend_by_tier": {k: [usd(v) for v in vs] for k, vs in scan.series(scan.spend, tiers).items()},
        "baseline": [usd(scan.baseline.get(p, 0)) for p in scan.periods],
        "routed_requests": scan.series(scan.routed, tiers),
        "model_calls": scan.series(scan.models),
        "drift": moved.to_json(),
        "escalation": [_escalation(t, a) for t, a in sorted(scan.by(1).items()) if a.sums[1]],
        "gates": {"tiers": [{"tier": t, "answers": n, "failed": r, "pass_rate": round(1 - r / n, 4)}
                            for t, (n, r) in sorted(scan.gated.items()) if n],
                  "checks": gates},
        "misrouting": _matrix(feedback),
        "models": [_model(m, a) for m, a in sorted(scan.by(2).items(), key=lambda kv: (-kv[1].sums[0], kv[0]))],
        "breakers": [_breaker(b, since, until) for b in breakers],
        "budgets": budgets or [],
        "costliest": [{**{k: v for k, v in r.items() if not k.endswith("nanousd")},
                       "cost_usd": usd(r["cost_nanousd"]), "baseline_usd": usd(r["baseline_nanousd"])} for r in costly],
    }


def _escalation(tier: str, acc: Accumulator) -> dict:
    row = acc.row({})
    return {"tier": tier, "requests": row.requests, "escalated": row.escalated, "rate": round(row.escalation_rate, 4)}


def _model(model: str, acc: Accumulator) -> dict:
    row = acc.row({})
    return {"model": model, "calls": row.calls, "errors": row.errors, "error_rate": round(row.error_rate, 4),
            "latency_p50_ms": row.latency_p50_ms, "latency_p95_ms": row.latency_p95_ms,
            "spend_usd": decimal_str(row.spend)}


def _matrix(rows: list[tuple]) -> dict:
    """Routed-to tier x should-be tier counts of bad verdicts, and the good ones per tier."""
    tiers: list[str] = []
    cells: dict[str, dict[str, int]] = {}
    good: dict[str, int] = {}
    for tier, should_be, verdict, count in rows:
        tier = tier or "?"
        for t in (tier, should_be):
            if t is not None and t not in tiers:
                tiers.append(t)
        if verdict == "good":
            good[tier] = good.get(tier, 0) + count
        else:
            target = should_be or "(not said)"
            cells.setdefault(tier, {})[target] = cells.setdefault(tier, {}).get(target, 0) + count
    return {"tiers": sorted(tiers), "bad": cells, "good": good,
            "rated": sum(good.values()) + sum(sum(c.values()) for c in cells.values())}


def _breaker(row: tuple, since: datetime, until: datetime) -> dict:
    provider, model, state, opened_at, open_until, last_error = row
    opened = None if opened_at is None else datetime.fromtimestamp(opened_at, timezone.utc)
    return {"provider": provider, "model": model, "state": state, "opened_at": None if opened is None else iso(opened),
            "opened_in_window": opened is not None and since <= opened < until, "last_error": last_error}


def _bump(table: dict[str, dict[str, int]], key: str, period: str, value: int) -> None:
    cell = table.setdefault(key, {})
    cell[period] = cell.get(period, 0) + value


def visible_budgets(rows: list[dict], where: dict[str, str] | None,
                    scope: dict[str, str] | None = None) -> list[dict]:
    """The budget rows a view may show. ``scope`` is whom the viewer stands for (a client key's
    own user or team; None: anyone): only its own budgets, whatever ``where`` asks. ``where``
    (the view's user/team filters) then keeps the rows of any of its values; without it, all."""
    if scope:
        rows = [r for r in rows if _owned(r, scope)]
    return [r for r in rows if _owned(r, where)] if where else rows


def _owned(row: dict, owners: dict[str, str]) -> bool:
    """Whether a budget row is one of ``owners``' (a user's or team's own budget)."""
    return any(row["budget"].startswith(kind + " ") and row["who"] == who for kind, who in owners.items())
