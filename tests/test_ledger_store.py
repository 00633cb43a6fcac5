"""The ledger store interface: only ledger/ speaks SQL, migrations in order, one store for many threads."""

from __future__ import annotations

import inspect
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from router_cli.errors import LedgerError
from router_cli.ledger import SCHEMA_VERSION, LedgerStore, SQLiteLedger, open_ledger
from router_cli.ledger import migrations as migrations_module
from router_cli.ledger.migrations import MIGRATIONS, registry
from tests.conftest import ROOT

PACKAGE = ROOT / "router_cli"
# The report modules still read through the connection until their SQL moves into
# ledger/queries.py (another part of the restructure); nothing else may.
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE FROM|PRAGMA|ALTER TABLE|CREATE (TABLE|INDEX)|BEGIN|COMMIT|ROLLBACK)\b")
CONNECTION = re.compile(r"\.conn\b|\bsqlite3\b|_retrying\b|\.transaction\(")
HISTORICAL_NAMES = ["001_calls", "002_routing_outcome", "003_quality_gates", "004_embeddings", "005_resilience",
                    "006_experiments", "007_budget_holds", "008_batch_rows", "009_token_classes",
                    "010_gate_checks", "011_latency", "012_prompt_templates"]


def _outside_the_ledger() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if PACKAGE / "ledger" not in p.parents]


def test_no_module_outside_the_ledger_writes_sql_or_touches_a_connection():
    offenders = []
    for path in _outside_the_ledger():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if SQL.search(line) or CONNECTION.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_each_store_implements_every_method_of_the_interface(store):
    from router_cli.ledger.postgres import PostgresLedger

    implementation = SQLiteLedger if store == "sqlite" else PostgresLedger
    wanted = {name for name, _ in inspect.getmembers(LedgerStore, inspect.isfunction) if not name.startswith("_")}
    for name in wanted:
        mine, theirs = getattr(implementation, name), getattr(LedgerStore, name)
        assert mine is not theirs, f"{implementation.__name__} does not implement {name}"
        # Keyword-only extras (record's skip_existing) are the store's own.
        positional = [p for p, v in inspect.signature(mine).parameters.items() if v.kind != v.KEYWORD_ONLY]
        assert positional == list(inspect.signature(theirs).parameters), name


def test_migrations_are_top_level_functions_applied_in_order_under_their_old_names():
    for function in MIGRATIONS:
        assert function.__qualname__ == function.__name__  # not a closure
        assert getattr(migrations_module, function.__name__) is function
    assert [f.__name__ for f in MIGRATIONS] == sorted(f.__name__ for f in MIGRATIONS)
    assert [m.name for m in registry()._migrations] == HISTORICAL_NAMES
    assert SCHEMA_VERSION == len(MIGRATIONS) == int(HISTORICAL_NAMES[-1].split("_")[0])


def test_opened_migrations_are_recorded_in_order(tmp_path):
    open_ledger(tmp_path / "l.db").close()
    conn = sqlite3.connect(tmp_path / "l.db")
    applied = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = 'mmr' ORDER BY rowid")]
    assert applied == HISTORICAL_NAMES


