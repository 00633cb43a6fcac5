"""A small model as the judge of complexity: it answers with one tier name.

The cheapest tier's models answer, through a :class:`~.base.ModelCaller` (with
the usual fallbacks), at temperature 0 where the provider takes one, with a
few output tokens. The answer is parsed strictly (one tier name, any case, an optional full stop);
anything else, or a failed call, routes to the middle tier and says why. The
call is returned with the decision so that it is recorded in the ledger, with
its cost, as part of the request it routed.
"""

from __future__ import annotations

import re
import time

from ..config import Config
from .base import Decision, ModelCaller

MAX_TOKENS = 5
_DESCRIPTIONS = {
    "simple": "greetings, definitions, basic factual questions, translations",
    "medium": "summaries, explanations, moderate analysis",
    "complex": "multi-step reasoning, code, math, legal, detailed analysis",
}


def system_prompt(tiers: list[str]) -> str:
    words = ", ".join(t.upper() for t in tiers)
    lines = [f"Classify the complexity of the user's query. Reply with exactly one word: {words}."]
    for tier in tiers:
        lines.append(f"{tier.upper()}: {_DESCRIPTIONS.get(tier, 'see the order above, least to most demanding')}")
    return "\n".join(lines)


class LLMClassifier:
    name = "llm"

    def __init__(self, config: Config, caller: ModelCaller):
        self.tiers = config.tier_names
        self.caller = caller
        self.system = system_prompt(self.tiers)
        self._by_lower = {t.lower(): t for t in self.tiers}
        self._word = re.compile(r"^\s*(" + "|".join(re.escape(t) for t in self.tiers) + r")\s*\.?\s*$", re.IGNORECASE)

    def classify(self, prompt: str) -> Decision:
        start = time.perf_counter()
        reply = self.caller.ask_cheapest(prompt, self.system, MAX_TOKENS)
        fallback = self.tiers[len(self.tiers) // 2]
        failure = None
        if reply.failure is not None:
            failure = reply.failure
            tier, reason = fallback, f"the classifier call failed ({reply.failure}); routed to {fallback}"
        else:
            answer = reply.text or ""
            match = self._word.match(answer)
            if match:
                tier, reason = self._by_lower[match.group(1).lower()], f"{reply.model} said {answer.strip()!r}"
            else:
                tier, reason = fallback, f"unparseable classifier answer {answer.strip()[:30]!r}; routed to {fallback}"
        score = (self.tiers.index(tier) + 0.5) / len(self.tiers)
        return Decision(tier, round(score, 4), reason, self.name, (time.perf_counter() - start) * 1000, reply.calls,
                        failure=failure)
