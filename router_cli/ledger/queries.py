"""The reports' questions to the ledger: every SQL statement a report runs, each behind a
function whose name says what it asks.

    for tier in routed_tiers(store):
        requests, escalated, errors, calls = tier_window_counts(store, tier, since, until)

Reports (:mod:`router_cli.reports`) call these and never see SQL or a connection. Each
function uses only the store's public methods: ``store.read(sql, params)`` (a cursor:
iterable, with ``fetchone``/``fetchall`` and ``description``), ``store.rows(where, params)``
and ``store.record({table: rows})``. Moments are aware datetimes, compared with
``datetime_utc`` as the ledger writes it (UTC ISO 8601 text with milliseconds and ``Z``).

The SQL is standard where that costs nothing. The forms ``mmr costs`` is fast with
(booleans summed as integers, ``total()``, a bare column beside ``max()``) are SQLite's
and say so; for a PostgreSQL store (``store.dialect == "postgres"``) those functions
send PostgreSQL's own forms instead (``FILTER``, ``DISTINCT ON``). ``?`` placeholders serve both.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable, Iterator, Sequence

# Columns a cost report may group by (the --by keys other than day and week).
GROUP_COLUMNS = ("tier", "routed_tier", "model", "provider", "user", "team", "command", "status", "role", "variant",
                 "template", "template_hash")


def stamp(moment: datetime) -> str:
    """``moment`` as the ledger's ``datetime_utc`` text: ``2026-11-01T09:00:00.000Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _postgres(store) -> bool:
    """Whether ``store`` speaks PostgreSQL (its own SQL below where SQLite's differs); ``?`` works for both."""
    return getattr(store, "dialect", "sqlite") == "postgres"


def _as_dicts(cursor) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _columns(keys: Sequence[str], table: str = "") -> str:
    """``"tier", "model", `` for grouping: only known column names are ever put into SQL."""
    unknown = [k for k in keys if k not in GROUP_COLUMNS]
    if unknown:
        raise ValueError(f"not a groupable column: {', '.join(unknown)}")
    prefix = f"{table}." if table else ""
    return "".join(f'{prefix}"{k}", ' for k in keys)


def _where(where: "dict[str, str] | None", table: str = "") -> tuple[str, list[str]]:
    """`` AND "user" = ?`` for each equality filter (known columns only) and its parameters."""
    where = where or {}
    _columns(list(where))
    prefix = f"{table}." if table else ""
    return "".join(f' AND {prefix}"{k}" = ?' for k in where), list(where.values())


# ------------------------------------------------------------------ drift (routed tiers by window)

# The routed tiers in the ledger, one index seek each (a "loose index scan").
_ROUTED_TIERS = (
    "WITH RECURSIVE t(tier) AS (SELECT min(routed_tier) FROM calls UNION ALL "
    "SELECT (SELECT min(routed_tier) FROM calls WHERE routed_tier > t.tier) FROM t WHERE t.tier IS NOT NULL) "
    "SELECT tier FROM t WHERE tier IS NOT NULL"
)


def routed_tiers(store) -> list[str]:
    """Every routed tier the ledger holds, in order."""
    return [tier for (tier,) in store.read(_ROUTED_TIERS).fetchall()]


def tier_requests(store, tier: str, since: datetime, until: datetime, where: dict[str, str] | None = None) -> int:
    """Requests routed to ``tier`` whose first attempt falls in [since, until): an index-only count
    (``where``: only the calls of these column values, e.g. ``{"team": "ml"}``; then not index-only)."""
    extra, params = _where(where)
    sql = f"SELECT count(*) FROM calls WHERE routed_tier = ? AND datetime_utc >= ? AND datetime_utc < ? AND attempt = 1{extra}"
    return store.read(sql, [tier, stamp(since), stamp(until), *params]).fetchone()[0]


