"""Who may still be paying for a batch: a lock per batch id beside the ledger.

Every process that makes calls for a batch (``mmr`` and each worker process)
holds a shared lock on one byte of ``<ledger>.batches.lock``, chosen by the
batch id, until it exits. ``--resume`` takes that byte exclusively before it
reads which rows the ledger answered: when ``mmr`` was killed, its worker
processes are still finishing and recording their calls, and the resume waits
for them instead of paying for those rows again. Then it holds the byte shared
like any run.

POSIX record locks (``fcntl``): the kernel drops them when a process dies, and
a process must open the lock file only once (closing any descriptor of it drops
all of that process's locks on it). Without ``fcntl`` (Windows) there is no lock.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

_held: dict[str, int] = {}  # lock file -> this process's one descriptor of it


def lock_path(db: str) -> str:
    """``<ledger>.batches.lock``; for a team's PostgreSQL ledger, a file in the user's data directory
    (the processes a resume waits for run on this machine)."""
    from ..ledger.paths import beside_ledger

    return str(beside_ledger(db, ".batches.lock"))


def _offset(batch_id: str) -> int:
    return int.from_bytes(hashlib.sha256(batch_id.encode("utf-8", "surrogatepass")).digest()[:4], "big")


def _descriptor(path: str) -> int | None:
    if path not in _held:
        try:
            _held[path] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return None  # no lock rather than no batch: the ledger's own checks say what is wrong
    return _held[path]


def _lock(fd: int, kind: int, offset: int, wait: bool) -> bool:
    try:
        fcntl.lockf(fd, kind | (0 if wait else fcntl.LOCK_NB), 1, offset)
        return True
    except OSError:
        return False


def hold_shared(db: str, batch_id: str) -> None:
    """Mark this process as one that makes calls for ``batch_id`` (until it exits)."""
    fd = None if fcntl is None else _descriptor(lock_path(db))
    if fd is not None:
        _lock(fd, fcntl.LOCK_SH, _offset(batch_id), wait=True)


def wait_for_others(db: str, batch_id: str, note: Callable[[str], None]) -> None:
    """Wait until no other process makes calls for ``batch_id``, then hold it shared as :func:`hold_shared`."""
    fd = None if fcntl is None else _descriptor(lock_path(db))
    if fd is None:
        return
    offset = _offset(batch_id)
    if not _lock(fd, fcntl.LOCK_EX, offset, wait=False):
        note(f"--resume: waiting for another run of this batch ({batch_id}) to finish its calls: "
             "the worker processes of a killed mmr record theirs before they exit")
        _lock(fd, fcntl.LOCK_EX, offset, wait=True)
    _lock(fd, fcntl.LOCK_SH, offset, wait=True)  # turned shared in place: no one slips in between


def release(db: str, batch_id: str) -> None:
    """This process makes no more calls for ``batch_id``."""
    fd = _held.get(lock_path(db))
    if fd is not None and fcntl is not None:
        _lock(fd, fcntl.LOCK_UN, _offset(batch_id), wait=True)
