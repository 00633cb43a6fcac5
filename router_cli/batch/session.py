"""One ``mmr ask|cascade --batch`` run from start to end: the worker processes (started
first), the router, the ledger, the resume file, the input and the rows.

The command line checks its options, parses the config and renders; this module
runs the batch and returns its :class:`~router_cli.batch.engine.Summary`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Callable, Protocol

from .engine import Progress, Summary, run_batch
from .lock import hold_shared, release, wait_for_others
from .resume import LedgerAnswers, batch_identity
from .rows import count_file_rows, open_input, read_resume

if TYPE_CHECKING:
    from ..config import Config
    from ..engine.options import RequestOptions
    from .pool import WorkerPool


class ProgressBar(Progress, Protocol):
    def stop(self) -> None: ...


@dataclass(frozen=True)
class BatchJob:
    """What ``mmr <kind> --batch`` was asked to do, its options already checked."""

    source: str  # a JSONL file, or '-' for stdin
    kind: str  # ask | cascade
    options: RequestOptions
    config_text: str
    config_source: str
    ml_model: str | None
    db: str
    verbose: bool = False
    concurrency: int = 8
    processes: int = 1
    strict: bool = False
    resume: str | None = None
    batch_id: str | None = None  # --batch-id; else derived (see batch/resume.py)
    local_model: bool = False  # the built-in config with no key: the local model in every tier (see with_local_model)

    def worker_spec(self, batch_id: str) -> dict:
        """The first line a worker process reads: everything it needs to answer rows (no keys)."""
        return {"kind": self.kind, "options": self.options.to_json(), "config_text": self.config_text,
                "config_source": self.config_source, "ml_model": self.ml_model, "db": self.db,
                "verbose": self.verbose, "batch_id": batch_id, "local_model": self.local_model}


def run_job(job: BatchJob, config: Config, *, write: Callable[[dict], None], note: Callable[[str], None],
            stdin: IO[bytes], progress: Callable[[int | None], ProgressBar] | None = None) -> Summary:
    """Run ``job`` under ``config`` (parsed from ``job.config_text``): each result row goes to
    ``write``; ``note`` hears what the user should know (routing notes only with ``verbose``);
    ``progress(total)`` makes a progress bar once the input is open. ``Summary.batch_id`` says
    which batch the ledger rows belong to."""
    batch_id, stable = batch_identity(job.kind, job.options, job.source, job.batch_id)
    if job.verbose:
        note(f"batch id {batch_id}" + ("" if stable else " (stdin: give --batch-id to resume from the ledger)"))
    pool = None
    if job.processes > 1:  # started before the ledger and the input: their SDK imports overlap those
        from .pool import WorkerPool

        pool = WorkerPool(job.worker_spec(batch_id), job.processes, job.concurrency)
    try:
        summary = _run(job, config, pool, batch_id, write=write, note=note, stdin=stdin, progress=progress)
        summary.batch_id, summary.batch_id_stable = batch_id, stable
        return summary
    finally:
        if pool is not None:
            pool.finish(abandon=True)  # a no-op when the batch ran: they have exited
        release(job.db, batch_id)


def _run(job: BatchJob, config: Config, pool: WorkerPool | None, batch_id: str, *, write: Callable[[dict], None],
         note: Callable[[str], None], stdin: IO[bytes], progress: Callable[[int | None], ProgressBar] | None) -> Summary:
    from ..engine.router import Router
    from .calls import make_call

    on_note = note if job.verbose else None
    router = Router(config, job.db, on_note=on_note)
    store = router.ledger()
    router.check_ledger()  # a ledger that cannot take a write stops the batch before any row is sent
    call = make_call(router, job.kind, job.options, batch_id)  # checks the options once, not on every row
    skip, recover = None, None
    if job.resume is None:
        hold_shared(job.db, batch_id)
    else:
        # Before reading what the ledger answered: a killed run's workers may still be recording.
        wait_for_others(job.db, batch_id, note)
        skip, unreadable = read_resume(job.resume)
        if unreadable:
            note(f"--resume: {unreadable} line(s) of {job.resume} are not JSON rows; ignored")
        recover = _from_ledger(job, config, store, batch_id, skip, note)
    rows = open_input(job.source, strict=job.strict, tiers=config.tier_names, stdin=stdin)
    bar = None
    if progress is not None:
        bar = progress(None if job.source == "-" else count_file_rows(job.source))
    summary = None
    try:
        summary = run_batch(rows, None if pool else call, write, tiers=config.tier_names,
                            concurrency=job.concurrency, resume=skip, progress=bar, pool=pool, on_note=on_note,
                            recover=recover)
    finally:
        if bar is not None:
            bar.stop()
        if summary is None or not summary.abandoned:
            router.close()  # a call abandoned in flight may still be using its connection
        if rows is not stdin:  # closing stdin would wait for the reader thread blocked reading it
            rows.close()
    return summary


def _from_ledger(job: BatchJob, config: Config, store, batch_id: str, written, note: Callable[[str], None]):
    """``--resume``'s ledger side: rows this batch paid for and recorded that ``job.resume`` lacks."""
    answers = LedgerAnswers(store, batch_id, job.options, written)
    if answers.missing and config.ledger.store != "full":
        note(f"--resume: {answers.missing} answered row(s) of this batch are in the ledger but not in {job.resume}; "
             f"ledger.store is {config.ledger.store!r}, which keeps no whole answer text, so they are asked again")
    return answers
