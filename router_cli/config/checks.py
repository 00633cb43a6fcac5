"""Checks of single values in a parsed tiers file, each problem named by its key path.

    c = Checks("tiers.yaml")
    c.integer(entry.get("max_tokens", 1024), "tiers[0].models[1].max_tokens", minimum=1)
    # ConfigError: tiers.yaml: tiers[0].models[1].max_tokens: expected an integer, got str 'lots'
"""

from __future__ import annotations

import os
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Collection

from ..errors import ConfigError


class Checks:
    """Value checks for one file: each returns the value (converted) or raises a :class:`ConfigError`."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, problem: str) -> ConfigError:
        """The error to raise for ``problem`` at ``path`` (the file itself when ``path`` is empty)."""
        return ConfigError(f"{self.source}: {path}: {problem}" if path else f"{self.source}: {problem}")

    def mapping(self, value: Any, path: str, allowed: Collection[str], required: Collection[str] = ()) -> dict:
        """A mapping with only ``allowed`` keys and every ``required`` one."""
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {kind(value)}")
        for key in value:
            if key not in allowed:
                hint = ""
                if key in ("api_key", "key", "token"):
                    hint = "; keys never go in the config: put it in an environment variable and name that in api_key_env"
                raise self.fail(join(path, key), f"unknown key (allowed: {', '.join(sorted(allowed))}){hint}")
        for key in sorted(required):
            if key not in value:
                raise self.fail(join(path, key), "required key is missing")
        return value

    def names(self, value: Any, path: str) -> dict:
        """A mapping whose keys are names the file chooses (providers, experiments, variants)."""
        return self.mapping(value, path, set(value) if isinstance(value, dict) else set())

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected a non-empty string, got {kind(value)}")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {kind(value)}")
        return value

    def integer(self, value: Any, path: str, minimum: int = 0, maximum: int = 1_000_000) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {kind(value)}")
        if not minimum <= value <= maximum:
            raise self.fail(path, f"must be between {minimum} and {maximum}")
        return value

    def number(self, value: Any, path: str, minimum: float = 0.0, maximum: float = 10**6) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"expected a number, got {kind(value)}")
        if not minimum <= value <= maximum:  # also refuses NaN and infinities
            raise self.fail(path, f"must be a number between {minimum:g} and {maximum:g}")
        return float(value)

    def money(self, value: Any, path: str) -> Decimal:
        """A price in USD per 1M tokens, exactly as written."""
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise self.fail(path, f"expected a price in USD per 1M tokens, got {kind(value)}")
        try:
            amount = Decimal(exact_text(value).strip())
        except InvalidOperation:
            raise self.fail(path, f"not a number: {value!r}") from None
        if not amount.is_finite() or not 0 <= amount <= 1_000_000:
            raise self.fail(path, f"must be an amount between 0 and 1000000 (USD per 1M tokens), got {value}")
        return amount

    def usd(self, value: Any, path: str, maximum: Decimal) -> Decimal:
        """An amount in USD (``5``, ``'0.05'``, ``'$20'``), exactly as written, from 0 to ``maximum``."""
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise self.fail(path, f"expected an amount in USD, got {kind(value)}")
        try:
            amount = Decimal(exact_text(value).strip().lstrip("$"))
        except InvalidOperation:
            raise self.fail(path, f"not a number: {value!r}") from None
        if not amount.is_finite() or amount < 0:
            raise self.fail(path, f"must be an amount of 0 USD or more, got {value}")
        if amount > maximum:
            raise self.fail(path, f"must be an amount of at most {maximum} USD, got {value}")
        return amount

    def duration(self, value: Any, path: str) -> float:
        """Seconds, as a number or as text like ``90s``, ``30m``, ``24h``, ``7d``."""
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
            if not match:
                raise self.fail(path, f"expected seconds or a duration like 30m, 24h, 7d; got {value!r}")
            value = float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
        return self.number(value, path, minimum=0.0, maximum=366 * 86400)

    def tier(self, value: Any, path: str, tiers: list[str]) -> str:
        """The name of one of ``tiers``."""
        if value not in tiers:
            raise self.fail(path, f"unknown tier {value!r}; valid tiers: {', '.join(tiers)}")
        return value

    def relative(self, path: str) -> str:
        """A path in the config is relative to the config file."""
        if not os.path.isabs(path) and os.path.exists(self.source):
            return os.path.join(os.path.dirname(self.source), path)
        return path


def exact_text(value: int | float | str) -> str:
    """The digits as written: a YAML float keeps them (see load.py), so prices stay exact."""
    return getattr(value, "text", str(value))


def join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def kind(value: Any) -> str:
    """What a value is, for an error message."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value!r}"
