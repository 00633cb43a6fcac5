"""mmr: a multi-model LLM router for the command line, and the library under it.

    from router_cli import Router, RequestOptions, load_config
    with Router(load_config(), db_path="ledger.db") as router:
        answer = router.ask("Say hello", RequestOptions(max_tokens=50))
        print(answer.text, answer.cost)

``cascade(router, prompt, options)`` escalates on a failed quality gate;
``open_ledger(path)`` opens the ledger that both write to. Importing this
package never imports a provider SDK; each is imported when its provider is
first called.
"""

__version__ = "0.1.0"

from .config import Config, load_config  # noqa: E402
from .engine.cascade import cascade  # noqa: E402
from .engine.options import RequestOptions  # noqa: E402
from .engine.router import Router  # noqa: E402
from .engine.types import Answer  # noqa: E402

__all__ = ["Answer", "Config", "RequestOptions", "Router", "__version__", "cascade", "load_config"]
