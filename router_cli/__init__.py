"""mmr: a multi-model LLM router for the command line.

The library under the CLI::

    from router_cli import Router, load_config
    answer = Router(load_config(), db_path="ledger.db").ask("Say hello")

Importing this package never imports a provider SDK; each is imported when
its provider is first called. The names below are imported on first use, so
that ``mmr classify`` never loads the request path.
"""

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Answer", "Config", "Router", "__version__", "load_config"]

if TYPE_CHECKING:
    from .config import Config, load_config
    from .router import Answer, Router

_WHERE = {"Answer": "router", "Router": "router", "Config": "config", "load_config": "config"}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
