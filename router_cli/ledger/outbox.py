"""What a PostgreSQL ledger keeps locally when its server goes away after a call was paid for,
and merging an SQLite ledger into a team's database (``mmr ledger push``).

The outbox is an SQLite ledger in the user's data directory, one per database
(``outbox-<hash of the URL without its password>.db``; see :func:`~.paths.beside_ledger`). A request whose rows cannot reach the
server is written there; ``mmr ledger sync`` (and the next command that opens that database)
pushes it. Pushing inserts each row unless its key (a call's id, a request's prompt, a call's
response, a feedback id) is already stored, so a row is in the database exactly once however
often a push is repeated or interrupted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .paths import beside_ledger

# The tables a push copies, parents first; budget holds, breakers and the cache are machine state, not history.
TABLES = ("calls", "prompts", "responses", "feedback")
KEYS = {"calls": "id", "prompts": "request_id", "responses": "call_id", "feedback": "id"}
CHUNK = 2000


def outbox_path(url: str) -> Path:
    """The outbox file for the database ``url`` names (the password does not change which one)."""
    return beside_ledger(url, ".outbox.db")


def save(url: str, tables: dict[str, list[dict]]) -> Path:
    """Write a request's rows to the outbox of ``url``; its path. Raises LedgerError when that fails too."""
    from .sqlite import SQLiteLedger

    path = outbox_path(url)
    with SQLiteLedger(path) as outbox:
        outbox.record(tables)
    return path


@dataclass
class Pushed:
    """How many rows of each table a push added (rows already in the target are not counted)."""

    added: dict[str, int] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    keys: dict[str, list] = field(default_factory=dict)  # the key of every row pushed, by table


def push(source, target) -> Pushed:
    """Copy every row of ``source`` (an SQLite store) into ``target`` (a PostgreSQL store) that it lacks."""
    result = Pushed()
    target_columns = {t: _columns(target, t) for t in TABLES}
    for table in TABLES:
        cursor = source.read(f"SELECT * FROM {table}")
        names = [d[0] for d in cursor.description]
        keep = [n for n in names if n in target_columns[table]]
        seen, added, key = 0, 0, names.index(KEYS[table])
        result.keys[table] = []
        while rows := cursor.fetchmany(CHUNK):
            seen += len(rows)
            result.keys[table].extend(row[key] for row in rows)
            added += target.add_missing(table, [{n: row[names.index(n)] for n in keep} for row in rows])
        result.seen[table] = seen
        result.added[table] = added
    return result


def waiting(url: str) -> bool:
    """Whether the outbox of ``url`` holds calls not yet sent."""
    from .sqlite import SQLiteLedger

    path = outbox_path(url)
    if not path.exists():
        return False
    with SQLiteLedger(path) as outbox:
        return outbox.read("SELECT 1 FROM calls LIMIT 1").fetchone() is not None


def sync(target) -> Pushed | None:
    """Push the outbox of ``target`` (a PostgreSQL store), then delete from it what was pushed; None when
    it holds nothing. Deleted by key, not by removing the file: another process may be adding a row to it
    meanwhile (its server gone too), and that row must stay for the next sync."""
    from .sqlite import SQLiteLedger

    if not waiting(target.url):
        return None
    with SQLiteLedger(outbox_path(target.url)) as outbox:
        result = push(outbox, target)

        def forget(conn) -> None:
            for table, keys in result.keys.items():
                conn.executemany(f"DELETE FROM {table} WHERE {KEYS[table]} = ?", [(k,) for k in keys])

        outbox._write(forget)
    return result


def _columns(store, table: str) -> set[str]:
    cursor = store.read(f"SELECT * FROM {table} LIMIT 0")
    return {d[0] for d in cursor.description}