def tier_window_counts(store, tier: str, since: datetime, until: datetime,
                       where: dict[str, str] | None = None) -> tuple[int, int, int, int]:
    """(requests, escalated requests, failed calls, calls) routed to ``tier`` in [since, until),
    from the routed-tier index alone (``where``: as in :func:`tier_requests`)."""
    extra, params = _where(where)
    sql = (
        "SELECT coalesce(sum(attempt = 1), 0), coalesce(sum(attempt = 1 AND escalated), 0), "
        "coalesce(sum(status = 'error'), 0), count(*) "
        f"FROM calls WHERE routed_tier = ? AND datetime_utc >= ? AND datetime_utc < ?{extra}"
    )
    if _postgres(store):
        sql = (
            "SELECT count(*) FILTER (WHERE attempt = 1), count(*) FILTER (WHERE attempt = 1 AND escalated <> 0), "
            "count(*) FILTER (WHERE status = 'error'), count(*) "
            f"FROM calls WHERE routed_tier = ? AND datetime_utc >= ? AND datetime_utc < ?{extra}"
        )
    requests, escalated, errors, calls = store.read(sql, [tier, stamp(since), stamp(until), *params]).fetchone()
    return requests, escalated, errors, calls


# ------------------------------------------------------------------ costs

def call_time_range(store) -> tuple[str | None, str | None]:
    """The ``datetime_utc`` of the ledger's first and last call; (None, None) when it has none."""
    first, last = store.read("SELECT min(datetime_utc), max(datetime_utc) FROM calls").fetchone()
    return first, last


def cache_use(store, since: datetime, until: datetime) -> list[tuple]:
    """Prompt-cache traffic of [since, until) by provider: rows ``(provider, input tokens, cache
    read tokens, cache write tokens, nano-dollars caching saved)``, counts as reported. Response-cache
    hits (``status = 'cached'``) sent nothing to a provider and are left out."""
    sql = ("SELECT provider, coalesce(sum(input_tokens), 0), coalesce(sum(cache_read_tokens), 0), "
           "coalesce(sum(cache_write_tokens), 0), coalesce(sum(cache_saved_nanousd), 0) "
           "FROM calls WHERE datetime_utc >= ? AND datetime_utc < ? AND status != 'cached' GROUP BY provider")
    return store.read(sql, [stamp(since), stamp(until)]).fetchall()


def usage_by_model(store, since: datetime, until: datetime, above: int, inside: Sequence[str]) -> list[tuple]:
    """Billed tokens of [since, until) by provider, model and whether a request's input was above
    ``above`` tokens (a long-context tier): rows ``(provider, model, long, calls, input, output,
    cache read, cache write, recorded nano-dollars)``. The providers named in ``inside`` count
    cached tokens inside ``input_tokens`` (OpenAI's shape); the others beside it. Cache hits
    (``status = 'cached'``) billed nothing and are left out."""
    marks = ", ".join("?" for _ in inside) or "NULL"
    total = (f"CASE WHEN provider IN ({marks}) THEN input_tokens "
             "ELSE input_tokens + cache_read_tokens + cache_write_tokens END")
    sql = (f"SELECT provider, model, ({total}) > ? AS long, count(*), coalesce(sum(input_tokens), 0), "
           "coalesce(sum(output_tokens), 0), coalesce(sum(cache_read_tokens), 0), coalesce(sum(cache_write_tokens), 0), "
           "coalesce(sum(cost_nanousd), 0) FROM calls "
           "WHERE datetime_utc >= ? AND datetime_utc < ? AND status != 'cached' GROUP BY provider, model, long")
    return store.read(sql, [*inside, above, stamp(since), stamp(until)]).fetchall()


# Latency histogram buckets at most 5 % wide: 1 ms below 100 ms, 5 ms below 1 s, 50 ms
# below 10 s, 500 ms below 100 s, 5 s above (the reports take each bucket's middle, so
# they must agree on these widths). Plain integer arithmetic: SQLite's math functions
# are not in every build.
_BUCKET = (
    "CASE WHEN duration_ms IS NULL THEN NULL WHEN duration_ms < 100 THEN CAST(duration_ms AS INTEGER) "
    "WHEN duration_ms < 1000 THEN CAST(duration_ms / 5 AS INTEGER) * 5 "
    "WHEN duration_ms < 10000 THEN CAST(duration_ms / 50 AS INTEGER) * 50 "
    "WHEN duration_ms < 100000 THEN CAST(duration_ms / 500 AS INTEGER) * 500 "
    "ELSE CAST(duration_ms / 5000 AS INTEGER) * 5000 END"
)
# PostgreSQL's cast rounds where SQLite's truncates: truncate first.
_PG_BUCKET = _BUCKET.replace("CAST(duration_ms", "CAST(trunc(duration_ms").replace(" AS INTEGER)", ") AS bigint)")


