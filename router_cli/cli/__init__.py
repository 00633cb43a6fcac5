"""The ``mmr`` command line (``app``: the Typer app and ``main``; ``options``: every option, once;
``commands``: one module per group of commands)."""

import time

STARTED = time.perf_counter()  # the command's start, for wall_ms (before Typer and the commands load)

from .app import app, main, run  # noqa: E402

__all__ = ["app", "main", "run"]
