"""A local provider server speaking the Anthropic Messages API and OpenAI Chat
Completions, scriptable per model, with fault injection.

Tests start it on 127.0.0.1 (port 0) and point the real ``anthropic`` and
``openai`` SDKs at it through ``base_url``:

    server = ProviderServer().start()
    server.script("claude-haiku-4-5", error(429, retry_after=0), reply("hi"))
    ...
    server.stop()

Anthropic clients use ``server.url``; OpenAI clients use ``server.url + "/v1"``.
Without a script a model answers ``reply_text(prompt)``. Token counts are
whitespace-separated words (``count_tokens``), so tests can compute exact costs.

Usage carries every field the real APIs send (cached, cache-write and reasoning
tokens, in streams too), and prompt caching works like theirs: an Anthropic
prefix marked with ``cache_control`` (at least 1,024 tokens, 2,048 for Haiku
models) is written on first use and read by later calls with the same prefix;
an OpenAI prompt of 1,024 tokens or more reports the part it shares with an
earlier prompt to the same model as ``cached_tokens`` (in steps of 128).

Run standalone for benchmarks or manual tries:
``python -m tests.provider_server --port 8765 --latency 0.05``.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def count_tokens(text: str) -> int:
    """The server's tokenizer: whitespace-separated words, at least 1."""
    return max(1, len(text.split()))


def fake_embedding(text: str, dims: int = 64) -> list[float]:
    """A deterministic bag-of-words vector: texts sharing words point the same way."""
    import hashlib

    vector = [0.0] * dims
    for word in text.lower().split():
        digest = hashlib.sha256(word.encode()).digest()
        vector[digest[0] % dims] += 1.0 if digest[1] % 2 else -1.0
    return vector


def reply_text(prompt: str) -> str:
    """The default answer: deterministic and easy to assert on."""
    return f"Answer to: {prompt}"


@dataclass
class Step:
    """What the server does for one request to a model."""

    action: str  # reply | error | hang | malformed | drop
    text: str | None = None
    status: int = 200
    error_type: str | None = None
    message: str = ""
    retry_after: float | None = None
    seconds: float = 0.0
    input_tokens: int | None = None
    output_tokens: int | None = None
    stop_reason: str | None = None
    after_chunks: int = 1
    extra: dict = field(default_factory=dict)
    cache_read: int | None = None
    cache_write: int | None = None
    reasoning: int = 0


def reply(text: str | None = None, *, input_tokens=None, output_tokens=None, stop_reason=None, delay: float = 0.0,
          usage: str = "full", cache_read: int | None = None, cache_write: int | None = None,
          reasoning: int = 0, chunk_delay: float = 0.0, first_token_delay: float = 0.0) -> Step:
    """An answer. ``usage="null"`` sends OpenAI usage with null counts, ``"absent"`` none at all;
    ``chunk_delay`` seconds pass between streamed events (a slow stream); ``first_token_delay``
    seconds pass between a stream's opening events and its first text (a model slow to start:
    the HTTP answer has begun, no token has come), or before a non-streamed body.

    Counts are as the API reports them: ``input_tokens`` is OpenAI's ``prompt_tokens`` (cached
    ones included) or Anthropic's ``input_tokens`` (cache reads and writes not included);
    ``output_tokens`` includes the ``reasoning`` tokens. ``cache_read`` / ``cache_write`` given
    replace what the server's own prompt cache would report."""
    return Step("reply", text=text, input_tokens=input_tokens, output_tokens=output_tokens, stop_reason=stop_reason,
                seconds=delay, extra={"usage": usage, "chunk_delay": chunk_delay, "first_token_delay": first_token_delay},
                cache_read=cache_read,
                cache_write=cache_write, reasoning=reasoning)


def tool_call(name: str, arguments: dict, text: str = "", *, call_id: str = "call_1", cut: bool = False) -> Step:
    """An answer that calls the tool ``name`` with ``arguments`` (after ``text``, if any): Anthropic's
    tool_use block and stop reason ``tool_use``, or OpenAI's tool_calls and ``tool_calls``; streamed,
    the arguments' JSON comes in three pieces. ``cut``: the output limit is reached after two of them
    (stop reason ``max_tokens`` / ``length``)."""
    return Step("reply", text=text, extra={"tool": {"id": call_id, "name": name, "arguments": arguments, "cut": cut}})


def embeddings(*, drop_last: int = 0) -> Step:
    """Embeddings for every input but the last ``drop_last`` (a server that loses some)."""
    return Step("reply", extra={"drop_last": drop_last})


