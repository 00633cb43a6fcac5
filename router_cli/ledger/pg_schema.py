"""The PostgreSQL ledger's schema: the same numbered migrations as SQLite's, in PostgreSQL's DDL.

:data:`PG_MIGRATIONS` maps each migration's name (``001_calls`` ...) to its statements;
a SQLite migration without a counterpart here fails the tests (tests/test_ledger_pg.py).
Types keep SQLite's meaning: integers (money in nano-dollars, token counts, 0/1 flags) are
BIGINT, decimal money strings and ISO-8601 times are text, reals are double precision.
Text is compared byte-wise (``COLLATE "C"``) as SQLite does, so ISO times and ids sort the
same on every server whatever its locale.

Applied versions are recorded in ``mmr_migrations``. :func:`migrate` runs them in one
transaction under an advisory lock, so two machines upgrading one database at once apply
each migration exactly once.
"""

from __future__ import annotations

from . import pg_views
from .migrations import MIGRATIONS, SCHEMA_VERSION, migration_name

T = 'text COLLATE "C"'
I = "bigint"
R = "double precision"

_CALLS_001 = {
    "id": f"{T} PRIMARY KEY", "request_id": T, "attempt": I, "datetime_utc": T, "command": T, "tier": T,
    "provider": T, "model": T, "classifier": T, "score": R, "reason": T, "status": T, "error": T, "error_kind": T,
    "http_status": I, "input_tokens": I, "output_tokens": I, "usage_estimated": I, "cost_usd": T, "cost_nanousd": I,
    "baseline_cost_usd": T, "baseline_cost_nanousd": I, "duration_ms": R, "ttft_ms": R, "stop_reason": T, "stream": I,
    '"user"': T, "team": T, "config_hash": T, "mmr_version": T,
}


def _table(name: str, columns: dict[str, str], extra: str = "") -> str:
    body = ", ".join(f"{c} {t}" for c, t in columns.items())
    return f"CREATE TABLE {name} ({body}{', ' + extra if extra else ''})"


PG_MIGRATIONS: dict[str, list[str]] = {
    "001_calls": [
        _table("calls", _CALLS_001),
        "CREATE INDEX idx_calls_request_id ON calls (request_id)",
        "CREATE INDEX idx_calls_datetime_utc ON calls (datetime_utc)",
        _table("prompts", {"request_id": f"{T} PRIMARY KEY", "prompt_hash": T, "stored": T, "prompt": T, "system": T}),
        "CREATE INDEX idx_prompts_prompt_hash ON prompts (prompt_hash)",
        _table("responses", {"call_id": f"{T} PRIMARY KEY", "response": T}),
    ],
    "002_routing_outcome": [
        f"ALTER TABLE calls ADD COLUMN routed_tier {T}",
        f"ALTER TABLE calls ADD COLUMN escalated {I} NOT NULL DEFAULT 0",
        "CREATE INDEX idx_calls_routed ON calls (routed_tier, datetime_utc, attempt, escalated, status)",
    ],
    "003_quality_gates": [
        f"ALTER TABLE calls ADD COLUMN role {T} NOT NULL DEFAULT 'answer'",
        f"ALTER TABLE calls ADD COLUMN quality {R}",
        f"ALTER TABLE calls ADD COLUMN gate_reason {T}",
    ],
    "004_embeddings": [
        _table("embeddings", {"model": T, "text_sha256": T, "dims": I, "vector": "bytea"},
               "PRIMARY KEY (model, text_sha256)"),
    ],
    "005_resilience": [
        f"ALTER TABLE calls ADD COLUMN policy {T}",
        f"ALTER TABLE calls ADD COLUMN saved_usd {T}",
        f"ALTER TABLE calls ADD COLUMN saved_nanousd {I} NOT NULL DEFAULT 0",
        "CREATE INDEX idx_calls_spend ON calls (datetime_utc, cost_nanousd)",
        'CREATE INDEX idx_calls_user_spend ON calls ("user", datetime_utc, cost_nanousd)',
        "CREATE INDEX idx_calls_team_spend ON calls (team, datetime_utc, cost_nanousd)",
        _table("breakers", {"provider": T, "model": T, "state": f"{T} NOT NULL DEFAULT 'closed'",
                            "failures": f"{T} DEFAULT '[]'", "opened_at": R, "open_until": R, "probe_until": R,
                            "last_error": T, "updated_at": R}, "PRIMARY KEY (provider, model)"),
        _table("cache", {"key": f"{T} PRIMARY KEY", "scope": T, "created_at": R, "expires_at": R, "request_id": T,
                         "tier": T, "provider": T, "model": T, "text": T, "input_tokens": I, "output_tokens": I,
                         "cost_usd": T, "stop_reason": T}),
        "CREATE INDEX idx_cache_expires_at ON cache (expires_at)",
    ],
    "006_experiments": [
        f"ALTER TABLE calls ADD COLUMN variant {T}",
        f"ALTER TABLE calls ADD COLUMN thresholds_json {T}",
        _table("feedback", {"id": f"{T} PRIMARY KEY", "call_id": T, "request_id": T, "datetime_utc": T, "verdict": T,
                            "should_be": T, "needs_higher": I, "note": T, '"user"': T}),
        "CREATE INDEX idx_feedback_call ON feedback (call_id, id)",
        "CREATE INDEX idx_feedback_request ON feedback (request_id)",
    ],
    "007_budget_holds": [
        _table("budget_holds", {"request_id": f"{T} PRIMARY KEY", '"user"': T, "team": T, "nanousd": I,
                                "expires_at": R}),
    ],
    "008_batch_rows": [
        f"ALTER TABLE calls ADD COLUMN batch_id {T}",
        f"ALTER TABLE calls ADD COLUMN batch_row {T}",
        "CREATE INDEX idx_calls_batch ON calls (batch_id, batch_row, role, status) WHERE batch_id IS NOT NULL",
    ],
    "009_token_classes": [
        f"ALTER TABLE calls ADD COLUMN cache_read_tokens {I} NOT NULL DEFAULT 0",
        f"ALTER TABLE calls ADD COLUMN cache_write_tokens {I} NOT NULL DEFAULT 0",
        f"ALTER TABLE calls ADD COLUMN reasoning_tokens {I} NOT NULL DEFAULT 0",
        f"ALTER TABLE calls ADD COLUMN price_source {T}",
        f"ALTER TABLE calls ADD COLUMN cache_saved_nanousd {I} NOT NULL DEFAULT 0",
    ],
    "010_gate_checks": [f"ALTER TABLE calls ADD COLUMN checks_json {T}"],
    "011_latency": [f"ALTER TABLE calls ADD COLUMN hedge {T}"],
    "012_prompt_templates": [
        f"ALTER TABLE calls ADD COLUMN template {T}",
        f"ALTER TABLE calls ADD COLUMN template_hash {T}",
        "CREATE INDEX idx_calls_template ON calls (template, datetime_utc) WHERE template IS NOT NULL",
    ],
}