@pytest.mark.parametrize("stop_before", HISTORICAL_NAMES[1:])
def test_a_ledger_stopped_at_any_older_migration_upgrades_in_place(tmp_path, stop_before):
    from sqlite_utils import Database

    path = tmp_path / "old.db"
    db = Database(path)
    registry().apply(db, stop_before=stop_before)
    db["calls"].insert({"id": "c1", "request_id": "r1", "attempt": 1, "tier": "simple", "status": "ok", "cost_nanousd": 5,
                       "datetime_utc": "2024-05-01T12:00:00.000Z"})
    db.conn.execute(f"PRAGMA user_version = {int(stop_before.split('_')[0]) - 1}")
    db.conn.commit()
    db.close()
    with open_ledger(path) as ledger:
        (row,) = ledger.rows()
        backfilled = "simple" if stop_before == "002_routing_outcome" else None  # 002 fills routed_tier of older rows
        assert (row["id"], row["cost_nanousd"], row["routed_tier"], row["variant"]) == ("c1", 5, backfilled, None)
        assert ledger.breaker_states() == [] and ledger.cache_get("nope") is None
        assert ledger.spent_nanousd("global", None, "0") == 5
        assert (row["batch_id"], row["batch_row"]) == (None, None) and ledger.batch_answered("b") == []
        ledger.record([{"id": "c2", "request_id": "r2", "attempt": 1, "role": "answer", "status": "ok",
                        "datetime_utc": "2024-05-01T12:00:01.000Z", "batch_id": "b", "batch_row": "i:1"}])
        assert ledger.batch_answered("b") == ["i:1"] and [c["id"] for c in ledger.batch_answer("b", "i:1")] == ["c2"]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_one_store_shared_by_threads_writes_from_each_and_closes_every_connection(tmp_path):
    store = SQLiteLedger(tmp_path / "l.db", pool_size=3)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(50):
                store.record([{"id": f"{worker}-{i:03d}", "request_id": f"{worker}-{i}", "attempt": 1, "status": "ok",
                               "cost_nanousd": 1, "datetime_utc": "2024-05-01T12:00:00.000Z"}])
                store.update_breaker("p", "m", lambda row: {**(row or {"state": "closed", "failures": "[]"}),
                                                            "updated_at": float(i)})
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(store.rows()) == 8 * 50 and store.spent_nanousd("global", None, "0") == 8 * 50
    connections = store.pool.connections
    assert 1 <= len(connections) <= 3 and store.pool.peak <= 3  # a pool of three, not a connection per thread
    # Every pooled connection syncs at WAL checkpoints only (NORMAL = 1), not on every commit (FULL = 2).
    assert {conn.execute("PRAGMA synchronous").fetchone()[0] for conn in connections} == {1}
    store.close()
    for conn in connections:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")


def test_database_failures_are_ledger_errors(ledger_url):
    with open_ledger(ledger_url) as ledger:
        with pytest.raises(LedgerError, match="no such table|does not exist"):
            ledger.read("SELECT * FROM nothing_here")
        with pytest.raises(LedgerError):
            ledger.record({"nothing_here": [{"a": 1}]})
        with pytest.raises(ValueError, match="unknown budget scope"):
            ledger.spent_nanousd("calls; DROP TABLE calls", None, "0")
    with open_ledger(ledger_url, readonly=True) as ledger:
        with pytest.raises(LedgerError, match="readonly|read-only"):
            ledger.cache_put({"key": "k", "created_at": 0.0, "expires_at": 1.0}, now=0.0)
        with pytest.raises(LedgerError, match="readonly|read-only"):
            ledger.release_hold("r1")


def test_budget_holds_and_breaker_updates_through_the_store(ledger_url):
    with open_ledger(ledger_url) as ledger:
        assert ledger.hold_budget("r1", "alice", "ml", lambda: (700, 9e12)) is True
        assert ledger.hold_budget("r2", "bob", "ml", lambda: None) is False
        assert ledger.held_nanousd("team", "ml", "r2", 0.0) == 700
        assert ledger.held_nanousd("user", "bob", "r2", 0.0) == 0
        assert ledger.held_nanousd("global", None, "r1", 0.0) == 0  # its own hold does not count
        ledger.release_hold("r1")
        assert ledger.held_nanousd("global", None, "r2", 0.0) == 0
        assert ledger.update_breaker("p", "m", lambda row: None) is None
        opened = ledger.update_breaker("p", "m", lambda row: {"state": "open", "failures": "[]", "open_until": 5.0})
        assert opened is not None and opened["state"] == "open" and ledger.breaker("p", "m") == opened
        assert [(r["provider"], r["model"], r["state"]) for r in ledger.breaker_states()] == [("p", "m", "open")]


