"""Where the ledger lives: ``--db PATH|URL``, else ``$MMR_DB``, else ``$XDG_DATA_HOME/mmr/ledger.db``.

A ``postgresql://`` URL (a team's database) stays a string; anything else is a file path.
"""

from __future__ import annotations

import os
from pathlib import Path


def user_data_dir() -> Path:
    """mmr's data directory: ``$XDG_DATA_HOME/mmr`` (``~/.local/share/mmr``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "mmr"


def is_url(target) -> bool:
    """Whether ``target`` names a PostgreSQL database (``postgresql://...``) rather than a file."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def resolve_db_path(explicit: str | os.PathLike | None = None, configured: str | None = None) -> Path | LedgerURL:
    """The ledger: ``explicit`` (``--db``), else ``$MMR_DB``, else ``configured`` (``ledger.url`` in the config),
    else ``ledger.db`` in :func:`user_data_dir`. A PostgreSQL URL is returned as a :class:`LedgerURL`."""
    chosen = explicit or os.environ.get("MMR_DB") or configured
    if not chosen:
        return user_data_dir() / "ledger.db"
    if is_url(str(chosen)):
        return LedgerURL(str(chosen))
    return Path(chosen)


def beside_ledger(db: str, suffix: str) -> Path:
    """A local file belonging to ledger ``db``: ``<file><suffix>`` beside an SQLite ledger; for a PostgreSQL URL
    (no file to sit beside), ``<suffix without its dot>-<hash of the URL without its password>`` in
    :func:`user_data_dir`, so each machine keeps its own."""
    if not is_url(db):
        return Path(f"{db}{suffix}")
    import hashlib

    from ..errors import redact_url

    digest = hashlib.sha256(redact_url(db).encode()).hexdigest()[:16]
    stem, _, ext = suffix.lstrip(".").rpartition(".")
    directory = user_data_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory / f"{stem.replace('.', '-')}-{digest}.{ext}"


class LedgerURL(str):
    """A PostgreSQL ledger's URL where callers expect a ledger path: it always "exists", prints without
    its password, and ``str()`` gives the URL back for the store (and for worker processes)."""

    def exists(self) -> bool:
        return True

    def __format__(self, spec: str) -> str:
        from ..errors import redact_url

        return format(redact_url(str.__str__(self)), spec)

    def __fspath__(self) -> str:  # pragma: no cover - a URL is never opened as a file
        raise TypeError("a PostgreSQL URL is not a file path")
