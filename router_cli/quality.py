"""Quality gates for cascades: cheap heuristics and an LLM judge.

A gate returns a :class:`GateResult`: a score in [0, 1] and a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .config import GATES  # noqa: F401 - the gate names are config data; cascades import them from here too

JUDGE_SYSTEM = (
    "You grade answers to questions. Score the answer from 0 to 1: 1 when it is correct, complete and "
    "directly answers the question; 0.5 when it is partly right or incomplete; 0 when it is wrong, "
    "evasive, or off topic. Reply with the number only, for example: 0.8"
)

# A refusal names what it will not do; "Sorry, I misread" or "I'm sorry to hear" is not one.
_REFUSAL = re.compile(
    r"^\W*(?:(?:i'?m |i am )?sorry,? (?:but )?|unfortunately,? )?"
    r"(?:i (?:can ?not|can'?t|am unable to|'?m unable to|am not able to|won'?t|will not) "
    r"(?:help|assist|answer|provide|do|comply|fulfil|share|give)"
    r"|as an ai\b|as a (?:large )?language model|i (?:don'?t|do not) know\b|i'?m not sure\b|i am not sure\b)",
    re.IGNORECASE,
)
REFUSAL_MAX_WORDS = 40  # a longer answer that starts by hedging usually goes on to answer
# Requests for something substantial; "how many", "list" and "which" may rightly get a word or two.
_ASKS_FOR_MORE = re.compile(
    r"\b(explain|describe|write|compare|analy[sz]e|why|summari[sz]e|discuss|outline|draft|prove)\b",
    re.IGNORECASE,
)
_JUDGE_SCORE = re.compile(
    r"^\s*(?:score\s*[:=]?\s*)?(\d+(?:\.\d+)?|\.\d+)\s*(?:/\s*(\d+(?:\.\d+)?))?\s*\.?\s*$", re.IGNORECASE
)


@dataclass(frozen=True)
class GateResult:
    score: float
    reason: str


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def heuristic_gate(question: str, answer: str, stop_reason: str | None) -> GateResult:
    """Free checks: empty, cut off, refusal, too short for the question, an echo of it."""
    text = answer.strip().replace("\u2019", "'")
    if not text:
        return GateResult(0.0, "empty answer")
    if stop_reason in ("max_tokens", "length"):
        return GateResult(0.2, "cut off at the token limit")
    words = len(text.split())
    if words <= REFUSAL_MAX_WORDS and _REFUSAL.search(text):
        return GateResult(0.1, "a refusal or 'I don't know'")
    q, a = _normal(question), _normal(text)
    if a == q or (q and a.startswith(q) and len(a) < len(q) + 15):
        return GateResult(0.2, "repeats the question")
    if _ASKS_FOR_MORE.search(question) and words < 5:
        return GateResult(0.3, f"implausibly short for the question ({words} words)")
    return GateResult(1.0, "passed the heuristic checks")


def judge_prompt(question: str, answer: str) -> str:
    return f"Question:\n{question}\n\nAnswer:\n{answer}\n\nScore (0 to 1):"


def parse_judge_score(text: str | None) -> float | None:
    """A score in [0, 1] from "0.8", "8/10" or "Score: 0.8" (on the first line, markdown
    emphasis aside); None for anything else."""
    first = next((line for line in (text or "").splitlines() if line.strip()), "")
    match = _JUDGE_SCORE.match(first.replace("*", "").replace("`", ""))
    if not match:
        return None
    value = float(match.group(1))
    if match.group(2) is not None:
        scale = float(match.group(2))
        if scale <= 0:
            return None
        value /= scale
    return value if 0 <= value <= 1 else None
