"""The dashboard's own questions to the ledger (``mmr report --html``, ``GET /dashboard``): the
misrouting matrix from feedback, the costliest requests, and the circuit breakers' openings.

    rows = feedback_matrix(store, since, until, {"team": "ml"})

The cost, drift and budget figures come from :mod:`router_cli.ledger.queries` and the budget
reads, as ``mmr costs`` gets them; these add only what the dashboard shows beside them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from .queries import _postgres, _where, stamp


def feedback_matrix(store, since: datetime, until: datetime, where: dict[str, str] | None = None) -> list[tuple]:
    """The latest verdict on each call of [since, until), counted by the tier that answered and the
    tier the rater said it should have been: rows ``(tier, should_be or None, verdict, count)``."""
    extra, params = _where(where, "calls")
    latest = "(SELECT call_id, verdict, should_be, max(id) FROM feedback GROUP BY call_id)"
    join = "CROSS JOIN"
    if _postgres(store):
        latest = "(SELECT DISTINCT ON (call_id) call_id, verdict, should_be FROM feedback ORDER BY call_id, id DESC)"
        join = "JOIN"
    sql = (f"SELECT calls.tier, f.should_be, f.verdict, count(*) FROM {latest} AS f {join} calls ON calls.id = f.call_id "
           f"WHERE calls.datetime_utc >= ? AND calls.datetime_utc < ?{extra} GROUP BY calls.tier, f.should_be, f.verdict")
    return store.read(sql, [stamp(since), stamp(until), *params]).fetchall()


def costliest_requests(store, since: datetime, until: datetime, limit: int = 10,
                       where: dict[str, str] | None = None) -> list[dict]:
    """The requests of the window's ``limit`` * 3 costliest calls, each with every attempt summed,
    costliest first, at most ``limit``: request_id, datetime_utc (first call), routed_tier,
    tier and model (of the last answer), command, user, team, calls, cost and baseline nano-dollars.
    ``where`` holds for every call summed, not only the costliest: a request id shared with
    another user's or team's calls never brings theirs into the view.

    Driven by the ``(datetime_utc, cost_nanousd)`` index: a request's total is at least its
    costliest call, so a request made costly only by many cheap attempts can be missed.
    """
    extra, params = _where(where)
    ids = [r for (r,) in store.read(
        f"SELECT request_id FROM calls WHERE datetime_utc >= ? AND datetime_utc < ?{extra} "
        "ORDER BY cost_nanousd DESC LIMIT ?", [stamp(since), stamp(until), *params, limit * 3]).fetchall()]
    ids = list(dict.fromkeys(ids))
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    cursor = store.read(
        'SELECT request_id, id, datetime_utc, routed_tier, tier, model, role, status, command, "user", team, '
        f"cost_nanousd, baseline_cost_nanousd FROM calls WHERE request_id IN ({marks}){extra} ORDER BY request_id, id",
        [*ids, *params])
    out: dict[str, dict] = {}
    for (request_id, _, when, routed, tier, model, role, status, command, user, team, cost, baseline) in cursor:
        row = out.setdefault(request_id, {
            "request_id": request_id, "datetime_utc": when, "routed_tier": routed, "tier": tier, "model": model,
            "command": command, "user": user, "team": team, "calls": 0, "cost_nanousd": 0, "baseline_nanousd": 0})
        row["calls"] += 1
        row["cost_nanousd"] += cost or 0
        row["baseline_nanousd"] += baseline or 0
        if role == "answer" and status != "error":
            row["tier"], row["model"] = tier, model
    return sorted(out.values(), key=lambda r: (-r["cost_nanousd"], r["request_id"]))[:limit]


def breaker_openings(store) -> list[tuple]:
    """Every circuit breaker's row: (provider, model, state, opened_at, open_until, last_error); times in Unix seconds."""
    return store.read("SELECT provider, model, state, opened_at, open_until, last_error FROM breakers "
                      "ORDER BY provider, model").fetchall()


__all__: Sequence[str] = ("breaker_openings", "costliest_requests", "feedback_matrix")