def error(status: int, *, error_type: str | None = None, message: str | None = None, retry_after: float | None = None) -> Step:
    return Step("error", status=status, error_type=error_type, message=message or f"injected {status}", retry_after=retry_after)


def hang(seconds: float = 30.0) -> Step:
    """Accept the request and send nothing for ``seconds`` (client times out)."""
    return Step("hang", seconds=seconds)


def malformed() -> Step:
    """HTTP 200 whose body is not valid JSON (or SSE)."""
    return Step("malformed")


def drop(after_chunks: int = 1) -> Step:
    """Close the connection mid-response: after ``after_chunks`` text chunks when streaming."""
    return Step("drop", after_chunks=after_chunks)


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    500: "api_error", 529: "overloaded_error",
}


class ProviderServer:
    """The server and its script; thread-safe."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0, record: bool = True,
                 jitter: float = 0.0):
        self.host = host
        self.port = port
        self.latency = latency
        self.jitter = jitter  # each request's latency is uniform in latency +- jitter (a seeded draw)
        self._rng = random.Random(0)
        self.record = record  # False: keep no log of requests (long benchmark runs)
        self.api_key: str | None = None  # when set, other keys get 401
        self.reasoning_models: set[str] = set()  # these reject max_tokens and temperature like OpenAI's o-series
        self.requests: list[dict] = []
        self._scripts: dict[str, collections.deque[Step]] = collections.defaultdict(collections.deque)
        self._always: dict[str, Step] = {}
        self._by_prompt: dict[str, collections.deque[Step]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()
        self._prefixes: set[tuple[str, str]] = set()  # (model, prefix) written to the Anthropic-shape cache
        self._seen: dict[str, list[list[str]]] = collections.defaultdict(list)  # OpenAI-shape prompts of 1,024+ tokens
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting
    def script(self, model: str, *steps: Step) -> None:
        """Queue steps for ``model``, consumed one per request."""
        with self._lock:
            self._scripts[model].extend(steps)

    def script_prompt(self, prompt: str, *steps: Step) -> None:
        """Queue steps for requests whose user prompt is ``prompt``, whatever the model (before model scripts)."""
        with self._lock:
            self._by_prompt[prompt].extend(steps)

    def always(self, model: str, step: Step | None) -> None:
        """Answer every request to ``model`` with ``step`` (None clears it)."""
        with self._lock:
            if step is None:
                self._always.pop(model, None)
            else:
                self._always[model] = step

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self._always.clear()
            self._by_prompt.clear()
            self.requests.clear()
            self.api_key = None
            self.reasoning_models.clear()
            self._prefixes.clear()
            self._seen.clear()

    def anthropic_cache(self, model: str, prefix: str) -> tuple[int, int]:
        """(cache read, cache write) tokens for a marked ``prefix``: written once, then read."""
        tokens = count_tokens(prefix)
        if tokens < (2048 if "haiku" in model else 1024):
            return 0, 0  # below the minimum the API caches: marked, but not cached
        with self._lock:
            if (model, prefix) in self._prefixes:
                return tokens, 0
            self._prefixes.add((model, prefix))
        return 0, tokens

    def openai_cache(self, model: str, words: list[str]) -> int:
        """Cached tokens of an OpenAI-shape prompt: its longest prefix shared with an earlier
        prompt of 1,024+ tokens to ``model``, in 1,024 + 128k tokens, else 0."""
        if len(words) < 1024:
            return 0
        with self._lock:
            shared = 0
            for seen in self._seen[model]:
                n = 0
                for a, b in zip(seen, words):
                    if a != b:
                        break
                    n += 1
                shared = max(shared, n)
            self._seen[model].append(words)
        return 0 if shared < 1024 else 1024 + (shared - 1024) // 128 * 128

    def calls(self, model: str | None = None) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if model is None or r["model"] == model]

    def _next_step(self, model: str, prompt: str = "") -> Step:
        with self._lock:
            queue = self._by_prompt.get(prompt) or self._scripts.get(model)
            if queue:
                return queue.popleft()
            return self._always.get(model) or Step("reply")

    # -- lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ProviderServer":
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = _Server((self.host, self.port), handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="provider-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 resets connections when a batch opens 16 at once

    def handle_error(self, request, client_address):
        # Clients that hang up mid-response are part of the tests, not server errors.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle on, the body waits for the
    # client's delayed ACK (40 ms on Linux), which would swamp a 50 ms latency setting.
    disable_nagle_algorithm = True
    server_state: ProviderServer

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        pass

    def do_POST(self):  # noqa: N802 - http.server's naming
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/").endswith("/v1/messages"):
            protocol = "anthropic"
        elif self.path.rstrip("/").endswith("/chat/completions"):
            protocol = "openai"
        elif self.path.rstrip("/").endswith("/embeddings"):
            protocol = "embeddings"
        else:
            return self._json(404, {"error": {"type": "not_found_error", "message": f"no route {self.path}"}})
        try:
            body = json.loads(raw)
        except ValueError:
            return self._error(protocol, 400, None, "request body is not JSON")
        state = self.server_state
        model = body.get("model", "")
        prompt = _user_prompt(body)
        record = {"protocol": protocol, "path": self.path, "model": model, "body": body, "prompt": prompt,
                  "headers": {k.lower(): v for k, v in self.headers.items()}, "time": time.monotonic()}
        if state.record:
            with state._lock:
                state.requests.append(record)
        if state.latency:
            time.sleep(state.latency + (state._rng.uniform(-state.jitter, state.jitter) if state.jitter else 0.0))
        # Anthropic's SDK 2.x sends the key as a bearer token; the API prefers x-api-key when both are there.
        bearer = (self.headers.get("authorization") or "").removeprefix("Bearer ")
        key = (self.headers.get("x-api-key") or bearer) if protocol == "anthropic" else bearer
        if state.api_key is not None and key != state.api_key:
            return self._error(protocol, 401, None, "invalid x-api-key")
        if protocol == "anthropic":
            for bad in ("temperature", "top_p", "top_k"):  # API version 2026-10-21 takes no sampling parameters
                if bad in body:
                    return self._error(protocol, 400, None, f"{bad}: Extra inputs are not permitted")
        if protocol == "openai" and model in state.reasoning_models:
            for bad in ("max_tokens", "temperature"):
                if bad in body:
                    return self._error(protocol, 400, None, f"Unsupported parameter: '{bad}' is not supported with this model.")
        step = state._next_step(model, prompt)
        if step.action == "error":
            return self._error(protocol, step.status, step.error_type, step.message, step.retry_after)
        if step.action == "hang":
            time.sleep(step.seconds)
            self.close_connection = True
            return None
        if step.action == "malformed":
            return self._raw(200, b'{"id": "broken", "content": [', "application/json")
        if step.seconds:
            time.sleep(step.seconds)
        if not body.get("stream") and step.extra.get("first_token_delay"):
            time.sleep(step.extra["first_token_delay"])
        if protocol == "embeddings":
            return self._embeddings(body, step)
        if protocol == "anthropic":
            return self._anthropic(body, step)
        return self._openai(body, step)

    # -- answers
    def _answer(self, body: dict, step: Step, protocol: str):
        messages = body.get("messages") or []
        prompt = _user_prompt(body)
        system_parts = [_text(body.get("system"))] + [m.get("content", "") for m in messages if m.get("role") in ("system", "developer")]
        system = " ".join(p for p in system_parts if isinstance(p, str) and p)
        text = step.text if step.text is not None else reply_text(prompt) + _seen_parts(messages)
        limit = body.get("max_tokens") or body.get("max_completion_tokens") or 10**9
        words = text.split(" ")
        truncated = len(text.split()) > limit
        if truncated:
            text = " ".join(words[:limit])
        natural = "end_turn" if protocol == "anthropic" else "stop"
        cut = "max_tokens" if protocol == "anthropic" else "length"
        stop = step.stop_reason or (cut if truncated else natural)
        if step.extra.get("tool") and not truncated:
            stop = cut if step.extra["tool"]["cut"] else "tool_use" if protocol == "anthropic" else "tool_calls"
        input_tokens = step.input_tokens if step.input_tokens is not None else count_tokens(f"{system} {prompt}")
        said = f"{text} {json.dumps(step.extra['tool']['arguments'])}" if step.extra.get("tool") else text
        output_tokens = step.output_tokens if step.output_tokens is not None else (count_tokens(said) if said.strip() else 0)
        return text, stop, input_tokens, output_tokens

    def _anthropic(self, body: dict, step: Step):
        text, stop, input_tokens, output_tokens = self._answer(body, step, "anthropic")
        read, write = 0, 0
        prefix = _marked_prefix(body)
        if prefix is not None:
            read, write = self.server_state.anthropic_cache(body["model"], prefix)
            if step.input_tokens is None:
                input_tokens -= read + write  # the API counts cache reads and writes apart from input_tokens
        read = read if step.cache_read is None else step.cache_read
        write = write if step.cache_write is None else step.cache_write
        usage = {"input_tokens": input_tokens, "output_tokens": output_tokens, "cache_creation_input_tokens": write,
                 "cache_read_input_tokens": read,
                 "cache_creation": {"ephemeral_5m_input_tokens": write, "ephemeral_1h_input_tokens": 0},
                 "server_tool_use": None, "service_tier": "standard"}
        message_id = f"msg_{uuid.uuid4().hex[:20]}"
        tool = step.extra.get("tool")
        if not body.get("stream"):
            if step.action == "drop":
                return self._drop_unfinished_body()
            return self._json(200, {
                "id": message_id, "type": "message", "role": "assistant", "model": body["model"],
                "content": [{"type": "text", "text": text}] * bool(text or not tool) + ([
                    {"type": "tool_use", "id": tool["id"], "name": tool["name"], "input": tool["arguments"]}] if tool else []),
                "stop_reason": stop, "stop_sequence": None, "usage": usage,
            })
        events = [("message_start", {"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": body["model"], "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"})]
        chunks = _chunks(text)
        for i, piece in enumerate(chunks):
            if step.action == "drop" and i == step.after_chunks:
                return self._sse(events, drop=True)
            events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}))
        if step.action == "drop":
            return self._sse(events, drop=True)
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        if tool:
            events.append(("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
                "type": "tool_use", "id": tool["id"], "name": tool["name"], "input": {}}}))
            events += [("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
                "type": "input_json_delta", "partial_json": piece}}) for piece in _pieces(tool)]
            events.append(("content_block_stop", {"type": "content_block_stop", "index": 1}))
        events += [
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": output_tokens}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        return self._sse(events, pause=step.extra.get("chunk_delay", 0.0), hold=(3, step.extra.get("first_token_delay", 0.0)))

    def _openai(self, body: dict, step: Step):
        text, stop, input_tokens, output_tokens = self._answer(body, step, "openai")
        if step.output_tokens is None:
            output_tokens += step.reasoning  # completion_tokens include the reasoning tokens
        words = " ".join(str(m.get("content", "")) for m in body.get("messages") or []).split()
        cached = min(input_tokens, self.server_state.openai_cache(body["model"], words)) if step.cache_read is None else step.cache_read
        tool = step.extra.get("tool")
        base = {"id": f"chatcmpl-{uuid.uuid4().hex[:20]}", "created": int(time.time()), "model": body["model"]}
        usage: dict | None = {
            "prompt_tokens": input_tokens, "completion_tokens": output_tokens, "total_tokens": input_tokens + output_tokens,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": step.reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
        if step.extra.get("usage") == "null":
            usage = {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None}
        elif step.extra.get("usage") == "absent":
            usage = None
        if not body.get("stream"):
            if step.action == "drop":
                return self._drop_unfinished_body()
            message: dict = {"role": "assistant", "content": text or (None if tool else "")}
            if tool:
                message["tool_calls"] = [{"id": tool["id"], "type": "function", "function": {
                    "name": tool["name"], "arguments": json.dumps(tool["arguments"])}}]
            return self._json(200, {**base, "object": "chat.completion", "choices": [
                {"index": 0, "message": message, "finish_reason": stop, "logprobs": None}], "usage": usage})
        chunk = {**base, "object": "chat.completion.chunk"}
        events = [(None, {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})]
        for i, piece in enumerate(_chunks(text)):
            if step.action == "drop" and i == step.after_chunks:
                return self._sse(events, drop=True)
            events.append((None, {**chunk, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}))
        if step.action == "drop":
            return self._sse(events, drop=True)
        if tool:
            events.append((None, {**chunk, "choices": [{"index": 0, "delta": {"tool_calls": [{
                "index": 0, "id": tool["id"], "type": "function", "function": {"name": tool["name"], "arguments": ""}}]},
                "finish_reason": None}]}))
            events += [(None, {**chunk, "choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": piece}}]}, "finish_reason": None}]})
                for piece in _pieces(tool)]
        events.append((None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": stop}]}))
        if usage is not None and (body.get("stream_options") or {}).get("include_usage"):
            events.append((None, {**chunk, "choices": [], "usage": usage}))
        events.append((None, "[DONE]"))
        return self._sse(events, pause=step.extra.get("chunk_delay", 0.0), hold=(1, step.extra.get("first_token_delay", 0.0)))

    def _embeddings(self, body: dict, step: Step):
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        texts = texts[: len(texts) - step.extra.get("drop_last", 0)]
        data = [{"object": "embedding", "index": i, "embedding": fake_embedding(t)} for i, t in enumerate(texts)]
        tokens = sum(count_tokens(t) for t in texts)
        return self._json(200, {"object": "list", "data": data, "model": body.get("model"),
                                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    # -- wire helpers
    def _error(self, protocol: str, status: int, error_type: str | None, message: str, retry_after: float | None = None):
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        if protocol == "anthropic":
            payload = {"type": "error", "error": {"type": error_type or _ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": message}}
        else:
            payload = {"error": {"message": message, "type": error_type or "server_error", "param": None, "code": None}}
        return self._json(status, payload, headers)

    def _json(self, status: int, payload: dict, headers: dict | None = None):
        return self._raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _raw(self, status: int, data: bytes, content_type: str, headers: dict | None = None):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _sse(self, events: list, drop: bool = False, pause: float = 0.0, hold: tuple[int, float] = (0, 0.0)):
        """Send ``events``; ``hold``: (index, seconds) to wait before that event (the first text's)."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for i, (name, data) in enumerate(events):
            if pause:
                time.sleep(pause)
            if hold[1] and i == hold[0]:
                time.sleep(hold[1])
            payload = data if isinstance(data, str) else json.dumps(data)
            frame = (f"event: {name}\n" if name else "") + f"data: {payload}\n\n"
            self._chunk(frame.encode())
        if drop:
            return self._abort()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: bytes):
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _drop_unfinished_body(self):
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "1000")
        self.end_headers()
        self.wfile.write(b'{"id": "msg_')
        self.wfile.flush()
        return self._abort()

    def _abort(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _user_prompt(body: dict) -> str:
    messages = body.get("messages") or []
    return " ".join(filter(None, (_text(m.get("content")) for m in messages if m.get("role") == "user")))


def _text(content) -> str:
    """A system prompt or message content as text: a string, or the texts of its blocks."""
    if isinstance(content, list):
        return " ".join(b["text"] for b in content if isinstance(b, dict) and b.get("text"))
    return content if isinstance(content, str) else ""


def _marked_prefix(body: dict) -> str | None:
    """The text up to the last block marked with ``cache_control`` (system blocks, then the
    messages' content blocks), or None when nothing is marked."""
    segments: list[tuple[str, bool]] = []
    for content in [body.get("system")] + [m.get("content") for m in body.get("messages") or []]:
        if isinstance(content, list):
            segments += [(b.get("text", ""), "cache_control" in b) for b in content if isinstance(b, dict)]
        elif isinstance(content, str):
            segments.append((content, False))
    marked = [i for i, (_, mark) in enumerate(segments) if mark]
    if not marked:
        return None
    return " ".join(text for text, _ in segments[: marked[-1] + 1])


def _seen_parts(messages: list) -> str:
    """What the default answer says it saw beside text: `` [N images]`` and each tool result."""
    images, results = 0, []
    for m in messages:
        content = m.get("content")
        if m.get("role") == "tool":
            results.append(_text(content))
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") in ("image", "image_url"):
                images += 1
            elif isinstance(part, dict) and part.get("type") == "tool_result":
                results.append(_text(part.get("content")))
    return (f" [{images} images]" if images else "") + "".join(f" [tool result: {r}]" for r in results)


def _thirds(text: str) -> list[str]:
    """``text`` in three pieces (a streamed tool call's arguments)."""
    n = max(1, len(text) // 3)
    return [text[:n], text[n:2 * n], text[2 * n:]]


def _pieces(tool: dict) -> list[str]:
    """A streamed tool call's arguments: three pieces, or two when it is ``cut`` at the output limit."""
    return _thirds(json.dumps(tool["arguments"]))[:2 if tool["cut"] else 3]


def _chunks(text: str) -> list[str]:
    """Split text into streaming deltas of one word each (keeping the spaces)."""
    if not text:
        return []
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--jitter", type=float, default=0.0,
                        help="each request's latency is uniform in latency +- JITTER seconds")
    parser.add_argument("--no-record", action="store_true", help="keep no log of requests (long benchmark runs)")
    parser.add_argument("--slow", action="append", default=[], metavar="MODEL=SECONDS",
                        help="this model's first token comes SECONDS late (repeatable)")
    args = parser.parse_args(argv)
    server = ProviderServer(port=args.port, latency=args.latency, record=not args.no_record,
                            jitter=args.jitter).start()
    for item in args.slow:
        model, _, seconds = item.partition("=")
        server.always(model, reply(first_token_delay=float(seconds)))
    print(f"listening on {server.url} (Anthropic: {server.url}, OpenAI: {server.url}/v1)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
