"""Keyword rules: the seed's regexes (config.schema) plus a length cut-off, all configurable.

Tiers are checked from the most capable down and the first pattern that
matches wins; a short prompt with no match goes to ``short_prompt_tier`` and
anything else to ``default_tier``. The score is the centre of the chosen
tier's band in [0, 1] (with three tiers: 0.17, 0.5, 0.83).

Patterns see at most the first and the last ``RULE_CHARS`` characters of a
prompt (joined by a newline, so ``.`` does not match across the cut; ``^`` and
``$`` keep their meaning): a request's keywords sit at its start or its end, and
the work a pattern can do is bounded by the text it is given. The config refuses
the patterns whose backtracking could still hang on that (config/patterns.py).
"""

from __future__ import annotations

import re
import time

from ..config import Config
from .base import Decision


# 1,000 + 1,000 characters: bounds the slowest pattern the config accepts (.*abc.*def on hostile
# text) and the seed patterns; bench/rule_patterns.py times both.
RULE_CHARS = 1000


def rule_text(text: str) -> str:
    """What the patterns look at: the whole text, or its first and last RULE_CHARS characters."""
    if len(text) <= 2 * RULE_CHARS:
        return text
    return f"{text[:RULE_CHARS]}\n{text[-RULE_CHARS:]}"


def rules_sha256(config: Config) -> str:
    """SHA-256 of the config's rules (patterns, cut-off, fallback tiers): what a blend with a rules
    part was trained on, so a blend refuses rules edited since (classify/blend.py)."""
    import hashlib
    import json

    rules = config.rules
    body = {"patterns": {t: list(p) for t, p in rules.patterns.items()}, "short_prompt_chars": rules.short_prompt_chars,
            "short_prompt_tier": rules.short_prompt_tier, "default_tier": rules.default_tier}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class RulesClassifier:
    name = "rules"

    def __init__(self, config: Config):
        self.tiers = config.tier_names
        rules = config.rules
        order = sorted(rules.patterns, key=self.tiers.index, reverse=True)
        self.patterns = [(tier, [(p, re.compile(p)) for p in rules.patterns[tier]]) for tier in order]
        self.short_chars = rules.short_prompt_chars
        self.short_tier = rules.short_prompt_tier
        self.default_tier = rules.default_tier

    def classify(self, prompt: str) -> Decision:
        start = time.perf_counter()
        text = prompt.lower().strip()
        tier, reason = self.default_tier, f"no rule matched and {len(text)} >= {self.short_chars} characters"
        scanned = rule_text(text)
        for candidate, patterns in self.patterns:
            hit = next((source for source, regex in patterns if regex.search(scanned)), None)
            if hit is not None:
                tier, reason = candidate, f"matched /{hit}/"
                break
        else:
            if len(text) < self.short_chars:
                tier, reason = self.short_tier, f"short prompt ({len(text)} < {self.short_chars} characters)"
        score = (self.tiers.index(tier) + 0.5) / len(self.tiers)
        return Decision(tier, round(score, 4), reason, self.name, (time.perf_counter() - start) * 1000)
