"""The ``mmr`` command line (``app``: the Typer app and ``main``; ``options``: every option, once;
``commands``: one module per group of commands)."""

from .app import app, main, run

__all__ = ["app", "main", "run"]
