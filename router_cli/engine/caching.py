"""The response cache as the request path uses it: look up before paying (budgets applied in
between, :func:`before_calls`), store after.

A cache that cannot be read or written never stops a request: it is noted and skipped.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Callable

from ..errors import BudgetExceeded, LedgerError
from ..pricing import Usage, decimal_str
from .record import finish
from .types import Attempt

if TYPE_CHECKING:
    from .options import RequestOptions
    from .request import Request


def before_calls(request: "Request", options: "RequestOptions", cache,
                 worst_case: Callable[[str], Decimal]) -> tuple[str | None, Attempt | None]:
    """The cache key and a cached answer, budgets applied in between (``worst_case``: a tier's).

    A cached answer costs nothing: it is looked up before budgets may refuse or
    downgrade the request, and again at the tier a downgrade chose.
    """
    key, hit = lookup(cache, request, options) if cache is not None else (None, None)
    if hit is None:
        decided = request.start_tier
        apply_budgets(request, worst_case)
        if cache is not None and request.start_tier != decided:
            key, hit = lookup(cache, request, options)
    return key, hit


def apply_budgets(request: "Request", worst_case: Callable[[str], Decimal]) -> None:
    """Downgrade ``request.start_tier`` to what the budgets allow, or record the refusal and raise it."""
    if request.guard is None:
        return
    config = request.config
    try:
        tier, note = request.guard.choose_tier(config.tier_names, request.start_tier,  # type: ignore[attr-defined]
                                               worst_case)
    except BudgetExceeded as e:
        first = config.tier(request.start_tier).models[0]
        request.policy.append(str(e))
        request.attempts.append(Attempt(request.start_tier, first.provider, first.model, "blocked",
                                        error=str(e), error_kind="budget"))
        ledger_error = finish(request, None)
        if ledger_error is not None:
            e.message += f" (and the ledger could not be written: {ledger_error})"
        raise
    if note is not None:
        request.start_tier = tier
        request.note(note)


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
