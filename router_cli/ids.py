"""Sortable unique ids for requests, calls and feedback."""

from __future__ import annotations

import os
import threading
import time

_last_id = 0
_id_lock = threading.Lock()


def new_id() -> str:
    """A sortable unique id: 48-bit millisecond time + 80 random bits, Crockford base32.

    Monotonic within a process, so the attempts of one request sort in order.
    """
    global _last_id
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    with _id_lock:
        value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
        if value <= _last_id:
            value = _last_id + 1
        _last_id = value
    return "".join(alphabet[(value >> shift) & 31] for shift in range(125, -1, -5))
