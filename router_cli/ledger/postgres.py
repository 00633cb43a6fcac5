"""The PostgreSQL ledger: one database that every machine of a team records to and reads from.

``--db postgresql://user@host/dbname`` (or ``$MMR_DB``) selects it; psycopg is imported only
then. The tables, columns and migrations are SQLite's (see ``pg_schema.py``), so the reports
read the same rows, and the policies' state is shared by every machine:

- a budget's check-and-hold runs in one transaction holding an advisory lock that every
  machine's holds take turns on (as SQLite's one writer does on one machine);
- a breaker's read-modify-write holds an advisory lock of its provider/model;
- the response cache and the holds are rows like any other; holds (and a breaker's probe
  lease) carry their expiry, so those of a machine that died lapse on their own.

Times are the machines' own clocks (Unix seconds), as with SQLite: keep them in NTP sync.
Passwords come from the URL, ``PGPASSWORD`` or ``~/.pgpass`` (libpq), and are never printed.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Sequence

from ..errors import LedgerError
from .pg_base import PostgresBase, pg_sql
from .budget_reads import BudgetReads

_BREAKER_COLUMNS = ("state", "failures", "opened_at", "open_until", "probe_until", "last_error", "updated_at")
_CACHE_COLUMNS = ("key", "scope", "created_at", "expires_at", "request_id", "tier", "provider", "model", "text",
                  "input_tokens", "output_tokens", "cost_usd", "stop_reason")
_ANSWERED = "role = 'answer' AND status IN ('ok', 'cached', 'best_effort')"
# The advisory lock every budget hold takes: a hold's check reads the global, user and team spend at once.
HOLD_LOCK = 0x6D6D725F686F6C64


class PostgresLedger(BudgetReads, PostgresBase):
    """An open PostgreSQL ledger: the :class:`~router_cli.ledger.store.LedgerStore` for a ``postgresql://`` URL."""

    def check_writable(self) -> None:
        """Commit a write now (a read-only role, a standby or an unreachable server fail here)."""
        if self.readonly:
            raise LedgerError(f"{self.path}: opened read-only")
        self._write(lambda conn: conn.execute(
            "INSERT INTO mmr_write_check VALUES (1, %s) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            (time.time(),)))

    # ------------------------------------------------------------ requests and reports

    def record(self, tables: dict[str, list[dict]] | list[dict]) -> None:
        """Insert rows in one transaction; calls that cannot reach the server are kept in the outbox."""
        by_table = {"calls": tables} if isinstance(tables, list) else tables
        try:
            self._write(lambda conn: _insert(conn, by_table, skip_existing=False))
        except LedgerError as e:
            if not getattr(e, "unreachable", False) or "calls" not in by_table:
                raise
            from . import outbox

            kept = outbox.save(self.url, by_table)  # paid for: never lost
            raise LedgerError(f"{e}; the calls were kept in {kept} and `mmr ledger sync` sends them") from None

    def add_missing(self, table: str, rows: list[dict]) -> int:
        """Insert, in one transaction, the rows whose key is not stored yet; how many were inserted
        (how the outbox and ``mmr ledger push`` stay idempotent)."""
        return self._write(lambda conn: _insert(conn, {table: rows}, skip_existing=True))

    def rows(self, where: str = "1", params: Iterable = ()) -> list[dict]:
        """Rows of ``calls`` matching a SQL condition, oldest first, with their texts joined."""
        sql = ("SELECT calls.*, prompts.prompt_hash, prompts.prompt, prompts.system, responses.response FROM calls "
               "LEFT JOIN prompts ON prompts.request_id = calls.request_id "
               f"LEFT JOIN responses ON responses.call_id = calls.id WHERE {'TRUE' if where == '1' else where} "
               "ORDER BY calls.id")
        return self._dicts(sql, list(params))

    def read(self, sql: str, params: Sequence = ()):
        """Run one query (``?`` placeholders) and return its cursor."""
        return self._run(lambda conn: conn.execute(pg_sql(sql), list(params)))

    def batch_answered(self, batch_id: str) -> list[str]:
        """The rows of batch ``batch_id`` that some request answered."""
        sql = f"SELECT DISTINCT batch_row FROM calls WHERE batch_id = ? AND {_ANSWERED}"
        return [row["batch_row"] for row in self._dicts(sql, (batch_id,))]

    def batch_answer(self, batch_id: str, row: str) -> list[dict]:
        """The calls of the latest request that answered row ``row`` of batch ``batch_id``, oldest first."""
        sql = ("SELECT calls.*, prompts.prompt_hash, prompts.stored, prompts.prompt, prompts.system, responses.response "
               "FROM calls LEFT JOIN prompts ON prompts.request_id = calls.request_id "
               "LEFT JOIN responses ON responses.call_id = calls.id WHERE calls.request_id = "
               f"(SELECT request_id FROM calls WHERE batch_id = ? AND batch_row = ? AND {_ANSWERED} "
               "ORDER BY id DESC LIMIT 1) ORDER BY calls.id")
        return self._dicts(sql, (batch_id, row))

    # ------------------------------------------------------------ embeddings

    def cached_embeddings(self, model: str, hashes: list[str]) -> dict[str, list[float]]:
        """Vectors already stored for ``model``, by text hash."""
        from array import array

        rows = self._dicts("SELECT text_sha256, vector FROM embeddings WHERE model = ? AND text_sha256 = ANY(?)",
                           (model, list(hashes)))
        return {row["text_sha256"]: array("f", bytes(row["vector"])).tolist() for row in rows}

    def store_embeddings(self, model: str, vectors: dict[str, list[float]]) -> None:
        """Store (or replace) ``model``'s vectors by text hash, as float32."""
        from array import array

        rows = [(model, digest, len(v), array("f", v).tobytes()) for digest, v in vectors.items()]
        self._write(lambda conn: conn.cursor().executemany(
            "INSERT INTO embeddings VALUES (%s, %s, %s, %s) ON CONFLICT (model, text_sha256) DO UPDATE SET "
            "dims = excluded.dims, vector = excluded.vector", rows))

    # ------------------------------------------------------------ budgets

    def hold_budget(self, request_id: str, user: str | None, team: str | None,
                    decide: Callable[[], tuple[int, float] | None]) -> bool:
        """Check and hold in one transaction under the hold lock every machine takes (see the module's docstring).

        ``decide`` reads spend and holds through this thread's connection, inside the transaction:
        read committed sees every hold committed before the lock was granted.
        """
        def check_and_hold(conn) -> bool:
            hold = decide()
            conn.execute("DELETE FROM budget_holds WHERE expires_at < %s", (time.time(),))  # left by dead machines
            if hold is None:
                return False
            nanousd, expires_at = hold
            conn.execute(
                'INSERT INTO budget_holds (request_id, "user", team, nanousd, expires_at) VALUES (%s, %s, %s, %s, %s) '
                'ON CONFLICT (request_id) DO UPDATE SET "user" = excluded."user", team = excluded.team, '
                "nanousd = excluded.nanousd, expires_at = excluded.expires_at",
                (request_id, user, team, nanousd, expires_at))
            return True

        return self._write(check_and_hold, lock=HOLD_LOCK)

    def release_hold(self, request_id: str) -> None:
        """Drop ``request_id``'s hold."""
        self._write(lambda conn: conn.execute("DELETE FROM budget_holds WHERE request_id = %s", (request_id,)))

    def claim(self, key: str, expires_at: float) -> bool:
        """Claim ``key`` once (see :meth:`LedgerStore.claim`)."""
        return self._write(lambda conn: conn.execute(
            "INSERT INTO budget_holds (request_id, nanousd, expires_at) VALUES (%s, 0, %s) "
            "ON CONFLICT (request_id) DO NOTHING", (key, expires_at)).rowcount == 1)

    # ------------------------------------------------------------ circuit breakers

    def breaker(self, provider: str, model: str) -> dict | None:
        """The breaker row of ``provider``/``model``, or None."""
        return self._run(lambda conn: _breaker_row(conn, provider, model))

    def breaker_states(self) -> list[dict]:
        """Every breaker row, ordered by provider and model."""
        return self._dicts("SELECT * FROM breakers ORDER BY provider, model")

    def update_breaker(self, provider: str, model: str,
                       change: Callable[[dict | None], dict | None]) -> dict | None:
        """Read-modify-write one breaker row under its advisory lock (a row that does not exist yet has no row lock)."""
        def read_modify_write(conn) -> dict | None:
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"mmr breaker {provider}/{model}",))
            row = _breaker_row(conn, provider, model)
            new = change(None if row is None else dict(row))
            if new is None:
                return row
            values = [new.get(c) for c in _BREAKER_COLUMNS]
            conn.execute(
                f"INSERT INTO breakers (provider, model, {', '.join(_BREAKER_COLUMNS)}) "
                f"VALUES ({', '.join(['%s'] * (len(_BREAKER_COLUMNS) + 2))}) ON CONFLICT (provider, model) DO UPDATE SET "
                + ", ".join(f"{c} = excluded.{c}" for c in _BREAKER_COLUMNS),
                (provider, model, *values))
            return dict(zip(_BREAKER_COLUMNS, values))

        return self._write(read_modify_write)

    # ------------------------------------------------------------ the response cache

    def cache_get(self, key: str) -> dict | None:
        """The cache entry under ``key``, or None."""
        found = self._dicts("SELECT * FROM cache WHERE key = ?", (key,))
        return found[0] if found else None

    def cache_put(self, entry: dict, now: float) -> None:
        """Store ``entry``, replacing any under its key, and drop entries expired before ``now``."""
        values = [entry.get(c) for c in _CACHE_COLUMNS]
        updates = ", ".join(f"{c} = excluded.{c}" for c in _CACHE_COLUMNS[1:])

        def write(conn) -> None:
            conn.execute(f"INSERT INTO cache ({', '.join(_CACHE_COLUMNS)}) VALUES ({', '.join(['%s'] * len(values))}) "
                         f"ON CONFLICT (key) DO UPDATE SET {updates}", values)
            conn.execute("DELETE FROM cache WHERE expires_at < %s", (now,))

        self._write(write)


def _insert(conn, by_table: dict[str, list[dict]], skip_existing: bool) -> int:
    """Insert each table's rows (``skip_existing``: leaving out those whose key is stored); rows inserted."""
    added = 0
    with conn.cursor() as cursor:
        for table, table_rows in by_table.items():
            if not table_rows:
                continue
            columns = list(table_rows[0])
            sql = (f"INSERT INTO {_quote(table)} ({', '.join(_quote(c) for c in columns)}) "
                   f"VALUES ({', '.join('%s' for _ in columns)})" + (" ON CONFLICT DO NOTHING" if skip_existing else ""))
            cursor.executemany(sql, [[row.get(c) for c in columns] for row in table_rows])
            added += max(cursor.rowcount, 0)
    return added


def _breaker_row(conn, provider: str, model: str) -> dict | None:
    row = conn.execute(f"SELECT {', '.join(_BREAKER_COLUMNS)} FROM breakers WHERE provider = %s AND model = %s",
                       (provider, model)).fetchone()
    return None if row is None else dict(zip(_BREAKER_COLUMNS, row))

def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
