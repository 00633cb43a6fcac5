"""A bounded pool of SQLite connections to one ledger file, shared by the threads of a process.

``mmr serve`` runs each request's engine in a thread of its own (hundreds at once) and
``mmr ask --batch`` runs rows in threads. A connection per thread cost each of them about
330 KB for as long as the thread lived (the connection's schema, statements, lookaside and
WAL index), so a server's memory grew with its peak concurrency. Here a thread takes a
connection for one operation (a query, or a whole write transaction) and gives it back
after; at most :attr:`ConnectionPool.size` are ever open, and idle ones stay open for the
next thread.

    with pool.lease() as conn:          # this thread's connection until the block ends
        conn.execute("SELECT 1")

A thread that already holds a connection gets the same one again (its nested reads run
inside its transaction, and it never waits for a second connection while holding one: no
deadlock however few connections there are). A cursor handed out by
:meth:`ConnectionPool.rows` keeps its connection until it is exhausted, closed or dropped.
"""

from __future__ import annotations

import collections
import contextlib
import sqlite3
import threading
import time
from typing import Any, Callable, Iterator

from ..errors import LedgerError


_POLL = 0.05  # seconds between looks at the dropped cursors while waiting for a connection


class _Lease:
    """One thread's hold on one connection; ``uses`` counts the nested operations sharing it."""

    __slots__ = ("conn", "uses")

    def __init__(self, conn: sqlite3.Connection):
        self.conn: sqlite3.Connection | None = conn
        self.uses = 1


class ConnectionPool:
    """At most ``size`` connections made by ``connect``; a thread waits up to ``wait`` seconds for one.

    ``describe`` names the database in the error raised when no connection frees up in time.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], size: int, wait: float, describe: str):
        if size < 1:
            raise ValueError("a connection pool needs at least one connection")
        self.size = size
        self.wait = wait
        self.peak = 0  # the most connections ever open at once (what the tests bound)
        self._connect = connect
        self._describe = describe
        self._slots = threading.BoundedSemaphore(size)
        self._guard = threading.Lock()
        self._open: set[sqlite3.Connection] = set()  # idle or leased; a leased one missing here is closed on return
        self._idle: list[sqlite3.Connection] = []
        self._local = threading.local()
        # Cursors dropped unread: given back by the next lease, not from __del__, which the garbage
        # collector may run inside this pool's own locks on the same thread.
        self._dropped: collections.deque = collections.deque()

    @property
    def connections(self) -> list[sqlite3.Connection]:
        """The connections open now, idle or leased."""
        with self._guard:
            return list(self._open)

    @contextlib.contextmanager
    def lease(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection for the block: the one it holds already, or one of the pool's."""
        lease = self._acquire()
        try:
            yield lease.conn  # type: ignore[misc]
        finally:
            self._release(lease)

    def held(self) -> sqlite3.Connection:
        """The connection this thread holds (inside :meth:`lease`)."""
        lease = getattr(self._local, "lease", None)
        if lease is None or lease.conn is None:
            raise RuntimeError("no ledger connection is held by this thread")
        return lease.conn

    def rows(self, execute: Callable[[sqlite3.Connection], sqlite3.Cursor]) -> "LeasedRows":
        """``execute(conn)``'s cursor, holding its connection until the rows are read, closed or dropped."""
        lease = self._acquire()
        try:
            cursor = execute(lease.conn)  # type: ignore[arg-type]
        except BaseException:
            self._release(lease)
            raise
        return LeasedRows(cursor, lambda: self._release(lease), self._dropped.append)

    def close(self) -> None:
        """Close the idle connections now, and each leased one when it is given back."""
        with self._guard:
            idle, self._idle = self._idle, []
            self._open = set()
        for conn in idle:
            conn.close()

    # ------------------------------------------------------------ taking and giving back

    def _give_back_dropped(self) -> None:
        while True:
            try:
                cursor, release = self._dropped.popleft()
            except IndexError:
                return
            with contextlib.suppress(sqlite3.Error):
                cursor.close()
            release()

    def _acquire(self) -> _Lease:
        self._give_back_dropped()
        held = getattr(self._local, "lease", None)
        if held is not None:
            with self._guard:  # another thread may be releasing it (a cursor dropped there)
                if held.uses and held.conn is not None:
                    held.uses += 1
                    return held
        deadline = time.monotonic() + self.wait
        while not self._slots.acquire(timeout=min(_POLL, self.wait)):  # a cursor dropped meanwhile frees one
            self._give_back_dropped()
            if time.monotonic() >= deadline:
                raise LedgerError(f"{self._describe}: all {self.size} ledger connections of this process "
                                  f"stayed busy for {self.wait:g} s")
        try:
            lease = _Lease(self._take())
        except BaseException:
            self._slots.release()
            raise
        self._local.lease = lease
        return lease

    def _take(self) -> sqlite3.Connection:
        with self._guard:
            if self._idle:
                return self._idle.pop()
        conn = self._connect()
        with self._guard:
            self._open.add(conn)
            self.peak = max(self.peak, len(self._open))
        return conn

    def _release(self, lease: _Lease) -> None:
        with self._guard:
            lease.uses -= 1
            if lease.uses:
                return
            conn, lease.conn = lease.conn, None
            assert conn is not None  # uses reached 0 once only
            keep = conn in self._open and not _in_transaction(conn)
            if keep:
                self._idle.append(conn)
            else:
                self._open.discard(conn)
        if not keep:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._slots.release()


def _in_transaction(conn: Any) -> bool:
    """Whether ``conn`` was left inside a transaction (a ROLLBACK that failed): not to be handed on."""
    try:
        return bool(conn.in_transaction)
    except sqlite3.Error:
        return True


class LeasedRows:
    """A query's cursor that gives its connection back once read to the end, closed, or dropped.

    Iterable, with ``fetchone``, ``fetchmany``, ``fetchall`` and ``description`` (the ``Rows`` of ``store.py``).
    """

    def __init__(self, cursor: sqlite3.Cursor, release: Callable[[], None],
                 dropped: Callable[[tuple], None] | None = None):
        self._cursor = cursor
        self._release: Callable[[], None] | None = release
        self._dropped = dropped  # where a dropped cursor and its release go (the pool gives them back)
        self._lock = threading.Lock()

    @property
    def description(self) -> Any:
        return self._cursor.description

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._cursor
        finally:
            self.close()

    def fetchone(self) -> Any:
        row = self._cursor.fetchone()
        if row is None:
            self.close()
        return row

    def fetchmany(self, size: int) -> list[Any]:
        rows = self._cursor.fetchmany(size)
        if not rows:
            self.close()
        return rows

    def fetchall(self) -> list[Any]:
        try:
            return self._cursor.fetchall()
        finally:
            self.close()

    def close(self) -> None:
        """End the query and give the connection back (again: nothing)."""
        with self._lock:
            release, self._release = self._release, None
        if release is None:
            return
        try:
            self._cursor.close()
        except sqlite3.Error:
            pass  # a connection closed under it; release it all the same
        finally:
            release()

    def __enter__(self) -> "LeasedRows":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # No lock here: nothing else can reach a dropped object, and the collector may run this
        # while this thread holds the pool's locks.
        release, self._release = self._release, None
        if release is None:
            return
        if self._dropped is not None:
            self._dropped((self._cursor, release))
            return
        try:
            self._cursor.close()
            release()
        except Exception:  # noqa: BLE001 - at interpreter exit the pool may be half torn down
            pass
