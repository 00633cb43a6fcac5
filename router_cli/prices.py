"""Where prices come from: the config's ``price:``, else pydantic's ``genai-prices`` (a maintained
table bundled with the package: cached-input, cache-write and long-context prices included).

``genai_prices`` costs ~0.3 s to import, so it is imported here only, and only when a command
needs a model's price that the config does not give (``ask``, ``cascade``, ``--batch``,
``eval --replay``, ``prices``): never by ``--help``, ``classify`` or ``costs``.

    config = resolve_prices(load_config())   # every model priced, or a ConfigError naming one
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from .config import Config, LongContext, ModelSpec, Price
from .config.schema import UNPRICED
from .errors import ConfigError

LIBRARY = "genai-prices"
INSTALL_HINT = "pip install 'genai-prices>=0.2.3' (a dependency of mmr-router)"
_CLASSES = (("input", "input_mtok"), ("output", "output_mtok"), ("cache_read", "cache_read_mtok"),
            ("cache_write", "cache_write_mtok"))


class PricesUnavailable(ConfigError):
    """genai-prices cannot be imported, and a model has no price in the config."""


def _library() -> Any:
    try:
        import genai_prices
        from genai_prices import data_snapshot
    except Exception as e:  # noqa: BLE001 - a broken install fails in many ways; each gets the same advice
        raise PricesUnavailable(f"{LIBRARY} could not be imported ({type(e).__name__}: {e}): {INSTALL_HINT}; "
                                "or give every model a price: in the config") from None
    return genai_prices, data_snapshot


def library_source() -> str:
    """``genai-prices 0.2.3``: the price source a ledger row records for the library's prices."""
    genai_prices, _ = _library()
    return f"{LIBRARY} {genai_prices.__version__}"


def library_price(provider_type: str, model: str, base_url: str | None = None,
                  when: datetime | None = None) -> Price | None:
    """The maintained price of ``model`` on a provider of ``provider_type`` (found by its
    ``base_url`` first, so OpenRouter or Azure find their own prices), or None when the library
    has none. Prices in force at ``when`` (default: now)."""
    genai_prices, snapshots = _library()
    snapshot = snapshots.get_snapshot()
    found = None
    for where in ({"provider_api_url": base_url} if base_url else None, {"provider_id": provider_type}):
        if where is None:
            continue
        try:
            found = snapshot.find_provider_model(model, None, where.get("provider_id"), where.get("provider_api_url"))
            break
        except LookupError:
            continue
    if found is None:
        return None
    prices = found[1].get_prices(when or datetime.now(timezone.utc))
    return _from_library(prices, f"{LIBRARY} {genai_prices.__version__}")


def _from_library(prices: Any, source: str) -> Price | None:
    """A :class:`Price` from a genai-prices ``ModelPrice``; tiered classes become one long-context tier."""
    values: dict[str, Any] = {name: getattr(prices, key, None) for name, key in _CLASSES}
    if values["input"] is None or values["output"] is None:
        return None  # priced per image, per second ...: not a chat model mmr can bill
    starts = sorted({t.start for v in values.values() if hasattr(v, "tiers") for t in v.tiers})
    base: dict[str, Any] = {name: getattr(v, "base", v) for name, v in values.items()}
    long_context = None
    if starts:
        above = starts[0]  # the first tier: the only one any provider has today

        def at(value: Any) -> Any:
            if value is None or not hasattr(value, "tiers"):
                return value
            return next((t.price for t in value.tiers if t.start == above), value.base)

        long_context = LongContext(above, at(values["input"]), at(values["output"]), at(values["cache_read"]),
                                   at(values["cache_write"]))
    return Price(base["input"], base["output"], base["cache_read"], base["cache_write"], long_context, source)


