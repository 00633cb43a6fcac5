"""``mmr serve``: the router as an OpenAI- and Anthropic-compatible HTTP endpoint."""

from __future__ import annotations

from typing import Annotated

import typer

from ..options import ConfigOption, DbOption, VerboseOption

HostOption = Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")]
PortOption = Annotated[int, typer.Option("--port", help="Port to listen on; 0 picks a free one (printed on stderr).")]
NoAuthOption = Annotated[bool, typer.Option("--no-auth", help="Accept requests without a client key (loopback only).")]


def serve(
    host: HostOption = "127.0.0.1",
    port: PortOption = 8080,
    no_auth: NoAuthOption = False,
    config: ConfigOption = None,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Serve the router over HTTP: POST /v1/chat/completions (OpenAI) and /v1/messages (Anthropic).

    The request's model field: auto (or mmr), cascade, a tier name or a configured model id.
    Client keys come from the config's serve.keys; every attempt is in the ledger (command serve).

    Example: mmr serve --port 8080 --no-auth, then point an OpenAI SDK at base_url http://127.0.0.1:8080/v1
    """
    if not 0 <= port <= 65535:
        from ...errors import UsageError

        raise UsageError(f"--port must be from 0 to 65535, got {port}")
    from ...engine.router import Router
    from ...render import text as render
    from ...server.run import serve as run
    from ..common import ledger_target, load_config

    cfg = load_config(config)
    router = Router(cfg, ledger_target(db, cfg=cfg), on_note=render.note if verbose else None)
    router.check_ledger()
    run(router, host, port, no_auth=no_auth)
