"""A batch's progress on a terminal, and its one-line summary."""

from __future__ import annotations

import os

from ..pricing import format_usd
from .text import note, shown


def batch_status(done: int, total: int | None, errors: int, spend, seconds: float) -> str:
    """One line of batch progress: ``412/1,000 · 131 rows/s · $0.0123 · 2 errors · ETA 5 s``."""
    rate = done / seconds if seconds > 0 else 0.0
    parts = [f"{done:,}/{total:,}" if total is not None else f"{done:,} rows", f"{rate:,.0f} rows/s",
             format_usd(spend), f"{errors:,} error{'' if errors == 1 else 's'}"]
    if total is not None and rate > 0 and done < total:
        left = (total - done) / rate
        parts.append(f"ETA {left:,.0f} s" if left < 120 else f"ETA {left / 60:,.0f} min")
    return " · ".join(parts)


class BatchProgress:
    """A batch's progress bar on stderr; make one only when stderr is a terminal."""

    def __init__(self, total: int | None):
        import time
        from decimal import Decimal

        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self.total = total
        self._clock = time.perf_counter
        self._started = time.perf_counter()
        console = Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False)
        # stdout carries the rows: only stderr (routing notes) is redirected above the bar.
        self._bar = Progress(BarColumn(), TextColumn("{task.fields[status]}"), console=console,
                             redirect_stdout=False, refresh_per_second=8)
        self._task = self._bar.add_task("batch", total=total, status=batch_status(0, total, 0, Decimal(0), 0.0))
        self._bar.start()

    def update(self, done: int, errors: int, spend) -> None:
        status = batch_status(done, self.total, errors, spend, self._clock() - self._started)
        self._bar.update(self._task, completed=done, status=status)

    def note(self, message: str) -> None:
        self._bar.console.print(f"mmr: {shown(message)}", style="dim", markup=False, highlight=False, emoji=False)

    def stop(self) -> None:
        self._bar.stop()


def batch_summary(summary) -> None:
    """One line on stderr: how a batch went."""
    parts = [f"{summary.answered:,} answered"]
    if summary.failed:
        kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(summary.problems.items()))
        parts.append(f"{summary.failed:,} failed ({kinds})")
    if summary.skipped:
        parts.append(f"{summary.skipped:,} already answered")
    if summary.not_started:
        parts.append(f"{summary.not_started:,} not started")
    if summary.abandoned:
        parts.append(f"{summary.abandoned:,} abandoned in flight (maybe billed, not in the ledger)")
    rate = summary.written / summary.seconds if summary.seconds else 0.0
    note(f"{summary.written:,} rows in {summary.seconds:.1f} s ({rate:,.0f}/s): {', '.join(parts)} · {format_usd(summary.spend)}")
