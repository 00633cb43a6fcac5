"""The ledger's schema, as numbered migrations applied in order on open.

Each migration is a top-level function of a sqlite-utils ``Database``, registered
under its historical name (``001_calls`` ...) so that ledgers created by earlier
versions of mmr, which recorded those names in ``_sqlite_migrations``, upgrade
in place. After they run, ``PRAGMA user_version`` holds :data:`SCHEMA_VERSION`,
so opening an up-to-date ledger needs no sqlite-utils import (~0.1 s).
"""

from __future__ import annotations

import sqlite3

# The number of the last migration below.
SCHEMA_VERSION = 12


def m001_calls(db) -> None:
    db["calls"].create(
        {
            "id": str,
            "request_id": str,
            "attempt": int,
            "datetime_utc": str,
            "command": str,
            "tier": str,
            "provider": str,
            "model": str,
            "classifier": str,
            "score": float,
            "reason": str,
            "status": str,
            "error": str,
            "error_kind": str,
            "http_status": int,
            "input_tokens": int,
            "output_tokens": int,
            "usage_estimated": int,
            "cost_usd": str,
            "cost_nanousd": int,
            "baseline_cost_usd": str,
            "baseline_cost_nanousd": int,
            "duration_ms": float,
            "ttft_ms": float,
            "stop_reason": str,
            "stream": int,
            "user": str,
            "team": str,
            "config_hash": str,
            "mmr_version": str,
        },
        pk="id",
    )
    db["calls"].create_index(["request_id"])
    db["calls"].create_index(["datetime_utc"])
    db["prompts"].create(
        {"request_id": str, "prompt_hash": str, "stored": str, "prompt": str, "system": str}, pk="request_id"
    )
    db["prompts"].create_index(["prompt_hash"])
    db["responses"].create({"call_id": str, "response": str}, pk="call_id")


