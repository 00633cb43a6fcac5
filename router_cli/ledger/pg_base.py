"""The PostgreSQL ledger's plumbing: URLs, per-thread psycopg connections, transactions, errors.

psycopg is imported only inside these functions, when a ``postgresql://`` ledger is opened.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any, Callable, Sequence, TypeVar
from urllib.parse import urlsplit

from ..errors import LedgerError, redact_url

T = TypeVar("T")
P = TypeVar("P", bound="PostgresBase")
CONNECT_TIMEOUT = 10  # seconds, unless the URL says otherwise


def describe(url: str) -> str:
    """The URL without its password, and the host it names, for messages."""
    return redact_url(url)


def host_of(url: str) -> str:
    """The server a URL names: ``host:port``, or the socket directory given as ``?host=``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host:
        found = re.search(r"[?&]host=([^&]+)", url)
        host = found.group(1) if found else "localhost"
    return f"{host}:{parts.port}" if parts.port else host


@lru_cache(maxsize=512)
def pg_sql(sql: str) -> str:
    """SQLite's ``?`` placeholders as psycopg's ``%s`` (outside quoted text), ``%`` escaped."""
    out, quote = [], ""
    for ch in sql:
        if quote:
            quote = "" if ch == quote else quote
            out.append("%%" if ch == "%" else ch)
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        else:
            out.append("%%" if ch == "%" else ch)
    return "".join(out)


def _numeric_loader():
    """A loader for ``numeric`` (what PostgreSQL's sum() of integers returns): int when whole, else float,
    as SQLite's sums are; money stays exact because it is summed in integer nano-dollars."""
    from psycopg.adapt import Loader

    class IntOrFloat(Loader):
        def load(self, data):
            text = bytes(data)
            return float(text) if b"." in text or b"N" in text else int(text)

    return IntOrFloat


