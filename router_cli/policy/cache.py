"""The response cache: an exact repeat of a request is answered from the ledger database.

The key is a hash of the normalised request: the tier it was routed to, the
system prompt, the prompt (surrounding whitespace and line endings normalised),
``max_tokens`` and ``temperature``, with scope ``user`` the asking user, and the wording of the
models of the tier and every tier above it (its fallbacks) when they have one (templates, stop
sequences, temperatures: see config/phrasing.py). Only
successful, complete answers are stored (not cut off at ``max_tokens``, not a
cascade's best effort). Entries expire after the TTL; an entry whose model is no
longer in the config, or that a clock moved backwards made look younger than it
is, counts as a miss and is replaced.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Callable

from ..config import Config

if TYPE_CHECKING:
    from ..ledger.store import LedgerStore

INCOMPLETE_STOPS = frozenset({"max_tokens", "length"})


@dataclass(frozen=True)
class CachedAnswer:
    key: str
    request_id: str
    tier: str
    provider: str
    model: str
    text: str
    input_tokens: int
    output_tokens: int
    cost: Decimal  # what the original answer cost: what this hit saves
    stop_reason: str | None
    age: float  # seconds


def _wording(config: Config, tier: str) -> dict:
    """How every model the request's fallback chain can reach words it (config/phrasing.py): the
    tier's models and every tier's above, as engine/router.py's fallback chain walks them,
    since a cached answer may be a fallback's. When any has a wording, an edited template, stop
    sequence or temperature asks again instead of answering in the old wording."""
    worded = [[m.phrasing.hash if m.phrasing else None, list(m.stop), m.temperature]
              for t in config.tiers[config.tier_index(tier):] for m in t.models]
    return {"wording": worded} if any(w != [None, [], None] for w in worded) else {}


def cache_key(config: Config, *, tier: str, prompt: str, system: str | None, max_tokens: int | None,
              temperature: float | None, user: str | None, mode: str = "ask", variant: str | None = None,
              model: str | None = None) -> str:
    """The cache key of a request (a hex digest: neither prompt nor user is readable from it); ``model``:
    the model asked for by id (mmr serve), which only its own answers may answer."""
    def normal(text: str | None) -> str | None:
        return None if text is None else text.replace("\r\n", "\n").strip()

    request = {
        "v": 1, "mode": mode, "tier": tier, "system": normal(system), "prompt": normal(prompt),
        "max_tokens": max_tokens, "temperature": temperature,
        "user": user if config.cache.scope == "user" else None,
        # Experiment variants may give a tier other models: each keeps its own answers.
        **({"variant": variant} if variant else {}),
        **({"model": model} if model else {}),
        **_wording(config, tier),
    }
    return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ResponseCache:
    """Cache entries kept by an open ledger store."""

    def __init__(self, ledger: LedgerStore, config: Config, clock: Callable[[], float] = time.time):
        self.ledger = ledger
        self.config = config
        self.clock = clock

    def get(self, key: str) -> tuple[CachedAnswer | None, str | None]:
        """The live entry for ``key``, or None with the reason an entry was not usable."""
        entry = self.ledger.cache_get(key)
        if entry is None:
            return None, None
        now = self.clock()
        age = now - entry["created_at"]
        if now >= entry["expires_at"] or age < -1 or entry["expires_at"] - now > self.config.cache.ttl + 1:
            return None, "the cached answer expired"
        tiers = [t for t in self.config.tiers if t.name == entry["tier"]]
        if not any(m.provider == entry["provider"] and m.model == entry["model"] for t in tiers for m in t.models):
            return None, (f"the cached answer came from {entry['provider']}/{entry['model']}, which the config's "
                          f"{entry['tier']} tier no longer has")
        return CachedAnswer(
            key, entry["request_id"], entry["tier"], entry["provider"], entry["model"], entry["text"],
            entry["input_tokens"], entry["output_tokens"], Decimal(entry["cost_usd"]), entry["stop_reason"], max(age, 0.0),
        ), None

    def put(self, key: str, *, request_id: str, tier: str, provider: str, model: str, text: str,
            input_tokens: int, output_tokens: int, cost: Decimal, stop_reason: str | None) -> bool:
        """Store a complete answer (replacing any entry for ``key``); False when it is not cacheable."""
        if stop_reason in INCOMPLETE_STOPS or not text:
            return False
        now = self.clock()
        entry = {"key": key, "scope": self.config.cache.scope, "created_at": now, "expires_at": now + self.config.cache.ttl,
                 "request_id": request_id, "tier": tier, "provider": provider, "model": model, "text": text,
                 "input_tokens": input_tokens, "output_tokens": output_tokens, "cost_usd": format(cost, "f"),
                 "stop_reason": stop_reason}
        self.ledger.cache_put(entry, now)
        return True


__all__ = ["CachedAnswer", "ResponseCache", "cache_key"]
