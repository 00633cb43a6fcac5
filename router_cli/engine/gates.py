"""Quality gates for cascades: cheap heuristics and an LLM judge.

A gate returns a :class:`GateResult`: a score in [0, 1] and a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .request import Request
    from .router import Router
    from .types import Attempt


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


def judge_answer(router: "Router", request: "Request", gate: str, limit: float, answer: "Attempt") -> GateResult:
    """``answer``'s verdict under ``gate``: the free heuristic, the judge tier's score, or both.

    The judge's own call is one of the request's attempts (role ``judge``). A judge
    that fails never costs the answer: the heuristic stands in, or with
    ``cascade.on_judge_error: fail`` the gate counts as failed.
    """
    from ..errors import MmrError
    from .attempts import answered
    from .call import Call

    prompt = request.prompt
    heuristic = heuristic_gate(prompt, answer.text or "", answer.stop_reason)
    if gate == "heuristic" or (gate == "both" and heuristic.score < limit):
        return heuristic  # a failed free check needs no paid judge
    settings = request.config.cascade
    judge_tier = request.config.tier(settings.judge_tier or request.config.tier_names[0])
    call = Call(judge_prompt(prompt, answer.text or ""), JUDGE_SYSTEM, settings.judge_max_tokens, 0.0, role="judge")
    try:
        failure, _ = router.runner.run(request.attempts, [(judge_tier, m) for m in router.models_of(judge_tier, request.request_id)],
                                       call, request)
    except MmrError as e:  # e.g. a malformed key for the judge's provider: the answer must survive it
        failure = e
    verdict = answered(request.attempts)
    if failure is None and verdict.stop_reason in ("max_tokens", "length") and not (verdict.text or "").strip():
        failure = MmrError("the judge ran out of tokens before answering")
    if failure is not None:
        if settings.on_judge_error == "fail":
            router.on_note(f"the judge failed ({failure}); counting the gate as failed")
            return GateResult(0.0, "judge failed; gate counted as failed (cascade.on_judge_error: fail)")
        router.on_note(f"the judge failed ({failure}); using the heuristic gate")
        return GateResult(heuristic.score, f"judge failed; heuristic gate used: {heuristic.reason}")
    score = parse_judge_score(verdict.text)
    if score is None:
        verdict.gate_reason = "unparseable"
        return GateResult(0.0, f"judge answer not understood: {(verdict.text or '')[:40]!r}")
    verdict.quality = score
    return GateResult(score, f"judge scored {score:g}")
