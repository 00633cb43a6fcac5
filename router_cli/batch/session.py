"""One ``mmr ask|cascade --batch`` run from start to end: the worker processes (started
first), the router, the ledger, the resume file, the input and the rows.

The command line checks its options, parses the config and renders; this module
runs the batch and returns its :class:`~router_cli.batch.engine.Summary`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Callable, Protocol

from .engine import Progress, Summary, run_batch
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

    def worker_spec(self) -> dict:
        """The first line a worker process reads: everything it needs to answer rows (no keys)."""
        return {"kind": self.kind, "options": self.options.to_json(), "config_text": self.config_text,
                "config_source": self.config_source, "ml_model": self.ml_model, "db": self.db,
                "verbose": self.verbose}


def run_job(job: BatchJob, config: Config, *, write: Callable[[dict], None], note: Callable[[str], None],
            stdin: IO[bytes], progress: Callable[[int | None], ProgressBar] | None = None) -> Summary:
    """Run ``job`` under ``config`` (parsed from ``job.config_text``): each result row goes to
    ``write``; ``note`` hears what the user should know (routing notes only with ``verbose``);
    ``progress(total)`` makes a progress bar once the input is open."""
    pool = None
    if job.processes > 1:  # started before the ledger and the input: their SDK imports overlap those
        from .pool import WorkerPool

        pool = WorkerPool(job.worker_spec(), job.processes, job.concurrency)
    try:
        return _run(job, config, pool, write=write, note=note, stdin=stdin, progress=progress)
    finally:
        if pool is not None:
            pool.finish(abandon=True)  # a no-op when the batch ran: they have exited


def _run(job: BatchJob, config: Config, pool: WorkerPool | None, *, write: Callable[[dict], None],
         note: Callable[[str], None], stdin: IO[bytes], progress: Callable[[int | None], ProgressBar] | None) -> Summary:
    from ..engine.router import Router
    from .calls import make_call

    on_note = note if job.verbose else None
    router = Router(config, job.db, on_note=on_note)
    call = make_call(router, job.kind, job.options)  # checks the options once, not on every row
    router.check_ledger()  # a ledger that cannot take a write stops the batch before any row is sent
    skip = None
    if job.resume is not None:
        skip, unreadable = read_resume(job.resume)
        if unreadable:
            note(f"--resume: {unreadable} line(s) of {job.resume} are not JSON rows; ignored")
    rows = open_input(job.source, strict=job.strict, tiers=config.tier_names, stdin=stdin)
    bar = None
    if progress is not None:
        bar = progress(None if job.source == "-" else count_file_rows(job.source))
    summary = None
    try:
        summary = run_batch(rows, None if pool else call, write, tiers=config.tier_names,
                            concurrency=job.concurrency, resume=skip, progress=bar, pool=pool, on_note=on_note)
    finally:
        if bar is not None:
            bar.stop()
        if summary is None or not summary.abandoned:
            router.close()  # a call abandoned in flight may still be using its connection
        if rows is not stdin:  # closing stdin would wait for the reader thread blocked reading it
            rows.close()
    return summary
