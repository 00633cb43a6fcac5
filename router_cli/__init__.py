"""mmr: a multi-model LLM router for the command line, and the library under it.

    from router_cli import Router, RequestOptions, load_config
    with Router(load_config(), db_path="ledger.db") as router:
        answer = router.ask("Say hello", RequestOptions(max_tokens=50))
        print(answer.text, answer.cost)

``cascade(router, prompt, options)`` escalates on a failed quality gate;
``open_ledger(path)`` opens the ledger that both write to. Importing this
package never imports a provider SDK; each is imported when its provider is
first called. The names below are imported on first use, so that ``mmr
classify`` and ``mmr costs`` never load the request path.
"""

from typing import TYPE_CHECKING

from .version import __version__  # noqa: E402,F401

if TYPE_CHECKING:
    from .config import Config, load_config
    from .engine.cascade import cascade
    from .engine.options import RequestOptions
    from .engine.router import Router
    from .engine.types import Answer
    from .ledger import open_ledger

_WHERE = {
    "Answer": "engine.types", "Config": "config", "RequestOptions": "engine.options", "Router": "engine.router",
    "cascade": "engine.cascade", "load_config": "config", "open_ledger": "ledger",
}
__all__ = ["Answer", "Config", "RequestOptions", "Router", "__version__", "cascade", "load_config", "open_ledger"]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
