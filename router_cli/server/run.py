"""Running the server: bind, say where on stderr, serve until SIGTERM or Ctrl-C, then drain.

uvicorn stops accepting on SIGTERM and waits for the requests in flight (their
workers record them in the ledger); then the worker pool is joined and the
ledger closed.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys

from ..errors import UsageError


def is_loopback(host: str) -> bool:
    """True when ``host`` (a name or an address) only reaches this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warm(router) -> None:
    """Import the SDKs and build the clients and the classifier now, not on the first request."""
    config = router.config
    for name in dict.fromkeys(m.provider for t in config.tiers for m in t.models):
        router.provider(config.providers[name])
    router.classifier(config.classifier)


def serve(router, host: str, port: int, *, no_auth: bool, threads: int = 1000) -> None:
    """Serve ``router`` on ``host``:``port`` (0: any free port) until stopped; prints the URL on stderr."""
    if no_auth and not is_loopback(host):
        raise UsageError(f"--no-auth is allowed only on a loopback address (127.0.0.1, ::1), not {host}")
    from .auth import Keys

    keys = None if no_auth else Keys(router.config.serve.keys, source=router.config.source)
    if keys is not None and not keys:
        raise UsageError(f"{router.config.source}: serve.keys: no client keys configured; add some, "
                         "or pass --no-auth on a loopback address")
    import uvicorn

    from .app import Server

    warm(router)
    # One proof per second, not one write transaction more per request; a ledger that fails
    # later is still reported when the request is recorded.
    router.ledger_proof_ttl = 1.0
    server = Server(router, keys, threads)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle's algorithm off only on sockets that say TCP, and with it
    # on, a response's headers and body (two writes) wait out the client's delayed ACK, 40 ms a request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # before the URL is printed: a client may connect at once
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    config = uvicorn.Config(server.app(), log_level="warning", access_log=False, lifespan="off",
                            timeout_keep_alive=30, backlog=2048)
    print(f"mmr serve: listening on http://{shown}:{bound} (OpenAI: http://{shown}:{bound}/v1, "
          f"Anthropic: http://{shown}:{bound})", file=sys.stderr, flush=True)
    # uvicorn drains on SIGTERM/SIGINT, then raises the signal again under the handler it found: this one
    # lets that end in a clean exit (0) once every request in flight is answered and recorded.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        server.close()
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
