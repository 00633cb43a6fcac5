"""The ledger file: permissions, WAL, pinned columns, migrations, concurrent writers, bad files."""

from __future__ import annotations

import multiprocessing
import sqlite3
import stat

import pytest

from router_cli.errors import LedgerError
from router_cli.ledger import SCHEMA_VERSION, open_ledger, resolve_db_path
from router_cli.ledger.migrations import registry

COLUMNS = [
    "id", "request_id", "attempt", "datetime_utc", "command", "tier", "provider", "model", "classifier", "score",
    "reason", "status", "error", "error_kind", "http_status", "input_tokens", "output_tokens", "usage_estimated",
    "cost_usd", "cost_nanousd", "baseline_cost_usd", "baseline_cost_nanousd", "duration_ms", "ttft_ms",
    "stop_reason", "stream", "user", "team", "config_hash", "mmr_version", "routed_tier", "escalated",
    "role", "quality", "gate_reason", "policy", "saved_usd", "saved_nanousd", "variant", "thresholds_json", "batch_id",
    "batch_row", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "price_source", "cache_saved_nanousd", "checks_json",
    "hedge", "template", "template_hash",
]


def test_created_private_in_wal_mode(tmp_path):
    path = tmp_path / "sub" / "ledger.db"
    open_ledger(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_columns_are_pinned(tmp_path):
    with open_ledger(tmp_path / "l.db") as ledger:
        columns = {t: [row[1] for row in ledger.read(f"PRAGMA table_info({t})")] for t in ("calls", "prompts", "responses")}
    assert columns == {
        "calls": COLUMNS,
        "prompts": ["request_id", "prompt_hash", "stored", "prompt", "system"],
        "responses": ["call_id", "response"],
    }
    with open_ledger(tmp_path / "l.db") as ledger:
        assert [row[1] for row in ledger.read("PRAGMA table_info(embeddings)")] == ["model", "text_sha256", "dims", "vector"]


def test_schema_version_is_the_last_migrations_number():
    last = registry()._migrations[-1]
    assert SCHEMA_VERSION == int(last.name.split("_")[0])


def test_migrations_run_once_and_reopen_fast(tmp_path):
    path = tmp_path / "l.db"
    open_ledger(path).close()
    open_ledger(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0] == len(registry()._migrations)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_ledger_from_an_older_schema_upgrades_in_place(tmp_path):
    from sqlite_utils import Database

    path = tmp_path / "old.db"
    db = Database(path)
    registry().apply(db, stop_before="002_routing_outcome")
    rows = [
        ("a1", "a", 1, "simple", "error"), ("a2", "a", 2, "medium", "ok"),  # fell back to a higher tier
        ("b1", "b", 1, "complex", "ok"),
    ]
    for call_id, request, attempt, tier, status in rows:
        db["calls"].insert({"id": call_id, "request_id": request, "attempt": attempt, "tier": tier, "status": status, "cost_nanousd": 7})
    db.conn.execute("PRAGMA user_version = 1")
    db.conn.commit()
    db.close()
    with open_ledger(path) as ledger:
        upgraded = {r["id"]: (r["routed_tier"], r["escalated"], r["cost_nanousd"]) for r in ledger.rows()}
    assert upgraded == {"a1": ("simple", 1, 7), "a2": ("simple", 1, 7), "b1": ("complex", 0, 7)}
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"breakers", "cache", "embeddings"} <= tables


def test_default_location_follows_xdg(tmp_path, monkeypatch):
    assert resolve_db_path() == tmp_path / "data" / "mmr" / "ledger.db"
    monkeypatch.setenv("MMR_DB", str(tmp_path / "env.db"))
    assert resolve_db_path() == tmp_path / "env.db"
    assert resolve_db_path("flag.db").name == "flag.db"


def test_not_a_database(tmp_path):
    path = tmp_path / "l.db"
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(LedgerError, match="not an SQLite database"):
        open_ledger(path)


def test_locked_longer_than_the_busy_timeout(tmp_path):
    path = tmp_path / "l.db"
    open_ledger(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with open_ledger(path, busy_timeout=0.2) as ledger, pytest.raises(LedgerError, match="locked by another process"):
            ledger.record([{"id": "x", "request_id": "r", "status": "ok"}])
    finally:
        holder.execute("ROLLBACK")


def _writer(path, worker, count):
    with open_ledger(path) as ledger:
        for i in range(count):
            ledger.record([{"id": f"{worker:02d}-{i:04d}-{n}", "request_id": f"{worker}-{i}", "attempt": n, "status": "ok"} for n in (1, 2)])


def test_concurrent_writer_processes_lose_nothing(tmp_path):
    path = tmp_path / "l.db"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 100)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4
    with open_ledger(path) as ledger:
        rows = ledger.rows()
    assert len(rows) == 4 * 100 * 2
    assert len({r["request_id"] for r in rows}) == 400
