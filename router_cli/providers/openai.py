"""OpenAI Chat Completions through the ``openai`` SDK.

Also serves any OpenAI-compatible server (Ollama, vLLM, llama.cpp,
OpenRouter) through the provider's ``base_url``.
"""

from __future__ import annotations

import time

import openai

from ..pricing import estimate_tokens
from .base import ChatRequest, ChatResponse, Provider, ProviderError, elapsed_ms, map_sdk_error


class OpenAIProvider(Provider):
    def client(self) -> openai.OpenAI:
        if self._client is None:
            # Retries are ours (router.py) so that every attempt is logged.
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
        messages.append({"role": "user", "content": request.prompt})
        params: dict = {"model": request.model.model, "messages": messages}
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
        tokens = [0, 0]
        try:
            if on_text is None:
                completion = self.client().chat.completions.create(**params)
                if not completion.choices:
                    raise ProviderError("malformed", "the response has no choices", duration_ms=elapsed_ms(start))
                choice = completion.choices[0]
                text = choice.message.content or ""
                usage = completion.usage
                return ChatResponse(
                    text=text,
                    input_tokens=usage.prompt_tokens if usage else estimate_tokens(request.prompt),
                    output_tokens=usage.completion_tokens if usage else estimate_tokens(text),
                    stop_reason=choice.finish_reason,
                    duration_ms=elapsed_ms(start),
                    usage_estimated=usage is None,
                )
            return self._stream(request, params, on_text, start, tokens)
        except ProviderError:
            raise
        except Exception as e:
            raise map_sdk_error(openai, e, self._api_key, elapsed_ms(start), tuple(tokens)) from None

    def _stream(self, request: ChatRequest, params: dict, on_text, start: float, tokens: list[int]) -> ChatResponse:
        parts: list[str] = []
        stop_reason = None
        ttft = None
        usage = None
        stream = self.client().chat.completions.create(**params, stream=True, stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
                tokens[:] = [usage.prompt_tokens, usage.completion_tokens]
            for choice in chunk.choices:
                piece = choice.delta.content if choice.delta else None
                if piece:
                    if ttft is None:
                        ttft = elapsed_ms(start)
                    parts.append(piece)
                    on_text(piece)
                if choice.finish_reason:
                    stop_reason = choice.finish_reason
        if stop_reason is None:
            raise ProviderError(
                "connection", "the stream ended without a finish_reason",
                input_tokens=tokens[0], output_tokens=tokens[1], duration_ms=elapsed_ms(start),
            )
        text = "".join(parts)
        if usage is None:
            return ChatResponse(text, estimate_tokens(request.prompt), estimate_tokens(text), stop_reason, elapsed_ms(start), ttft, True)
        return ChatResponse(text, usage.prompt_tokens, usage.completion_tokens, stop_reason, elapsed_ms(start), ttft)
