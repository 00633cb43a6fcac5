"""The tiers file's latency keys: ``timeout`` and ``first_token_timeout`` per provider or model,
a model's ``slo``, a tier's ``hedge`` (docs/latency.md). Each problem names its key path.

    first_token_timeout: 0.5s      # or 500ms, or 0.5
    slo: {ttft: 2s, total: 10s, min_calls: 5}
    hedge: 1.5s
"""

from __future__ import annotations

import re
from typing import Any

from .checks import Checks, join, kind
from .schema import MAX_SECONDS, Slo

PROVIDER_KEYS = {"first_token_timeout"}
MODEL_KEYS = {"timeout", "first_token_timeout", "slo"}
TIER_KEYS = {"hedge"}
_SLO_KEYS = {"ttft", "total", "min_calls"}
_SECONDS = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*")


def seconds(c: Checks, value: Any, path: str) -> float:
    """A time limit above 0 and at most an hour: a number of seconds, or text like ``1.5s``, ``500ms``, ``2m``."""
    if isinstance(value, str):
        match = _SECONDS.fullmatch(value)
        if not match:
            raise c.fail(path, f"expected seconds or a duration like 1.5s, 500ms, 2m; got {value!r}")
        value = float(match[1]) * {None: 1, "s": 1, "ms": 0.001, "m": 60}[match[2]]
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise c.fail(path, f"expected seconds or a duration like 1.5s, 500ms, 2m; got {kind(value)}")
    if not 0 < value <= MAX_SECONDS:  # also refuses NaN and infinities
        raise c.fail(path, f"must be above 0 and at most {MAX_SECONDS:g} seconds, got {value:g}")
    return float(value)


def optional_seconds(c: Checks, entry: dict, key: str, path: str) -> float | None:
    return None if entry.get(key) is None else seconds(c, entry[key], join(path, key))


def model(c: Checks, entry: dict, path: str, provider_type: str = "") -> dict:
    """A model's latency keys, as ModelSpec fields. A local model takes no ``first_token_timeout``:
    llama.cpp runs in this process and cannot be cut off, so a call given up would go on using the CPU."""
    if provider_type == "local" and entry.get("first_token_timeout") is not None:
        raise c.fail(join(path, "first_token_timeout"), "a local model's call cannot be cut off (llama.cpp runs "
                     "in this process): drop first_token_timeout from this model")
    out: dict = {"timeout": optional_seconds(c, entry, "timeout", path),
                 "first_token_timeout": optional_seconds(c, entry, "first_token_timeout", path)}
    if entry.get("slo") is not None:
        where = join(path, "slo")
        slo = c.mapping(entry["slo"], where, _SLO_KEYS)
        if "ttft" not in slo and "total" not in slo:
            raise c.fail(where, "give ttft (p95 seconds to the first token), total (p95 seconds of the call), or both")
        out["slo"] = Slo(optional_seconds(c, slo, "ttft", where), optional_seconds(c, slo, "total", where),
                         c.integer(slo.get("min_calls", 5), join(where, "min_calls"), minimum=1, maximum=100_000))
    return out


def tier_hedge(c: Checks, entry: dict, path: str, models: int) -> float | None:
    """A tier's ``hedge`` delay; the tier needs a second model to hedge with."""
    hedge = optional_seconds(c, entry, "hedge", path)
    if hedge is not None and models < 2:
        raise c.fail(join(path, "hedge"), "hedging calls the tier's next model too: this tier has only one")
    return hedge
