"""Batch routing: many prompts, a bounded number at a time, answered in threads here or in
worker processes (``rows`` input, ``calls`` the per-row call, ``engine`` the runner, ``pool`` and
``worker`` the processes, ``session`` one ``--batch`` run)."""

from .calls import Outcome, asker, cascader, make_call, run_row
from .engine import MAX_CONCURRENCY, Summary, run_batch
from .rows import IdSet, Problem, Row, answered_ids, parse_line, read_rows

__all__ = [
    "MAX_CONCURRENCY", "IdSet", "Outcome", "Problem", "Row", "Summary", "answered_ids", "asker", "cascader",
    "make_call", "parse_line", "read_rows", "run_batch", "run_row",
]
