"""The response cache as the request path uses it: look up before paying, store after.

A cache that cannot be read or written never stops a request: it is noted and skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import LedgerError
from ..pricing import Usage, decimal_str
from .types import Attempt

if TYPE_CHECKING:
    from .options import RequestOptions
    from .request import Request


def lookup(cache, request: "Request", options: "RequestOptions") -> tuple[str, Attempt | None]:
    """The request's cache key at ``request.start_tier``, and the cached answer (None on a miss or ``refresh``)."""
    from ..policy.cache import cache_key

    # Stop sequences change the answer: they are part of what is asked (mmr serve's only).
    prompt = request.prompt + (f"\0stop={list(options.stop)!r}" if options.stop else "")
    key = cache_key(request.config, tier=request.start_tier, prompt=prompt, system=request.system,
                    max_tokens=options.max_tokens, temperature=options.temperature, user=request.user,
                    variant=request.variant, model=options.model)
    return key, None if options.refresh else _hit(cache, key, request)


def _hit(cache, key: str, request: "Request") -> Attempt | None:
    try:
        entry, stale = cache.get(key)
    except LedgerError as e:
        request.on_note(f"the cache could not be read ({e}); asking the model")
        return None
    if stale is not None:
        request.note(f"cache: {stale}; asking again")
    if entry is None:
        return None
    request.note(f"cache: answered from a cached answer {entry.age:.0f} s old (request {entry.request_id}), "
                 f"saving {decimal_str(entry.cost)} USD")
    attempt = Attempt(entry.tier, entry.provider, entry.model, "cached", text=entry.text,
                      input_tokens=entry.input_tokens, output_tokens=entry.output_tokens,
                      stop_reason=entry.stop_reason, saved=entry.cost,
                      usage=Usage(entry.input_tokens, entry.output_tokens))  # the baseline's tokens
    request.attempts.append(attempt)
    return attempt


def store(cache, key: str, request: "Request", final: Attempt) -> None:
    """Keep ``final`` as the answer to ``key``."""
    try:
        cache.put(key, request_id=request.request_id, tier=final.tier, provider=final.provider, model=final.model,
                  text=final.text or "", input_tokens=final.input_tokens, output_tokens=final.output_tokens,
                  cost=final.cost, stop_reason=final.stop_reason)
    except LedgerError as e:
        request.on_note(f"the answer could not be cached ({e})")
