"""Worker processes for ``--batch``: both ends of the pipe between the batch and its workers.

One Python process answers some 300-350 rows a second at most: each call
spends 1.5-2.5 ms of CPU in the SDK, its HTTP client and the ledger, all under
one GIL. A fast local server at high concurrency needs more. With
``--processes N`` (by default one per 16 concurrent rows from 32 on, up to the
CPU count and at most 4), the ``mmr`` process reads, orders and writes the rows and N
worker processes (:mod:`router_cli.batch.worker`, started by :class:`WorkerPool`) answer them, each with
its share of ``--concurrency`` as threads. Below 32 concurrent rows a second
process costs more than it gives: each imports its own SDK (about a second of
CPU for Anthropic's) and every row crosses two pipes. The workers start first,
so that their SDK import runs while ``mmr`` checks the config, opens the
ledger and reads the input.

The protocol is JSON lines. To a worker: its spec (first line), then
``{"seq", "row"}`` rows and ``{"pause", "seconds"}`` provider pauses; end of
input means no more rows. From a worker: ``{"seq", "outcome"}`` per row,
``{"pause", "seconds"}`` when a provider asked to wait (the batch passes it on
to every other worker), ``{"note"}`` (with ``-v``) and ``{"fatal"}`` when it
cannot start. Rows are sent only to a worker with a free thread, so a row
handed over is a row started.

Workers run in their own session: Ctrl-C reaches only ``mmr``, which stops
handing out rows and lets the workers finish their calls (a second Ctrl-C
terminates them). A worker whose ``mmr`` went away finishes its calls, records
them and exits. API keys reach workers through the environment, never the
spec.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable

from .. import errors
from ..errors import MmrError
from .calls import Outcome
from .rows import Row
from .wire import decode_error, decode_outcome, encode_row, line

MAX_PROCESSES = 16
# ``python -m`` and ``-c`` put the working directory first on the import path, where any
# queue.py or yaml.py of the user's would shadow the real one: the workers import from
# where this mmr's own package was found instead.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_WORKER_MAIN = f"import sys; sys.path[0] = {_PACKAGE_ROOT!r}; from router_cli.batch.worker import main; main()"
ROWS_PER_PROCESS = 16  # measured: 2 processes lose at concurrency 16 and win at 32 (bench/batch.py)
AUTO_MAX_PROCESSES = 4  # each worker holds its own SDKs (~100 MB)


def auto_processes(concurrency: int, cpus: int | None = None) -> int:
    """How many processes ``--batch`` uses when ``--processes`` is not given (1: this one only)."""
    return max(1, min(cpus or os.cpu_count() or 1, AUTO_MAX_PROCESSES, concurrency // ROWS_PER_PROCESS))


def shares(concurrency: int, processes: int) -> list[int]:
    """``concurrency`` threads spread over ``processes`` workers as evenly as whole threads allow."""
    return [concurrency // processes + (i < concurrency % processes) for i in range(processes)]


# ------------------------------------------------------------------ the batch's side


class _Worker:
    def __init__(self, proc: subprocess.Popen, threads: int):
        self.proc, self.threads = proc, threads
        self.in_flight: dict[int, Row] = {}
        self.alive = True
        self.input_closed = False  # no more rows for it: from here on, exiting is what it should do
        self.ready = False  # it said {"ready"}: before that, nothing it was given was called
        self.send_lock = threading.Lock()

    def send(self, message: dict) -> bool:
        """False when the worker is gone (its reader thread accounts for the rows it had)."""
        with self.send_lock:
            if self.proc.stdin is None or self.proc.stdin.closed:
                return False
            try:
                self.proc.stdin.write(line(message))
                self.proc.stdin.flush()
                return True
            except (BrokenPipeError, OSError, ValueError):
                return False

    def close_input(self) -> None:
        with self.send_lock:
            self.input_closed = True
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass


class WorkerPool:
    """``processes`` worker processes sharing ``concurrency`` rows at a time.

    Started early (see the module docstring); :meth:`serve` then feeds them a
    batch's rows and :meth:`finish` waits for them (or ends them at once).
    """

    def __init__(self, spec: dict, processes: int, concurrency: int, *, command: list[str] | None = None):
        """``command`` starts a worker (default: this mmr's ``batch.worker.main``)."""
        if not 2 <= processes <= MAX_PROCESSES:
            raise ValueError(f"processes must be between 2 and {MAX_PROCESSES}")
        self.workers: list[_Worker] = []
        self.changed = threading.Condition()
        self._threads: list[threading.Thread] = []
        try:
            for threads in shares(concurrency, processes):
                proc = subprocess.Popen(command or [sys.executable, "-c", _WORKER_MAIN], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, start_new_session=True)
                worker = _Worker(proc, threads)
                self.workers.append(worker)
                worker.send({**spec, "threads": threads})
        except OSError as e:
            self.finish(abandon=True)
            raise MmrError(f"cannot start the batch's worker processes: {e.strerror or e}") from None

    def serve(self, batch) -> None:
        """Hand ``batch``'s rows to the workers and its results back, in background threads.

        ``batch`` is a ``batch.engine._Batch``: rows come from ``batch.jobs`` (``None``
        ends them), results go to ``batch.results``, and ``batch.begin()`` /
        ``batch.end()`` count the rows in flight.
        """
        for worker in self.workers:
            self._spawn(self._read, batch, worker)
        self._spawn(self._dispatch, batch)

    def _spawn(self, target: Callable, *args) -> None:
        thread = threading.Thread(target=target, args=args, name="mmr-batch-pool", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _free_worker(self, batch) -> _Worker | None:
        with self.changed:
            while True:
                if batch.stopping.is_set():
                    return None
                live = [w for w in self.workers if w.alive]
                if not live:
                    return None
                free = [w for w in live if len(w.in_flight) < w.threads]
                if free:
                    return min(free, key=lambda w: len(w.in_flight) / w.threads)
                self.changed.wait(0.1)

    def _dispatch(self, batch) -> None:
        try:
            while True:
                job = batch.jobs.get()
                if job is None:
                    return
                seq, row = job
                worker = self._hand_over(batch, seq, row)
                if worker is None:
                    batch.results.put((seq, None))
                    continue
                worker.send({"seq": seq, "row": encode_row(row)})  # a failed send: the reader reports the row
        finally:
            for worker in self.workers:
                worker.close_input()

    def _hand_over(self, batch, seq: int, row: Row) -> _Worker | None:
        """Count ``row`` as in flight at a live worker with a free thread; None when the batch stops."""
        if not batch.begin():
            return None
        while (worker := self._free_worker(batch)) is not None:
            with self.changed:
                if worker.alive:  # it may have died since it was chosen: its reader has taken its rows
                    worker.in_flight[seq] = row
                    return worker
        batch.end()
        return None

    def _read(self, batch, worker: _Worker) -> None:
        assert worker.proc.stdout is not None
        for raw in worker.proc.stdout:
            try:
                message = json.loads(raw)
                if "seq" in message:
                    seq, outcome = int(message["seq"]), decode_outcome(message["outcome"])
                elif "pause" in message:
                    pause = {"pause": str(message["pause"]), "seconds": float(message["seconds"])}
            except (ValueError, TypeError, KeyError):
                break  # not our protocol: the worker is broken; end it, and its rows are reported below
            if "seq" in message:
                if outcome.fatal is not None:
                    batch.stopping.set()  # now, before another row is handed out
                with self.changed:
                    worker.in_flight.pop(seq, None)
                    self.changed.notify_all()
                batch.end()
                batch.results.put((seq, outcome))
            elif "pause" in message:
                for other in self.workers:
                    if other is not worker and other.alive:
                        other.send(pause)
            elif "note" in message:
                batch.note(str(message["note"]))
            elif "ready" in message:
                worker.ready = True
            elif "fatal" in message:
                batch.results.put(("fatal", decode_error(message["fatal"])))
        if worker.proc.poll() is None:
            worker.proc.kill()
        code = worker.proc.wait()
        with self.changed:
            worker.alive = False
            lost, worker.in_flight = worker.in_flight, {}
            self.changed.notify_all()
        if not batch.abandoning and (code != 0 or not worker.input_closed):
            batch.results.put(("fatal", MmrError(f"a batch worker process stopped unexpectedly (exit code {code})")))
        for seq, row in sorted(lost.items()):
            batch.end()
            if not worker.ready:
                batch.results.put((seq, None))  # it never got as far as a call
                continue
            message = (f"the worker process answering this row stopped (exit code {code}); "
                       "the call may have been made: see the ledger")
            batch.results.put((seq, Outcome({"id": row.id, "error": {"kind": "internal", "message": message,
                                                                    "exit_code": errors.EXIT_INTERNAL,
                                                                    "line": row.line}}, False)))

    def finish(self, *, abandon: bool) -> None:
        """Wait for the workers to finish and exit; with ``abandon``, end them now."""
        for worker in self.workers:
            if abandon and worker.proc.poll() is None:  # first: a send blocked on a full pipe then fails
                try:
                    worker.proc.terminate()
                except OSError:
                    pass
            worker.close_input()
        for worker in self.workers:
            try:
                worker.proc.wait(timeout=None if not abandon else 5)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
        for thread in self._threads:
            thread.join(timeout=5)
