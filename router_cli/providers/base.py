"""Request, response and error types shared by every provider.

Errors from any SDK are mapped to one taxonomy (:class:`ProviderError`):

========== ========== ============ ==========================================
kind       retryable  next model?  examples
========== ========== ============ ==========================================
rate_limit yes        after retries 429
overloaded yes        after retries 529, Anthropic ``overloaded_error``
server     yes        after retries other 5xx
timeout    yes        after retries client timeout
connection yes        after retries refused, reset, dropped mid-stream
malformed  yes        after retries a response that is not valid JSON / SSE
not_found  no         yes          404: the model does not exist there
permission no         yes          402/403: this key may not use this model
too_long   no         yes          400 context_length_exceeded; a local model's n_ctx
load_error no         yes          a local model that cannot load or run (no file, not GGUF)
first_token_timeout no yes         no first token within the model's limit: abandoned
bad_request no        no (fail)    400/413/422: the request itself is wrong
auth       no         no (fail)    401: the key is wrong
========== ========== ============ ==========================================
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..config import ModelSpec, ProviderSpec
from ..errors import redact

RETRYABLE_KINDS = frozenset({"rate_limit", "overloaded", "server", "timeout", "connection", "malformed"})
MODEL_FAULT_KINDS = RETRYABLE_KINDS | {"not_found", "permission", "too_long", "load_error", "first_token_timeout"}


@dataclass(frozen=True)
class Native:
    """A request in its own wire form, passed through to a provider of that protocol: messages with
    tool calls, tool results or images, and the tools offered, all as the client sent them.

    ``protocol`` is the provider type that takes it (``anthropic`` or ``openai``); ``params`` the
    request's own fields beside ``messages`` (``tools``, ``tool_choice`` ...); ``system``
    Anthropic's top-level system prompt as sent (a string or text blocks).
    """

    protocol: str
    messages: tuple = field(default=(), hash=False)
    params: dict = field(default_factory=dict, hash=False)
    system: Any = field(default=None, hash=False)


@dataclass(frozen=True)
class ChatRequest:
    """One chat call to one model: ``prompt`` is the last user turn, ``history`` the turns before it."""

    model: ModelSpec
    prompt: str
    system: str | None = None
    max_tokens: int = 1024
    temperature: float | None = None
    history: tuple[tuple[str, str], ...] = ()  # (role, text): "user" or "assistant"
    stop: tuple[str, ...] = ()
    cache_system: bool = False  # mark the system prompt for the provider's prompt cache (Anthropic)
    native: Native | None = None  # sent as the client sent it, to a provider of its protocol only

    def messages(self) -> list[dict]:
        """The conversation as chat messages (the system prompt not included)."""
        return [{"role": role, "content": text} for role, text in (*self.history, ("user", self.prompt))]

    @property
    def sent_text(self) -> str:
        """Everything sent, as one text: what a token estimate counts."""
        return "\n".join([self.system or "", *(text for _, text in self.history), self.prompt])


@dataclass(frozen=True)
class ChatResponse:
    text: str
    input_tokens: int
    output_tokens: int
    stop_reason: str | None
    duration_ms: float
    ttft_ms: float | None = None
    usage_estimated: bool = False
    # As the provider reports them: Anthropic's cache reads and writes are outside input_tokens,
    # OpenAI's cached tokens inside them; reasoning tokens are inside output_tokens.
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    # Tool calls in the provider's own form: Anthropic tool_use blocks, or OpenAI tool_calls entries.
    tool_calls: tuple = ()


class Watch:
    """A call as another thread sees it (engine/latency.py): the tokens the provider reported so
    far, the first piece of its answer (text or a tool call), and a way to cut its stream short
    once nobody waits for it any more."""

    def __init__(self, on_start=None) -> None:
        self.tokens = [0, 0, 0, 0]  # input, output, cache read, cache write, as reported so far
        self.abandoned = False
        self.on_start = on_start  # called at every piece of the answer; it may raise to end the call
        self._stream = None
        self._lock = threading.Lock()

    @property
    def reached(self) -> bool:
        """Whether the provider opened the stream: the request reached it (its input is billed)."""
        return self._stream is not None

    def started(self) -> None:
        """A piece of the answer came (text, or a tool call's): the call has started answering."""
        if self.on_start is not None:
            self.on_start()

    def opened(self, stream) -> None:
        """The provider opened ``stream``: a call abandoned meanwhile is cut at once."""
        with self._lock:
            self._stream = stream
            if self.abandoned:
                _cut(stream)

    def abandon(self) -> None:
        """Nobody waits for this call: shut its connection, so the thread reading it ends now."""
        with self._lock:
            self.abandoned = True
            if self._stream is not None:
                _cut(self._stream)


def _cut(stream) -> None:
    # Closing a socket does not wake a thread blocked reading it; shutting it down does.
    network = getattr(getattr(stream, "response", None), "extensions", {}).get("network_stream")
    sock = network.get_extra_info("socket") if network is not None else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class ProviderError(Exception):
    """A failed call, classified. ``usage`` holds tokens billed before the failure."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        duration_ms: float = 0.0,
        usage_estimated: bool = False,
        reached: bool = True,
    ):
        super().__init__(message)
        self.reached = reached  # False: no connection was made (refused, DNS, unreachable): maybe our own network
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.duration_ms = duration_ms
        self.usage_estimated = usage_estimated
        self.cache_tokens = (0, 0)  # cache reads and writes billed before the failure

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS

    @property
    def model_fault(self) -> bool:
        """True when another model may succeed where this one failed."""
        return self.kind in MODEL_FAULT_KINDS

    def __str__(self) -> str:
        status = f"HTTP {self.status} " if self.status else ""
        return f"{status}{self.kind}: {self.message}"


class OutputFailed(Exception):
    """Writing streamed text failed (a closed pipe): not the provider's fault, never retried."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error
        self.usage = (0, 0, False)  # tokens billed for the stream so far, set by the provider
        self.cache_tokens = (0, 0)  # and the cache reads and writes among them


def kind_for_status(status: int, error_type: str | None = None) -> str:
    if error_type == "overloaded_error" or status == 529:
        return "overloaded"
    if status == 429:
        return "rate_limit"
    if status == 401:
        return "auth"
    if status in (402, 403):
        return "permission"
    if status in (404, 413):  # 413: too long for this model; one with a larger context may take it
        return "not_found"
    if status in (408, 409) or status >= 500:
        return "server"
    return "bad_request"


def parse_retry_after(headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds only)."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # an HTTP date: rare from LLM APIs; fall back to backoff
        if seconds >= 0:
            return seconds
    return None


def elapsed_ms(start: float) -> float:
    """Milliseconds since ``start`` (a ``time.perf_counter()`` reading)."""
    return (time.perf_counter() - start) * 1000


class Provider:
    """One provider endpoint. Subclasses implement :meth:`complete`."""

    def __init__(self, spec: ProviderSpec, api_key: str | None):
        self.spec = spec
        self._api_key = api_key
        self._client: Any = None

    def client(self) -> Any:
        """The SDK client, built on first use and shared by every thread (None for a provider without one)."""
        return None

    def complete(self, request: ChatRequest, on_text=None, watch: Watch | None = None) -> ChatResponse:
        """Make the call; stream text chunks to ``on_text`` when it is given.

        ``watch``, when given, sees the tokens reported so far and the opened stream (to cut it).
        Raises :class:`ProviderError` for every failure of the call.
        """
        raise NotImplementedError

    def failure(self, sdk, e: Exception, request: ChatRequest, reported: list[int], parts: list[str], start: float) -> Exception:
        """What to raise for ``e``, carrying the tokens billed before it (``reported`` by the
        provider, or estimated from the ``parts`` of text already streamed)."""
        usage = billed_before_failure(request, reported[:2], parts)
        cache = (reported[2], reported[3]) if len(reported) >= 4 else (0, 0)
        if isinstance(e, OutputFailed):
            e.usage, e.cache_tokens = usage, cache
            return e
        if isinstance(e, ProviderError):
            e.input_tokens, e.output_tokens, e.usage_estimated = usage
            e.cache_tokens = cache
            return e
        error = map_sdk_error(sdk, e, self._api_key, elapsed_ms(start), usage)
        error.cache_tokens = cache
        return error


def unfinished_stream(stream, events: int, message: str, start: float) -> ProviderError:
    """The error for a streamed answer that ended early: ``connection`` when it broke off, but
    ``malformed`` when the server answered with something that is not an event stream at all."""
    content_type = str(getattr(stream, "response", None) and stream.response.headers.get("content-type") or "")
    if events == 0 and not content_type.startswith("text/event-stream"):
        return ProviderError("malformed", f"the answer is not an event stream (content-type {content_type or 'none'})",
                             duration_ms=elapsed_ms(start))
    return ProviderError("connection", message, duration_ms=elapsed_ms(start))


def billed_before_failure(request: ChatRequest, reported: list[int], parts: list[str]) -> tuple[int, int, bool]:
    """Tokens to charge for a call that failed after text arrived: what the
    provider reported, or an estimate where it reported less than was sent."""
    input_tokens, output_tokens = reported
    if not parts:
        return input_tokens, output_tokens, False
    from ..pricing import estimate_tokens

    estimated_in = estimate_tokens(request.sent_text)
    estimated_out = estimate_tokens("".join(parts))
    estimated = input_tokens == 0 or output_tokens < estimated_out
    return input_tokens or estimated_in, max(output_tokens, estimated_out), estimated


def map_sdk_error(sdk, exc: BaseException, secret: str | None, duration_ms: float, usage=(0, 0, False)) -> ProviderError:
    """Classify an exception raised by the ``anthropic`` or ``openai`` SDK (same shapes)."""
    import json

    import httpx2

    def make(kind, message, **kw):
        return ProviderError(
            kind, redact(message, secret), input_tokens=usage[0], output_tokens=usage[1], usage_estimated=usage[2],
            duration_ms=duration_ms, **kw,
        )

    if isinstance(exc, sdk.APIStatusError):
        body: dict = exc.body if isinstance(exc.body, dict) else {}
        # Anthropic's SDK keeps the whole body; OpenAI's keeps only its "error" object.
        error: dict = body["error"] if isinstance(body.get("error"), dict) else body
        detail = error.get("message") or str(exc)
        kind = kind_for_status(exc.status_code, error.get("type"))
        if kind == "bad_request" and error.get("code") == "context_length_exceeded":
            kind = "too_long"  # OpenAI and llama.cpp's server: a model with a larger context may take it
        return make(kind, detail, status=exc.status_code, retry_after=parse_retry_after(exc.response.headers))
    if isinstance(exc, (sdk.APITimeoutError, httpx2.TimeoutException)):
        return make("timeout", "no response before the timeout")
    if isinstance(exc, sdk.APIResponseValidationError):
        return make("malformed", f"unexpected response: {exc}")
    if isinstance(exc, (sdk.APIConnectionError, httpx2.TransportError)):
        cause = exc.__cause__ or exc
        return make("connection", f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__,
                    reached=not isinstance(cause, httpx2.ConnectError))
    if isinstance(exc, TypeError):
        # The SDK refused our arguments: a request no model of this SDK would take.
        return make("bad_request", f"the SDK rejected the call: {exc}")
    if isinstance(exc, (json.JSONDecodeError, ValueError, KeyError, AttributeError)):
        return make("malformed", f"could not parse the response ({type(exc).__name__}: {exc})")
    return make("server", f"{type(exc).__name__}: {exc}")
