"""The two wire protocols ``mmr serve`` speaks: OpenAI Chat Completions and Anthropic Messages.

A request in either shape becomes one :class:`Asked` (what the engine needs:
the last user turn, the turns before it, the system prompt, limits); an answer
goes back in the client's shape, whichever provider's model gave it. Stop
reasons are translated both ways (:func:`stop_reason`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from ..pricing import Usage
from ..providers.base import Native

OPENAI = "openai"
ANTHROPIC = "anthropic"

# A model's stop reason, in the other protocol's words.
_TO_OPENAI = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
              "refusal": "content_filter", "pause_turn": "stop"}
_TO_ANTHROPIC = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                 "content_filter": "refusal"}


class BadRequest(Exception):
    """A request the server will not route; answered with ``status`` in the client's error shape."""

    def __init__(self, message: str, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


@dataclass(frozen=True)
class Asked:
    """One chat request, either protocol's, as the engine takes it.

    ``prompt`` and ``history`` are the conversation as text (what the classifier reads and the
    ledger keeps): images, tool calls and tool results appear there as ``[image]``,
    ``[tool call NAME: ARGS]`` and ``[tool result: TEXT]``. A request carrying any of them also
    has ``native``: its messages and tools as sent, for a model of its own protocol.
    """

    protocol: str
    model: str
    prompt: str
    history: tuple[tuple[str, str], ...] = ()
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False  # OpenAI's stream_options.include_usage
    user: str | None = None  # OpenAI's ``user``, Anthropic's ``metadata.user_id``
    extras: str | None = None  # what it carries that only its own protocol can say (tools, images)
    native: Native | None = None


# A request's own fields that go with its messages to a model of its protocol.
_PASSED = {OPENAI: ("tools", "tool_choice", "parallel_tool_calls", "functions", "function_call"),
           ANTHROPIC: ("tools", "tool_choice")}
_IMAGES = ("image", "image_url", "input_image", "document", "file")


def parse(protocol: str, body: Any) -> Asked:
    """The request ``body`` (parsed JSON) of ``protocol``; :class:`BadRequest` names what is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: required (auto, cascade, a tier name or a configured model id)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: required, a non-empty list")
    extras = ["tools" for name in _PASSED[protocol] if body.get(name) and name != "parallel_tool_calls"]
    turns: list[tuple[str, str]] = []
    systems: list[str] = []
    if protocol == ANTHROPIC:
        systems += [_text(body.get("system"), "system", extras)] if body.get("system") else []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(f"messages[{i}]: expected an object")
        role = message.get("role")
        text = _text(message.get("content"), f"messages[{i}].content", extras)
        if role in ("system", "developer") and protocol == OPENAI:
            systems.append(text)
            continue
        if role in ("tool", "function") and protocol == OPENAI:
            extras.append("tool results")
            role, text = "user", f"[tool result: {text}]"
        elif role == "assistant" and protocol == OPENAI:
            text = "\n".join([text] * bool(text) + _openai_calls(message, extras))
        elif role not in ("user", "assistant"):
            raise BadRequest(f"messages[{i}].role: unknown role {role!r}")
        if turns and turns[-1][0] == role:  # consecutive turns of one role: one turn
            turns[-1] = (role, f"{turns[-1][1]}\n\n{text}")
        else:
            turns.append((role, text))
    if not turns or turns[-1][0] != "user":
        raise BadRequest("messages: the last message must be the user's" + (" (or a tool result)" if extras else ""))
    native = None
    if extras:
        native = Native(protocol, tuple(messages), {k: body[k] for k in _PASSED[protocol] if k in body},
                        body.get("system") if protocol == ANTHROPIC else None)
    return Asked(
        protocol=protocol, model=model, prompt=turns[-1][1], history=tuple(turns[:-1]),
        system="\n\n".join(systems) or None,
        max_tokens=_max_tokens(protocol, body), temperature=_temperature(body.get("temperature")),
        stop=_stop(body.get("stop_sequences") if protocol == ANTHROPIC else body.get("stop")),
        stream=bool(body.get("stream")),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")) if protocol == OPENAI else False,
        user=_user(protocol, body), extras=", ".join(dict.fromkeys(extras)) or None, native=native,
    )


def _text(content: Any, where: str, extras: list[str]) -> str:
    """A message's content (a string or a list of parts) as text; images and tool blocks appear as
    placeholders and are named in ``extras``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest(f"{where}: expected a string or a list of content parts")
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in _IMAGES:
            extras.append("images")
            texts.append("[image]")
        elif kind == "tool_use":
            extras.append("tool calls")
            texts.append(f"[tool call {part.get('name')}: {json.dumps(part.get('input'))}]")
        elif kind == "tool_result":
            extras.append("tool results")
            texts.append(f"[tool result: {_text(part.get('content'), where, extras)}]")
        else:
            raise BadRequest(f"{where}: unsupported content part {kind!r}")
    return "".join(texts)


def _openai_calls(message: dict, extras: list[str]) -> list[str]:
    """An OpenAI assistant message's tool calls (or legacy function call) as text."""
    calls = list(message.get("tool_calls") or []) + ([{"function": message["function_call"]}]
                                                      if message.get("function_call") else [])
    if calls:
        extras.append("tool calls")
    out = []
    for call in calls:
        function = (call.get("function") if isinstance(call, dict) else None) or {}
        out.append(f"[tool call {function.get('name')}: {function.get('arguments')}]")
    return out


def _max_tokens(protocol: str, body: dict) -> int | None:
    value = body.get("max_tokens") if protocol == ANTHROPIC else (
        body.get("max_completion_tokens") or body.get("max_tokens"))
    if protocol == ANTHROPIC and value is None:
        raise BadRequest("max_tokens: required")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"max_tokens: expected a whole number of at least 1, got {value!r}")
    return value


