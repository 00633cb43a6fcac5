"""The ml classifier's thresholds written as text (``simple=0.6,medium=0.5``), as given to
``mmr eval --thresholds``."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from ..config import Config


def parse_thresholds(text: str, tiers: list[str]) -> dict[str, float]:
    """``TIER=P,...`` for tiers below the top (the last of ``tiers``), each P in [0, 1]."""
    below_top = tiers[:-1]
    out = {}
    for part in text.split(","):
        tier, _, value = part.partition("=")
        tier = tier.strip()
        if tier not in below_top:
            raise UsageError(f"--thresholds: {tier!r} is not a tier below the top; give TIER=P for any of "
                             f"{', '.join(below_top)}")
        try:
            out[tier] = float(value)
        except ValueError:
            raise UsageError(f"--thresholds: {part.strip()!r}: expected TIER=P with P a number in [0, 1]") from None
        if not 0 <= out[tier] <= 1:
            raise UsageError(f"--thresholds: {tier}={value.strip()}: must be in [0, 1]")
    return out


def with_thresholds(config: Config, text: str) -> Config:
    """``config`` with the ml thresholds of ``text`` (see :func:`parse_thresholds`)."""
    return replace(config, ml_thresholds=parse_thresholds(text, config.tier_names))
