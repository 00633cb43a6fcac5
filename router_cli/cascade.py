"""Cheapest first: answer, check the answer, escalate when it falls short.

    from router_cli import Router, load_config
    from router_cli.cascade import cascade
    answer = cascade(Router(load_config(), "ledger.db"), "Prove that sqrt(2) is irrational")

Each tier answers with the same fallback rules as ``ask`` (its models in
order, retries); a tier whose models all error is skipped upwards. The answer
goes through the gate (heuristic checks, an LLM judge, or both); below the
tier's threshold it is discarded and the next tier answers. When no tier
passes, the best-scoring answer is returned as best effort. Every answer and
every judge call is an attempt of the same request in the ledger.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from decimal import Decimal

from .classify import Decision
from .errors import MmrError, UsageError
from .quality import GATES, JUDGE_SYSTEM, GateResult, heuristic_gate, judge_prompt, parse_judge_score
from .pricing import cost_usd, decimal_str
from .router import Answer, Attempt, Estimate, RequestLog, Router


def plan(router: Router, prompt: str, *, start_tier: str | None = None, max_tier: str | None = None,
         from_classifier: bool = False, classifier: str | None = None) -> tuple[Decision, list]:
    """The starting decision and the tiers to try, after checking the options."""
    config = router.config
    names = config.tier_names
    for option, tier in (("--start-tier", start_tier), ("--max-tier", max_tier)):
        if tier is not None and tier not in names:
            raise UsageError(f"{option}: unknown tier {tier!r}; valid tiers: {', '.join(names)}")
    if start_tier is not None and from_classifier:
        raise UsageError("--start-tier and --from-classifier both choose where to start; give one")
    if from_classifier:
        decision = router.decide(prompt, classifier=classifier)
    elif start_tier is not None:
        decision = router.decide(prompt, tier=start_tier)
    else:
        first = names[0]
        decision = Decision(first, round(0.5 / len(names), 4), "cascade starts at the cheapest tier", "cascade")
    start = names.index(decision.tier)
    stop = names.index(max_tier) if max_tier is not None else len(names) - 1
    if stop < start:
        if not from_classifier:
            raise UsageError(f"--max-tier {names[stop]} is below the starting tier {names[start]}")
        # The classifier aimed higher than the user allows: the cap wins.
        router.on_note(f"the classifier chose {names[start]}; starting at --max-tier {names[stop]}")
        start = stop
    return decision, list(config.tiers[start: stop + 1])


def cascade(
    router: Router,
    prompt: str,
    options=None,
    *,
    system: str | None = None,
    start_tier: str | None = None,
    max_tier: str | None = None,
    from_classifier: bool = False,
    classifier: str | None = None,
    threshold: float | None = None,
    gate: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    user: str | None = None,
    team: str | None = None,
    max_cost: Decimal | None = None,
) -> Answer:
    """Answer ``prompt`` from the cheapest tier whose answer passes the quality gate.

    Budgets and ``max_cost`` stop the escalation at the first tier they cannot
    cover; the best answer so far is then returned as best effort.
    """
    if options is not None:
        return cascade(router, prompt, **_cascade_fields(options), user=options.user, team=options.team,
                       temperature=options.temperature, max_cost=options.max_cost)
    settings = router.config.cascade
    gate = _check(gate or settings.gate, threshold, max_tokens)
    if not prompt.strip():
        raise UsageError("the prompt is empty")
    router, request_id = router.for_request(user)
    settings = router.config.cascade
    decision, tiers = plan(router, prompt, start_tier=start_tier, max_tier=max_tier,
                           from_classifier=from_classifier, classifier=classifier)
    started = time.perf_counter()
    log = router.begin_request("cascade", decision, prompt, system, user, team, max_cost=max_cost, request_id=request_id)
    log.gate_thresholds = {t.name: threshold if threshold is not None else settings.threshold_for(t.name) for t in tiers}
    returned: Attempt | None = None
    best: Attempt | None = None
    failure, fatal = None, False
    with log.recording_on_interrupt():
        for tier in tiers:
            failure, fatal = router.try_models(log.attempts, [(tier, m) for m in router.models_of(tier, log.request_id)],
                                               prompt, system, max_tokens, temperature, log=log)
            if failure is not None:
                if fatal:
                    # An answer already paid for is still better than none.
                    if best is not None:
                        router.on_note(f"{tier.name} refused the request ({failure}); returning the best answer so far")
                        best.status, returned = "best_effort", best
                    break
                router.on_note(f"every model of {tier.name} failed; escalating")
                continue
            answer = log.attempts[-1]
            limit = threshold if threshold is not None else settings.threshold_for(tier.name)
            verdict = _gate(router, log, gate, limit, prompt, answer)
            answer.quality, answer.gate_reason = verdict.score, verdict.reason
            if verdict.score >= limit:
                returned = answer
                break
            answer.status = "rejected"
            router.on_note(f"{answer.label} scored {verdict.score:.2f} < {limit:g} ({verdict.reason}); escalating")
            if best is None or verdict.score >= (best.quality or 0):
                best = answer
        else:
            if best is not None:
                best.status = "best_effort"
                returned = best
    if returned is None and not fatal:
        failure = router.exhausted_error([a for a in log.attempts if a.role == "answer"])
    ledger_error = log.finish(returned)
    if returned is None:
        assert failure is not None
        if ledger_error is not None:
            failure.message += f" (and the ledger could not be written: {ledger_error})"
        raise failure
    return Answer(returned.text or "", log.request_id, decision, log.attempts, returned, log.baseline,
                  (time.perf_counter() - started) * 1000, ledger_error, best_effort=returned.status == "best_effort",
                  policy=tuple(log.policy), variant=log.variant)


def _gate(router: Router, log: RequestLog, gate: str, limit: float, prompt: str, answer: Attempt) -> GateResult:
    heuristic = heuristic_gate(prompt, answer.text or "", answer.stop_reason)
    if gate == "heuristic" or (gate == "both" and heuristic.score < limit):
        return heuristic  # a failed free check needs no paid judge
    settings = router.config.cascade
    judge_tier = router.config.tier(settings.judge_tier or router.config.tier_names[0])
    try:
        failure, _ = router.try_models(
            log.attempts, [(judge_tier, m) for m in router.models_of(judge_tier, log.request_id)],
            judge_prompt(prompt, answer.text or ""), JUDGE_SYSTEM, settings.judge_max_tokens, 0.0, role="judge", log=log,
        )
    except MmrError as e:  # e.g. a malformed key for the judge's provider: the answer must survive it
        failure = e
    if failure is None and log.attempts[-1].stop_reason in ("max_tokens", "length") and not (log.attempts[-1].text or "").strip():
        failure = MmrError("the judge ran out of tokens before answering")
    if failure is not None:
        # The answer is kept whatever happens to its judge.
        if settings.on_judge_error == "fail":
            router.on_note(f"the judge failed ({failure}); counting the gate as failed")
            return GateResult(0.0, "judge failed; gate counted as failed (cascade.on_judge_error: fail)")
        router.on_note(f"the judge failed ({failure}); using the heuristic gate")
        return GateResult(heuristic.score, f"judge failed; heuristic gate used: {heuristic.reason}")
    verdict = log.attempts[-1]
    score = parse_judge_score(verdict.text)
    if score is None:
        verdict.gate_reason = "unparseable"
        return GateResult(0.0, f"judge answer not understood: {(verdict.text or '')[:40]!r}")
    verdict.quality = score
    return GateResult(score, f"judge scored {score:g}")


@dataclass(frozen=True)
class CascadeEstimate:
    """What ``mmr cascade --dry-run`` reports: the plan and its cost bounds, no call made."""

    first: Estimate  # the starting tier's call
    tiers: list[str]
    gate: str
    thresholds: dict[str, float]
    worst_cost: Decimal  # every tier answers and, with a judge, is judged

    def to_json(self) -> dict:
        return {
            **self.first.to_json(), "tiers": self.tiers, "gate": self.gate, "thresholds": self.thresholds,
            "worst_case_cost_usd": decimal_str(self.worst_cost),
        }


def estimate(router: Router, prompt: str, options=None, *, system: str | None = None, start_tier: str | None = None,
             max_tier: str | None = None, from_classifier: bool = False, classifier: str | None = None,
             threshold: float | None = None, gate: str | None = None, max_tokens: int | None = None) -> CascadeEstimate:
    """The cascade's plan: the first call's estimate, and the worst case if every tier escalates."""
    if options is not None:
        return estimate(router, prompt, **_cascade_fields(options))
    settings = router.config.cascade
    gate = _check(gate or settings.gate, threshold, max_tokens)
    decision, tiers = plan(router, prompt, start_tier=start_tier, max_tier=max_tier,
                           from_classifier=from_classifier, classifier=classifier)
    first = router.estimate(prompt, system=system, tier=decision.tier, max_tokens=max_tokens)
    first = replace(first, decision=decision)
    tokens = first.input_tokens
    judge = router.config.tier(settings.judge_tier or router.config.tier_names[0]).models[0]
    worst = Decimal(0)
    for tier in tiers:
        model = tier.models[0]
        out = max_tokens or model.max_tokens
        worst += cost_usd(model.price, tokens, out)
        if gate != "heuristic":
            worst += cost_usd(judge.price, tokens + out + 60, settings.judge_max_tokens)  # prompt + answer + rubric
    limits = {t.name: threshold if threshold is not None else settings.threshold_for(t.name) for t in tiers}
    return CascadeEstimate(first, [t.name for t in tiers], gate, limits, worst)


def _check(gate: str, threshold: float | None, max_tokens: int | None) -> str:
    if gate not in GATES:
        raise UsageError(f"--gate: unknown gate {gate!r}; valid gates: {', '.join(GATES)}")
    if threshold is not None and not 0 <= threshold <= 1:
        raise UsageError(f"--threshold must be between 0 and 1, got {threshold:g}")
    if max_tokens is not None and max_tokens < 1:
        raise UsageError(f"--max-tokens must be at least 1, got {max_tokens}")
    return gate


def _cascade_fields(options) -> dict:
    """A RequestOptions as this module's keywords (``tier`` is where the cascade starts)."""
    return {"system": options.system, "start_tier": options.tier, "max_tier": options.max_tier,
            "from_classifier": options.from_classifier, "classifier": options.classifier,
            "threshold": options.threshold, "gate": options.gate, "max_tokens": options.max_tokens}
