"""mmr: a multi-model LLM router for the command line.

The library under the CLI::

    from router_cli import Router, load_config
    answer = Router(load_config(), db_path="ledger.db").ask("Say hello")

Importing this package never imports a provider SDK; each is imported when
its provider is first called.
"""

__version__ = "0.1.0"

from .config import Config, load_config  # noqa: E402
from .router import Answer, Router  # noqa: E402

__all__ = ["Answer", "Config", "Router", "__version__", "load_config"]
