"""The ASGI app of ``mmr serve`` (Starlette): OpenAI- and Anthropic-shaped endpoints over one router.

    POST /v1/chat/completions   OpenAI Chat Completions (streaming or not)
    POST /v1/messages           Anthropic Messages (streaming or not)
    GET  /v1/models             auto, cascade, the tiers and the configured models
    GET  /healthz               ok (open to all: a load balancer's probe)
    GET  /metrics               Prometheus text (a client key needed when keys are configured)
    GET  /dashboard             the routing dashboard, refreshed live from /dashboard/data (server/dashboard.py)

Each chat request runs the engine in a worker thread (server/routing.py): its
attempts go to the ledger with ``command = serve``; its bill comes back in the
``x-mmr-*`` headers (a stream's in a final SSE comment).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ..engine.options import parse_max_cost
from ..errors import (
    EXIT_REQUEST_REJECTED, AllAttemptsFailed, BudgetExceeded, LedgerError, MmrError, UsageError, redact,
)
from ..ids import new_id
from ..pricing import decimal_str
from .auth import Client, Keys
from .dashboard import Dashboard
from .metrics import Metrics
from .protocols import ANTHROPIC, OPENAI, Asked, BadRequest, StreamWriter, answer_body, error_body, parse
from .routing import BrokeOff, ClientGone, Meaning, Sessions, Worker, check_native, meaning, options_for
from .workers import Workers


class Server:
    """The state the endpoints share: the router, the worker pool, keys, sessions, metrics."""

    def __init__(self, router, keys: Keys | None, threads: int = 1000):
        self.router = router
        self.config = router.config
        self.keys = keys  # None: --no-auth
        self.pool = Workers(limit=threads, name="mmr-serve")  # a thread per request in flight; idle ones end
        self.sessions = Sessions(self.config.serve.sessions)
        self.metrics = Metrics()
        self.dashboard = Dashboard(self)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/chat/completions", self.openai, methods=["POST"]),
            Route("/v1/messages", self.anthropic, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/dashboard", self.dashboard.page, methods=["GET"]),
            Route("/dashboard/data", self.dashboard.data, methods=["GET"]),
        ])

    def close(self) -> None:
        """After the last request: wait for the workers (their ledger writes), then close the ledger."""
        self.pool.shutdown(wait=True)
        self.router.close()

    # ------------------------------------------------------------ endpoints

    async def openai(self, request: Request) -> Response:
        return await self.chat(request, OPENAI)

    async def anthropic(self, request: Request) -> Response:
        return await self.chat(request, ANTHROPIC)

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def models(self, request: Request) -> Response:
        if self.keys is not None and self.keys.client(request.headers) is None:
            return _error(OPENAI, 401, "a valid API key is required")
        names = ["auto", "mmr", "cascade", *self.config.tier_names,
                 *dict.fromkeys(m.model for t in self.config.tiers for m in t.models)]
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "mmr"} for name in names]})

    async def prometheus(self, request: Request) -> Response:
        if self.keys is not None and self.keys.client(request.headers) is None:
            return _error(OPENAI, 401, "a valid API key is required")
        loop = asyncio.get_running_loop()
        breakers = await loop.run_in_executor(self.pool, self._breaker_states)
        return PlainTextResponse(self.metrics.text(breakers), media_type="text/plain; version=0.0.4")

    def _breaker_states(self) -> list[dict]:
        breakers = self.router.breakers()
        try:
            return breakers.states() if breakers is not None else []
        except MmrError:
            return []

    async def chat(self, request: Request, protocol: str) -> Response:
        started = time.perf_counter()
        self.metrics.started()
        status, answer, attempts, streaming = 500, None, (), False
        try:
            asked, client, max_cost = await self._read(request, protocol)
            what = meaning(self.config, asked.model)
            if asked.native is not None:
                check_native(self.config, what, asked)
            session = request.headers.get("x-mmr-session") or (
                asked.user if protocol == OPENAI and self.config.serve.session_from_user else None)
            user = client.user if client is not None and self.keys is not None else asked.user
            team = client.team if client is not None else None
            options = options_for(asked, what, user=user, team=team, max_cost=max_cost,
                                  pinned=self.sessions.get(session) if session else None)
            worker = Worker(asyncio.get_running_loop())
            self.pool.submit(worker.run, lambda: self._produce(what, asked, options, worker))
            kind, value = await worker.events.get()
            if kind == "error":
                raise value
            if not asked.stream:
                answer, status = value, 200
                self._remember(session, what, answer)
                return JSONResponse(answer_body(asked, answer.request_id, answer.final.model, answer.text,
                                                answer.final.stop_reason, answer.final.usage, answer.final.tool_calls),
                                    headers=bill(answer))
            status, streaming = 200, True  # the stream counts itself when it ends
            return StreamingResponse(self._stream(asked, worker, (kind, value), session, what, started),
                                     media_type="text/event-stream",
                                     headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
        except BaseException as e:
            status, response = self._failure(protocol, e)
            attempts = getattr(e, "attempts", None) or ()
            return response
        finally:
            if not streaming:
                self.metrics.finished(protocol, time.perf_counter() - started, status, answer, attempts)

    # ------------------------------------------------------------ parts of a request

    async def _read(self, request: Request, protocol: str) -> tuple[Asked, Client | None, Any]:
        """The request's body (within ``serve.max_body_bytes``), its key's client, and ``x-mmr-max-cost``."""
        client = None
        if self.keys is not None:
            client = self.keys.client(request.headers)
            if client is None:
                raise BadRequest("a valid API key is required (Authorization: Bearer or x-api-key)", 401)
        limit = self.config.serve.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BadRequest(f"the request body is over {limit} bytes (serve.max_body_bytes)", 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(f"the request body is over {limit} bytes (serve.max_body_bytes)", 413)
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks))
        except ValueError:
            raise BadRequest("the request body is not JSON") from None
        try:
            max_cost = parse_max_cost(request.headers.get("x-mmr-max-cost"))
        except UsageError as e:
            raise BadRequest(f"x-mmr-max-cost: {e.message.partition(': ')[2] or e.message}") from None
        return parse(protocol, body), client, max_cost

    def _produce(self, what: Meaning, asked: Asked, options, worker: Worker):
        """The engine's answer (run in a worker thread)."""
        if what.kind == "cascade":
            from ..engine.cascade import cascade

            return cascade(self.router, asked.prompt, options, command="serve")
        on_text = worker.on_text if asked.stream else None
        return self.router.ask(asked.prompt, options, on_text=on_text,
                               on_restart=worker.on_restart if asked.stream else None, command="serve")

    def _remember(self, session: str | None, what: Meaning, answer) -> None:
        """After an answer: keep the session's model; a ledger that could not be written is told on stderr."""
        if answer.ledger_error is not None:
            print(f"mmr serve: request {answer.request_id} was answered but not recorded: {answer.ledger_error}",
                  file=sys.stderr, flush=True)
        if session and what.kind == "auto" and answer.final.status in ("ok", "cached"):
            self.sessions.keep(session, answer.final.tier, answer.final.model)

    async def _stream(self, asked: Asked, worker: Worker, first: tuple[str, Any], session: str | None,
                      what: Meaning, started: float):
        """The SSE body: text as it comes, then the end (or an error event); a client gone stops the worker."""
        writer = StreamWriter(asked, new_id(), asked.model)  # the request's own id comes in the trailer
        status, answer, attempts = 200, None, ()
        event = first
        try:
            yield writer.start()
            while True:
                kind, value = event
                if kind == "text":
                    yield writer.text(value)
                elif kind == "done":
                    answer = value
                    if not worker.sent_text and answer.text:  # a cascade's or the cache's whole answer
                        yield writer.text(answer.text)
                    self._remember(session, what, answer)
                    final = answer.final
                    writer.model = final.model
                    trailer = " ".join(f"{k}={v}" for k, v in bill(answer).items())
                    yield writer.end(final.stop_reason, final.usage, trailer, final.tool_calls)
                    return
                else:
                    status, _ = self._failure(asked.protocol, value)
                    attempts = getattr(value, "attempts", None) or ()
                    yield writer.error(status, _message(value))
                    return
                event = await worker.events.get()
        except BaseException:
            status = 499  # the client went away: the worker stops at its next chunk and records the bill
            worker.gone.set()
            raise
        finally:
            self.metrics.finished(asked.protocol, time.perf_counter() - started, status, answer, attempts)

    def _failure(self, protocol: str, e: BaseException) -> tuple[int, Response]:
        """The HTTP status and error response for ``e``."""
        if isinstance(e, BadRequest):
            return e.status, _error(protocol, e.status, e.message, e.code)
        status = _status(e)
        if isinstance(e, LedgerError):  # its host and paths are the operator's to see, not the client's
            print(f"mmr serve: {redact(str(e), None)}", file=sys.stderr, flush=True)
            return status, _error(protocol, status, LEDGER_FAILED)
        if status == 500 and not isinstance(e, MmrError):
            if isinstance(e, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise e
            print(f"mmr serve: internal error: {type(e).__name__}: {redact(str(e), None)}", file=sys.stderr, flush=True)
        return status, _error(protocol, status, _message(e))


LEDGER_FAILED = "the ledger could not be used; the request was not answered (details in the server's log)"


def bill(answer) -> dict[str, str]:
    """The ``x-mmr-*`` headers of an answer: who answered and what it cost."""
    return {
        "x-mmr-request-id": answer.request_id,
        "x-mmr-tier": answer.final.tier,
        "x-mmr-model": f"{answer.final.provider}/{answer.final.model}",
        "x-mmr-cost-usd": decimal_str(answer.cost),
        "x-mmr-baseline-usd": decimal_str(answer.baseline_cost),
    }


def _status(e: BaseException) -> int:
    if isinstance(e, UsageError):
        return 400
    if isinstance(e, BudgetExceeded):
        return 402
    if isinstance(e, AllAttemptsFailed) and e.exit_code == EXIT_REQUEST_REJECTED:
        return 400  # every provider would reject it: the client's to fix
    if isinstance(e, LedgerError):
        return 500
    if isinstance(e, (MmrError, BrokeOff, ClientGone)):
        return 502
    return 500


def _message(e: BaseException) -> str:
    if isinstance(e, LedgerError):
        return LEDGER_FAILED
    if isinstance(e, (MmrError, BadRequest, BrokeOff)):
        return redact(str(e), None)
    return "internal error"


def _error(protocol: str, status: int, message: str, code: str | None = None) -> Response:
    return JSONResponse(error_body(protocol, status, message, code), status_code=status)
