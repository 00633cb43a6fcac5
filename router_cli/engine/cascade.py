"""Cascades: the cheapest tier first; an answer that fails its quality gate escalates.

    from router_cli import Router, RequestOptions, cascade, load_config
    answer = cascade(Router(load_config()), "Prove that sqrt(2) is irrational", RequestOptions(gate="both"))

Every answer and every judge's call is an attempt of the one request, recorded
with its gate verdict; the answer that passed (or, when none did, the best one
as ``best_effort``) is returned.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from decimal import Decimal

from ..classify import Decision
from ..config import Tier
from ..config.schema import STANDARD_KEY_ENV
from ..errors import UsageError
from ..pricing import cost_usd, decimal_str, max_input_tokens
from .admission import worst_case
from .attempts import answered
from .call import Call, transcript
from .checks import run_checks
from .gates import JUDGE_SYSTEM, GateResult, judge_answer, judge_prompt
from .latency import demote_slow
from .options import RequestOptions, resolve
from .record import finish, recording_on_interrupt
from .router import Route, Router, refuse_model_calls
from .types import Answer, Attempt, Estimate


def plan(router: Router, prompt: str, options: RequestOptions, route: Route | None = None) -> tuple[Decision, list[Tier]]:
    """The starting decision and the tiers to try, after checking the options.

    ``options.tier`` is where the cascade starts (default: the cheapest tier), or with
    ``from_classifier`` where the classifier routes; ``options.max_tier`` caps it.
    """
    config = route.config if route is not None else router.config
    names = config.tier_names
    for option, tier in (("--start-tier", options.tier), ("--max-tier", options.max_tier)):
        if tier is not None and tier not in names:
            raise UsageError(f"{option}: unknown tier {tier!r}; valid tiers: {', '.join(names)}")
    if options.from_classifier:
        decision = router.decide(prompt, classifier=options.classifier, route=route)
    elif options.tier is not None:
        decision = router.decide(prompt, tier=options.tier, route=route)
    else:
        decision = Decision(names[0], round(0.5 / len(names), 4), "cascade starts at the cheapest tier", "cascade")
    start = names.index(decision.tier)
    stop = names.index(options.max_tier) if options.max_tier is not None else len(names) - 1
    if stop < start:
        if not options.from_classifier:
            raise UsageError(f"--max-tier {names[stop]} is below the starting tier {names[start]}")
        # The classifier aimed higher than the user allows: the cap wins.
        router.on_note(f"the classifier chose {names[start]}; starting at --max-tier {names[stop]}")
        start = stop
    return decision, list(config.tiers[start: stop + 1])


def cascade(router: Router, prompt: str, options: RequestOptions | None = None, *, command: str = "cascade",
            **fields) -> Answer:
    """Answer ``prompt`` from the cheapest tier whose answer passes the quality gate.

    ``options`` (or its fields as keywords; ``start_tier`` is ``tier``) say how. Budgets
    and ``max_cost`` stop the escalation at the first tier they cannot cover; the best
    answer so far is then returned as best effort.
    """
    options = _options(options, fields)
    if not prompt.strip():
        raise UsageError("the prompt is empty")
    route = router.route(options.user)
    settings = route.config.cascade
    gate = options.gate or settings.gate
    decision, tiers = plan(router, prompt, options, route)
    started = time.perf_counter()
    request = router.open(command, route, decision, transcript(options.history, prompt), options)
    request.gate_thresholds = {t.name: _threshold(options, settings, t) for t in tiers}
    returned, failure, fatal = None, None, False
    with recording_on_interrupt(request):
        returned, failure, fatal = _escalate(router, request, options, gate, tiers, prompt)
    if returned is None and not fatal:
        failure = router.runner.exhausted_error([a for a in request.attempts if a.role == "answer"])
    ledger_error = finish(request, returned)
    if returned is None:
        assert failure is not None
        if ledger_error is not None:
            failure.message += f" (and the ledger could not be written: {ledger_error})"
        failure.request_id = request.request_id
        raise failure
    return Answer(returned.text or "", request.request_id, decision, request.attempts, returned, request.baseline,
                  (time.perf_counter() - started) * 1000, ledger_error, best_effort=returned.status == "best_effort",
                  policy=tuple(request.policy), variant=request.variant, budget_warnings=tuple(request.budget_warnings))


def _escalate(router: Router, request, options: RequestOptions, gate: str, tiers: list[Tier], prompt: str):
    """Tier by tier until an answer passes: ``(returned, failure, fatal)``."""
    settings = request.config.cascade
    best: Attempt | None = None
    failure, fatal = None, False
    for tier in tiers:
        call = Call(prompt, options.system, options.max_tokens, options.temperature, history=options.history,
                    first_token_timeout=options.first_token_timeout,
                    stop=options.stop, prompt_cache=options.prompt_cache or request.config.prompt_cache)
        chain = demote_slow([(tier, m) for m in router.models_of(tier, request.request_id)], request, router.clock())
        failure, fatal = router.runner.run(request.attempts, chain, call, request)
        if failure is not None:
            if fatal:
                # An answer already paid for is still better than none.
                if best is not None:
                    router.on_note(f"{tier.name} refused the request ({failure}); returning the best answer so far")
                    best.status = "best_effort"
                return best, failure, True
            router.on_note(f"every model of {tier.name} failed; escalating")
            continue
        answer = answered(request.attempts)
        limit = _threshold(options, settings, tier)
        verdict = _check(router, options, settings, tier, answer)
        if verdict is None:
            verdict = judge_answer(router, request, gate, limit, answer)
        answer.quality, answer.gate_reason = verdict.score, verdict.reason
        if verdict.score >= limit:
            return answer, None, False
        answer.status = "rejected"
        router.on_note(f"{answer.label} scored {verdict.score:.2f} < {limit:g} ({verdict.reason}); escalating")
        if best is None or verdict.score >= (best.quality or 0):
            best = answer
    if best is not None:
        best.status = "best_effort"
    return best, failure, fatal


def _check(router: Router, options: RequestOptions, settings, tier: Tier, answer: Attempt) -> GateResult | None:
    """The shell checks' verdict when they decide (a failure, or an error counted as one); None to go on
    to the configured gate (every check passed, or an error with ``on_judge_error: heuristic``)."""
    commands = options.checks + settings.checks.get(tier.name, ())
    if not commands:
        return None
    timeout = options.check_timeout or settings.check_timeout
    keys = {p.api_key_env for p in router.config.providers.values() if p.api_key_env} | set(STANDARD_KEY_ENV.values())
    answer.checks = run_checks(commands, answer.text or "", timeout, frozenset(keys))
    last = answer.checks[-1]
    if last.verdict == "fail":
        return GateResult(0.0, f"check failed: {last.gate} ({last.detail})")
    if last.verdict == "error":
        if settings.on_judge_error == "fail":
            router.on_note(f"the check {last.gate!r} erred ({last.detail}); counting the gate as failed")
            return GateResult(0.0, f"check error: {last.gate} ({last.detail}); counted as failed (cascade.on_judge_error: fail)")
        router.on_note(f"the check {last.gate!r} erred ({last.detail}); the other gates decide")
    return None


def _threshold(options: RequestOptions, settings, tier: Tier) -> float:
    return options.threshold if options.threshold is not None else settings.threshold_for(tier.name)


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


def estimate(router: Router, prompt: str, options: RequestOptions | None = None, **fields) -> CascadeEstimate:
    """The cascade's plan: the first call's estimate, and the worst case if every tier escalates
    (input tokens from their upper bound, as budgets count them)."""
    options = _options(options, fields)
    route = router.route(options.user) if options.user is not None else None  # the user's variant, as cascade runs
    config = route.config if route is not None else router.config
    settings = config.cascade
    gate = options.gate or settings.gate
    if options.from_classifier:
        refuse_model_calls(options.classifier or config.classifier)
    decision, tiers = plan(router, prompt, options, route)
    if tiers[0].name != decision.tier:  # the classifier aimed above --max-tier: the plan starts at the cap
        decision = replace(decision, tier=tiers[0].name,
                           reason=f"{decision.reason}; the classifier chose {decision.tier}, capped by --max-tier")
    first = replace(router.estimate(prompt, RequestOptions(system=options.system, tier=decision.tier,
                                                           max_tokens=options.max_tokens, user=options.user)),
                    decision=decision)
    names = {t.name for t in tiers}
    first = replace(first, candidates=tuple(c for c in first.candidates if c[0] in names))  # the plan's models only
    judge = config.tier(settings.judge_tier or config.tier_names[0]).models[0]
    # The judge reads the question, the answer (counted at its token limit) and the rubric.
    judged = max_input_tokens(judge_prompt(prompt, ""), JUDGE_SYSTEM)
    worst = Decimal(0)
    for tier in tiers:
        model = tier.models[0]
        out = options.max_tokens or model.max_tokens
        worst += worst_case(model, prompt, options.system, out)  # in the model's wording
        if gate != "heuristic":
            worst += cost_usd(judge.price, judged + out, settings.judge_max_tokens)
    limits = {t.name: _threshold(options, settings, t) for t in tiers}
    return CascadeEstimate(first, [t.name for t in tiers], gate, limits, worst)


def _options(options: RequestOptions | None, fields: dict) -> RequestOptions:
    if "start_tier" in fields:  # the CLI's name for where a cascade starts
        fields = {("tier" if k == "start_tier" else k): v for k, v in fields.items()}
    return resolve(options, fields)
