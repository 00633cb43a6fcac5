"""The order of a request's fallback chain: a tier's models (in order, or drawn by weight), and
the models of it that speak a native request's protocol."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from ..config import ModelSpec, Tier
from ..errors import UsageError

if TYPE_CHECKING:
    from .request import Request


def models_of(tier: Tier, seed: str | None = None) -> list[ModelSpec]:
    """``tier``'s models in the order to try them.

    Strategy ``order``: as listed. ``weighted``: a draw without replacement
    by weight, so each model is tried first in proportion to its weight and
    the others stay behind it as fallbacks; ``seed`` (the request id) makes
    the draw reproducible. Models of weight 0 are only fallbacks.
    """
    if tier.strategy != "weighted" or len(tier.models) < 2:
        return list(tier.models)
    draw = random.Random(seed)
    # Efraimidis-Spirakis: sort by u ** (1 / w), largest first.
    keyed = [(draw.random() ** (1 / m.weight) if m.weight > 0 else -1.0, i) for i, m in enumerate(tier.models)]
    return [tier.models[i] for _, i in sorted(keyed, key=lambda k: (-k[0], k[1]))]


def speaking(chain: list[tuple[Tier, ModelSpec]], protocol: str, request: Request) -> list[tuple[Tier, ModelSpec]]:
    """The models of ``chain`` that speak ``protocol`` (a request carrying tools or images in that
    protocol's form); the request's ledger rows say so. UsageError when there is none."""
    kept = [(t, m) for t, m in chain if request.config.providers[m.provider].type == protocol]
    if not kept:
        raise UsageError(f"this request carries tools or images in the {protocol} form, and no model of "
                         f"tier {request.start_tier} or above speaks {protocol}: ask for a lower tier, "
                         f"or add a model of type {protocol} to one of them")
    request.note(f"tools or images: only {protocol} models ({len(kept)} of {len(chain)} in the chain)")
    return kept
