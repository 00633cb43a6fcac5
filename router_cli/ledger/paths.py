"""Where the ledger lives: ``--db PATH``, else ``$MMR_DB``, else ``$XDG_DATA_HOME/mmr/ledger.db``."""

from __future__ import annotations

import os
from pathlib import Path


def user_data_dir() -> Path:
    """mmr's data directory: ``$XDG_DATA_HOME/mmr`` (``~/.local/share/mmr``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "mmr"


def resolve_db_path(explicit: str | os.PathLike | None = None) -> Path:
    """The ledger file: ``explicit`` (``--db``), else ``$MMR_DB``, else ``ledger.db`` in :func:`user_data_dir`."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("MMR_DB")
    return Path(env) if env else user_data_dir() / "ledger.db"