def resolve_prices(config: Config) -> Config:
    """``config`` with every model priced: the config's price, else the library's.

    A model with neither is a :class:`ConfigError` (exit 3) naming it; prices are never a silent $0.
    """
    unpriced = [m for m in config.models() if m.price.source == UNPRICED]
    if not unpriced:
        return config
    found: dict[tuple[str, str], Price] = {}
    for model in unpriced:
        spec = config.providers[model.provider]
        key = (model.provider, model.model)
        if key in found:
            continue
        price = library_price(spec.type, model.model, spec.base_url)
        if price is None:
            raise _no_price(config, model)
        found[key] = price

    def priced(models: tuple[ModelSpec, ...]) -> tuple[ModelSpec, ...]:
        return tuple(replace(m, price=found[(m.provider, m.model)]) if m.price.source == UNPRICED else m
                     for m in models)

    tiers = tuple(replace(t, models=priced(t.models)) for t in config.tiers)
    experiments = tuple(
        replace(e, variants=tuple(replace(v, tiers={k: priced(ms) for k, ms in v.tiers.items()}) for v in e.variants))
        for e in config.experiments)
    return replace(config, tiers=tiers, experiments=experiments)


def _no_price(config: Config, model: ModelSpec) -> ConfigError:
    """The error of a model that neither the config nor the library prices."""
    return ConfigError(
        f"{config.source}: {model.where or model.provider}: {model.provider}/{model.model} has no price: "
        f"{library_source()} does not know it; give it price: {{input: ..., output: ...}} (USD per 1M "
        "tokens) or price: free")


def per_million(value: Decimal | None) -> str | None:
    """A rate for a table or JSON: '0.3', or None."""
    from .pricing import decimal_str

    return None if value is None else decimal_str(value)


def price_rows(config: Config) -> list[dict]:
    """What ``mmr prices`` shows: each configured model's rates per 1M tokens, long-context tier,
    source, and a warning where the config's price differs from the library's."""
    rows, seen = [], set()
    for model in config.models():
        key = (model.provider, model.model)
        if key in seen:
            continue
        seen.add(key)
        spec = config.providers[model.provider]
        library = None
        if spec.type != "local":
            try:
                library = library_price(spec.type, model.model, spec.base_url)
            except PricesUnavailable:
                if model.price.source == UNPRICED:
                    raise
        price = library if model.price.source == UNPRICED and library is not None else model.price
        if price.source == UNPRICED:
            raise _no_price(config, model)
        rows.append(_row(model, price, library))
    return rows


def _row(model: ModelSpec, price: Price, library: Price | None) -> dict:
    tier = price.long_context
    row = {
        "provider": model.provider, "model": model.model,
        "input": per_million(price.input),
        "cache_read": per_million(price.input if price.cache_read is None else price.cache_read),
        "cache_write": per_million(price.input if price.cache_write is None else price.cache_write),
        "output": per_million(price.output),
        "long_context": None if tier is None else {
            "above": tier.above, "input": per_million(tier.input), "output": per_million(tier.output),
            "cache_read": per_million(tier.input if tier.cache_read is None else tier.cache_read),
            "cache_write": per_million(tier.input if tier.cache_write is None else tier.cache_write)},
        "source": price.source,
        "warning": _difference(price, library) if price.source == "config" else None,
    }
    return row


def _difference(config: Price, library: Price | None) -> str | None:
    """How a typed price differs from the maintained one (None: it does not, or there is none)."""
    if library is None:
        return None
    differs = []
    for name in ("input", "output", "cache_read", "cache_write"):
        mine, theirs = getattr(config, name), getattr(library, name)
        if theirs is None:
            continue
        if mine is None:
            differs.append(f"{name}: not in the config (billed at the input price), {library.source} says {theirs}")
        elif mine != theirs:
            differs.append(f"{name}: config {mine}, {library.source} {theirs}")
    if library.long_context is not None and config.long_context is None:
        differs.append(f"long_context: not in the config, {library.source} bills input above "
                       f"{library.long_context.above:,} tokens at {library.long_context.input}")
    return "; ".join(differs) or None