_OUTCOME = "CASE WHEN status = 'error' AND error_kind = 'hedge_lost' THEN 'cancelled' ELSE status END AS outcome"


def calls_in_day(store, start: datetime, end: datetime, keys: Sequence[str] = (), *, squares: bool = False,
                 where: dict[str, str] | None = None):
    """The calls of [start, end) summed by ``keys`` (columns of :data:`GROUP_COLUMNS`), latency
    bucket and status: an iterable of rows, each ``(*key values, bucket, status, calls, requests,
    input tokens, output tokens, spend, baseline, escalated requests, judging spend, answers,
    squared costs)`` with money in nano-dollars. ``squares``: sum the squared per-call costs
    (for significance tests; about 10 % more time), else 0.

    Meant for a day at a time: a range of the ``datetime_utc`` index, sorted in small groups.
    ``where``: only the calls of these column values (``{"team": "ml"}``).
    """
    columns = _columns(keys)
    extra, params = _where(where)
    # Grouping by status is cheaper than a conditional sum per status (measured). A hedge's loser,
    # cancelled (error_kind hedge_lost), is its own status here: a call, not a failure.
    squared = "total(cost_nanousd * cost_nanousd)" if squares else "0"
    sql = (
        f"SELECT {columns}{_BUCKET} AS bucket, {_OUTCOME}, count(*), coalesce(sum(attempt = 1), 0), coalesce(sum(input_tokens), 0), "
        "coalesce(sum(output_tokens), 0), coalesce(sum(cost_nanousd), 0), coalesce(sum(baseline_cost_nanousd), 0), "
        "coalesce(sum(attempt = 1 AND escalated), 0), coalesce(sum((role = 'judge') * cost_nanousd), 0), "
        f"sum(role = 'answer'), {squared} "
        f"FROM calls WHERE datetime_utc >= ? AND datetime_utc < ?{extra} GROUP BY {columns}bucket, outcome"
    )
    if _postgres(store):
        squared = "coalesce(sum(cost_nanousd::float8 * cost_nanousd), 0)" if squares else "0"
        sql = (
            f"SELECT {columns}{_PG_BUCKET} AS bucket, {_OUTCOME}, count(*), count(*) FILTER (WHERE attempt = 1), "
            "coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), coalesce(sum(cost_nanousd), 0), "
            "coalesce(sum(baseline_cost_nanousd), 0), count(*) FILTER (WHERE attempt = 1 AND escalated <> 0), "
            "coalesce(sum(cost_nanousd) FILTER (WHERE role = 'judge'), 0), "
            f"sum(CASE WHEN role = 'answer' THEN 1 ELSE 0 END), {squared} "
            f"FROM calls WHERE datetime_utc >= ? AND datetime_utc < ?{extra} GROUP BY {columns}bucket, outcome"
        )
    return store.read(sql, [stamp(start), stamp(end), *params])


def has_feedback(store) -> bool:
    """Whether anyone has rated an answer in this ledger."""
    return store.read("SELECT 1 FROM feedback LIMIT 1").fetchone() is not None


def feedback_counts(store, since: datetime, until: datetime, keys: Sequence[str] = (), *, by_minute: bool = False,
                    where: dict[str, str] | None = None):
    """The latest verdict on each call of [since, until), counted: an iterable of rows
    ``(*key values, [minute,] verdict, needs_higher (0 or 1), count)``. ``by_minute`` also
    groups by the call's minute (``datetime_utc`` cut to ``YYYY-MM-DDTHH:MM``), so that
    callers can put each minute in its local day.

    Driven from the (small) feedback table: SQLite takes the bare columns from the
    max(id) row of each call's group, and joins each to its call by key. ``where``: only the
    calls of these column values.
    """
    columns = _columns(keys, "calls")
    extra, params = _where(where, "calls")
    minute = "substr(calls.datetime_utc, 1, 16), " if by_minute else ""
    sql = (
        f"SELECT {columns}{minute}f.verdict, coalesce(f.needs_higher, 0), count(*) FROM "
        "(SELECT call_id, verdict, needs_higher, max(id) FROM feedback GROUP BY call_id) AS f "
        "CROSS JOIN calls ON calls.id = f.call_id "
        f"WHERE calls.datetime_utc >= ? AND calls.datetime_utc < ?{extra} GROUP BY {columns}{minute}f.verdict, f.needs_higher"
    )
    if _postgres(store):
        # The latest verdict per call: DISTINCT ON walks idx_feedback_call (call_id, id) backwards.
        sql = (
            f"SELECT {columns}{minute}f.verdict, coalesce(f.needs_higher, 0), count(*) FROM "
            "(SELECT DISTINCT ON (call_id) call_id, verdict, needs_higher FROM feedback ORDER BY call_id, id DESC) AS f "
            "JOIN calls ON calls.id = f.call_id "
            f"WHERE calls.datetime_utc >= ? AND calls.datetime_utc < ?{extra} GROUP BY {columns}{minute}f.verdict, f.needs_higher"
        )
    return store.read(sql, [stamp(since), stamp(until), *params])