def _temperature(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 2:
        raise BadRequest(f"temperature: expected a number from 0 to 2, got {value!r}")
    return float(value)


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise BadRequest("stop: expected a string or a list of strings")
    return tuple(values)


def _user(protocol: str, body: dict) -> str | None:
    user = body.get("user") if protocol == OPENAI else (body.get("metadata") or {}).get("user_id")
    return user if isinstance(user, str) and user else None


def stop_reason(protocol: str, reason: str | None) -> str:
    """A model's stop reason (either protocol's) as ``protocol`` says it."""
    if protocol == OPENAI:
        return _TO_OPENAI.get(reason or "", reason if reason in _TO_ANTHROPIC else "stop")
    return _TO_ANTHROPIC.get(reason or "", reason if reason in _TO_OPENAI else "end_turn")


# ---------------------------------------------------------------- whole answers


def usage_body(protocol: str, usage: Usage) -> dict:
    """A call's billed ``usage`` as ``protocol`` reports it, whichever provider answered: OpenAI's
    ``prompt_tokens`` include cache reads and writes (reads again as ``cached_tokens``), Anthropic's
    ``input_tokens`` exclude them."""
    if protocol == OPENAI:
        prompt = usage.total_input
        return {"prompt_tokens": prompt, "completion_tokens": usage.output, "total_tokens": prompt + usage.output,
                "prompt_tokens_details": {"cached_tokens": usage.cache_read},
                "completion_tokens_details": {"reasoning_tokens": usage.reasoning}}
    return {"input_tokens": usage.input, "output_tokens": usage.output,
            "cache_read_input_tokens": usage.cache_read, "cache_creation_input_tokens": usage.cache_write}


def answer_body(asked: Asked, request_id: str, model: str, text: str, reason: str | None, usage: Usage,
                tool_calls: tuple = ()) -> dict:
    """A whole answer in the client's shape; ``tool_calls`` are in its own form (a model of its protocol made them)."""
    if asked.protocol == OPENAI:
        message: dict[str, Any] = {"role": "assistant", "content": text or (None if tool_calls else ""), "refusal": None}
        if tool_calls:
            message["tool_calls"] = list(tool_calls)
        return {
            "id": f"chatcmpl-{request_id}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": stop_reason(OPENAI, reason), "logprobs": None}],
            "usage": usage_body(OPENAI, usage),
        }
    content = [{"type": "text", "text": text}] if text or not tool_calls else []
    return {
        "id": f"msg_{request_id}", "type": "message", "role": "assistant", "model": model,
        "content": content + list(tool_calls), "stop_reason": stop_reason(ANTHROPIC, reason),
        "stop_sequence": None, "usage": usage_body(ANTHROPIC, usage),
    }


