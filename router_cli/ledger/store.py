"""What the engine, the policies, the classifiers and the reports need from a ledger.

:class:`LedgerStore` is the whole contract: code outside ``router_cli/ledger/``
holds a store and calls these methods; it never sees a connection, a cursor
class of a driver, or a driver's exceptions. Every database failure surfaces as
:class:`~router_cli.errors.LedgerError` (exit code 7), after a store has waited
out a busy database for up to its busy timeout.

A store may be shared by the threads of one process (``mmr ask --batch``); it
serialises its own writes. Datetimes in rows are ISO-8601 UTC strings
(``2024-05-01T12:00:00.000Z``); breaker, cache and hold times are Unix seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

# The budget scopes spend is summed over (``calls.user`` / ``calls.team`` / everything).
SCOPES = ("global", "user", "team")
_Store = TypeVar("_Store", bound="LedgerStore")


class Rows(Protocol):
    """The result of :meth:`LedgerStore.read`: iterable tuples, ``fetchone``, ``fetchall`` and ``description``."""

    @property
    def description(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class LedgerStore(Protocol):
    """An open ledger. Use as a context manager or call :meth:`close`."""

    @property
    def path(self) -> Path | str:
        """Where the ledger lives, for messages."""
        ...

    def check_writable(self) -> None:
        """Prove now, before anything is paid for, that a write can be committed; LedgerError if not.

        mmr calls it before a request's first provider call and before a batch sends
        any row, so that a call is never paid for and then left unrecorded. A store
        must really write (and commit) something, so that a read-only file, directory
        or filesystem, a full disk or a database refusing writes all fail here, and it
        must not change what the other methods return. The SQLite store also wants
        1 MiB free on the ledger's filesystem.
        """
        ...

    # ------------------------------------------------------------ requests and reports

    def record(self, tables: dict[str, list[dict]] | list[dict]) -> None:
        """Insert rows in one transaction: ``{table: rows}`` (or a list of ``calls`` rows).

        Each table's rows share the first row's keys as columns.
        """
        ...

    def rows(self, where: str = "1", params: Iterable = ()) -> list[dict]:
        """Rows of ``calls`` matching a condition, oldest first, with ``prompt_hash``, ``prompt``,
        ``system`` and ``response`` joined from their tables."""
        ...

    def read(self, sql: str, params: Sequence = ()) -> Rows:
        """Run one read-only query; for the report queries in ``ledger/queries.py`` only."""
        ...

    # ------------------------------------------------------------ batches (--resume)

    def batch_answered(self, batch_id: str) -> list[str]:
        """The rows of batch ``batch_id`` (their ``batch_row`` keys) that some request answered:
        an answer's status ``ok``, ``cached`` or ``best_effort``."""
        ...

    def batch_answer(self, batch_id: str, row: str) -> list[dict]:
        """Every call of the latest request that answered row ``row`` of batch ``batch_id``, oldest
        first, as :meth:`rows` returns them plus ``stored`` (how ``prompts`` kept the texts); [] when none did."""
        ...

    # ------------------------------------------------------------ the embedding classifier's cache

    def cached_embeddings(self, model: str, hashes: list[str]) -> dict[str, list[float]]:
        """Vectors already stored for ``model``, by text hash (the hashes not stored are left out)."""
        ...

    def store_embeddings(self, model: str, vectors: dict[str, list[float]]) -> None:
        """Store (or replace) ``model``'s vectors by text hash."""
        ...

    # ------------------------------------------------------------ budgets

    def spent_nanousd(self, scope: str, who: str | None, since: str) -> int:
        """Nano-dollars billed since ``since`` by every call (``scope`` ``global``) or by
        the calls of user/team ``who`` (``scope`` ``user``/``team``)."""
        ...

    def spent_by(self, scope: str, since: str) -> dict[str, int]:
        """Nano-dollars billed since ``since`` per user (``scope`` ``user``) or team, in name order."""
        ...

    def held_nanousd(self, scope: str, who: str | None, request_id: str, now: float) -> int:
        """Nano-dollars held at ``now`` by requests other than ``request_id`` (all of them, or those of user/team ``who``)."""
        ...

    def hold_budget(self, request_id: str, user: str | None, team: str | None,
                    decide: Callable[[], tuple[int, float] | None]) -> bool:
        """Check and hold in one write transaction, so concurrent requests cannot together pass a limit.

        ``decide()`` runs inside the transaction (its :meth:`spent_nanousd` and :meth:`held_nanousd`
        see what it sees) and returns ``(nanousd, expires_at)`` to hold for ``request_id``
        (replacing its earlier hold), or None to hold nothing. Holds that expired are dropped.
        Returns whether a hold was written. ``decide`` may run again if the transaction is retried.
        """
        ...

    def release_hold(self, request_id: str) -> None:
        """Drop ``request_id``'s hold, if any."""
        ...

    def claim(self, key: str, expires_at: float) -> bool:
        """Claim ``key`` (a budget's mark in one period) for the first caller of any process: True for
        that one, False after. Kept as a hold of 0 nano-dollars until ``expires_at``."""
        ...

    # ------------------------------------------------------------ circuit breakers

    def breaker(self, provider: str, model: str) -> dict | None:
        """The breaker row of ``provider``/``model`` (``state``, ``failures``, ``opened_at``, ``open_until``,
        ``probe_until``, ``last_error``, ``updated_at``), or None when it has none."""
        ...

    def breaker_states(self) -> list[dict]:
        """Every breaker row with its ``provider`` and ``model``, ordered by them."""
        ...

    def update_breaker(self, provider: str, model: str,
                       change: Callable[[dict | None], dict | None]) -> dict | None:
        """Read-modify-write one breaker row in one write transaction.

        ``change`` gets the current row (as :meth:`breaker` returns it) and returns the whole new
        row to store, or None to leave it as it is. Returns the row as it stands afterwards.
        ``change`` may run again if the transaction is retried.
        """
        ...

    # ------------------------------------------------------------ the response cache

    def cache_get(self, key: str) -> dict | None:
        """The cache entry stored under ``key`` (every column of ``cache``), live or not; None when there is none."""
        ...

    def cache_put(self, entry: dict, now: float) -> None:
        """Store ``entry`` (every column of ``cache``), replacing any under its key; drop entries expired before ``now``."""
        ...

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Release the store's connections (every thread's); call when no thread uses it any more."""
        ...

    def __enter__(self: _Store) -> _Store: ...

    def __exit__(self, *exc: object) -> None: ...