# ------------------------------------------------------------------ health

def breaker_rows(store) -> list[tuple]:
    """Every circuit breaker's row: (provider, model, state, failures JSON, open_until, last_error)."""
    return store.read("SELECT provider, model, state, failures, open_until, last_error FROM breakers").fetchall()


def model_call_counts(store, since: datetime) -> list[tuple[str, str, int, int]]:
    """(provider, model, calls, failed calls) since ``since``, counting only calls that reached
    the provider (answers, errors and gate verdicts; not cache hits). A hedge's loser, cancelled
    because the other call started first (``hedge_lost``), is a call but not a failure."""
    return store.read(
        "SELECT provider, model, count(*), coalesce(sum(CASE WHEN status = 'error' AND "
        "coalesce(error_kind, '') <> 'hedge_lost' THEN 1 ELSE 0 END), 0) FROM calls "
        "WHERE datetime_utc >= ? AND status IN ('ok', 'error', 'rejected', 'best_effort') GROUP BY provider, model",
        [stamp(since)],
    ).fetchall()


def answer_durations(store, since: datetime) -> Iterable[tuple[str, str, float]]:
    """(provider, model, duration_ms) of each answer since ``since``, shortest first, streamed."""
    return store.read(
        "SELECT provider, model, duration_ms FROM calls "
        "WHERE datetime_utc >= ? AND status IN ('ok', 'rejected', 'best_effort') ORDER BY duration_ms",
        [stamp(since)],
    )


def latency_samples(store, since: datetime) -> list[tuple[str, str, float | None, float, str | None]]:
    """(provider, model, ttft_ms, duration_ms, error_kind) of each call since ``since`` whose latency
    says how fast the model is: answers, and calls abandoned before their first token (too slow,
    or beaten by a hedge)."""
    return store.read(
        "SELECT provider, model, ttft_ms, duration_ms, error_kind FROM calls WHERE datetime_utc >= ? "
        "AND (status IN ('ok', 'rejected', 'best_effort') OR error_kind IN ('first_token_timeout', 'hedge_lost'))",
        [stamp(since)],
    ).fetchall()


