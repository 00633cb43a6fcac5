"""OpenAI Chat Completions through the ``openai`` SDK.

Also serves any OpenAI-compatible server (Ollama, vLLM, llama.cpp,
OpenRouter) through the provider's ``base_url``.
"""

from __future__ import annotations

import time

import openai

from ..pricing import estimate_tokens
from .base import ChatRequest, ChatResponse, Provider, ProviderError, Watch, elapsed_ms, unfinished_stream


class OpenAIProvider(Provider):
    def client(self) -> openai.OpenAI:
        if self._client is None:
            # Retries are ours (engine/attempts.py) so that every attempt is logged.
            self._client = openai.OpenAI(
                api_key=self._api_key or "unused",
                base_url=self.spec.base_url,
                timeout=self.spec.timeout,
                max_retries=0,
            )
        return self._client

    def params(self, request: ChatRequest) -> dict:
        """Request parameters, with the quirks of reasoning models (o-series, gpt-5)."""
        if request.native is not None:  # tools or images: the client's own messages (its system ones too)
            params: dict = {"model": request.model.model, "messages": list(request.native.messages),
                            **request.native.params}
            return self._limits(request, params)
        messages = []
        if request.system:
            messages.append({"role": "developer" if request.model.reasoning else "system", "content": request.system})
        messages += request.messages()
        return self._limits(request, {"model": request.model.model, "messages": messages})

    @staticmethod
    def _limits(request: ChatRequest, params: dict) -> dict:
        if request.stop:
            params["stop"] = list(request.stop)
        if request.model.timeout is not None:
            params["timeout"] = request.model.timeout  # the model's own, over the provider's
        if request.model.reasoning:
            params["max_completion_tokens"] = request.max_tokens
        else:
            params["max_tokens"] = request.max_tokens
            if request.temperature is not None:
                params["temperature"] = request.temperature
        return params

    def complete(self, request: ChatRequest, on_text=None, watch: Watch | None = None) -> ChatResponse:
        params = self.params(request)
        start = time.perf_counter()
        parts: list[str] = []
        try:
            if on_text is None:
                completion = self.client().chat.completions.create(**params)
                if not completion.choices:
                    raise ProviderError("malformed", "the response has no choices", duration_ms=elapsed_ms(start))
                choice = completion.choices[0]
                text = choice.message.content or ""
                calls = tuple(_call(c) for c in choice.message.tool_calls or ())
                return _response(request, completion.usage, text, choice.finish_reason, start, None, calls)
            return self._stream(request, params, on_text, start, parts, watch)
        except Exception as e:
            # Usage comes only in the last chunk: what was streamed is charged as an estimate.
            raise self.failure(openai, e, request, [0, 0], parts, start) from None

    def _stream(self, request: ChatRequest, params: dict, on_text, start: float, parts: list[str],
                watch: Watch | None = None) -> ChatResponse:
        with self.client().chat.completions.create(**params, stream=True,
                                                   stream_options={"include_usage": True}) as stream:
            if watch is not None:
                watch.opened(stream)
            return self._read(request, stream, on_text, start, parts, watch)

    def _read(self, request: ChatRequest, stream, on_text, start: float, parts: list[str],
              watch: Watch | None = None) -> ChatResponse:
        """The stream's chunks; leaving early (a reader gone) closes it, which stops the upstream call."""
        stop_reason = None
        ttft = None
        usage = None
        events = 0
        tools: dict[int, dict] = {}  # tool calls by index, their arguments in pieces
        for chunk in stream:
            events += 1
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                for delta in (choice.delta.tool_calls if choice.delta else None) or ():
                    ttft = ttft if ttft is not None else elapsed_ms(start)
                    if watch is not None:
                        watch.started()  # an answer that is a tool call starts here, with no text
                    _take_tool_delta(tools, delta)
                piece = choice.delta.content if choice.delta else None
                if piece:
                    if ttft is None:
                        ttft = elapsed_ms(start)
                    if watch is not None:
                        watch.started()
                    on_text(piece)
                    parts.append(piece)
                if choice.finish_reason:
                    stop_reason = choice.finish_reason
        if stop_reason is None:
            raise unfinished_stream(stream, events, "the stream ended without a finish_reason", start)
        calls = tuple({**t, "function": {**t["function"], "arguments": "".join(t["function"]["arguments"])}}
                      for _, t in sorted(tools.items()))
        return _response(request, usage, "".join(parts), stop_reason, start, ttft, calls)


def _call(call) -> dict:
    """One tool call of a whole answer, as the Chat Completions API sends it."""
    if getattr(call, "type", "function") == "function":
        return {"id": call.id, "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments}}
    return call.model_dump(mode="json", exclude_none=True)


def _take_tool_delta(tools: dict[int, dict], delta) -> None:
    """A streamed piece of a tool call: its id, name and type come once, its arguments in pieces."""
    call = tools.setdefault(delta.index, {"id": None, "type": "function", "function": {"name": None, "arguments": []}})
    if delta.id:
        call["id"] = delta.id
    if delta.type:
        call["type"] = delta.type
    if delta.function is not None:
        if delta.function.name:
            call["function"]["name"] = delta.function.name
        if delta.function.arguments:
            call["function"]["arguments"].append(delta.function.arguments)


def _response(request: ChatRequest, usage, text: str, stop_reason, start: float, ttft: float | None,
              calls: tuple = ()) -> ChatResponse:
    """The response with token counts from ``usage``: cached tokens (inside ``prompt_tokens``) and
    reasoning tokens (inside ``completion_tokens``) too. OpenAI-compatible servers may omit the
    counts (then: estimates) or the details (then: 0)."""
    prompt_tokens = getattr(usage, "prompt_tokens", None)
    completion_tokens = getattr(usage, "completion_tokens", None)
    if not (isinstance(prompt_tokens, int) and isinstance(completion_tokens, int)):
        return ChatResponse(text, estimate_tokens(request.sent_text), estimate_tokens(text),
                            stop_reason, elapsed_ms(start), ttft, True, tool_calls=calls)
    cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None)
    reasoning = getattr(getattr(usage, "completion_tokens_details", None), "reasoning_tokens", None)
    return ChatResponse(text, prompt_tokens, completion_tokens, stop_reason, elapsed_ms(start), ttft,
                        cache_read_tokens=cached if isinstance(cached, int) else 0,
                        reasoning_tokens=reasoning if isinstance(reasoning, int) else 0, tool_calls=calls)
