"""The SQLite ledger: one row per attempt, grouped by ``request_id``.

Location: ``--db PATH``, else ``$MMR_DB``, else ``$XDG_DATA_HOME/mmr/ledger.db``
(``~/.local/share/mmr/ledger.db``). Created with mode 0600, in WAL mode with a
busy timeout, so several ``mmr`` processes can write at once. The schema
evolves only through the numbered migrations below, which run on every open.

Texts live apart from ``calls`` so that reports scan narrow rows however long
the prompts: ``prompts`` (one row per request: its hash and, as ``ledger.store``
says, the prompt and system prompt in full or as a preview) and ``responses``
(one row per answering call). :meth:`Ledger.rows` joins them back.

Money is stored twice on purpose: ``cost_usd`` as the exact decimal string
(what people and the JSON contract read) and ``cost_nanousd`` as an integer,
so that SQL sums are exact too.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable

from .errors import LedgerError

DEFAULT_BUSY_TIMEOUT = 10.0  # seconds
# The number of the last migration below; kept in PRAGMA user_version after they
# run so that opening an up-to-date ledger needs no sqlite-utils import (~0.1 s).
SCHEMA_VERSION = 7


def user_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "mmr"


def resolve_db_path(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("MMR_DB")
    return Path(env) if env else user_data_dir() / "ledger.db"


def _migrations():
    from sqlite_utils import Migrations

    migrations = Migrations("mmr")

    @migrations(name="001_calls")
    def m001_calls(db):
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

    @migrations(name="002_routing_outcome")
    def m002_routing_outcome(db):
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

    @migrations(name="003_quality_gates")
    def m003_quality_gates(db):
        # role: "answer", or "judge" for a quality gate's own call; quality and
        # gate_reason: the gate's verdict on an answer (cascades).
        db.execute("ALTER TABLE calls ADD COLUMN role TEXT NOT NULL DEFAULT 'answer'")
        db.execute("ALTER TABLE calls ADD COLUMN quality REAL")
        db.execute("ALTER TABLE calls ADD COLUMN gate_reason TEXT")

    @migrations(name="004_embeddings")
    def m004_embeddings(db):
        # The embedding classifier's cache: float32 vectors by model and text hash.
        db["embeddings"].create({"model": str, "text_sha256": str, "dims": int, "vector": bytes}, pk=("model", "text_sha256"))

    @migrations(name="005_resilience")
    def m005_resilience(db):
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

    @migrations(name="006_experiments")
    def m006_experiments(db):
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

    @migrations(name="007_budget_holds")
    def m007_budget_holds(db):
        # A request's worst case, held against the budgets that cover it while its
        # calls are in flight, so concurrent requests cannot together pass a limit.
        db["budget_holds"].create(
            {"request_id": str, "user": str, "team": str, "nanousd": int, "expires_at": float}, pk="request_id")

    return migrations


_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()


def _write_lock(path: Path) -> threading.Lock:
    """One lock per database file for the threads of this process (see :meth:`Ledger.transaction`)."""
    key = os.path.realpath(path)
    with _write_locks_guard:
        return _write_locks.setdefault(key, threading.Lock())


class Ledger:
    """An open ledger database. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, *, readonly: bool = False):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._write_lock = _write_lock(self.path)
        try:
            if readonly:
                # Reports must work on a ledger the user may not write to.
                uri = self.path.resolve().as_uri() + "?mode=ro"
                self.conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None)
                self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
                if self.conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    raise LedgerError(f"{self.path}: the ledger's schema is older than this mmr and it cannot be upgraded read-only")
                return
            self._create_private_file()
            # A Router keeps one connection per thread, and closes them all from the thread that closes it.
            self.conn = sqlite3.connect(str(self.path), timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._retrying(self._prepare_once)
        except sqlite3.Error as e:
            raise self._error(e) from None

    def _prepare_once(self) -> None:
        with self._write_lock:
            self._prepare()

    @contextlib.contextmanager
    def transaction(self):
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error).

        Threads of one process (``mmr ask --batch``) take turns on a Python lock
        first: contending inside SQLite would put them in its busy handler, which
        sleeps in steps of up to 100 ms however short the other write is.
        Processes still wait on each other through SQLite's busy timeout.
        """
        with self._write_lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    def _prepare(self) -> None:
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self._migrate()

    def _retrying(self, action):
        """Run ``action``, retrying while the database is busy, up to the busy timeout.

        SQLite's busy handler does not cover every case (switching a new file to
        WAL while others open it, or a lock it refuses to wait for to avoid a
        deadlock), so busy errors are retried here too.
        """
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                return action()
            except sqlite3.OperationalError as e:
                if ("locked" not in str(e) and "busy" not in str(e)) or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    @classmethod
    def for_reading(cls, path: str | os.PathLike) -> "Ledger":
        """Open for reports: upgrade in place when writable, else read-only."""
        path = Path(path)
        return cls(path, readonly=not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK))

    def _create_private_file(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
        except OSError as e:
            raise LedgerError(f"{self.path}: cannot create the ledger: {e.strerror}") from None

    def _migrate(self) -> None:
        if self.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        from sqlite_utils import Database

        db = Database(self.conn, execute_plugins=False, recursive_triggers=False)
        migrations = _migrations()
        if not migrations.pending(db):
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        # BEGIN IMMEDIATE takes the write lock first, so two processes opening a
        # fresh ledger at once apply each migration exactly once. (_prepare_once holds the thread lock.)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            migrations.apply(db)
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _error(self, e: sqlite3.Error) -> LedgerError:
        text = str(e)
        if "file is not a database" in text:
            return LedgerError(f"{self.path}: not an SQLite database (use --db or $MMR_DB to choose another ledger)")
        if "locked" in text or "busy" in text:
            return LedgerError(f"{self.path}: locked by another process for more than {self.busy_timeout:g} s; try again")
        return LedgerError(f"{self.path}: {text}")

    def record(self, rows: list[dict] | dict[str, list[dict]]) -> None:
        """Insert rows in one transaction: a list of ``calls`` rows, or ``{table: rows}``."""
        tables = {"calls": rows} if isinstance(rows, list) else rows
        try:
            self._retrying(lambda: self._insert(tables))
        except sqlite3.Error as e:
            raise self._error(e) from None

    def _insert(self, tables: dict[str, list[dict]]) -> None:
        with self.transaction():
            for table, table_rows in tables.items():
                if not table_rows:
                    continue
                columns = list(table_rows[0])
                sql = (
                    f"INSERT INTO {_quote(table)} ({', '.join(_quote(c) for c in columns)}) "
                    f"VALUES ({', '.join('?' for _ in columns)})"
                )
                self.conn.executemany(sql, [[row.get(c) for c in columns] for row in table_rows])

    def cached_embeddings(self, model: str, hashes: list[str]) -> dict[str, list[float]]:
        """Vectors already stored for ``model``, by text hash."""
        from array import array

        out = {}
        for start in range(0, len(hashes), 500):
            chunk = hashes[start:start + 500]
            sql = f"SELECT text_sha256, vector FROM embeddings WHERE model = ? AND text_sha256 IN ({', '.join('?' * len(chunk))})"
            for digest, blob in self.conn.execute(sql, [model, *chunk]):
                out[digest] = array("f", blob).tolist()
        return out

    def store_embeddings(self, model: str, vectors: dict[str, list[float]]) -> None:
        from array import array

        rows = [(model, digest, len(v), array("f", v).tobytes()) for digest, v in vectors.items()]

        def insert() -> None:
            with self.transaction():
                self.conn.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", rows)

        try:
            self._retrying(insert)
        except sqlite3.Error as e:
            raise self._error(e) from None

    def read(self, sql: str, params: Iterable = ()) -> sqlite3.Cursor:
        """Run one query for the reports (see ledger_queries) and return its cursor, retrying while busy."""
        try:
            return self._retrying(lambda: self.conn.execute(sql, list(params)))
        except sqlite3.Error as e:
            raise self._error(e) from None

    def rows(self, where: str = "1", params: Iterable = ()) -> list[dict]:
        """Rows of ``calls`` matching a SQL condition, oldest first, with their texts joined."""
        cursor = self.conn.execute(
            "SELECT calls.*, prompts.prompt_hash, prompts.prompt, prompts.system, responses.response FROM calls "
            "LEFT JOIN prompts ON prompts.request_id = calls.request_id "
            f"LEFT JOIN responses ON responses.call_id = calls.id WHERE {where} ORDER BY calls.id",
            list(params),
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
