"""OpenAI Chat Completions through the ``openai`` SDK.

Also serves any OpenAI-compatible server (Ollama, vLLM, llama.cpp,
OpenRouter) through the provider's ``base_url``.
"""

from __future__ import annotations

import time

import openai

from ..pricing import estimate_tokens
from .base import ChatRequest, ChatResponse, Provider, ProviderError, elapsed_ms


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
        messages = []
        if request.system:
            messages.append({"role": "developer" if request.model.reasoning else "system", "content": request.system})
        messages += request.messages()
        params: dict = {"model": request.model.model, "messages": messages}
        if request.stop:
            params["stop"] = list(request.stop)
        if request.model.reasoning:
            params["max_completion_tokens"] = request.max_tokens
        else:
            params["max_tokens"] = request.max_tokens
            if request.temperature is not None:
                params["temperature"] = request.temperature
        return params

    def complete(self, request: ChatRequest, on_text=None) -> ChatResponse:
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
                tin, tout, estimated = _usage(request, completion.usage, text)
                return ChatResponse(text, tin, tout, choice.finish_reason, elapsed_ms(start), usage_estimated=estimated)
            return self._stream(request, params, on_text, start, parts)
        except Exception as e:
            # Usage comes only in the last chunk: what was streamed is charged as an estimate.
            raise self.failure(openai, e, request, [0, 0], parts, start) from None

    def _stream(self, request: ChatRequest, params: dict, on_text, start: float, parts: list[str]) -> ChatResponse:
        with self.client().chat.completions.create(**params, stream=True,
                                                   stream_options={"include_usage": True}) as stream:
            return self._read(request, stream, on_text, start, parts)

    def _read(self, request: ChatRequest, stream, on_text, start: float, parts: list[str]) -> ChatResponse:
        """The stream's chunks; leaving early (a reader gone) closes it, which stops the upstream call."""
        stop_reason = None
        ttft = None
        usage = None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                piece = choice.delta.content if choice.delta else None
                if piece:
                    if ttft is None:
                        ttft = elapsed_ms(start)
                    on_text(piece)
                    parts.append(piece)
                if choice.finish_reason:
                    stop_reason = choice.finish_reason
        if stop_reason is None:
            raise ProviderError("connection", "the stream ended without a finish_reason", duration_ms=elapsed_ms(start))
        text = "".join(parts)
        tin, tout, estimated = _usage(request, usage, text)
        return ChatResponse(text, tin, tout, stop_reason, elapsed_ms(start), ttft, estimated)


def _usage(request: ChatRequest, usage, text: str) -> tuple[int, int, bool]:
    """Token counts from ``usage``; OpenAI-compatible servers may omit them (then: estimates)."""
    prompt_tokens = getattr(usage, "prompt_tokens", None)
    completion_tokens = getattr(usage, "completion_tokens", None)
    if isinstance(prompt_tokens, int) and isinstance(completion_tokens, int):
        return prompt_tokens, completion_tokens, False
    return estimate_tokens(request.sent_text), estimate_tokens(text), True
