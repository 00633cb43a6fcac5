"""Opening a ledger: an SQLite file, or the team's PostgreSQL database for a ``postgresql://`` URL.

The one place that chooses the store, so neither store's module imports the other.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import LedgerError
from .paths import is_url
from .sqlite import SQLiteLedger
from .sqlite_base import DEFAULT_BUSY_TIMEOUT


def open_ledger(target: str | os.PathLike, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
                readonly: bool = False):
    """Open (creating and upgrading as needed) the ledger at ``target``; raises LedgerError.

    A file that cannot be opened for writing is refused (unless ``readonly``). A ``postgresql://``
    URL opens the team's PostgreSQL ledger instead (psycopg is imported only then).
    """
    if is_url(str(target)):
        from .postgres import PostgresLedger

        return PostgresLedger(str(target), busy_timeout, readonly=readonly)
    return SQLiteLedger(target, busy_timeout, readonly=readonly)


def open_for_reading(target: str | os.PathLike):
    """Open for reports: upgrade in place when writable, else read without changing anything.

    A PostgreSQL ledger is read through read-only transactions (upgraded first only when its
    schema is older than this mmr's).

    Read-only means the file or its directory cannot be written, or the file has no
    write bit at all (``chmod 0400``, even for root). Without a ``-wal`` file the main
    file holds every committed write and no writer is active, so it is read as
    immutable: no locks, and no ``-wal``/``-shm`` files are created (a read-only
    directory or filesystem could not take them; a writable directory would keep
    them). Beside an existing ``-wal``, SQLite's read-only mode reads through it.
    """
    if is_url(str(target)):
        from .postgres import PostgresLedger

        try:  # read-only: a report never sends the outbox or writes; it upgrades only an older schema
            return PostgresLedger(str(target), readonly=True)
        except LedgerError as e:
            if not getattr(e, "schema_behind", False):
                raise
        return open_ledger(target)
    path = Path(target)
    if _writable(path):
        return SQLiteLedger(path)
    wal = Path(f"{path}-wal")
    if not wal.exists():
        return SQLiteLedger(path, readonly=True, immutable=True)
    try:
        return SQLiteLedger(path, readonly=True)
    except LedgerError:
        if _size(wal) == 0:  # an empty WAL holds nothing; its -shm could not be made (a read-only directory)
            return SQLiteLedger(path, readonly=True, immutable=True)
        raise


def _writable(path: Path) -> bool:
    try:
        no_write_bits = not path.stat().st_mode & 0o222
    except OSError:
        return True  # opening it says what is wrong
    return not no_write_bits and os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None