def m002_routing_outcome(db) -> None:
    # routed_tier: the tier the classifier (or --tier) chose; escalated: 1 when a
    # higher tier answered. Both on every row of a request, for reports by tier.
    db.execute("ALTER TABLE calls ADD COLUMN routed_tier TEXT")
    db.execute("ALTER TABLE calls ADD COLUMN escalated INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "UPDATE calls SET routed_tier = (SELECT first.tier FROM calls AS first "
        "WHERE first.request_id = calls.request_id AND first.attempt = 1)"
    )
    db.execute(
        "UPDATE calls SET escalated = 1 WHERE request_id IN (SELECT ok.request_id FROM calls AS ok "
        "WHERE ok.status = 'ok' AND ok.tier != ok.routed_tier)"
    )
    # Drift reports count requests, escalations and errors per routed tier and
    # window from this index alone: a range per tier, nothing sorted.
    db.execute("CREATE INDEX idx_calls_routed ON calls (routed_tier, datetime_utc, attempt, escalated, status)")


def m003_quality_gates(db) -> None:
    # role: "answer", or "judge" for a quality gate's own call; quality and
    # gate_reason: the gate's verdict on an answer (cascades).
    db.execute("ALTER TABLE calls ADD COLUMN role TEXT NOT NULL DEFAULT 'answer'")
    db.execute("ALTER TABLE calls ADD COLUMN quality REAL")
    db.execute("ALTER TABLE calls ADD COLUMN gate_reason TEXT")


def m004_embeddings(db) -> None:
    # The embedding classifier's cache: float32 vectors by model and text hash.
    db["embeddings"].create({"model": str, "text_sha256": str, "dims": int, "vector": bytes}, pk=("model", "text_sha256"))


def m005_resilience(db) -> None:
    # policy: what budgets, the cache and circuit breakers decided for the request;
    # saved_*: what a cache hit did not pay (the original answer's cost).
    db.execute("ALTER TABLE calls ADD COLUMN policy TEXT")
    db.execute("ALTER TABLE calls ADD COLUMN saved_usd TEXT")
    db.execute("ALTER TABLE calls ADD COLUMN saved_nanousd INTEGER NOT NULL DEFAULT 0")
    # Budget checks sum spend per period from these indexes alone.
    db.execute("CREATE INDEX idx_calls_spend ON calls (datetime_utc, cost_nanousd)")
    db.execute("CREATE INDEX idx_calls_user_spend ON calls (user, datetime_utc, cost_nanousd)")
    db.execute("CREATE INDEX idx_calls_team_spend ON calls (team, datetime_utc, cost_nanousd)")
    # One row per provider/model; times are Unix seconds (shared by every process).
    db["breakers"].create(
        {"provider": str, "model": str, "state": str, "failures": str, "opened_at": float, "open_until": float,
         "probe_until": float, "last_error": str, "updated_at": float},
        pk=("provider", "model"),
        not_null={"state"},
        defaults={"state": "closed", "failures": "[]"},
    )
    db["cache"].create(
        {"key": str, "scope": str, "created_at": float, "expires_at": float, "request_id": str, "tier": str,
         "provider": str, "model": str, "text": str, "input_tokens": int, "output_tokens": int,
         "cost_usd": str, "stop_reason": str},
        pk="key",
    )
    db["cache"].create_index(["expires_at"])


def m006_experiments(db) -> None:
    # variant: "experiment/variant" pairs the request ran under (NULL: none);
    # thresholds_json: the classifier's and the quality gate's cut-offs, for mmr explain.
    db.execute("ALTER TABLE calls ADD COLUMN variant TEXT")
    db.execute("ALTER TABLE calls ADD COLUMN thresholds_json TEXT")
    # What people said about answers; several per call, the latest counts.
    db["feedback"].create(
        {"id": str, "call_id": str, "request_id": str, "datetime_utc": str, "verdict": str, "should_be": str,
         "needs_higher": int, "note": str, "user": str},
        pk="id",
    )
    # The latest verdict per call is the max(id) of its group: an index-only walk.
    db.execute("CREATE INDEX idx_feedback_call ON feedback (call_id, id)")
    db.execute("CREATE INDEX idx_feedback_request ON feedback (request_id)")


def m007_budget_holds(db) -> None:
    # A request's worst case, held against the budgets that cover it while its
    # calls are in flight, so concurrent requests cannot together pass a limit.
    db["budget_holds"].create(
        {"request_id": str, "user": str, "team": str, "nanousd": int, "expires_at": float}, pk="request_id")


def m008_batch_rows(db) -> None:
    # batch_id: the --batch run a call answered a row of (docs/batch.md says how it is chosen);
    # batch_row: that row's id as ``s:<string>`` or ``i:<integer>`` ("7" and 7 are different ids).
    db.execute("ALTER TABLE calls ADD COLUMN batch_id TEXT")
    db.execute("ALTER TABLE calls ADD COLUMN batch_row TEXT")
    # --resume asks which rows of a batch were answered, and the answer of one row: a range of this
    # index each. Partial: calls outside a batch (most of them) cost it nothing.
    db.execute("CREATE INDEX idx_calls_batch ON calls (batch_id, batch_row, role, status) WHERE batch_id IS NOT NULL")


def m009_token_classes(db) -> None:
    # Every token class a provider bills, as it reported them: Anthropic's cache reads and writes
    # are outside input_tokens, OpenAI's cached tokens inside them; reasoning tokens are inside
    # output_tokens. price_source: where the row's prices came from ("genai-prices 0.2.3", "config").
    # cache_saved_nanousd: what prompt caching saved on the call (negative: writes not yet read).
    # Rows from before all read 0 / NULL.
    db.execute("ALTER TABLE calls ADD COLUMN cache_read_tokens INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE calls ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE calls ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE calls ADD COLUMN price_source TEXT")
    db.execute("ALTER TABLE calls ADD COLUMN cache_saved_nanousd INTEGER NOT NULL DEFAULT 0")


def m010_gate_checks(db) -> None:
    # checks_json: a cascade answer's shell checks (--check), as [{"gate", "verdict", "ms", "detail"}].
    db.execute("ALTER TABLE calls ADD COLUMN checks_json TEXT")


def m011_latency(db) -> None:
    # hedge: "won" or "lost" on both calls of a hedged request (a tier's hedge: its next model called
    # too when the first was slow to start); NULL for every other call. ttft_ms (from m001) holds each
    # streamed call's time to its first token; a call abandoned for want of one has error_kind
    # first_token_timeout and its wait in duration_ms.
    db.execute("ALTER TABLE calls ADD COLUMN hedge TEXT")


def m012_prompt_templates(db) -> None:
    # The wording a model was sent (config/phrasing.py): its template's name ("inline" for one given in
    # place) and 16 hex digits of its text's SHA-256. NULL: sent as the caller wrote it. Indexed for
    # costs --by template.
    db.execute("ALTER TABLE calls ADD COLUMN template TEXT")
    db.execute("ALTER TABLE calls ADD COLUMN template_hash TEXT")
    db.execute("CREATE INDEX idx_calls_template ON calls (template, datetime_utc) WHERE template IS NOT NULL")


# In the order they apply; the name of each is its function's without the "m".
MIGRATIONS = (m001_calls, m002_routing_outcome, m003_quality_gates, m004_embeddings, m005_resilience,
              m006_experiments, m007_budget_holds, m008_batch_rows, m009_token_classes, m010_gate_checks,
              m011_latency, m012_prompt_templates)


def migration_name(function) -> str:
    """The name a migration is recorded under in ``_sqlite_migrations`` (``001_calls`` for ``m001_calls``)."""
    return function.__name__[1:]


def registry():
    """The sqlite-utils ``Migrations`` holding :data:`MIGRATIONS` in order (imports sqlite-utils)."""
    from sqlite_utils import Migrations

    migrations = Migrations("mmr")
    for function in MIGRATIONS:
        migrations(name=migration_name(function))(function)
    return migrations


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to date; the caller holds the process's write lock.

    Returns at once when ``user_version`` says the schema is current.
    """
    if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return
    from sqlite_utils import Database

    db = Database(conn, execute_plugins=False, recursive_triggers=False)
    migrations = registry()
    if not migrations.pending(db):
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return
    # BEGIN IMMEDIATE takes the write lock first, so two processes opening a
    # fresh ledger at once apply each migration exactly once.
    conn.execute("BEGIN IMMEDIATE")
    try:
        migrations.apply(db)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT (a full disk) may have rolled back already
            conn.execute("ROLLBACK")
        raise
