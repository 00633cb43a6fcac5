"""The request path: classify, walk the fallback chain with retries, log to the ledger.

    from router_cli import Router, load_config
    answer = Router(load_config()).ask("What is a monad?")
    print(answer.text, answer.cost)

Fallback chain: the chosen tier's models in order, then each tier above it.
Retryable errors (429, 5xx, overloaded, timeouts, dropped connections) are
retried on the same model with exponential backoff and full jitter, honouring
``retry-after``; then the next model is tried. A 404 or 402/403 moves straight
to the next model. A 400 (the request itself is wrong) and a 401 (the key is
wrong) stop at once: every other model would fail the same way, or the user
must fix the key.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Callable, Mapping

from .classify import Decision, get_classifier
from .config import Config, ModelSpec, ProviderSpec, Tier
from .errors import (
    EXIT_REQUEST_REJECTED, AllAttemptsFailed, BudgetExceeded, LedgerError, MissingKeyError, MmrError, UsageError,
)
from .ids import new_id
from .policy.pauses import ProviderPauses
from .pricing import cost_usd, decimal_str, estimate_tokens, to_nanousd

if TYPE_CHECKING:
    from .engine.options import RequestOptions

Note = Callable[[str], None]


@dataclass
class Attempt:
    """One try of one model.

    ``status``: ``ok``, ``error``, ``skipped`` (never called: no key, circuit open,
    over budget), ``cached`` (answered from the response cache), ``blocked`` (a
    budget refused the request), and in cascades ``rejected`` or ``best_effort``.
    """

    tier: str
    provider: str
    model: str
    status: str
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    error: str | None = None
    error_kind: str | None = None
    http_status: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    duration_ms: float = 0.0
    ttft_ms: float | None = None
    stop_reason: str | None = None
    usage_estimated: bool = False
    text: str | None = None
    call_id: str | None = None
    role: str = "answer"  # or "judge": a quality gate's call
    quality: float | None = None  # the gate's score, in cascades
    gate_reason: str | None = None
    saved: Decimal = Decimal(0)  # a cache hit: what the original answer cost

    @property
    def label(self) -> str:
        return f"{self.tier} {self.provider}/{self.model}"

    def to_json(self) -> dict:
        out: dict = {
            "tier": self.tier, "provider": self.provider, "model": self.model, "status": self.status,
            "error": self.error, "cost_usd": decimal_str(self.cost),
        }
        if self.role != "answer":
            out["role"] = self.role
        if self.quality is not None or self.gate_reason is not None:
            out["quality"] = {"score": self.quality, "reason": self.gate_reason}
        return out


@dataclass
class Answer:
    """The result of :meth:`Router.ask`: the answer and everything it cost."""

    text: str
    request_id: str
    decision: Decision
    attempts: list[Attempt]
    final: Attempt
    baseline_cost: Decimal
    latency_ms: float
    ledger_error: LedgerError | None = None
    best_effort: bool = False  # a cascade where no answer passed the gate
    policy: tuple[str, ...] = ()  # what budgets, the cache and circuit breakers decided
    variant: str | None = None  # the experiment variants it ran under

    @property
    def cost(self) -> Decimal:
        """Everything this request was billed, failed attempts included."""
        return sum((a.cost for a in self.attempts), Decimal(0))

    def to_json(self) -> dict:
        """The ``--json`` object (a contract: see DESIGN.md)."""
        return {
            "text": self.text,
            "call_id": self.final.call_id,
            "request_id": self.request_id,
            "tier": self.final.tier,
            "provider": self.final.provider,
            "model": self.final.model,
            "classifier": self.decision.classifier,
            "score": self.decision.score,
            "input_tokens": self.final.input_tokens,
            "output_tokens": self.final.output_tokens,
            "cost_usd": decimal_str(self.cost),
            "baseline_cost_usd": decimal_str(self.baseline_cost),
            "savings_usd": decimal_str(self.baseline_cost - self.cost),
            "latency_ms": round(self.latency_ms, 1),
            "cached": self.final.status == "cached",
            "stop_reason": self.final.stop_reason,
            "variant": self.variant,
            "attempts": [a.to_json() for a in self.attempts],
            **({"policy": list(self.policy)} if self.policy else {}),
            **({"quality": self.final.quality, "best_effort": self.best_effort} if self.final.quality is not None else {}),
        }


@dataclass(frozen=True)
class Estimate:
    """What ``--dry-run`` reports: the decision and the worst-case cost, no call made."""

    decision: Decision
    tier: str
    provider: str
    model: str
    input_tokens: int
    max_output_tokens: int
    cost: Decimal
    baseline_cost: Decimal
    missing_key: str | None
    policy: str | None = None  # a --max-cost downgrade

    def to_json(self) -> dict:
        return {
            "dry_run": True, "tier": self.tier, "provider": self.provider, "model": self.model,
            "classifier": self.decision.classifier, "score": self.decision.score, "reason": self.decision.reason,
            "estimated_input_tokens": self.input_tokens, "max_output_tokens": self.max_output_tokens,
            "max_cost_usd": decimal_str(self.cost), "max_baseline_cost_usd": decimal_str(self.baseline_cost),
            "missing_key": self.missing_key, "policy": self.policy,
        }


class RequestLog:
    """One request's attempts, written to the ledger together when it ends."""

    def __init__(self, router: "Router", command: str, decision: Decision, prompt: str, system: str | None,
                 user: str | None, team: str | None, stream: bool, guard=None, request_id: str | None = None):
        self.router = router
        self.request_id = request_id or new_id()
        self.variant = router.variant
        self.gate_thresholds: dict[str, float] | None = None  # a cascade's, per tier tried
        self.command, self.decision, self.prompt, self.system = command, decision, prompt, system
        self.user, self.team, self.stream = user, team, stream
        self.attempts: list[Attempt] = list(decision.calls)  # a classifier's own calls come first
        self.baseline = Decimal(0)
        self.start_tier = decision.tier  # where the chain starts: the decision, unless a budget downgraded it
        self.guard = guard  # a BudgetGuard, or None when no budget applies
        self.policy: list[str] = []

    def note(self, message: str) -> None:
        """A policy decision: shown on stderr, kept on the request's ledger rows."""
        self.policy.append(message)
        self.router.on_note(message)

    @property
    def billed(self) -> Decimal:
        return sum((a.cost for a in self.attempts), Decimal(0))

    def finish(self, returned: Attempt | None) -> LedgerError | None:
        """Record every attempt; the baseline is one premium call at ``returned``'s tokens."""
        if returned is not None:
            self.baseline = cost_usd(self.router.config.baseline_model.price, returned.input_tokens, returned.output_tokens)
        try:
            self.router._record(self, returned)
        except LedgerError as e:
            return e  # the hold stays until it expires: the billed calls are not in the ledger to count
        if self.guard is not None:
            self.guard.release()
        return None

    @contextlib.contextmanager
    def recording_on_interrupt(self):
        """Interrupted, or the output went away: keep what was billed, then let it through."""
        try:
            yield
        except BaseException:
            self.finish(None)
            raise


