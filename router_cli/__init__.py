"""mmr: a multi-model LLM router for the command line.

The library under the CLI::

    from router_cli import Router, load_config
    answer = Router(load_config(), db_path="ledger.db").ask("Say hello")

Importing this package never imports a provider SDK; each is imported when
its provider is first called. The names below load on first use, so that
``mmr --help`` and the batch workers do not pay for what they do not touch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .config import Config, load_config
    from .router import Answer, Router

__all__ = ["Answer", "Config", "Router", "__version__", "load_config"]
_LAZY = {"Config": "config", "load_config": "config", "Answer": "router", "Router": "router"}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # once loaded, a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
