"""``mmr ask|cascade --batch``: check the batch's own options, run it (:mod:`router_cli.batch.session`),
say how it went and exit with its code."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, NoReturn

import typer

from ...errors import MissingKeyError, UsageError

if TYPE_CHECKING:
    from ...engine.options import RequestOptions


def answer_batch(kind: str, options: RequestOptions, source: str, *, prompt: str | None, config: str | None,
                 db: str | None, ml_model: str | None, verbose: bool, concurrency: int, processes: int | None,
                 strict: bool, resume: str | None, conflicts: dict[str, bool], batch_id: str | None = None) -> NoReturn:
    """Answer every row of ``source`` with ``kind`` (ask or cascade) and ``options``;
    exit with the batch's code."""
    from dataclasses import replace

    from ...batch.engine import MAX_CONCURRENCY
    from ...batch.pool import MAX_PROCESSES, auto_processes
    from ...batch.session import BatchJob, run_job
    from ...config import parse_config, read_config
    from ..common import keyless_default, ledger_target
    from ...render import progress as bars
    from ...render.text import jsonl_row, note, stderr_is_terminal

    for option, given in conflicts.items():
        if given:
            raise UsageError(f"{option} does not combine with --batch")
    if prompt is not None:
        raise UsageError("--batch reads the prompts from its file; give no PROMPT argument")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}, got {concurrency}")
    if processes is None:
        processes = auto_processes(concurrency)
    elif not 1 <= processes <= min(concurrency, MAX_PROCESSES):
        raise UsageError(f"--processes must be between 1 and --concurrency (at most {MAX_PROCESSES}), got {processes}")
    if source == "-" and (sys.stdin is None or sys.stdin.isatty()):
        raise UsageError("--batch -: pipe the JSONL rows in on stdin")
    text, source_name = read_config(config)
    from ...prices import resolve_prices

    cfg = resolve_prices(parse_config(text, source_name))  # a model without a price stops the batch before row 1
    if ml_model is not None:
        cfg = replace(cfg, ml_model=ml_model)
    keyless, key_hint = keyless_default(cfg)  # as for one prompt; said here once, not by each worker
    job = BatchJob(source, kind, options, text, source_name, ml_model, str(ledger_target(db, cfg=cfg)), verbose=verbose,
                   concurrency=concurrency, processes=processes, strict=strict, resume=resume, batch_id=batch_id,
                   local_model=keyless is not cfg)
    cfg = keyless
    on_terminal = stderr_is_terminal()

    def write(row: dict) -> None:
        jsonl_row(row)
        for warning in row.get("budget_warnings") or ():  # each once: only the row that passed the mark has it
            note(f"warning: {warning}")

    summary = run_job(job, cfg, write=write, note=note, stdin=sys.stdin.buffer,
                      progress=bars.BatchProgress if on_terminal else None)
    if summary.output_closed:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if on_terminal or verbose or summary.failed or summary.interrupted or summary.fatal:
        bars.batch_summary(summary)
    if summary.recovered:
        note(f"--resume: {summary.recovered:,} row(s) written from the ledger (answered and recorded by an earlier run, "
             "not paid again)")
    rerun = "--resume OUTFILE" + ("" if summary.batch_id_stable else f" --batch-id {summary.batch_id}")
    if summary.fatal is not None:
        if isinstance(summary.fatal, MissingKeyError):
            summary.fatal.message += key_hint
        summary.fatal.message += f" (the batch stopped; rerun with {rerun} to answer the rest)"
        raise summary.fatal
    if summary.interrupted:  # main() then says "Error: interrupted"
        note(f"every finished row was written; rerun with {rerun} to answer the rest")
    raise typer.Exit(summary.exit_code)