def test_costs_on_an_up_to_date_ledger_does_not_import_sqlite_utils(tmp_path):
    path = tmp_path / "l.db"
    open_ledger(path).close()
    code = (
        "import sys, io, contextlib\n"
        "from router_cli.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['costs', '--db', {str(path)!r}]) == 0\n"
        "print('sqlite_utils' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_a_batch_row_is_found_through_its_index(ledger_url):
    with open_ledger(ledger_url) as ledger:
        ledger.record([
            {"id": "c1", "request_id": "r1", "attempt": 1, "role": "answer", "status": "error", "batch_id": "b", "batch_row": "s:x"},
            {"id": "c2", "request_id": "r1", "attempt": 2, "role": "answer", "status": "ok", "batch_id": "b", "batch_row": "s:x"},
            {"id": "c3", "request_id": "r2", "attempt": 1, "role": "answer", "status": "error", "batch_id": "b", "batch_row": "i:2"},
            {"id": "c4", "request_id": "r3", "attempt": 1, "role": "answer", "status": "ok", "batch_id": "other", "batch_row": "i:2"},
            {"id": "c5", "request_id": "r4", "attempt": 1, "role": "answer", "status": "ok", "batch_id": None, "batch_row": None},
        ])
        assert ledger.batch_answered("b") == ["s:x"]  # an error row answers nothing; another batch is another batch
        assert [c["id"] for c in ledger.batch_answer("b", "s:x")] == ["c1", "c2"]  # the whole request, in order
        assert ledger.batch_answer("b", "i:2") == []
    if not isinstance(ledger_url, Path):
        return  # the plan below is SQLite's
    conn = sqlite3.connect(ledger_url)
    for sql in ("SELECT DISTINCT batch_row FROM calls WHERE batch_id = ? AND role = 'answer' AND status = 'ok'",
                "SELECT request_id FROM calls WHERE batch_id = ? AND batch_row = ? ORDER BY id DESC"):
        plan = " ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", ("b", "s:x")[: sql.count("?")]))
        assert "idx_calls_batch" in plan and "SCAN calls" not in plan.replace("USING", "")


def test_a_budget_check_sees_every_hold_another_machine_made_while_it_waited(ledger_url):
    """Two stores (two machines): B's check-and-hold starts while A's is between its check and its hold.
    B must wait and then see A's hold; without serialisation both would read 0 and both hold."""
    first, second = open_ledger(ledger_url), open_ledger(ledger_url)
    seen: dict[str, int] = {}
    a_checked = threading.Event()

    def decide_a():
        seen["a"] = first.held_nanousd("team", "ml", "a", 0.0)
        a_checked.set()
        time.sleep(0.5)  # A has checked and not yet held: the race window
        return (700, 9e12)

    def decide_b():
        seen["b"] = second.held_nanousd("team", "ml", "b", 0.0)
        return (300, 9e12)

    a = threading.Thread(target=lambda: first.hold_budget("a", "ann", "ml", decide_a))
    a.start()
    assert a_checked.wait(10)
    second.hold_budget("b", "bo", "ml", decide_b)
    a.join(10)
    assert seen == {"a": 0, "b": 700}
    first.close()
    second.close()


def test_a_breaker_change_sees_the_change_another_machine_made_while_it_waited(ledger_url):
    """Two machines record a failure of one model at once: both failures count (no lost update)."""
    first, second = open_ledger(ledger_url), open_ledger(ledger_url)
    a_read = threading.Event()

    def add(name: str, slow: bool):
        def change(row):
            failures = (row or {}).get("failures") or "[]"
            if slow:
                a_read.set()
                time.sleep(0.5)
            return {"state": "closed", "failures": failures[:-1] + ("," if failures != "[]" else "") + f'"{name}"]'}
        return change

    a = threading.Thread(target=lambda: first.update_breaker("p", "m", add("a", True)))
    a.start()
    assert a_read.wait(10)
    second.update_breaker("p", "m", add("b", False))
    a.join(10)
    assert first.breaker("p", "m")["failures"] == '["a","b"]'
    first.close()
    second.close()
