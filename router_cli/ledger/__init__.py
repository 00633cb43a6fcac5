"""The ledger: every attempt mmr makes, and the state its policies share across processes.

``open_ledger(path)`` opens (creating and upgrading) the SQLite ledger; the
:class:`LedgerStore` interface is all the rest of mmr relies on.
"""

from .migrations import SCHEMA_VERSION
from .paths import resolve_db_path, user_data_dir
from .opening import open_for_reading, open_ledger
from .sqlite import SQLiteLedger
from .sqlite_base import DEFAULT_BUSY_TIMEOUT
from .store import LedgerStore

__all__ = ["DEFAULT_BUSY_TIMEOUT", "SCHEMA_VERSION", "LedgerStore", "SQLiteLedger", "open_for_reading", "open_ledger",
           "resolve_db_path", "user_data_dir"]
