"""Provider pauses shared by every thread of one process.

When a provider answers 429 (or 529) with ``retry-after``, every worker of a
batch must hold off that provider, not only the one that was told: otherwise
the others keep hammering it and collect more 429s. The router records the
pause here and waits on it before each call to that provider.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class ProviderPauses:
    """``pause(name, s)`` holds off ``name`` for ``s`` seconds; ``wait(name, sleep)`` sleeps out any pause."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()
        # Told of every pause set here, so that a batch can pass it on to its other worker processes.
        self.listener: Callable[[str, float], None] | None = None

    def pause(self, name: str, seconds: float, *, tell: bool = True) -> None:
        """Hold off ``name`` until ``seconds`` from now (a longer pause already set is kept).

        ``tell=False``: the pause came from another process; the listener has heard of it.
        """
        until = self._clock() + seconds
        with self._lock:
            if until > self._until.get(name, 0.0):
                self._until[name] = until
        if tell and self.listener is not None:
            self.listener(name, seconds)

    def remaining(self, name: str) -> float:
        """Seconds left in the pause of ``name`` (0 when it is not paused)."""
        with self._lock:
            until = self._until.get(name)
        return 0.0 if until is None else max(0.0, until - self._clock())

    def wait(self, name: str, sleep: Callable[[float], None]) -> float:
        """Sleep until ``name``'s pause is over; returns the seconds slept."""
        left = self.remaining(name)
        if left > 0:
            sleep(left)
        return left
