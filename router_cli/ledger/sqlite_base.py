"""The SQLite ledger's plumbing: per-thread connections, write transactions, busy retries, errors.

The file is created with mode 0600, in WAL mode with a busy timeout, so several
``mmr`` processes can write at once. The schema evolves only through the
numbered migrations of ``migrations.py``, which run on open.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from ..errors import LedgerError
from .migrations import SCHEMA_VERSION, migrate

DEFAULT_BUSY_TIMEOUT = 10.0  # seconds
T = TypeVar("T")

_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()


def _write_lock(path: Path) -> threading.Lock:
    """One lock per database file for the threads of this process (see :meth:`SQLiteBase.transaction`)."""
    key = os.path.realpath(path)
    with _write_locks_guard:
        return _write_locks.setdefault(key, threading.Lock())


class SQLiteBase:
    """An open SQLite database file; :class:`~router_cli.ledger.sqlite.SQLiteLedger` adds the ledger's operations.

    One object serves every thread of a process: each thread gets its own
    connection on first use, and :meth:`close` closes them all.
    ``readonly``: open every connection read-only (reports on a ledger the user
    may not write to); the schema must already be current then.
    """

    def __init__(self, path: str | os.PathLike, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, *, readonly: bool = False):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.readonly = readonly
        self._write_lock = _write_lock(self.path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_guard = threading.Lock()
        try:
            if readonly:
                if self._connection().execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    raise LedgerError(f"{self.path}: the ledger's schema is older than this mmr and it cannot be upgraded read-only")
                return
            self._create_private_file()
            self._retrying(self._prepare_once)
        except sqlite3.Error as e:
            self.close()
            raise self._error(e) from None
        except LedgerError:
            self.close()
            raise

    # ------------------------------------------------------------ connections

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._connections_guard:
                self._connections.append(conn)
        return conn

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False: close() closes every thread's connection from the thread that calls it.
        if self.readonly:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        if not self.readonly:
            # Per connection, not per file: a thread's own connection would otherwise sync every commit (FULL).
            conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _create_private_file(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
        except OSError as e:
            raise LedgerError(f"{self.path}: cannot create the ledger: {e.strerror}") from None

    def _prepare_once(self) -> None:
        with self._write_lock:
            conn = self._connection()
            conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn)

    # ------------------------------------------------------------ transactions, retries, errors

    @contextlib.contextmanager
    def transaction(self):
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error) on this thread's connection.

        Threads of one process (``mmr ask --batch``) take turns on a Python lock
        first: contending inside SQLite would put them in its busy handler, which
        sleeps in steps of up to 100 ms however short the other write is.
        Processes still wait on each other through SQLite's busy timeout.
        """
        conn = self._connection()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _retrying(self, action: Callable[[], T]) -> T:
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

    def _run(self, action: Callable[[], T]) -> T:
        """:meth:`_retrying`, with any database error raised as :class:`LedgerError`."""
        try:
            return self._retrying(action)
        except sqlite3.Error as e:
            raise self._error(e) from None

    def _write(self, action: Callable[[sqlite3.Connection], T]) -> T:
        """``action(conn)`` in one write transaction, retried while busy; LedgerError on failure."""
        def transaction() -> T:
            with self.transaction() as conn:
                return action(conn)

        return self._run(transaction)

    def _error(self, e: sqlite3.Error) -> LedgerError:
        text = str(e)
        if "file is not a database" in text:
            return LedgerError(f"{self.path}: not an SQLite database (use --db or $MMR_DB to choose another ledger)")
        if "locked" in text or "busy" in text:
            return LedgerError(f"{self.path}: locked by another process for more than {self.busy_timeout:g} s; try again")
        return LedgerError(f"{self.path}: {text}")

    def _dicts(self, sql: str, params: Sequence = ()) -> list[dict]:
        """A query's rows as dicts by column name."""

        def fetch() -> list[dict]:
            cursor = self._connection().execute(sql, list(params))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

        return self._run(fetch)

    def _value(self, sql: str, params: Sequence = ()):
        """The first column of the first row of a query."""
        return self._run(lambda: self._connection().execute(sql, list(params)).fetchone()[0])

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Close every thread's connection."""
        with self._connections_guard:
            connections, self._connections = self._connections, []
            self._local = threading.local()
        for conn in connections:
            conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


