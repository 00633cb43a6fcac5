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

    Each thread gets its own connection on first use; :meth:`close` closes them all.
    """

    dialect = "postgres"

    def __init__(self, url: str, busy_timeout: float = 10.0, *, readonly: bool = False):
        self.url = url
        self.path = describe(url)
        self.host = host_of(url)
        self.busy_timeout = busy_timeout
        self.readonly = readonly
        self._local = threading.local()
        self._connections: list = []
        self._guard = threading.Lock()
        from . import pg_schema

        try:
            conn = self._connection()
            if readonly:
                if pg_schema.schema_version(conn) < pg_schema.SCHEMA_VERSION:
                    raise LedgerError(f"{self.path}: the ledger's schema is older than this mmr; run a command "
                                      "that writes to it (mmr ask) to upgrade it")
            else:
                pg_schema.migrate(conn)
                self._sync_outbox()
        except BaseException as e:
            self.close()
            if isinstance(e, LedgerError) or not isinstance(e, Exception):
                raise
            raise self._error(e) from None

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

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.closed:
            conn = None
        if conn is None:
            import psycopg

            extra = {} if "connect_timeout" in self.url else {"connect_timeout": CONNECT_TIMEOUT}
            try:
                conn = psycopg.connect(self.url, autocommit=True, **extra)
            except psycopg.Error as e:
                raise self._error(e) from None
            conn.adapters.register_loader("numeric", _numeric_loader())
            if self.readonly:
                conn.execute("SET default_transaction_read_only = on")
            self._local.conn = conn
            with self._guard:
                self._connections.append(conn)
        return conn

    def _error(self, e: BaseException) -> LedgerError:
        import psycopg

        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError)):
            error = LedgerError(f"cannot reach the ledger's PostgreSQL server at {self.host}: {redact_url(first)}")
            error.unreachable = True  # type: ignore[attr-defined]
            return error
        return LedgerError(f"{self.path}: {redact_url(first)}")

    def _run(self, action: Callable[[Any], T]) -> T:
        """``action(conn)``; a broken connection is reopened once, any database error is a LedgerError."""
        import psycopg

        for attempt in (1, 2):
            conn = self._connection()
            try:
                return action(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as e:
                if attempt == 2 or not conn.closed or getattr(self._local, "in_transaction", False):
                    raise self._error(e) from None
                self._local.conn = None  # the server restarted under us: one new connection
            except psycopg.Error as e:
                raise self._error(e) from None
        raise AssertionError("unreachable")

    def _write(self, action: Callable[[Any], T], lock: int | None = None) -> T:
        """``action(conn)`` in one transaction (holding advisory lock ``lock`` until it ends)."""
        def transaction(conn) -> T:
            self._local.in_transaction = True  # the queries action makes must not reconnect outside it
            try:
                with conn.transaction():
                    if lock is not None:
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
                    return action(conn)
            finally:
                self._local.in_transaction = False

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
        """Close every thread's connection."""
        with self._guard:
            connections, self._connections = self._connections, []
            self._local = threading.local()
        for conn in connections:
            try:
                conn.close()
            except Exception:  # a connection the server already dropped
                pass

    def __exit__(self, *exc: object) -> None:
        self.close()


