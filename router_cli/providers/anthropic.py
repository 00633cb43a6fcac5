"""Anthropic Messages API through the ``anthropic`` SDK."""

from __future__ import annotations

import json
import time

import anthropic

from .base import ChatRequest, ChatResponse, Provider, Watch, elapsed_ms, unfinished_stream


class AnthropicProvider(Provider):
    def client(self) -> anthropic.Anthropic:
        if self._client is None:
            # Retries are ours (engine/attempts.py) so that every attempt is logged.
            self._client = anthropic.Anthropic(
                api_key=self._api_key or "unused",
                base_url=self.spec.base_url,
                timeout=self.spec.timeout,
                max_retries=0,
            )
        return self._client

    def complete(self, request: ChatRequest, on_text=None, watch: Watch | None = None) -> ChatResponse:
        params: dict = {
            "model": request.model.model,
            "max_tokens": request.max_tokens,
            "messages": request.messages(),
        }
        if request.stop:
            params["stop_sequences"] = list(request.stop)
        if request.model.timeout is not None:
            params["timeout"] = request.model.timeout  # the model's own, over the provider's
        if request.system and request.cache_system:
            # The system prompt is the prefix every call of a batch shares: cached, later calls read it at a tenth.
            params["system"] = [{"type": "text", "text": request.system, "cache_control": {"type": "ephemeral"}}]
        elif request.system:
            params["system"] = request.system
        if request.native is not None:  # tools or images: the client's own messages, system and tools
            params["messages"] = list(request.native.messages)
            params.update(request.native.params)
            if request.native.system is not None:
                params["system"] = request.native.system
        # No temperature: the Messages API (version 2026-10-21, sent by SDK 2.x)
        # rejects sampling parameters with a 400, and the SDK no longer takes them.
        start = time.perf_counter()
        tokens = watch.tokens if watch is not None else [0, 0, 0, 0]  # input, output, cache read, cache write
        parts: list[str] = []
        try:
            if on_text is None:
                message = self.client().messages.create(**params)
                text = "".join(block.text for block in message.content if block.type == "text")
                usage = message.usage
                return ChatResponse(
                    text=text,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    stop_reason=message.stop_reason,
                    duration_ms=elapsed_ms(start),
                    cache_read_tokens=usage.cache_read_input_tokens or 0,
                    cache_write_tokens=usage.cache_creation_input_tokens or 0,
                    tool_calls=tuple({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
                                     for block in message.content if block.type == "tool_use"),
                )
            return self._stream(params, on_text, start, tokens, parts, watch)
        except Exception as e:
            raise self.failure(anthropic, e, request, tokens, parts, start) from None

    def _stream(self, params: dict, on_text, start: float, tokens: list[int], parts: list[str],
                watch: Watch | None = None) -> ChatResponse:
        stop_reason = None
        ttft = None
        finished = False
        events = 0
        tools: dict[int, dict] = {}  # tool_use blocks by index, their input's JSON in pieces
        # Leaving early (a reader gone) closes the stream, which stops the upstream call.
        with self.client().messages.create(**params, stream=True) as stream:
            if watch is not None:
                watch.opened(stream)
            for event in stream:
                events += 1
                if event.type == "message_start":
                    _take_usage(tokens, event.message.usage)
                elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                    block = event.content_block
                    ttft = ttft if ttft is not None else elapsed_ms(start)
                    if watch is not None:
                        watch.started()  # an answer that is a tool call starts here, with no text
                    tools[event.index] = {"type": "tool_use", "id": block.id, "name": block.name, "json": []}
                elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                    if watch is not None:
                        watch.started()
                    tools[event.index]["json"].append(event.delta.partial_json)
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    if ttft is None:
                        ttft = elapsed_ms(start)
                    if watch is not None:
                        watch.started()
                    on_text(event.delta.text)
                    parts.append(event.delta.text)
                elif event.type == "message_delta":
                    stop_reason = event.delta.stop_reason
                    _take_usage(tokens, event.usage)
                elif event.type == "message_stop":
                    finished = True
        if not finished:
            raise unfinished_stream(stream, events, "the stream ended before message_stop", start)
        calls = tuple({"type": "tool_use", "id": t["id"], "name": t["name"], "input": _tool_input("".join(t["json"]), stop_reason)}
                      for _, t in sorted(tools.items()))
        return ChatResponse("".join(parts), tokens[0], tokens[1], stop_reason, elapsed_ms(start), ttft,
                            cache_read_tokens=tokens[2], cache_write_tokens=tokens[3], tool_calls=calls)


def _tool_input(text: str, stop_reason: str | None):
    """A streamed tool_use block's input from its JSON. Cut off by the output limit, the JSON is
    incomplete: the input is what it says so far (parsed as the SDK's own stream helper parses it),
    an answer billed once and ending at ``max_tokens``, not a malformed reply to retry."""
    try:
        return json.loads(text or "{}")
    except ValueError:
        if stop_reason != "max_tokens":
            raise
    from jiter import from_json  # the SDK's own dependency

    try:
        return from_json(text.encode(), partial_mode="trailing-strings")
    except ValueError:
        return {}


def _take_usage(tokens: list[int], usage) -> None:
    """Counts from a stream's ``message_start`` or ``message_delta`` usage: the delta's are
    cumulative, and a field it leaves out (null, or 0) keeps the count from ``message_start``."""
    fields = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    for i, name in enumerate(fields):
        value = getattr(usage, name, None)
        if isinstance(value, int) and value > 0:
            tokens[i] = value
