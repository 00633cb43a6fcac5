"""The threaded batch runner: many rows, a bounded number at a time, written in input order.

    import json
    from router_cli import Router, load_config
    from router_cli.batch import asker, run_batch
    from router_cli.engine.options import RequestOptions
    with Router(load_config(), "ledger.db") as router, open("prompts.jsonl", "rb") as rows:
        summary = run_batch(rows, asker(router, RequestOptions()), lambda row: print(json.dumps(row)),
                            tiers=router.config.tier_names, concurrency=8)

Output is one JSON row per input row, in input order: the ``ask --json``
object with the row's ``id`` first, or ``{"id", "error": {kind, message,
exit_code, line}}`` (plus ``attempts`` and ``cost_usd`` when something was
tried) for a row that failed.

How it runs: a reader thread parses rows and hands them to the worker
threads, which share one :class:`~router_cli.engine.router.Router` (routing,
fallback, retries, provider pauses and the ledger behave exactly as in single
``ask``). The calling thread writes results in input order. A row may start
only when it is within ``window`` rows of the oldest row not yet written, so
memory is bounded whatever the size of the input and however slow one row is.

Stopping: ``stop()`` (the first Ctrl-C) starts no new row, lets the calls in
flight finish and writes them; a second Ctrl-C writes what has finished and
returns at once. A fatal error (the ledger cannot be written, no usable key,
a broken config) stops the batch the same way.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Callable, Iterable, Protocol

from ..errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_ROWS_FAILED, MmrError, UsageError
from .calls import Outcome, run_row
from .rows import IdSet, Problem, Row, read_rows

if TYPE_CHECKING:
    from .pool import WorkerPool

MAX_CONCURRENCY = 256
WINDOW_PER_WORKER = 4  # reorder window: a row 4x slower than the rest does not stall the pool


class Progress(Protocol):
    def update(self, done: int, errors: int, spend: Decimal) -> None: ...

    def note(self, message: str) -> None: ...


@dataclass
class Summary:
    """How a batch went; ``exit_code`` is the command's."""

    written: int = 0  # rows written, error rows included
    answered: int = 0
    failed: int = 0  # error rows written (bad lines and duplicates included)
    skipped: int = 0  # already answered in the --resume file
    recovered: int = 0  # written from the ledger (--resume): answered by an earlier run, not paid again
    batch_id: str = ""  # what the ledger rows of this batch carry
    batch_id_stable: bool = True  # a rerun of the same command finds the same id by itself (not stdin)
    not_started: int = 0  # queued when the batch stopped
    abandoned: int = 0  # in flight when a second Ctrl-C stopped the batch at once
    spend: Decimal = Decimal(0)
    interrupted: bool = False
    output_closed: bool = False  # the reader of stdout went away
    fatal: MmrError | None = None
    seconds: float = 0.0
    problems: dict[str, int] = field(default_factory=dict)  # error rows by kind

    @property
    def exit_code(self) -> int:
        if self.fatal is not None:
            return self.fatal.exit_code
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.output_closed:
            return EXIT_OK
        return EXIT_ROWS_FAILED if self.failed else EXIT_OK


