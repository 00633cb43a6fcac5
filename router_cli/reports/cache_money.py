"""Prompt caching in a cost report (its share of input tokens and what it saved), and
``mmr costs --reprice``: the window's tokens at today's prices beside what was recorded.

Recorded costs never change: a reprice is computed beside them, never written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Callable

from ..ledger.queries import cache_use, usage_by_model
from ..pricing import Usage, cost, decimal_str

NO_TIER = 2**62  # a threshold no request passes: for models without a long-context tier


@dataclass
class CacheUse:
    """A window's prompt-cache traffic: every input token billed, those read from and written to a cache."""

    input_tokens: int = 0
    cache_read: int = 0
    cache_write: int = 0
    saved: Decimal = Decimal(0)  # reads' discount less writes' premium, at the prices of each call

    @property
    def read_share(self) -> float:
        return min(1.0, self.cache_read / self.input_tokens) if self.input_tokens else 0.0

    def to_json(self) -> dict:
        return {"input_tokens": self.input_tokens, "cache_read_tokens": self.cache_read,
                "cache_write_tokens": self.cache_write, "cache_read_share": round(self.read_share, 4),
                "cache_saved_usd": decimal_str(self.saved)}


def cache_summary(ledger, since: datetime, until: datetime,
                  provider_types: Callable[[], dict[str, str]]) -> CacheUse:
    """The window's cache traffic. ``provider_types`` (provider name -> type, read from the config
    only when there is cache traffic) says whose ``input_tokens`` already hold the cached tokens
    (OpenAI's) and whose do not (Anthropic's); a provider the config does not name is taken to be
    Anthropic-shaped when it wrote to a cache, else OpenAI-shaped."""
    rows = cache_use(ledger, since, until)
    use = CacheUse()
    types = provider_types() if any(r[2] or r[3] for r in rows) else {}
    for provider, tin, read, write, saved in rows:
        shape = types.get(provider) or ("anthropic" if write else "openai")
        use.input_tokens += tin if shape == "openai" else tin + read + write
        use.cache_read += read
        use.cache_write += write
        use.saved += Decimal(saved).scaleb(-9)
    return use


def reprice(ledger, config, since: datetime, until: datetime) -> dict:
    """What the window's billed tokens cost at ``config``'s (resolved) prices, per model, beside
    what was recorded. Models the config no longer has are listed, not repriced."""
    types = {name: spec.type for name, spec in config.providers.items()}
    inside = [name for name, kind in types.items() if kind == "openai"]
    prices = {(m.provider, m.model): m.price for m in config.models()}
    thresholds = {p.long_context.above if p.long_context else NO_TIER for p in prices.values()} or {NO_TIER}
    by_threshold = {above: usage_by_model(ledger, since, until, above, inside) for above in thresholds}
    models: dict[tuple[str, str], dict] = {}
    missing: dict[tuple[str, str], dict] = {}
    for above, rows in by_threshold.items():
        for provider, model, long, calls, tin, tout, read, write, nano in rows:
            price = prices.get((provider, model))
            threshold = (price.long_context.above if price and price.long_context else NO_TIER)
            if price is None:
                if above != min(thresholds):
                    continue  # counted once, from one query
                entry = missing.setdefault((provider, model), {"provider": provider, "model": model, "calls": 0,
                                                               "recorded": Decimal(0)})
            elif threshold != above:
                continue
            else:
                entry = models.setdefault((provider, model), {"provider": provider, "model": model, "calls": 0,
                                                              "recorded": Decimal(0), "today": Decimal(0),
                                                              "source": price.source})
                usage = Usage.reported(tin, tout, read, write, cache_in_input=types.get(provider) == "openai")
                entry["today"] += cost(price, usage, long=bool(long))
            entry["calls"] += calls
            entry["recorded"] += Decimal(nano).scaleb(-9)

    def money(entry: dict, *keys: str) -> dict:
        out = {k: v for k, v in entry.items() if k not in keys}
        return {**out, **{f"{k}_usd": decimal_str(entry[k]) for k in keys}}

    rows_out = [money(e, "recorded", "today") for e in models.values()]
    gone = [money(e, "recorded") for e in missing.values()]
    recorded = sum((Decimal(r["recorded_usd"]) for r in rows_out), Decimal(0))
    today = sum((Decimal(r["today_usd"]) for r in rows_out), Decimal(0))
    return {"recorded_usd": decimal_str(recorded), "today_usd": decimal_str(today),
            "difference_usd": decimal_str(today - recorded), "models": rows_out, "not_repriced": gone}
