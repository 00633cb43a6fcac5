"""The SQLite ledger: one row per attempt, grouped by ``request_id``.

Texts live apart from ``calls`` so that reports scan narrow rows however long
the prompts: ``prompts`` (one row per request: its hash and, as ``ledger.store``
says, the prompt and system prompt in full or as a preview) and ``responses``
(one row per answering call). :meth:`SQLiteLedger.rows` joins them back.

Money is stored twice on purpose: ``cost_usd`` as the exact decimal string
(what people and the JSON contract read) and ``cost_nanousd`` as an integer,
so that SQL sums are exact too.

Budgets, circuit breakers and the response cache keep their state here too
(``budget_holds``, ``breakers``, ``cache``): the policies decide, these methods
read and write.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Callable, Iterable, Sequence

from .sqlite_base import SQLiteBase
from .sqlite_pool import LeasedRows
from .budget_reads import BudgetReads

_BREAKER_COLUMNS = ("state", "failures", "opened_at", "open_until", "probe_until", "last_error", "updated_at")
# An answer's call that a request returned (a judge's or a classifier's call answers no row).
_ANSWERED = "role = 'answer' AND status IN ('ok', 'cached', 'best_effort')"
_CACHE_COLUMNS = ("key", "scope", "created_at", "expires_at", "request_id", "tier", "provider", "model", "text",
                  "input_tokens", "output_tokens", "cost_usd", "stop_reason")


class SQLiteLedger(BudgetReads, SQLiteBase):
    """An open SQLite ledger: the :class:`~router_cli.ledger.store.LedgerStore` mmr uses.

    One object serves every thread of a process, through a bounded pool of
    connections (see :class:`~router_cli.ledger.sqlite_base.SQLiteBase`), and
    :meth:`close` closes them all.
    """

    dialect = "sqlite"

    # ------------------------------------------------------------ requests and reports

    def record(self, tables: dict[str, list[dict]] | list[dict]) -> None:
        """Insert rows in one transaction: a list of ``calls`` rows, or ``{table: rows}``."""
        by_table = {"calls": tables} if isinstance(tables, list) else tables

        def insert(conn: sqlite3.Connection) -> None:
            for table, table_rows in by_table.items():
                if not table_rows:
                    continue
                columns = list(table_rows[0])
                sql = (
                    f"INSERT INTO {_quote(table)} ({', '.join(_quote(c) for c in columns)}) "
                    f"VALUES ({', '.join('?' for _ in columns)})"
                )
                conn.executemany(sql, [[row.get(c) for c in columns] for row in table_rows])

        self._write(insert)

    def rows(self, where: str = "1", params: Iterable = ()) -> list[dict]:
        """Rows of ``calls`` matching a SQL condition, oldest first, with their texts joined."""
        sql = ("SELECT calls.*, prompts.prompt_hash, prompts.prompt, prompts.system, responses.response FROM calls "
               "LEFT JOIN prompts ON prompts.request_id = calls.request_id "
               f"LEFT JOIN responses ON responses.call_id = calls.id WHERE {where} ORDER BY calls.id")
        return self._dicts(sql, list(params))

    def read(self, sql: str, params: Sequence = ()) -> LeasedRows:
        """Run one query and return its cursor (retried while busy); it holds a pooled connection
        until its rows are read to the end (``fetchall``, iteration, a ``fetchone`` of None), it is
        closed, or it is dropped."""
        return self._rows(sql, params)

    # ------------------------------------------------------------ batches (--resume)

    def batch_answered(self, batch_id: str) -> list[str]:
        """The rows of batch ``batch_id`` that some request answered (idx_calls_batch alone)."""
        sql = f"SELECT DISTINCT batch_row FROM calls WHERE batch_id = ? AND {_ANSWERED}"
        return [row[0] for row in self._run(lambda: self._connection().execute(sql, (batch_id,)).fetchall())]

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

        out = {}
        for start in range(0, len(hashes), 500):
            chunk = hashes[start:start + 500]
            sql = f"SELECT text_sha256, vector FROM embeddings WHERE model = ? AND text_sha256 IN ({', '.join('?' * len(chunk))})"
            for row in self._dicts(sql, [model, *chunk]):
                out[row["text_sha256"]] = array("f", row["vector"]).tolist()
        return out

    def store_embeddings(self, model: str, vectors: dict[str, list[float]]) -> None:
        """Store (or replace) ``model``'s vectors by text hash, as float32."""
        from array import array

        rows = [(model, digest, len(v), array("f", v).tobytes()) for digest, v in vectors.items()]
        self._write(lambda conn: conn.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", rows))

    # ------------------------------------------------------------ budgets

    def hold_budget(self, request_id: str, user: str | None, team: str | None,
                    decide: Callable[[], tuple[int, float] | None]) -> bool:
        """Check and hold in one write transaction (see :meth:`LedgerStore.hold_budget`)."""
        def check_and_hold(conn: sqlite3.Connection) -> bool:
            hold = decide()
            conn.execute("DELETE FROM budget_holds WHERE expires_at < ?", (time.time(),))  # left by dead processes
            if hold is None:
                return False
            nanousd, expires_at = hold
            conn.execute("INSERT OR REPLACE INTO budget_holds VALUES (?, ?, ?, ?, ?)",
                         (request_id, user, team, nanousd, expires_at))
            return True

        return self._write(check_and_hold)

    def release_hold(self, request_id: str) -> None:
        """Drop ``request_id``'s hold."""
        self._write(lambda conn: conn.execute("DELETE FROM budget_holds WHERE request_id = ?", (request_id,)))

    def claim(self, key: str, expires_at: float) -> bool:
        """Claim ``key`` once (see :meth:`LedgerStore.claim`)."""
        return self._write(lambda conn: conn.execute(
            "INSERT OR IGNORE INTO budget_holds VALUES (?, NULL, NULL, 0, ?)", (key, expires_at)).rowcount == 1)

    # ------------------------------------------------------------ circuit breakers

    def breaker(self, provider: str, model: str) -> dict | None:
        """The breaker row of ``provider``/``model``, or None."""
        return self._run(lambda: self._breaker_row(self._connection(), provider, model))

    def breaker_states(self) -> list[dict]:
        """Every breaker row, ordered by provider and model."""
        return self._dicts("SELECT * FROM breakers ORDER BY provider, model")

    def update_breaker(self, provider: str, model: str,
                       change: Callable[[dict | None], dict | None]) -> dict | None:
        """Read-modify-write one breaker row in one write transaction (see :meth:`LedgerStore.update_breaker`)."""
        def read_modify_write(conn: sqlite3.Connection) -> dict | None:
            row = self._breaker_row(conn, provider, model)
            new = change(None if row is None else dict(row))
            if new is None:
                return row
            values = [new.get(c) for c in _BREAKER_COLUMNS]
            conn.execute(
                f"INSERT INTO breakers (provider, model, {', '.join(_BREAKER_COLUMNS)}) "
                f"VALUES ({', '.join('?' * (len(_BREAKER_COLUMNS) + 2))}) ON CONFLICT (provider, model) DO UPDATE SET "
                + ", ".join(f"{c} = excluded.{c}" for c in _BREAKER_COLUMNS),
                (provider, model, *values),
            )
            return dict(zip(_BREAKER_COLUMNS, values))

        return self._write(read_modify_write)

    @staticmethod
    def _breaker_row(conn: sqlite3.Connection, provider: str, model: str) -> dict | None:
        cursor = conn.execute(f"SELECT {', '.join(_BREAKER_COLUMNS)} FROM breakers WHERE provider = ? AND model = ?",
                              (provider, model))
        row = cursor.fetchone()
        return None if row is None else dict(zip(_BREAKER_COLUMNS, row))

    # ------------------------------------------------------------ the response cache

    def cache_get(self, key: str) -> dict | None:
        """The cache entry under ``key``, or None."""
        found = self._dicts("SELECT * FROM cache WHERE key = ?", (key,))
        return found[0] if found else None

    def cache_put(self, entry: dict, now: float) -> None:
        """Store ``entry``, replacing any under its key, and drop entries expired before ``now``."""
        values = [entry.get(c) for c in _CACHE_COLUMNS]

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(f"INSERT OR REPLACE INTO cache ({', '.join(_CACHE_COLUMNS)}) "
                         f"VALUES ({', '.join('?' * len(_CACHE_COLUMNS))})", values)
            # Expired entries go as new ones come, so the table never grows past the live ones by much.
            conn.execute("DELETE FROM cache WHERE expires_at < ?", (now,))

        self._write(write)

    def __enter__(self) -> "SQLiteLedger":
        return self

def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