class PostgresBase:
    """An open PostgreSQL database; :class:`~router_cli.ledger.postgres.PostgresLedger` adds the ledger's operations.

    A process opens at most :attr:`pool_size` connections (``mmr serve`` runs a request per thread, up to
    a thousand: a connection each would exhaust the server's ``max_connections``). A thread takes one
    for an operation and gives it back after; queries made inside an operation use the same one (the
    same transaction). :meth:`close` closes them all.
    """

    dialect = "postgres"
    pool_size = 8
    pool_wait = 60.0  # seconds a thread waits for a free connection before it is an error

    def __init__(self, url: str, busy_timeout: float = 10.0, *, readonly: bool = False):
        self.url = url
        self.path = describe(url)
        self.host = host_of(url)
        self.busy_timeout = busy_timeout  # PostgreSQL's lock_timeout: waiting for another writer's lock
        self.readonly = readonly
        self._local = threading.local()
        self._connections: list = []  # every open connection, idle or taken
        self._idle: list = []
        self._guard = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.pool_size)
        from . import pg_schema

        try:
            if readonly:
                version = self._run(pg_schema.schema_version)
                if version < pg_schema.SCHEMA_VERSION:
                    error = LedgerError(f"{self.path}: the ledger's schema is older than this mmr; run a command "
                                        "that writes to it (mmr ask) to upgrade it")
                    error.schema_behind = True  # type: ignore[attr-defined]
                    raise error
            else:
                self._run(pg_schema.migrate)
                self._sync_outbox()
        except BaseException:
            self.close()
            raise

    def _sync_outbox(self) -> None:
        """Send what an earlier command kept locally while the server was away (see ``outbox.py``)."""
        import sys

        from . import outbox

        try:
            pushed = outbox.sync(self)
        except LedgerError as e:  # the command goes on; `mmr ledger sync` says what is wrong
            print(f"mmr: the calls kept locally could not be sent yet: {e}", file=sys.stderr)
            return
        if pushed is not None and pushed.added.get("calls"):
            print(f"mmr: sent {pushed.added['calls']} calls kept locally while {self.host} was unreachable",
                  file=sys.stderr)

    # ------------------------------------------------------------ connections and errors

    def _take(self):
        """A connection of the pool (waiting while all :attr:`pool_size` are taken), opened when none is idle."""
        if not self._slots.acquire(timeout=self.pool_wait):
            raise LedgerError(f"{self.path}: all {self.pool_size} connections of this process stayed busy for "
                              f"{self.pool_wait:g} s")
        try:
            with self._guard:
                while self._idle:
                    conn = self._idle.pop()
                    if not conn.closed:
                        return conn
                    self._connections.remove(conn)
            return self._open()
        except BaseException:
            self._slots.release()
            raise

    def _give_back(self, conn) -> None:
        from psycopg.pq import TransactionStatus

        reusable = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        with self._guard:
            if reusable and conn in self._connections:
                self._idle.append(conn)
            else:
                if conn in self._connections:
                    self._connections.remove(conn)
                _close(conn)
        self._slots.release()

    def _open(self):
        psycopg = _psycopg()
        extra = {} if "connect_timeout" in self.url else {"connect_timeout": CONNECT_TIMEOUT}
        try:
            conn = psycopg.connect(self.url, autocommit=True, **extra)
        except psycopg.Error as e:
            raise self._error(e, connecting=True) from None
        try:
            conn.execute(f"SET lock_timeout = {max(1, int(self.busy_timeout * 1000))}")
            if self.readonly:
                conn.execute("SET default_transaction_read_only = on")
        except psycopg.Error as e:
            _close(conn)
            raise self._error(e, conn) from None
        conn.adapters.register_loader("numeric", _numeric_loader())
        with self._guard:
            self._connections.append(conn)
        return conn

    def _error(self, e: BaseException, conn=None, connecting: bool = False) -> LedgerError:
        """``e`` as a LedgerError; ``.unreachable`` when the server could not be reached or the connection
        broke (what the outbox is for), not when the server answered with an error (a deadlock, a timeout)."""
        psycopg = _psycopg()
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        sqlstate = getattr(e, "sqlstate", None) or ""
        if isinstance(e, psycopg.errors.LockNotAvailable):
            return LedgerError(f"{self.path}: locked by another process for more than {self.busy_timeout:g} s; "
                               "try again")
        too_many = "too many clients" in first or "connection slots are reserved" in first
        if (sqlstate.startswith("08") or isinstance(e, psycopg.InterfaceError)
                or (connecting and not too_many) or (conn is not None and conn.closed)
                or (isinstance(e, psycopg.OperationalError) and not sqlstate and not too_many)):
            error = LedgerError(f"cannot reach the ledger's PostgreSQL server at {self.host}: {redact_url(first)}")
            error.unreachable = True  # type: ignore[attr-defined]
            return error
        return LedgerError(f"{self.path}: {redact_url(first)}")

    def _run(self, action: Callable[[Any], T]) -> T:
        """``action(conn)``; a broken connection is replaced once, any database error is a LedgerError."""
        psycopg = _psycopg()
        held = getattr(self._local, "conn", None)
        if held is not None:  # inside another operation of this thread: its connection, its transaction
            try:
                return action(held)
            except psycopg.Error as e:
                raise self._error(e, held) from None
        for attempt in (1, 2):
            conn = self._take()
            self._local.conn = conn
            try:
                return action(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as e:
                if attempt == 2 or not conn.closed:
                    raise self._error(e, conn) from None
                # the server restarted under us (an idle connection it dropped): one new connection
            except psycopg.Error as e:
                raise self._error(e, conn) from None
            finally:
                self._local.conn = None
                self._give_back(conn)
        raise AssertionError("unreachable")

    def _write(self, action: Callable[[Any], T], lock: int | None = None) -> T:
        """``action(conn)`` in one transaction (holding advisory lock ``lock`` until it ends)."""
        def transaction(conn) -> T:
            with conn.transaction():
                if lock is not None:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
                return action(conn)

        return self._run(transaction)

    def _dicts(self, sql: str, params: Sequence = ()) -> list[dict]:
        def fetch(conn) -> list[dict]:
            cursor = conn.execute(pg_sql(sql), list(params))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

        return self._run(fetch)

    def _value(self, sql: str, params: Sequence = ()):
        return self._run(lambda conn: conn.execute(pg_sql(sql), list(params)).fetchone()[0])

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Close every connection (those taken are closed when given back)."""
        with self._guard:
            connections, self._connections, self._idle = self._connections, [], []
        for conn in connections:
            _close(conn)

    def __enter__(self: P) -> P:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _psycopg():
    """The psycopg module; a LedgerError saying how to install it when it is missing."""
    try:
        import psycopg
    except ImportError:
        raise LedgerError("a PostgreSQL ledger needs psycopg, not installed here: "
                          "pip install -e '.[postgres]' (in mmr's clone)") from None
    return psycopg


def _close(conn) -> None:
    try:
        conn.close()
    except Exception:  # a connection the server already dropped
        pass