class _Batch:
    def __init__(self, lines: Iterable[bytes], call: Callable[[Row], object] | None, write: Callable[[dict], None], *,
                 tiers: list[str], concurrency: int, resume: IdSet | None, progress: Progress | None, window: int | None,
                 pool: WorkerPool | None = None, on_note: Callable[[str], None] | None = None,
                 recover: Callable[[Row], Outcome | None] | None = None):
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise UsageError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}, got {concurrency}")
        self.lines, self.call, self.write, self.tiers = lines, call, write, tiers
        self.concurrency, self.resume, self.progress = concurrency, resume, progress
        self.window = window or WINDOW_PER_WORKER * concurrency
        self.slots = threading.Semaphore(self.window)
        self.jobs: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.dispatch_lock = threading.Lock()
        self.dispatched = 0
        self.active_lock = threading.Lock()
        self.active = 0  # rows being answered right now
        self.interrupts = 0
        self.abandoning = False  # a second Ctrl-C: what is in flight is left behind
        self.pool, self.on_note, self.recover = pool, on_note, recover
        self.summary = Summary()

    # -- threads
    def _read(self) -> None:
        seq = 0
        try:
            for item in read_rows(self.lines, self.tiers):
                if isinstance(item, Row) and self.resume is not None and item.key in self.resume:
                    self.results.put(("skipped", None))
                    continue
                recovered = self.recover(item) if self.recover is not None and isinstance(item, Row) else None
                while not self.slots.acquire(timeout=0.1):
                    if self.stopping.is_set():
                        return
                with self.dispatch_lock:
                    if self.stopping.is_set():
                        self.slots.release()
                        return
                    seq += 1
                    self.dispatched = seq
                    if isinstance(item, Problem):
                        self.results.put((seq, Outcome(item.to_json(), False)))
                    elif recovered is not None:
                        self.results.put((seq, recovered))
                    else:
                        self.jobs.put((seq, item))
        except OSError as e:
            self.results.put(("fatal", UsageError(f"cannot read the input: {e.strerror or e}")))
        except MmrError as e:  # the ledger could not be read for --resume
            self.results.put(("fatal", e))
        except Exception as e:  # noqa: BLE001 - reported by the writing thread, which owns the exit
            self.results.put(("fatal", MmrError(f"internal error reading the input: {type(e).__name__}: {e}")))
        finally:
            self.results.put(("end", seq))
            for _ in range(self.concurrency):
                self.jobs.put(None)

    def begin(self) -> bool:
        """Count a row as in flight, unless the batch is stopping (then it must not start)."""
        with self.active_lock:  # checked and counted together: an abandoned call is always counted
            started = not self.stopping.is_set()
            self.active += started
        return started

    def end(self) -> None:
        with self.active_lock:
            self.active -= 1

    def note(self, message: str) -> None:
        if self.on_note is not None:
            self.on_note(message)

    def _work(self) -> None:
        assert self.call is not None
        while True:
            job = self.jobs.get()
            if job is None:
                return
            seq, row = job
            if not self.begin():
                self.results.put((seq, None))
                continue
            try:
                outcome = run_row(self.call, row)
            finally:
                self.end()
            if outcome.fatal is not None:
                self.stopping.set()  # now, before this worker takes another row
            self.results.put((seq, outcome))

    # -- the writing thread
    def _emit(self, outcome: Outcome) -> None:
        s = self.summary
        if not s.output_closed:
            try:
                self.write(outcome.row)
            except BrokenPipeError:
                s.output_closed = True
                self._stop()
        s.spend += outcome.cost
        if not s.output_closed:
            s.written += 1
            if outcome.ok:
                s.answered += 1
                s.recovered += outcome.recovered
            else:
                s.failed += 1
                kind = outcome.row["error"]["kind"]
                s.problems[kind] = s.problems.get(kind, 0) + 1
        if outcome.fatal is not None and s.fatal is None:
            s.fatal = outcome.fatal
            self._stop()
        if self.progress is not None:
            self.progress.update(s.written + s.skipped, s.failed, s.spend)

    def _stop(self) -> None:
        self.stopping.set()

    def _on_sigint(self, signum, frame) -> None:
        self.interrupts += 1
        self.summary.interrupted = True
        self._stop()

    def run(self) -> Summary:
        started = time.perf_counter()
        threads = [threading.Thread(target=self._read, name="mmr-batch-reader", daemon=True)]
        if self.pool is None:
            threads += [threading.Thread(target=self._work, name=f"mmr-batch-{i}", daemon=True)
                        for i in range(self.concurrency)]
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            for thread in threads:
                thread.start()
            if self.pool is not None:
                self.pool.serve(self)
            self._collect()
        finally:
            if self.pool is not None:
                self.pool.finish(abandon=self.abandoning)
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    def _collect(self) -> None:
        s = self.summary
        buffer: dict[int, Outcome | None] = {}
        next_seq, end, told = 1, None, 0
        while True:
            if self.interrupts > told:
                told = self.interrupts
                if told == 1 and self.progress is not None:
                    self.progress.note("stopping: no new rows; finishing the calls in flight (Ctrl-C again to quit now)")
                if told > 1:
                    self.abandoning = True
                    break
            last = end
            if self.stopping.is_set():
                with self.dispatch_lock:  # after this, the reader dispatches nothing more
                    last = self.dispatched
            if last is not None and next_seq > last:
                return
            try:
                seq, outcome = self.results.get(timeout=0.1)
            except queue.Empty:
                continue
            if seq == "end":
                end = outcome
            elif seq == "skipped":
                s.skipped += 1
                if self.progress is not None:
                    self.progress.update(s.written + s.skipped, s.failed, s.spend)
            elif seq == "fatal":
                if s.fatal is None:
                    s.fatal = outcome
                self._stop()
            else:
                buffer[seq] = outcome
            while next_seq in buffer:
                done = buffer.pop(next_seq)
                next_seq += 1
                self.slots.release()
                if done is None:
                    s.not_started += 1
                else:
                    self._emit(done)
        # A second Ctrl-C: write what has finished, in order, and leave the rest.
        for seq in sorted(buffer):
            done = buffer[seq]
            if done is None:
                s.not_started += 1
            else:
                self._emit(done)
        with self.active_lock:
            s.abandoned = self.active


def run_batch(lines: Iterable[bytes], call: Callable[[Row], object] | None, write: Callable[[dict], None], *,
              tiers: list[str], concurrency: int = 8, resume: IdSet | None = None,
              progress: Progress | None = None, window: int | None = None, pool: WorkerPool | None = None,
              on_note: Callable[[str], None] | None = None,
              recover: Callable[[Row], Outcome | None] | None = None) -> Summary:
    """Answer every row of ``lines`` with ``call``, ``concurrency`` at a time, and ``write`` one
    result per row in input order. Ctrl-C (SIGINT, when run on the main thread) stops cleanly.

    With ``pool`` (a started :class:`~router_cli.batch.pool.WorkerPool`), its worker processes
    answer the rows instead of ``call`` in threads here; ``on_note`` hears their notes.
    ``recover(row)`` (``--resume``) may give a row's outcome without asking: an answer
    an earlier run paid for and recorded but did not write.
    """
    if (call is None) == (pool is None):
        raise ValueError("give call or pool")
    return _Batch(lines, call, write, tiers=tiers, concurrency=concurrency, resume=resume,
                  progress=progress, window=window, pool=pool, on_note=on_note, recover=recover).run()
