"""The worker threads of ``mmr serve``: as many as requests in flight (up to a limit), fewer when idle.

    pool = Workers(limit=1000, idle=10.0)
    future = pool.submit(fn, *args)      # a concurrent.futures.Future; loop.run_in_executor(pool, ...) works too

The engine is synchronous, so each request in flight holds a thread for its whole run
(a stream for as long as it streams): 500 concurrent streams need 500 threads, and a
limit lower than the peak would queue requests behind each other. Python's
``ThreadPoolExecutor`` keeps every thread it ever started, about 50 KB of memory each
(the stack pages a request touched, and heap), so a server's memory
stayed at its busiest moment for good. Here a thread that has had no work for ``idle``
seconds ends; starting one again costs under a millisecond, little beside a request.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Executor, Future
from typing import Any, Callable

_STOP = object()


class Workers(Executor):
    """Up to ``limit`` threads named ``name-N``; one idle for ``idle`` seconds ends."""

    def __init__(self, limit: int = 1000, idle: float = 10.0, name: str = "mmr-serve"):
        self.limit, self.idle, self.name = limit, idle, name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._free = 0  # threads waiting for work that no submitted item has counted on yet
        self._owed = 0  # items queued at the limit, counted on no thread: the next thread to free up takes one
        self._started = 0
        self._stopping = False

    @property
    def threads(self) -> int:
        """Worker threads alive now."""
        with self._lock:
            return len(self._threads)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` in a worker thread: an idle one, else a new one while under the limit."""
        future: Future = Future()
        with self._lock:
            if self._stopping:
                raise RuntimeError("cannot submit work after shutdown")
            if self._free:
                self._free -= 1
            elif len(self._threads) >= self.limit:
                self._owed += 1
            else:
                # Started before the item is queued: a thread that cannot start leaves nothing behind.
                thread = threading.Thread(target=self._work, name=f"{self.name}-{self._started + 1}", daemon=True)
                thread.start()
                self._started += 1
                self._threads.add(thread)
            self._queue.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Let the work submitted finish (``wait``: wait for it; ``cancel_futures``: cancel what has not
        started), then end every thread."""
        with self._lock:
            self._stopping = True
            while cancel_futures:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                item[0].cancel()
            threads = list(self._threads)
            for _ in threads:
                self._queue.put(_STOP)
        if wait:
            for thread in threads:
                thread.join()

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.idle)
            except queue.Empty:
                with self._lock:
                    # Leave only when no submitted item counts on this thread (or another idle one).
                    if self._free and self._queue.empty():
                        self._free -= 1
                        self._threads.discard(threading.current_thread())
                        return
                continue
            if item is _STOP:
                with self._lock:
                    self._threads.discard(threading.current_thread())
                return
            future, fn, args, kwargs = item
            del item
            self._run(future, fn, args, kwargs)

    def _run(self, future: Future, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        """Run one task; this thread counts as free before its future is set, so that the work its
        waiter submits next finds it rather than starting another thread."""
        if not future.set_running_or_notify_cancel():
            self._freed()
            return
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - the future carries it to whoever waits
            self._freed()
            future.set_exception(e)
            return
        self._freed()
        future.set_result(result)

    def _freed(self) -> None:
        """This thread is about to wait for work: it takes an item queued at the limit, else counts as free."""
        with self._lock:
            if self._owed:
                self._owed -= 1
            else:
                self._free += 1
