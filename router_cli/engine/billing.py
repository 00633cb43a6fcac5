"""An attempt priced: the token counts a provider reported, charged per token class at the model's
price (pricing.py), on an answer or on a failure. Shared by the fallback loop (attempts.py) and
hedged requests (hedging.py).
"""

from __future__ import annotations

from ..config import ModelSpec
from ..pricing import Usage, cache_saving, cost
from .types import Attempt


def bill(attempt: Attempt, model: ModelSpec, provider_type: str, input_tokens: int, output_tokens: int,
         cache_read: int = 0, cache_write: int = 0, reasoning: int = 0) -> None:
    """Put the reported token counts on ``attempt`` and charge each class at ``model``'s price.
    OpenAI (and compatible servers) count cached tokens inside the prompt tokens; Anthropic does not."""
    attempt.input_tokens, attempt.output_tokens = input_tokens, output_tokens
    attempt.cache_read_tokens, attempt.cache_write_tokens, attempt.reasoning_tokens = cache_read, cache_write, reasoning
    attempt.usage = Usage.reported(input_tokens, output_tokens, cache_read, cache_write, reasoning,
                                   cache_in_input=provider_type == "openai")
    attempt.cost = cost(model.price, attempt.usage)
    attempt.cache_saved = cache_saving(model.price, attempt.usage)
    attempt.price_source = model.price.source


def fill_answer(attempt: Attempt, model: ModelSpec, provider_type: str, response) -> None:
    """``attempt`` answered by ``response`` (providers.ChatResponse): its text, tokens, cost and timings."""
    attempt.text = response.text
    bill(attempt, model, provider_type, response.input_tokens, response.output_tokens, response.cache_read_tokens,
         response.cache_write_tokens, response.reasoning_tokens)
    attempt.duration_ms, attempt.ttft_ms = response.duration_ms, response.ttft_ms
    attempt.stop_reason, attempt.usage_estimated = response.stop_reason, response.usage_estimated
    attempt.tool_calls = response.tool_calls


def fill_failure(attempt: Attempt, model: ModelSpec, provider_type: str, e) -> None:
    """``attempt`` failed with ``e`` (providers.ProviderError), billed for what its provider reported."""
    attempt.status = "error"
    attempt.error, attempt.error_kind, attempt.http_status = str(e), e.kind, e.status
    attempt.reached = e.reached
    attempt.duration_ms = e.duration_ms
    # Tokens the provider reported before failing (a dropped stream) were billed.
    attempt.usage_estimated = e.usage_estimated
    bill(attempt, model, provider_type, e.input_tokens, e.output_tokens, *e.cache_tokens)
