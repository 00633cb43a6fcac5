"""The SQLite ledger's plumbing: a bounded pool of connections, write transactions, busy retries, errors.

The file is created with mode 0600 (an existing empty file is made 0600 before
anything is written to it), in WAL mode with a busy timeout, so several ``mmr``
processes can write at once. The schema evolves only through the numbered
migrations of ``migrations.py``, which run on open. A new ledger that cannot be
initialised (a full disk) is removed again rather than left as an empty file.
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
from .sqlite_pool import ConnectionPool, LeasedRows

DEFAULT_BUSY_TIMEOUT = 10.0  # seconds
# What check_writable() wants free on the ledger's filesystem: a request's rows
# take ~50 KB of WAL (13 pages: calls and its 8 indexes, prompts, responses) and a
# new process's -shm 32 KB; long texts take more.
MIN_FREE_BYTES = 1 << 20
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

    One object serves every thread of a process through a pool of at most
    :attr:`pool_size` connections (``pool_size=`` overrides it): a thread takes one
    for an operation (a query, or a whole write transaction, with the reads made
    inside it) and gives it back after, so ``mmr serve``'s hundreds of request
    threads share a few (``sqlite_pool.py``). :meth:`close` closes them all.
    ``readonly``: open every connection read-only (reports on a ledger the user
    may not write to); the schema must already be current then. ``immutable``
    (with ``readonly``): read the file as it is, without locks and without
    creating ``-wal``/``-shm`` files; only for a file nobody is writing.
    """

    pool_size = 8
    pool_wait = 60.0  # seconds a thread waits for a free connection before it is an error

    def __init__(self, path: str | os.PathLike, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, *, readonly: bool = False,
                 immutable: bool = False, pool_size: int | None = None):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.readonly = readonly
        self.immutable = readonly and immutable
        self._write_lock = _write_lock(self.path)
        self.pool = ConnectionPool(self._connect, pool_size or self.pool_size, self.pool_wait, str(self.path))
        if readonly:
            self._guarded(self._check_schema)
            return
        created = self._create_private_file()
        self._guarded(lambda: self._retrying(self._prepare_once), created=created)

    def _guarded(self, action: Callable[[], None], *, created: bool = False) -> None:
        """``action()``, closing every connection and raising LedgerError if it fails; a ledger file
        this call ``created`` is removed again (unless it failed only for being busy)."""
        try:
            action()
        except sqlite3.Error as e:
            self.close()
            if created and not _busy(e):
                self._remove_unborn()
            raise self._error(e) from None
        except BaseException:
            self.close()
            raise

    def _check_schema(self) -> None:
        with self.pool.lease() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            raise LedgerError(f"{self.path}: the ledger's schema is older than this mmr and it cannot be upgraded read-only")

    # ------------------------------------------------------------ connections

    def _connection(self) -> sqlite3.Connection:
        """The connection this thread holds: call only inside :meth:`_run` (or ``self.pool.lease()``)."""
        return self.pool.held()

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False: a pooled connection serves one thread at a time, but not always the same one.
        if self.readonly:
            uri = self.path.resolve().as_uri() + ("?mode=ro&immutable=1" if self.immutable else "?mode=ro")
            conn = sqlite3.connect(uri, uri=True, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        if not self.readonly:
            # Per connection, not per file: every pooled connection would otherwise sync every commit (FULL).
            conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _create_private_file(self) -> bool:
        """Create the file with mode 0600, or check that the existing one can be written; whether it was created.

        A file that cannot be opened for writing is refused here, before SQLite would
        open it read-only behind our back (and leave ``-wal``/``-shm`` files beside it).
        An existing empty file (``touch``, ``mktemp``) is about to hold prompts: it is
        made 0600 like a new one, and refused only when its mode cannot be changed.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                fd = -1
        except OSError as e:
            raise LedgerError(f"{self.path}: cannot create the ledger: {e.strerror}") from None
        if fd >= 0:
            os.close(fd)
            return True
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError as e:
            raise LedgerError(f"{self.path}: cannot write to the ledger: {e.strerror}") from None
        try:
            status = os.fstat(fd)
            if status.st_size == 0 and status.st_mode & 0o077:
                os.fchmod(fd, 0o600)
        except OSError as e:
            raise LedgerError(f"{self.path}: an empty file that would become the ledger, but its mode cannot be "
                              f"made 0600 ({e.strerror}); use a new path") from None
        finally:
            os.close(fd)
        return False

    def _remove_unborn(self) -> None:
        """Remove the file this object created when it never became a ledger (a full disk), with its -wal and -shm.

        A ledger another process initialised meanwhile has a schema version and stays.
        """
        try:
            if self.path.stat().st_size > 0:
                with contextlib.closing(sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro&immutable=1",
                                                        uri=True)) as conn:
                    if conn.execute("PRAGMA user_version").fetchone()[0] != 0:
                        return
            for suffix in ("-wal", "-shm", ""):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.path}{suffix}")
        except (OSError, sqlite3.Error):
            pass  # the error that brought us here is the one to report

    def _prepare_once(self) -> None:
        with self.pool.lease() as conn, self._write_lock:
            conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn)

    # ------------------------------------------------------------ can it take a write?

    def check_writable(self) -> None:
        """Prove now that a write can commit: the file, its directory, the write lock and the disk.

        Refuses when the filesystem has less than :data:`MIN_FREE_BYTES` free, then
        commits a transaction that rewrites the header page, so that the commit has
        to append to the WAL: a read-only file, directory or filesystem, or a disk
        too full for one page, fails here. LedgerError otherwise.
        """
        if self.readonly:
            raise LedgerError(f"{self.path}: opened read-only")
        self._check_free_space()

        def rewrite_header(conn: sqlite3.Connection) -> None:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            conn.execute(f"PRAGMA user_version = {version}")

        self._write(rewrite_header)

    def _check_free_space(self) -> None:
        free = self._free_bytes()
        if free is not None and free < MIN_FREE_BYTES:
            raise LedgerError(f"{self.path}: the disk holding the ledger is full ({free // 1024} KiB free; "
                              f"mmr wants {MIN_FREE_BYTES // 1024} KiB free to record a request)")

    def _free_bytes(self) -> int | None:
        """Bytes free to us on the ledger's filesystem; None when it does not say (f_blocks 0) or cannot be asked."""
        try:
            fs = os.statvfs(self.path.parent)
        except OSError:
            return None
        return fs.f_bavail * fs.f_frsize if fs.f_blocks else None

    # ------------------------------------------------------------ transactions, retries, errors

    @contextlib.contextmanager
    def transaction(self):
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error) on one pooled connection.

        The connection is taken before the lock and kept to the end (reads made inside
        use it too: one transaction never spans two connections). Threads of one
        process (``mmr ask --batch``, ``mmr serve``) take turns on a Python lock
        first: contending inside SQLite would put them in its busy handler, which
        sleeps in steps of up to 100 ms however short the other write is.
        Processes still wait on each other through SQLite's busy timeout.
        """
        with self.pool.lease() as conn, self._write_lock:
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
                if not _busy(e) or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    def _run(self, action: Callable[[], T]) -> T:
        """:meth:`_retrying` holding a pooled connection (:meth:`_connection`), any database error
        raised as :class:`LedgerError`."""
        try:
            with self.pool.lease():
                return self._retrying(action)
        except sqlite3.Error as e:
            raise self._error(e) from None

    def _rows(self, sql: str, params: Sequence = ()) -> LeasedRows:
        """A query's cursor (retried while busy), holding its connection until its rows are read."""
        try:
            return self.pool.rows(lambda conn: self._retrying(lambda: conn.execute(sql, list(params))))
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
        if _busy(e):
            return LedgerError(f"{self.path}: locked by another process for more than {self.busy_timeout:g} s; try again")
        if "disk" in text:  # "database or disk is full", "disk I/O error"
            free = self._free_bytes()
            if free is not None and free < MIN_FREE_BYTES:
                return LedgerError(f"{self.path}: {text} (the disk holding the ledger has {free // 1024} KiB free)")
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
        """Close every connection (one still reading is closed when its rows are given back)."""
        self.pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _busy(e: sqlite3.Error) -> bool:
    """Whether ``e`` says another connection holds a lock (worth retrying), not that something is broken."""
    return "locked" in str(e) or "busy" in str(e)