def error_body(protocol: str, status: int, message: str, code: str | None = None) -> dict:
    """An error in ``protocol``'s own shape (what its SDK turns into the matching exception)."""
    if protocol == ANTHROPIC:
        kind = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = {400: "invalid_request_error", 401: "invalid_request_error", 402: "insufficient_quota",
            404: "invalid_request_error", 413: "invalid_request_error"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# ---------------------------------------------------------------- streams


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event, framed as both SDKs read them."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return ((f"event: {event}\n" if event else "") + f"data: {payload}\n\n").encode()


class StreamWriter:
    """The events of one streamed answer in the client's protocol: :meth:`start`, :meth:`text` per
    chunk, then :meth:`end` (or :meth:`error` when the answer broke off).

    Text streams as it comes; tool calls (known whole only once the model is done) go out at the
    end, each as the deltas its protocol's SDK accumulates: a first piece with its id and name,
    then its arguments.
    """

    def __init__(self, asked: Asked, request_id: str, model: str):
        self.asked, self.request_id, self.model = asked, request_id, model
        self.created = int(time.time())
        self.blocks = 0  # Anthropic content blocks opened so far (the text block is the first)

    def _chunk(self, choices: list, **more) -> bytes:
        return sse({"id": f"chatcmpl-{self.request_id}", "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model, "choices": choices, **more})

    def start(self) -> bytes:
        if self.asked.protocol == OPENAI:
            return self._chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        message: dict[str, Any] = {"id": f"msg_{self.request_id}", "type": "message", "role": "assistant",
                                   "model": self.model, "content": [], "stop_reason": None, "stop_sequence": None,
                                   "usage": {"input_tokens": 0, "output_tokens": 0}}  # the real counts: message_delta
        return sse({"type": "message_start", "message": message}, "message_start")

    def _text_block(self) -> bytes:
        self.blocks = 1
        return sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                   "content_block_start")

    def text(self, piece: str) -> bytes:
        if self.asked.protocol == OPENAI:
            return self._chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        return (b"" if self.blocks else self._text_block()) + sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
            "content_block_delta")

    def end(self, reason: str | None, usage: Usage, trailer: str, tool_calls: tuple = ()) -> bytes:
        """The closing events; ``trailer`` (the bill) goes in an SSE comment before the last one."""
        comment = f": {trailer}\n\n".encode()
        if self.asked.protocol == OPENAI:
            out = b""
            for i, call in enumerate(tool_calls):
                function = call.get("function") or {}
                head = {**call, "index": i, "function": {**function, "arguments": ""}} if function else {**call, "index": i}
                out += self._chunk([{"index": 0, "delta": {"tool_calls": [head]}, "finish_reason": None}])
                if function.get("arguments"):
                    out += self._chunk([{"index": 0, "delta": {"tool_calls": [
                        {"index": i, "function": {"arguments": function["arguments"]}}]}, "finish_reason": None}])
            out += self._chunk([{"index": 0, "delta": {}, "finish_reason": stop_reason(OPENAI, reason)}])
            if self.asked.include_usage:
                out += self._chunk([], usage=usage_body(OPENAI, usage))
            return out + comment + sse("[DONE]")
        out = self._text_block() if not self.blocks and not tool_calls else b""
        if self.blocks:
            out += sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        for call in tool_calls:
            index, self.blocks = self.blocks, self.blocks + 1
            out += sse({"type": "content_block_start", "index": index, "content_block": {**call, "input": {}}},
                       "content_block_start")
            out += sse({"type": "content_block_delta", "index": index, "delta": {
                "type": "input_json_delta", "partial_json": json.dumps(call.get("input", {}))}}, "content_block_delta")
            out += sse({"type": "content_block_stop", "index": index}, "content_block_stop")
        return (out + sse({"type": "message_delta", "delta": {"stop_reason": stop_reason(ANTHROPIC, reason),
                                                              "stop_sequence": None},
                           "usage": usage_body(ANTHROPIC, usage)}, "message_delta")
                + comment + sse({"type": "message_stop"}, "message_stop"))

    def error(self, status: int, message: str) -> bytes:
        body = error_body(self.asked.protocol, status, message)
        return sse(body, "error") if self.asked.protocol == ANTHROPIC else sse(body)