class Router:
    """Routes prompts through the tiers of ``config`` and logs every attempt.

    ``db_path`` None disables the ledger (for library use and dry runs).
    """

    def __init__(
        self,
        config: Config,
        db_path: str | os.PathLike | None = None,
        *,
        env: Mapping[str, str] | None = None,
        on_note: Note | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ):
        self.config = config
        self.db_path = db_path
        self.env = os.environ if env is None else env
        self.on_note = on_note or (lambda message: None)
        self.sleep = sleep
        self.clock = clock
        self._providers: dict[str, object] = {}
        self._classifiers: dict[tuple[str, str | None], object] = {}
        # One Router serves many threads (mmr ask --batch): providers, their SDK
        # clients, classifiers and the ledger store are built once and shared
        # (the store keeps a connection per thread itself).
        self._lock = threading.RLock()
        self._store = None
        self._breakers = None
        self.pauses = ProviderPauses()
        self.variant: str | None = None  # the experiment variants this router runs (see for_request)

    def for_request(self, user: str | None) -> tuple["Router", str]:
        """A new request's id, and the router it runs on: this one, or, when experiments
        are configured, a copy with the assigned variants' overrides (see experiments.py)."""
        request_id = new_id()
        if not self.config.experiments:
            return self, request_id
        from .policy.experiments import apply, assign

        assignment = assign(self.config.experiments, user or request_id)
        if self.db_path is not None:
            self.ledger()  # opened here, so the copy shares it and close() closes it
        routed = copy.copy(self)
        routed.config, routed.variant = apply(self.config, assignment), assignment.label
        return routed, request_id

    # ------------------------------------------------------------ decisions

    def decide(self, prompt: str, tier: str | None = None, classifier: str | None = None) -> Decision:
        """The tier for ``prompt``: ``tier`` if given, else the classifier's choice."""
        if tier is not None:
            if tier not in self.config.tier_names:
                raise UsageError(f"--tier: unknown tier {tier!r}; valid tiers: {', '.join(self.config.tier_names)}")
            score = (self.config.tier_index(tier) + 0.5) / len(self.config.tiers)
            return Decision(tier, round(score, 4), "--tier given", "override")
        name = classifier or self.config.classifier
        # Keyed by variant too: a variant may set other thresholds or another model file under the same name.
        slot = (name, self.variant)
        chosen = self._classifiers.get(slot)
        if chosen is None:
            with self._lock:
                chosen = self._classifiers.get(slot) or get_classifier(name, self.config, router=self)
                self._classifiers[slot] = chosen
        return chosen.classify(prompt)  # type: ignore[attr-defined]

    def chain(self, tier: str, seed: str | None = None) -> list[tuple[Tier, ModelSpec]]:
        """The fallback chain: ``tier``'s models, then every tier above (see :meth:`models_of`)."""
        start = self.config.tier_index(tier)
        return [(t, m) for t in self.config.tiers[start:] for m in self.models_of(t, seed)]

    @staticmethod
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

    def api_key(self, spec: ProviderSpec) -> str | None:
        if spec.api_key_env is None:
            return None
        return self.env.get(spec.api_key_env) or None

    def estimate(self, prompt: str, options: "RequestOptions | None" = None, *, system: str | None = None, tier: str | None = None,
                 classifier: str | None = None, max_tokens: int | None = None, user: str | None = None,
                 max_cost: Decimal | None = None) -> Estimate:
        """Decision and worst-case cost (prompt estimate + max_tokens), without calling anyone;
        under ``user``'s experiment variants when there are experiments. ``max_cost`` downgrades
        as :meth:`ask` would (budgets need the ledger, so a dry run does not check them)."""
        if options is not None:
            return self.estimate(prompt, system=options.system, tier=options.tier, classifier=options.classifier,
                                 max_tokens=options.max_tokens, user=options.user, max_cost=options.max_cost)
        if user is not None and self.config.experiments and self.variant is None:
            return self.for_request(user)[0].estimate(prompt, system=system, tier=tier, classifier=classifier,
                                                      max_tokens=max_tokens, max_cost=max_cost)
        decision = self.decide(prompt, tier, classifier)
        start, note = decision.tier, None
        if max_cost is not None:
            from .policy.budgets import BudgetGuard, Limit

            guard = BudgetGuard([Limit("--max-cost", max_cost, Decimal(0), "downgrade", self.config.tier_names[0])])
            start, note = guard.choose_tier(self.config.tier_names, decision.tier,
                                            lambda name: self.tier_worst_case(name, prompt, system, max_tokens))
        usable = [(t, m) for t, m in self.chain(start) if self._key_problem(m) is None]
        t, m = usable[0] if usable else self.chain(start)[0]
        tokens = estimate_tokens(f"{system or ''}\n{prompt}")
        out = max_tokens or m.max_tokens
        baseline = self.config.baseline_model
        return Estimate(
            decision, t.name, m.provider, m.model, tokens, out,
            cost_usd(m.price, tokens, out), cost_usd(baseline.price, tokens, max_tokens or baseline.max_tokens),
            None if usable else self._key_problem(m), note,
        )

    # ------------------------------------------------------------ the call

    def ask(
        self,
        prompt: str,
        options: "RequestOptions | None" = None,
        *,
        system: str | None = None,
        tier: str | None = None,
        classifier: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        on_text: Callable[[str], None] | None = None,
        on_restart: Note | None = None,
        user: str | None = None,
        team: str | None = None,
        command: str = "ask",
        max_cost: Decimal | None = None,
        use_cache: bool = True,
        refresh: bool = False,
    ) -> Answer:
        """Answer ``prompt`` from the cheapest suitable tier, falling back on errors.

        Streams text to ``on_text`` when given; when a stream breaks after text
        went out and another model takes over, ``on_restart`` is told first.
        Every attempt is written to the ledger, failed ones included; raises
        :class:`AllAttemptsFailed` or :class:`MissingKeyError` when no model
        answered, and re-raises an exception of ``on_text`` (a closed pipe)
        after recording what was billed.

        Before any call, budgets and ``max_cost`` may move the request down to a
        cheaper tier or refuse it (:class:`BudgetExceeded`), and with the cache
        enabled an exact repeat is answered from it (``use_cache`` False
        bypasses it; ``refresh`` asks again and replaces the entry).
        """
        if options is not None:
            return self.ask(prompt, on_text=on_text, on_restart=on_restart, command=command, **_ask_fields(options))
        if not prompt.strip():
            raise UsageError("the prompt is empty")
        if max_tokens is not None and max_tokens < 1:
            raise UsageError(f"--max-tokens must be at least 1, got {max_tokens}")
        started = time.perf_counter()
        routed, request_id = self.for_request(user)
        decision = routed.decide(prompt, tier, classifier)
        log = routed.begin_request(command, decision, prompt, system, user, team, stream=on_text is not None,
                                   max_cost=max_cost, request_id=request_id)
        cache = routed._cache() if use_cache else None
        cached = (lambda: routed._lookup(cache, log, max_tokens, temperature, refresh)) if cache is not None else None
        # A cached answer costs nothing: it is looked up before budgets may refuse or
        # downgrade the request, and again at the tier a downgrade chose.
        key, hit = cached() if cached else (None, None)
        if hit is None:
            decided = log.start_tier
            routed._apply_budgets(log, max_tokens)
            if cached and log.start_tier != decided:
                key, hit = cached()
        if hit is not None:
            if on_text is not None:
                with log.recording_on_interrupt():
                    on_text(hit.text or "")
            return routed._answer(log, hit, started)
        with log.recording_on_interrupt():
            failure, _ = routed.try_models(log.attempts, routed.chain(log.start_tier, log.request_id), prompt, system,
                                           max_tokens, temperature, on_text, on_restart, log=log)
        final = None if failure else log.attempts[-1]
        if final is not None and cache is not None and key is not None:
            routed._cache_store(cache, key, log, final)
        if failure is not None:
            ledger_error = log.finish(None)
            if ledger_error is not None:
                failure.message += f" (and the ledger could not be written: {ledger_error})"
            raise failure
        assert final is not None
        return routed._answer(log, final, started)

    def _answer(self, log: "RequestLog", final: Attempt, started: float) -> Answer:
        ledger_error = log.finish(final)
        return Answer(final.text or "", log.request_id, log.decision, log.attempts, final, log.baseline,
                      (time.perf_counter() - started) * 1000, ledger_error, policy=tuple(log.policy),
                      variant=log.variant)

    # ------------------------------------------------------------ policy: budgets, cache, breakers

    def worst_case(self, model: ModelSpec, prompt: str, system: str | None, max_tokens: int | None) -> Decimal:
        """The most one call can cost: the prompt's estimated tokens plus every allowed output token."""
        return cost_usd(model.price, estimate_tokens(f"{system or ''}\n{prompt}"), max_tokens or model.max_tokens)

    def tier_worst_case(self, tier: str, prompt: str, system: str | None, max_tokens: int | None,
                        seed: str | None = None) -> Decimal:
        """The worst case of a request starting at ``tier``: its first model that has a key."""
        models = [m for t, m in self.chain(tier, seed) if t.name == tier and self._key_problem(m) is None]
        return self.worst_case(models[0] if models else self.config.tier(tier).models[0], prompt, system, max_tokens)

    def _apply_budgets(self, log: "RequestLog", max_tokens: int | None) -> None:
        """Downgrade ``log.start_tier`` to what the budgets allow, or record the refusal and raise it."""
        if log.guard is None:
            return

        try:
            tier, note = log.guard.choose_tier(
                self.config.tier_names, log.start_tier,
                lambda name: self.tier_worst_case(name, log.prompt, log.system, max_tokens, log.request_id))
        except BudgetExceeded as e:
            first = self.config.tier(log.start_tier).models[0]
            log.policy.append(str(e))
            log.attempts.append(Attempt(log.start_tier, first.provider, first.model, "blocked", error=str(e), error_kind="budget"))
            ledger_error = log.finish(None)
            if ledger_error is not None:
                e.message += f" (and the ledger could not be written: {ledger_error})"
            raise
        if note is not None:
            log.start_tier = tier
            log.note(note)

    def _cache(self):
        if not self.config.cache.enabled or self.db_path is None:
            return None
        from .policy.cache import ResponseCache

        return ResponseCache(self.ledger(), self.config, self.clock)

    def _lookup(self, cache, log: "RequestLog", max_tokens: int | None, temperature: float | None,
                refresh: bool) -> tuple[str, Attempt | None]:
        """The request's cache key at ``log.start_tier``, and the cached answer (None on a miss or ``refresh``)."""
        from .policy.cache import cache_key

        key = cache_key(self.config, tier=log.start_tier, prompt=log.prompt, system=log.system, max_tokens=max_tokens,
                        temperature=temperature, user=log.user, variant=log.variant)
        return key, None if refresh else self._cache_hit(cache, key, log)

    def _cache_hit(self, cache, key: str, log: "RequestLog") -> Attempt | None:
        try:
            entry, stale = cache.get(key)
        except LedgerError as e:
            self.on_note(f"the cache could not be read ({e}); asking the model")
            return None
        if stale is not None:
            log.note(f"cache: {stale}; asking again")
        if entry is None:
            return None
        log.note(f"cache: answered from a cached answer {entry.age:.0f} s old (request {entry.request_id}), "
                 f"saving {decimal_str(entry.cost)} USD")
        attempt = Attempt(entry.tier, entry.provider, entry.model, "cached", text=entry.text,
                          input_tokens=entry.input_tokens, output_tokens=entry.output_tokens,
                          stop_reason=entry.stop_reason, saved=entry.cost)
        log.attempts.append(attempt)
        return attempt

    def _cache_store(self, cache, key: str, log: "RequestLog", final: Attempt) -> None:
        try:
            cache.put(key, request_id=log.request_id, tier=final.tier, provider=final.provider, model=final.model,
                      text=final.text or "", input_tokens=final.input_tokens, output_tokens=final.output_tokens,
                      cost=final.cost, stop_reason=final.stop_reason)
        except LedgerError as e:
            self.on_note(f"the answer could not be cached ({e})")

    def breakers(self):
        """The shared circuit breakers, or None without a ledger."""
        if self.db_path is None:
            return None
        board = self._breakers
        if board is None:
            from .policy.breakers import Breakers

            store = self.ledger()
            with self._lock:
                if self._breakers is None:
                    self._breakers = Breakers(store, self.config.breaker,
                                              max_retry_after=self.config.retry.max_retry_after, clock=self.clock)
                board = self._breakers
        return board

    def _admit(self, spec: ProviderSpec, model: ModelSpec):
        from .policy.breakers import ALLOWED

        board = self.breakers()
        if board is None:
            return ALLOWED
        try:
            return board.admit(spec.name, model.model, lease=spec.timeout + 5)
        except LedgerError as e:
            # The breakers are an optimisation: a locked database must not stop the call.
            self.on_note(f"circuit breaker state unavailable ({e}); calling anyway")
            return ALLOWED

    def _breaker_outcome(self, spec: ProviderSpec, model: ModelSpec, admission, error=None) -> None:
        board = self.breakers()
        if board is None:
            return
        try:
            if error is None:
                board.success(spec.name, model.model, admission)
                if admission.state != "closed":
                    self.on_note(f"{spec.name}/{model.model} answered; its circuit is closed again")
            elif error.retryable:
                if board.failure(spec.name, model.model, str(error), error.retry_after) == "open" and admission.state != "open":
                    self.on_note(f"{spec.name}/{model.model}: circuit opened; other processes will skip it "
                                 f"for {self.config.breaker.cooldown:g} s or its retry-after")
        except LedgerError as e:
            self.on_note(f"circuit breaker state not saved ({e})")

    def begin_request(self, command: str, decision: Decision, prompt: str, system: str | None,
                      user: str | None, team: str | None, stream: bool = False,
                      max_cost: Decimal | None = None, request_id: str | None = None) -> "RequestLog":
        """Start a request's bookkeeping; the ledger is opened now, before anything is paid for."""
        from .policy.budgets import BudgetGuard

        if max_cost is not None and max_cost < 0:
            raise UsageError(f"--max-cost must be 0 or more, got {max_cost}")
        ledger = self.ledger() if self.db_path is not None else None
        request_id = request_id or new_id()
        guard = BudgetGuard.for_request(self.config, ledger, user=user, team=team, max_cost=max_cost, request_id=request_id)
        return RequestLog(self, command, decision, prompt, system, user, team, stream, guard, request_id)

    def _key_problem(self, model: ModelSpec) -> str | None:
        spec = self.config.providers[model.provider]
        if spec.api_key_env and not self.api_key(spec):
            return spec.api_key_env
        return None

    def _provider(self, spec: ProviderSpec):
        provider = self._providers.get(spec.name)
        if provider is None:
            with self._lock:
                provider = self._providers.get(spec.name)
                if provider is None:
                    from .providers import get_provider

                    provider = get_provider(spec, self.api_key(spec))
                    provider.client()  # built here, once: the SDK clients are thread-safe and shared
                    self._providers[spec.name] = provider
        return provider

    def preload_sdks(self) -> None:
        """Import the SDKs that the first model of each tier needs (a batch worker does this while
        its rows are on their way: the Anthropic SDK alone takes about a second)."""
        from .providers import import_sdk

        for kind in dict.fromkeys(self.config.providers[tier.models[0].provider].type for tier in self.config.tiers):
            import_sdk(kind)

    def try_models(self, attempts: list[Attempt], chain: list[tuple[Tier, ModelSpec]], prompt: str,
                   system: str | None, max_tokens: int | None, temperature: float | None,
                   on_text=None, on_restart: Note | None = None, role: str = "answer",
                   log: "RequestLog | None" = None) -> tuple[MmrError | None, bool]:
        """Try the models of ``chain`` in order with retries, appending each try to ``attempts``.

        A model whose circuit is open, or whose worst-case cost the request's
        budgets (``log.guard``) cannot cover, is skipped. A retryable failure
        moves at once to the next model of the same tier when there is one (an
        equivalent model elsewhere answers sooner than a backoff); the last of
        a tier is retried with backoff before the next tier is tried.

        Returns ``(None, False)`` when the last attempt answered, else ``(error, fatal)``:
        ``fatal`` when no other model should be tried (a rejected key or request).
        """
        from .providers import ChatRequest, OutputFailed, ProviderError

        policy = self.config.retry
        streamed = False
        start = len(attempts)
        for position, (tier, model) in enumerate(chain):
            spec = self.config.providers[model.provider]
            missing = self._key_problem(model)
            if missing:
                attempts.append(Attempt(tier.name, spec.name, model.model, "skipped", error=f"{missing} is not set",
                                        error_kind="no_key", role=role))
                continue
            self._check_key(spec)
            limit = max_tokens or model.max_tokens
            if role != "answer" and model.reasoning:
                # Reasoning models spend output tokens thinking: a 5-token budget comes back empty.
                limit = max(limit, model.max_tokens)
            paused = self.pauses.remaining(spec.name)
            if paused > 0 and self._mate_after(chain, position):
                attempts.append(Attempt(tier.name, spec.name, model.model, "skipped", role=role, error_kind="paused",
                                        error=f"{spec.name} asked to wait {paused:.1f} s more (retry-after)"))
                continue
            if not self._budget_allows(log, attempts, tier, spec, model, prompt, system, limit, role):
                continue
            admission = self._admit(spec, model)
            if not admission.allowed:
                attempts.append(Attempt(tier.name, spec.name, model.model, "skipped", error=admission.reason,
                                        error_kind="circuit_open", role=role))
                message = f"skipped {tier.name} {spec.name}/{model.model}: {admission.reason}"
                if log is not None:
                    log.note(message)
                else:
                    self.on_note(message)
                continue
            if temperature is not None and spec.type == "anthropic" and role == "answer":
                self.on_note(f"{spec.name}/{model.model}: the Anthropic API takes no temperature; ignored")
            provider = self._provider(spec)
            request = ChatRequest(model, prompt, system, limit, temperature)
            for retry in range(policy.max_retries + 1):
                attempt = Attempt(tier.name, spec.name, model.model, "ok", role=role)
                emitted: list[str] = []

                def sink(text: str, emitted=emitted) -> None:
                    try:
                        on_text(text)
                    except Exception as e:
                        raise OutputFailed(e) from e
                    emitted.append(text)

                if retry and not self._budget_allows(log, attempts, tier, spec, model, prompt, system, limit, role):
                    break  # a retry may bill another worst case: it must fit too
                if streamed and on_restart is not None:
                    on_restart(f"the answer broke off; {attempt.label} answers again from the start")
                    streamed = False
                self.pauses.wait(spec.name, self.sleep)
                try:
                    response = provider.complete(request, on_text=sink if on_text else None)
                except OutputFailed as e:
                    attempt.status, attempt.error, attempt.error_kind = "error", f"output failed: {e.error!r}", "output"
                    attempt.input_tokens, attempt.output_tokens, attempt.usage_estimated = e.usage
                    attempt.cost = cost_usd(model.price, e.usage[0], e.usage[1])
                    attempts.append(attempt)
                    raise e.error from None
                except ProviderError as e:
                    streamed = streamed or bool(emitted)
                    self._fill_failure(attempt, model, e)
                    attempts.append(attempt)
                    self._breaker_outcome(spec, model, admission, e)
                    if e.retryable and e.retry_after is not None and e.retry_after <= policy.max_retry_after:
                        # The provider told us to hold off: every thread waits it out, or uses a
                        # tier-mate, before calling this provider again.
                        self.pauses.pause(spec.name, e.retry_after)
                    if e.kind == "auth":
                        return MissingKeyError(
                            f"{spec.name} rejected the key in {spec.api_key_env or 'its api_key_env'} "
                            f"(HTTP {e.status}): check or replace the key in that variable"
                        ), True
                    if not e.model_fault:
                        return AllAttemptsFailed(
                            f"{attempt.label} rejected the request ({e}); it would fail on every model, so no fallback was tried",
                            attempts, exit_code=EXIT_REQUEST_REJECTED,
                        ), True
                    if e.retryable and self._mate_after(chain, position):
                        self.on_note(f"{attempt.label} failed: {e}; trying the next model of {tier.name}")
                        break
                    wait = self._retry_wait(e, retry) if e.retryable and retry < policy.max_retries else None
                    if wait is None:
                        self.on_note(f"{attempt.label} failed: {e}; trying the next model")
                        break
                    self.on_note(f"{attempt.label} failed: {e}; retrying in {wait:.2f} s")
                    if e.retry_after is None:
                        self.sleep(wait)  # else the pause is slept out before the next call
                    continue
                except BaseException:
                    # Ctrl-C (or a bug) mid-call: keep the attempt; text already streamed was billed.
                    attempt.status, attempt.error, attempt.error_kind = "error", "interrupted", "interrupted"
                    if emitted:
                        attempt.input_tokens = estimate_tokens(f"{system or ''}\n{prompt}")
                        attempt.output_tokens = estimate_tokens("".join(emitted))
                        attempt.usage_estimated = True
                        attempt.cost = cost_usd(model.price, attempt.input_tokens, attempt.output_tokens)
                    attempts.append(attempt)
                    raise
                attempt.text = response.text
                attempt.input_tokens, attempt.output_tokens = response.input_tokens, response.output_tokens
                attempt.cost = cost_usd(model.price, response.input_tokens, response.output_tokens)
                attempt.duration_ms, attempt.ttft_ms = response.duration_ms, response.ttft_ms
                attempt.stop_reason, attempt.usage_estimated = response.stop_reason, response.usage_estimated
                attempts.append(attempt)
                self._breaker_outcome(spec, model, admission)
                return None, False
        return self.exhausted_error(attempts[start:]), False

    def _mate_after(self, chain: list[tuple[Tier, ModelSpec]], position: int) -> bool:
        """Is a later model of the same tier ready to take over now (a key, no pause, circuit not open)?"""
        tier = chain[position][0].name
        board = self.breakers()
        for t, m in chain[position + 1:]:
            if t.name != tier:
                return False
            if self._key_problem(m) is None and self.pauses.remaining(m.provider) <= 0:
                try:
                    if board is None or not board.is_open(m.provider, m.model):
                        return True
                except LedgerError:
                    return True
        return False

    def _budget_allows(self, log: "RequestLog | None", attempts: list[Attempt], tier: Tier, spec: ProviderSpec,
                       model: ModelSpec, prompt: str, system: str | None, limit: int, role: str) -> bool:
        """Check the next call's worst case against the budgets and hold it; a refusal is a ``budget`` skip."""
        if log is None or log.guard is None:
            return True
        worst = self.worst_case(model, prompt, system, limit)
        over = log.guard.hold(worst, log.billed, lease=(spec.timeout + 5) * (self.config.retry.max_retries + 1))
        if over is None:
            return True
        why = f"{over.label}: up to {decimal_str(worst)} USD with {decimal_str(over.left(log.billed))} USD left"
        attempts.append(Attempt(tier.name, spec.name, model.model, "skipped", error=why, error_kind="budget", role=role))
        log.note(f"skipped {tier.name} {spec.name}/{model.model}: {why}")
        return False

    @staticmethod
    def _fill_failure(attempt: Attempt, model: ModelSpec, e) -> None:
        attempt.status = "error"
        attempt.error, attempt.error_kind, attempt.http_status = str(e), e.kind, e.status
        attempt.duration_ms = e.duration_ms
        # Tokens the provider reported before failing (a dropped stream) were billed.
        attempt.input_tokens, attempt.output_tokens = e.input_tokens, e.output_tokens
        attempt.usage_estimated = e.usage_estimated
        attempt.cost = cost_usd(model.price, e.input_tokens, e.output_tokens)

    def _retry_wait(self, e, retry: int) -> float | None:
        """Seconds before the next try, or None to move on to the next model."""
        policy = self.config.retry
        if e.retry_after is not None:
            return e.retry_after if e.retry_after <= policy.max_retry_after else None
        return random.uniform(0, min(policy.backoff_max, policy.backoff_base * 2**retry))

    def exhausted_error(self, attempts: list[Attempt]) -> MmrError:
        """The error for a chain where no model answered, listing each attempt."""
        if all(a.status == "skipped" and a.error_kind == "no_key" for a in attempts):
            names = sorted({self.config.providers[a.provider].api_key_env or a.provider for a in attempts})
            return MissingKeyError(f"no API key for any model of this route: set {' or '.join(names)}")
        over_budget = [a for a in attempts if a.error_kind == "budget"]
        if over_budget and not any(a.status != "skipped" for a in attempts):
            return BudgetExceeded(f"no model of this route fits the budget: {over_budget[0].error}")
        # Consecutive identical failures (the retries of one model) are shown once, with a count.
        texts = [f"{a.label}: {'skipped, ' if a.status == 'skipped' else ''}{a.error}" for a in attempts]
        counts: list[tuple[str, int]] = []
        for text in texts:
            if counts and counts[-1][0] == text:
                counts[-1] = (text, counts[-1][1] + 1)
            else:
                counts.append((text, 1))
        parts = [text + (f" (x{n})" if n > 1 else "") for text, n in counts]
        tried = sum(1 for a in attempts if a.status != "skipped")
        return AllAttemptsFailed(f"every model failed ({tried} attempts): " + "; ".join(parts), attempts)

    # ------------------------------------------------------------ ledger

    def ledger(self):
        """The ledger store, opened on first use and shared by every thread (None without a ledger)."""
        if self.db_path is None:
            return None
        store = self._store
        if store is None:
            from .ledger import open_ledger

            with self._lock:
                if self._store is None:
                    self._store = open_ledger(self.db_path, busy_timeout=self.config.ledger.busy_timeout)
                store = self._store
        return store

    def _check_key(self, spec: ProviderSpec) -> None:
        key = self.api_key(spec)
        if key is not None and (key != key.strip() or not key.isprintable()):
            # An HTTP library would put such a key, escaped, into its error message.
            raise MissingKeyError(f"the value of {spec.api_key_env} contains spaces or control characters; set it to the bare key")

    def _record(self, log: "RequestLog", returned: Attempt | None) -> None:
        if self.db_path is None:
            return
        from . import __version__

        store = self.config.ledger
        prompt_hash = None if store.store == "none" else hashlib.sha256(f"{log.system or ''}\0{log.prompt}".encode()).hexdigest()
        calls, responses = [], []
        called = [a for a in log.attempts if a.status != "skipped"]
        tiers = self.config.tier_names
        escalated = int(returned is not None and returned.tier in tiers and log.start_tier in tiers
                        and tiers.index(returned.tier) > tiers.index(log.start_tier))
        limits = {k: v for k, v in (("classifier", log.decision.thresholds), ("gate", log.gate_thresholds)) if v}
        thresholds_json = json.dumps(limits) if limits else None
        # Attempt 1 is the request's first answer (reports count requests by it); a
        # classifier's calls, made before any answer, are attempt 0.
        numbers = iter(range(1, len(called) + 1))
        for a in called:
            number = 0 if a.role == "classifier" else next(numbers)
            a.call_id = new_id()
            is_returned = a is returned
            calls.append({
                "id": a.call_id, "request_id": log.request_id, "attempt": number,
                "datetime_utc": a.started.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "command": log.command, "tier": a.tier, "provider": a.provider, "model": a.model,
                "classifier": log.decision.classifier, "score": log.decision.score, "reason": log.decision.reason,
                "routed_tier": log.decision.tier, "escalated": escalated, "role": a.role,
                "status": a.status, "error": a.error, "error_kind": a.error_kind, "http_status": a.http_status,
                "quality": a.quality, "gate_reason": a.gate_reason,
                "input_tokens": a.input_tokens, "output_tokens": a.output_tokens, "usage_estimated": int(a.usage_estimated),
                "cost_usd": decimal_str(a.cost), "cost_nanousd": to_nanousd(a.cost),
                "baseline_cost_usd": decimal_str(log.baseline if is_returned else Decimal(0)),
                "baseline_cost_nanousd": to_nanousd(log.baseline) if is_returned else 0,
                "duration_ms": round(a.duration_ms, 3), "ttft_ms": None if a.ttft_ms is None else round(a.ttft_ms, 3),
                "stop_reason": a.stop_reason, "stream": int(log.stream), "user": log.user, "team": log.team,
                "config_hash": self.config.config_hash, "mmr_version": __version__,
                "policy": "; ".join(log.policy) or None,
                "saved_usd": decimal_str(a.saved) if a.saved else None, "saved_nanousd": to_nanousd(a.saved),
                "variant": log.variant, "thresholds_json": thresholds_json,
            })
            if a.text is not None and store.store in ("full", "preview"):
                responses.append({"call_id": a.call_id, "response": _stored(a.text, store)})
        if not calls:
            return
        prompts = []
        if prompt_hash is not None:
            prompts.append({"request_id": log.request_id, "prompt_hash": prompt_hash, "stored": store.store,
                            "prompt": _stored(log.prompt, store), "system": _stored(log.system, store)})
        self.ledger().record({"calls": calls, "prompts": prompts, "responses": responses})

    def close(self) -> None:
        """Close the ledger store, every thread's connection (call when no thread is using the router)."""
        with self._lock:
            store, self._store, self._breakers = self._store, None, None
        if store is not None:
            store.close()

    def __enter__(self) -> "Router":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stored(text: str | None, store) -> str | None:
    if text is None or store.store in ("hash", "none"):
        return None
    if store.store == "preview" and len(text) > store.preview_chars:
        return text[: store.preview_chars] + "…"
    return text


def _ask_fields(options) -> dict:
    return {"system": options.system, "tier": options.tier, "classifier": options.classifier,
            "max_tokens": options.max_tokens, "temperature": options.temperature, "user": options.user,
            "team": options.team, "max_cost": options.max_cost, "use_cache": options.use_cache, "refresh": options.refresh}


__all__ = ["Answer", "Attempt", "Estimate", "Router", "new_id"]