def hedge_use(store, since: datetime, until: datetime) -> tuple[int, int, int]:
    """(hedged requests, cancelled calls, their cost in nano-dollars) of [since, until): the calls
    of hedged requests carry ``hedge`` (won, lost)."""
    row = store.read(
        "SELECT count(DISTINCT request_id), coalesce(sum(CASE WHEN hedge = 'lost' THEN 1 ELSE 0 END), 0), "
        "coalesce(sum(CASE WHEN hedge = 'lost' THEN cost_nanousd ELSE 0 END), 0) FROM calls "
        "WHERE datetime_utc >= ? AND datetime_utc < ? AND hedge IS NOT NULL",
        [stamp(since), stamp(until)],
    ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


# ------------------------------------------------------------------ feedback, explain

_CALL_WITH_STORED = (
    "SELECT calls.*, prompts.stored FROM calls LEFT JOIN prompts ON prompts.request_id = calls.request_id WHERE "
)


def call_by_id(store, call_id: str) -> dict | None:
    """The ``calls`` row of ``call_id`` with its prompt's ``stored`` mode, or None."""
    rows = _as_dicts(store.read(_CALL_WITH_STORED + "calls.id = ?", [call_id]))
    return rows[0] if rows else None


def answering_call(store, request_id: str, returned: Sequence[str]) -> dict | None:
    """The call that answered ``request_id`` (an answer whose status is in ``returned``; the
    latest), else its last call, with the prompt's ``stored`` mode; None for an unknown request."""
    marks = ", ".join("?" for _ in returned)
    sql = _CALL_WITH_STORED + (
        f"calls.request_id = ? ORDER BY CASE WHEN calls.role = 'answer' AND calls.status IN ({marks}) THEN 1 ELSE 0 END DESC, "
        "calls.id DESC LIMIT 1"
    )
    rows = _as_dicts(store.read(sql, [request_id, *returned]))
    return rows[0] if rows else None


def request_calls(store, request_id: str) -> list[dict]:
    """Every call of a request, oldest first, with the prompt and each answer's text."""
    return store.rows("calls.request_id = ?", [request_id])


def request_feedback(store, request_id: str) -> list[dict]:
    """The feedback given on a request's calls, oldest first: id, call_id, datetime_utc, verdict,
    should_be, note, user."""
    return _as_dicts(store.read(
        # "user" quoted: a bare user is PostgreSQL's current_user.
        'SELECT id, call_id, datetime_utc, verdict, should_be, note, "user" FROM feedback WHERE request_id = ? ORDER BY id',
        [request_id],
    ))


def prompt_stored_mode(store, request_id: str) -> str | None:
    """How a request's prompt was stored (``full``, ``preview``, ``hash``...); None without a prompt row."""
    row = store.read("SELECT stored FROM prompts WHERE request_id = ?", [request_id]).fetchone()
    return row[0] if row else None


def insert_feedback(store, row: dict) -> None:
    """Store one feedback row (the columns of the ``feedback`` table)."""
    store.record({"feedback": [row]})


def latest_feedback(store, request_ids: Sequence[str], chunk: int = 500) -> dict[str, dict]:
    """The latest feedback row of each request in ``request_ids`` that has any, by request id."""
    out: dict[str, dict] = {}
    for start in range(0, len(request_ids), chunk):
        part = list(request_ids[start:start + chunk])
        cursor = store.read(f"SELECT * FROM feedback WHERE request_id IN ({', '.join('?' * len(part))}) ORDER BY id", part)
        names = [d[0] for d in cursor.description]
        for values in cursor:
            row = dict(zip(names, values))
            out[row["request_id"]] = row  # ordered by id: the last one wins
    return out


# ------------------------------------------------------------------ labels, replay

def calls_of_requests_started(store, since: datetime, until: datetime) -> Iterator[dict]:
    """The calls of each request whose first attempt falls in [since, until), grouped by request
    (ordered by request id, then call id), streamed: id, request_id, role, tier, status, quality,
    routed_tier, provider, the token counts (input, output, cache read, cache write, reasoning), cost_nanousd,
    and the prompt's stored, prompt and prompt_hash."""
    cursor = store.read(
        "SELECT calls.request_id, calls.id, calls.role, calls.tier, calls.status, calls.quality, calls.routed_tier, "
        "calls.provider, calls.input_tokens, calls.output_tokens, calls.cache_read_tokens, calls.cache_write_tokens, "
        "calls.reasoning_tokens, calls.cost_nanousd, prompts.stored, prompts.prompt, prompts.prompt_hash "
        "FROM calls LEFT JOIN prompts ON prompts.request_id = calls.request_id WHERE calls.request_id IN "
        "(SELECT request_id FROM calls WHERE attempt = 1 AND datetime_utc >= ? AND datetime_utc < ?) "
        "ORDER BY calls.request_id, calls.id",
        [stamp(since), stamp(until)],
    )
    names = [d[0] for d in cursor.description]
    for values in cursor:
        yield dict(zip(names, values))


# ------------------------------------------------------------------ shell checks (mmr costs --by gate)

def checks_in_window(store, since: datetime, until: datetime, where: dict[str, str] | None = None) -> Iterator[str]:
    """The ``checks_json`` of every call in the window that has one (``where``: of these column values)."""
    extra, params = _where(where)
    cursor = store.read("SELECT checks_json FROM calls WHERE datetime_utc >= ? AND datetime_utc < ? "
                        f"AND checks_json IS NOT NULL{extra}", (stamp(since), stamp(until), *params))
    for (text,) in cursor:
        yield text