# Not part of the shared schema: the record of migrations, how check_writable proves a commit goes
# through, and (pg_views.py) the rollup and views a dashboard reads, replaced after every upgrade.
_SUPPORT = [
    "CREATE TABLE IF NOT EXISTS mmr_migrations (version integer PRIMARY KEY, name text NOT NULL, "
    "applied_at timestamptz NOT NULL DEFAULT now())",
]
_AFTER = [
    "CREATE TABLE IF NOT EXISTS mmr_write_check (id integer PRIMARY KEY, at double precision)",
]
# Any 64-bit number only mmr uses: the advisory lock two upgrading machines take turns on.
MIGRATION_LOCK = 0x6D6D725F6D696772


def _check_counterparts() -> None:
    names = [migration_name(m) for m in MIGRATIONS]
    missing = [n for n in names if n not in PG_MIGRATIONS]
    if missing or len(PG_MIGRATIONS) != len(names):
        raise AssertionError(f"PostgreSQL migrations do not match SQLite's: missing {missing}")


def migrate(conn) -> None:
    """Bring the schema of ``conn``'s search path up to :data:`SCHEMA_VERSION` (psycopg connection, autocommit)."""
    _check_counterparts()
    row = conn.execute("SELECT to_regclass('mmr_migrations') IS NOT NULL").fetchone()
    if row[0] and conn.execute("SELECT coalesce(max(version), 0) FROM mmr_migrations").fetchone()[0] == SCHEMA_VERSION:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        for statement in _SUPPORT:
            conn.execute(statement)
        done = {v for (v,) in conn.execute("SELECT version FROM mmr_migrations").fetchall()}
        for function in MIGRATIONS:
            name = migration_name(function)
            version = int(name.split("_")[0])  # its number, as SQLite's user_version counts it
            if version in done:
                continue
            for statement in PG_MIGRATIONS[name]:
                conn.execute(statement)
            conn.execute("INSERT INTO mmr_migrations (version, name) VALUES (%s, %s)", (version, name))
        for statement in _AFTER:
            conn.execute(statement)
        pg_views.create(conn)


def schema_version(conn) -> int:
    """The last migration applied (0 for a database mmr never set up)."""
    if not conn.execute("SELECT to_regclass('mmr_migrations') IS NOT NULL").fetchone()[0]:
        return 0
    return conn.execute("SELECT coalesce(max(version), 0) FROM mmr_migrations").fetchone()[0]
