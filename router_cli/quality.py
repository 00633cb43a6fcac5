"""Quality gates for cascades: cheap heuristics and an LLM judge.

A gate returns a :class:`GateResult`: a score in [0, 1] and a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GATES = ("heuristic", "judge", "both")

JUDGE_SYSTEM = (
    "You grade answers to questions. Score the answer from 0 to 1: 1 when it is correct, complete and "
    "directly answers the question; 0.5 when it is partly right or incomplete; 0 when it is wrong, "
    "evasive, or off topic. Reply with the number only, for example: 0.8"
)

_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|sorry[,.]|i apologi[sz]e|as an ai\b|i (?:can ?not|can'?t|am unable to|am not able to|won'?t) "
    r"(?:help|assist|answer|provide|do|comply)|i don'?t know|i do not know|i'?m not sure|i am not sure|"
    r"unable to (?:answer|help))",
    re.IGNORECASE,
)
_ASKS_FOR_MORE = re.compile(
    r"\b(explain|describe|write|list|compare|analy[sz]e|why|how|summari[sz]e|discuss|outline|draft|prove)\b",
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
    text = answer.strip()
    if not text:
        return GateResult(0.0, "empty answer")
    if stop_reason in ("max_tokens", "length"):
        return GateResult(0.2, "cut off at the token limit")
    if _REFUSAL.search(text):
        return GateResult(0.1, "a refusal or 'I don't know'")
    q, a = _normal(question), _normal(text)
    if a == q or (q and a.startswith(q) and len(a) < len(q) + 15):
        return GateResult(0.2, "repeats the question")
    words = len(text.split())
    if (_ASKS_FOR_MORE.search(question) and words < 5) or (len(question) > 400 and words < 10):
        return GateResult(0.3, f"implausibly short for the question ({words} words)")
    return GateResult(1.0, "passed the heuristic checks")


def judge_prompt(question: str, answer: str) -> str:
    return f"Question:\n{question}\n\nAnswer:\n{answer}\n\nScore (0 to 1):"


def parse_judge_score(text: str | None) -> float | None:
    """A score in [0, 1] from "0.8", "8/10" or "Score: 0.8"; None for anything else."""
    match = _JUDGE_SCORE.match(text or "")
    if not match:
        return None
    value = float(match.group(1))
    if match.group(2) is not None:
        scale = float(match.group(2))
        if scale <= 0:
            return None
        value /= scale
    return value if 0 <= value <= 1 else None
