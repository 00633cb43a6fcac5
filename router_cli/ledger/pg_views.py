"""What a dashboard reads of a PostgreSQL ledger: a daily rollup mmr maintains, and two views.

``mmr_daily`` holds the spend per UTC day, user, team, provider and model. A statement-level
trigger on ``calls`` adds every inserted statement's rows to it in the same transaction, so it
is always exact and needs no cron job; ``calls`` is append-only (mmr never updates or deletes
a call), so inserts are all it must follow. Groups are upserted in key order, so two machines'
transactions lock rollup rows in the same order and cannot deadlock. NULL user/team/provider/model
are kept as '' in the rollup's key (a plain unique key) and shown as NULL by the view.

- ``mmr_daily_spend``: the rollup as dashboards want it (``day`` a date, money in USD);
- ``mmr_requests``: one row per request.
"""

from __future__ import annotations

_KEY = 'day, "user", team, provider, model'
_SUMS = "calls, requests, input_tokens, output_tokens, cost_nanousd, baseline_nanousd"
# Rows whose datetime_utc is not an ISO date (none that mmr writes) are left out, never an error.
_AGGREGATE = (
    "SELECT make_date(substr(datetime_utc, 1, 4)::int, substr(datetime_utc, 6, 2)::int, substr(datetime_utc, 9, 2)::int), "
    "coalesce(\"user\", ''), coalesce(team, ''), coalesce(provider, ''), coalesce(model, ''), count(*), "
    "count(*) FILTER (WHERE attempt = 1), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), "
    "coalesce(sum(cost_nanousd), 0), coalesce(sum(baseline_cost_nanousd), 0) FROM {source} "
    "WHERE datetime_utc ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}' GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5"
)
_UPSERT = (
    f"INSERT INTO mmr_daily AS d ({_KEY}, {_SUMS}) {{select}} ON CONFLICT ({_KEY}) DO UPDATE SET "
    + ", ".join(f"{c} = d.{c} + excluded.{c}" for c in _SUMS.split(", "))
)
_T = 'text COLLATE "C" NOT NULL'

ROLLUP = [
    f'CREATE TABLE mmr_daily (day date NOT NULL, "user" {_T}, team {_T}, provider {_T}, model {_T}, '
    "calls bigint NOT NULL, requests bigint NOT NULL, input_tokens bigint NOT NULL, output_tokens bigint NOT NULL, "
    f"cost_nanousd bigint NOT NULL, baseline_nanousd bigint NOT NULL, PRIMARY KEY ({_KEY}))",
    "CREATE FUNCTION mmr_daily_add() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    + _UPSERT.format(select=_AGGREGATE.format(source="new_calls")) + "; RETURN NULL; END $$",
    "CREATE TRIGGER mmr_daily_add AFTER INSERT ON calls REFERENCING NEW TABLE AS new_calls "
    "FOR EACH STATEMENT EXECUTE FUNCTION mmr_daily_add()",
    # Calls recorded before the rollup existed.
    _UPSERT.format(select=_AGGREGATE.format(source="calls")),
]

VIEWS = [
    "CREATE OR REPLACE VIEW mmr_daily_spend AS SELECT day, nullif(\"user\", '') AS \"user\", nullif(team, '') AS team, "
    "nullif(provider, '') AS provider, nullif(model, '') AS model, calls, requests, input_tokens, output_tokens, "
    "(cost_nanousd / 1e9)::numeric(30, 9) AS spend_usd, (baseline_nanousd / 1e9)::numeric(30, 9) AS baseline_usd "
    "FROM mmr_daily",
    "CREATE OR REPLACE VIEW mmr_requests AS SELECT request_id, min(datetime_utc)::timestamptz AS started_at, "
    "min(\"user\") AS \"user\", min(team) AS team, min(command) AS command, min(routed_tier) AS routed_tier, "
    "max(CASE WHEN role = 'answer' AND status IN ('ok', 'cached', 'best_effort') THEN tier END) AS answered_tier, "
    "max(escalated) AS escalated, count(*) AS calls, (coalesce(sum(cost_nanousd), 0) / 1e9)::numeric(30, 9) AS cost_usd, "
    "coalesce(sum(duration_ms), 0) AS duration_ms FROM calls GROUP BY request_id",
]


def create(conn) -> None:
    """Create the rollup (once, filling it from the calls already there) and (re)create the views."""
    if not conn.execute("SELECT to_regclass('mmr_daily') IS NOT NULL").fetchone()[0]:
        for statement in ROLLUP:
            conn.execute(statement)
    for statement in VIEWS:
        conn.execute(statement)
