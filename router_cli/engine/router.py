"""The router: a prompt in, an answer out, every attempt in the ledger.

    from router_cli import Router, load_config
    with Router(load_config(), db_path="ledger.db") as router:
        answer = router.ask("What is a monad?")
        print(answer.text, answer.cost)

One request flows one way: :meth:`Router.route` (its id, and the config it runs
under: the base config or its experiment variants'), :meth:`Router.decide` (the
classifier's tier), :meth:`Router.open` (budgets, the explicit
:class:`~router_cli.engine.request.Request`), the cache, the fallback chain
(engine/attempts.py, each model admitted by engine/admission.py), then the
request's rows in the ledger (engine/record.py).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Callable, Mapping

from ..classify import NEEDS_CALLER, Decision, get_classifier
from ..classify.base import ModelReply
from ..config import Config, ModelSpec, ProviderSpec, Tier
from ..errors import LedgerError, MmrError, UsageError
from ..ids import new_id
from ..policy.pauses import ProviderPauses
from ..pricing import estimate_tokens, max_input_tokens
from . import caching
from .admission import Admitter, worst_case
from .attempts import ChainRunner, answered
from .call import Call, transcript
from .caller import UnderConfig
from .chains import models_of, speaking
from .latency import demote_slow
from .options import RequestOptions, resolve
from .record import finish, recording_on_interrupt
from .request import Note, Request
from .shaping import shape
from .types import Answer, Attempt, Estimate


@dataclass(frozen=True)
class Route:
    """Where a new request runs: its id, and the config it reads from then on."""

    request_id: str
    config: Config
    variant: str | None = None  # "experiment/variant" pairs, under experiments


class Router:
    """Routes prompts through the tiers of ``config`` and logs every attempt.

    ``db_path`` None disables the ledger (for library use and dry runs). One
    router serves many threads (``mmr ask --batch``): providers, their SDK
    clients and classifiers are built once and shared.
    """

    def __init__(self, config: Config, db_path: str | os.PathLike | None = None, *,
                 env: Mapping[str, str] | None = None, on_note: Note | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        from ..prices import resolve_prices

        config = resolve_prices(config)  # a model without a price fails here, before any call
        self.config = config
        self.db_path = db_path
        self.on_note = on_note or (lambda message: None)
        self.sleep = sleep
        self.clock = clock
        self.pauses = ProviderPauses(monotonic)
        self._providers: dict[str, object] = {}
        self._classifiers: dict[tuple[str, str | None], object] = {}
        self._lock = threading.RLock()
        self._store = None
        self._breakers = None
        # A server answering many requests may reuse a proof of a writable ledger for this many
        # seconds (the CLI proves it once per request, before anything is paid for).
        self.ledger_proof_ttl = 0.0
        self._ledger_proven = float("-inf")
        self.admitter = Admitter(config, os.environ if env is None else env, self.pauses, self.breakers,
                                 lambda message: self.on_note(message))
        self.runner = ChainRunner(config, self.admitter, self.provider, lambda seconds: self.sleep(seconds),
                                  lambda message: self.on_note(message))

    # ------------------------------------------------------------ one request, step by step

    def route(self, user: str | None = None) -> Route:
        """A new request's id and config: under experiments, ``user``'s variants (else the request's own draw)."""
        request_id = new_id()
        if not self.config.experiments:
            return Route(request_id, self.config)
        from ..policy.experiments import apply, assign

        assignment = assign(self.config.experiments, user or request_id)
        return Route(request_id, apply(self.config, assignment), assignment.label)

    def decide(self, prompt: str, tier: str | None = None, classifier: str | None = None,
               route: Route | None = None) -> Decision:
        """The tier for ``prompt``: ``tier`` if given, else the classifier's choice (under ``route``'s config).

        A classifier that calls a model (llm, embedding) runs only once the ledger is
        proven writable (:meth:`check_ledger`): its calls are paid for too.
        """
        config = route.config if route is not None else self.config
        if tier is not None:
            if tier not in config.tier_names:
                raise UsageError(f"--tier: unknown tier {tier!r}; valid tiers: {', '.join(config.tier_names)}")
            score = (config.tier_index(tier) + 0.5) / len(config.tiers)
            return Decision(tier, round(score, 4), "--tier given", "override")
        name = classifier or config.classifier
        if name in NEEDS_CALLER:
            self.check_ledger()
        return self.classifier(name, route).classify(prompt)  # type: ignore[attr-defined]

    def classifier(self, name: str, route: Route | None = None):
        """The classifier ``name`` under ``route``'s config, built once per experiment variant."""
        slot = (name, route.variant if route is not None else None)
        chosen = self._classifiers.get(slot)
        if chosen is None:
            with self._lock:
                config = route.config if route is not None else self.config
                caller = self if config is self.config else UnderConfig(self, config)
                chosen = self._classifiers.get(slot) or get_classifier(name, config, caller=caller)
                self._classifiers[slot] = chosen
        return chosen

    def open(self, command: str, route: Route, decision: Decision, prompt: str, options: RequestOptions,
             stream: bool = False) -> Request:
        """Start a request's bookkeeping; the ledger is proven writable now (:meth:`check_ledger`), before anything
        is paid for (a classifier that calls a model had it checked before it ran)."""
        from ..policy.budgets import BudgetGuard

        if not decision.calls:  # else decide() checked it, before the classifier's own calls were paid
            self.check_ledger()
        ledger = self.ledger()
        guard = BudgetGuard.for_request(route.config, ledger, user=options.user, team=options.team,
                                        max_cost=options.max_cost, request_id=route.request_id)
        return Request(route.config, route.request_id, command, decision, prompt, options.system, options.user,
                       options.team, stream, route.variant, guard, ledger, self.on_note, native=options.native)

    def ask(self, prompt: str, options: RequestOptions | None = None, *, on_text: Callable[[str], None] | None = None,
            on_restart: Note | None = None, command: str = "ask", **fields) -> Answer:
        """Answer ``prompt`` from the cheapest suitable tier, falling back on errors.

        ``options`` (or the same fields as keywords: ``tier="simple"``) say how. Streams
        text to ``on_text`` when given; when a stream breaks after text went out and
        another model takes over, ``on_restart`` is told first. Every attempt is written
        to the ledger, failed ones included; raises :class:`AllAttemptsFailed` or
        :class:`MissingKeyError` when no model answered, and re-raises an exception of
        ``on_text`` (a closed pipe) after recording what was billed.

        Before any call, budgets and ``max_cost`` may move the request down to a
        cheaper tier or refuse it (:class:`BudgetExceeded`), and with the cache enabled
        an exact repeat is answered from it (``use_cache`` False bypasses it;
        ``refresh`` asks again and replaces the entry). ``options.history`` holds a
        conversation's earlier turns (``prompt`` is its last user turn; the classifier reads
        that turn); ``options.model`` puts that model of the tier first (``tier`` must be its).
        """
        options = resolve(options, fields)
        if not prompt.strip():
            raise UsageError("the prompt is empty")
        started = time.perf_counter()
        route = self.route(options.user)
        decision = self.decide(prompt, options.tier, options.classifier, route)
        if options.model is not None:
            decision = replace(decision, reason=f"model {options.model} asked for")
        request = self.open(command, route, decision, transcript(options.history, prompt), options,
                            stream=on_text is not None)
        try:
            return self._answer_request(request, options, prompt, started, on_text, on_restart)
        except MmrError as e:
            e.request_id = e.request_id or request.request_id
            raise

    def _answer_request(self, request: Request, options: RequestOptions, prompt: str, started: float,
                        on_text: Callable[[str], None] | None, on_restart: Note | None) -> Answer:
        """:meth:`ask` once the request is open: the cache, budgets, then the fallback chain."""
        # Tools and images are not in the cache's key (the request's text): such a request is never cached.
        cache = self._cache(request.config) if options.use_cache and options.native is None else None
        key, hit = caching.before_calls(request, options, cache, lambda name: self.tier_worst_case(
            name, request.prompt, request.system, options.max_tokens, request.request_id, request.config,
            options.native))
        if hit is not None:
            if on_text is not None:
                with recording_on_interrupt(request):
                    on_text(hit.text or "")
            return self._answer(request, hit, started)
        call = Call(prompt, options.system, options.max_tokens, options.temperature,
                    on_text=on_text, on_restart=on_restart, history=options.history, stop=options.stop,
                    prompt_cache=options.prompt_cache or request.config.prompt_cache, native=options.native,
                    first_token_timeout=options.first_token_timeout)
        # The model asked for first (then the rest), unless it is demoted for being slow.
        pinned = options.model if request.start_tier == request.decision.tier else None
        chain = demote_slow(self.chain(request.start_tier, request.request_id, request.config), request,
                            self.clock(), pinned)
        with recording_on_interrupt(request):
            if options.native is not None:
                chain = speaking(chain, options.native.protocol, request)
            failure, _ = self.runner.run(request.attempts, chain, call, request)
        if failure is not None:
            ledger_error = finish(request, None)
            if ledger_error is not None:
                failure.message += f" (and the ledger could not be written: {ledger_error})"
            raise failure
        final = answered(request.attempts)
        if cache is not None and key is not None:
            caching.store(cache, key, request, final)
        return self._answer(request, final, started)

    def _answer(self, request: Request, final: Attempt, started: float) -> Answer:
        ledger_error = finish(request, final)
        return Answer(final.text or "", request.request_id, request.decision, request.attempts, final, request.baseline,
                      (time.perf_counter() - started) * 1000, ledger_error, policy=tuple(request.policy),
                      variant=request.variant, budget_warnings=tuple(request.budget_warnings))

    # ------------------------------------------------------------ chains and costs

    def chain(self, tier: str, seed: str | None = None, config: Config | None = None) -> list[tuple[Tier, ModelSpec]]:
        """The fallback chain: ``tier``'s models, then every tier above (see :meth:`models_of`)."""
        config = config or self.config
        start = config.tier_index(tier)
        return [(t, m) for t in config.tiers[start:] for m in self.models_of(t, seed)]

    models_of = staticmethod(models_of)  # tier's models in the order to try them (engine/chains.py)

    def tier_worst_case(self, tier: str, prompt: str, system: str | None, max_tokens: int | None,
                        seed: str | None = None, config: Config | None = None, native=None) -> Decimal:
        """The worst case of a request starting at ``tier``: its first model that has a key (and, for a
        ``native`` request, speaks its protocol: no other is called)."""
        config = config or self.config
        models = [m for t, m in self.chain(tier, seed, config) if t.name == tier and self.admitter.key_problem(m) is None
                  and (native is None or config.providers[m.provider].type == native.protocol)]
        return worst_case(models[0] if models else config.tier(tier).models[0], prompt, system, max_tokens, native)

    def estimate(self, prompt: str, options: RequestOptions | None = None, **fields) -> Estimate:
        """Decision and worst-case cost (the prompt's token bound + max_tokens), without calling anyone;
        under the user's experiment variants when there are experiments. ``max_cost`` downgrades
        as :meth:`ask` would (budgets need the ledger, so a dry run does not check them)."""
        options = resolve(options, fields)
        route = self.route(options.user) if options.user is not None else Route("", self.config)
        config, max_tokens, system = route.config, options.max_tokens, options.system
        if options.tier is None:
            refuse_model_calls(options.classifier or config.classifier)
        decision = self.decide(prompt, options.tier, options.classifier, route)
        start, note = decision.tier, None
        if options.max_cost is not None:
            from ..policy.budgets import BudgetGuard, Limit

            guard = BudgetGuard([Limit("--max-cost", options.max_cost, Decimal(0), "downgrade", config.tier_names[0])])
            start, note = guard.choose_tier(config.tier_names, decision.tier,
                                            lambda name: self.tier_worst_case(name, prompt, system, max_tokens,
                                                                              config=config))
        chain = self.chain(start, config=config)
        usable = [(t, m) for t, m in chain if self.admitter.key_problem(m) is None]
        t, m = usable[0] if usable else chain[0]
        out = max_tokens or m.max_tokens
        baseline = config.baseline_model
        # Each model of the chain as it would be sent, in its own wording (engine/shaping.py).
        candidates = tuple((tier.name, model.provider, model.model,
                            shape(model, system, prompt, options.stop, options.temperature)) for tier, model in chain)
        sent = shape(m, system, prompt)
        return Estimate(
            decision, t.name, m.provider, m.model, estimate_tokens(f"{sent.system or ''}\n{sent.prompt}"), out,
            worst_case(m, prompt, system, max_tokens), worst_case(baseline, prompt, system, max_tokens),
            None if usable else self.admitter.key_problem(m), note, max_input_tokens(sent.prompt, sent.system),
            candidates,
        )

    # ------------------------------------------------------------ shared parts

    def provider(self, spec: ProviderSpec):
        """The provider for ``spec``, built once: the SDK clients are thread-safe and shared."""
        provider = self._providers.get(spec.name)
        if provider is None:
            with self._lock:
                provider = self._providers.get(spec.name)
                if provider is None:
                    from ..providers import get_provider

                    provider = get_provider(spec, self.admitter.api_key(spec))
                    provider.client()
                    self._providers[spec.name] = provider
        return provider

    def preload_sdks(self) -> None:
        """Import the SDKs that the first model of each tier needs (a batch worker does this while
        its rows are on their way: the Anthropic SDK alone takes about a second)."""
        from ..providers import import_sdk

        for kind in dict.fromkeys(self.config.providers[tier.models[0].provider].type for tier in self.config.tiers):
            import_sdk(kind)

    def check_ledger(self) -> None:
        """Prove now that the ledger can take a write (opening it first); LedgerError (exit 7) if not.

        Called before a request's first provider call (by :meth:`open`, and by :meth:`decide`
        before a classifier that calls a model) and before a batch sends any row. Does
        nothing without a ledger.
        """
        if self.ledger_proof_ttl and self.clock() - self._ledger_proven < self.ledger_proof_ttl:
            return
        try:
            store = self.ledger()
            if store is not None:
                store.check_writable()
                self._ledger_proven = self.clock()
        except LedgerError as e:
            e.message += "; no provider was called"
            raise

    def ledger(self):
        """The ledger store, opened on first use and shared by every thread (None without a ledger)."""
        if self.db_path is None:
            return None
        if self._store is None:
            from ..ledger import open_ledger

            with self._lock:
                if self._store is None:
                    self._store = open_ledger(self.db_path, busy_timeout=self.config.ledger.busy_timeout)
        return self._store

    def breakers(self):
        """The circuit breakers, shared by every thread and process of this ledger (None without one)."""
        if self.db_path is None:
            return None
        if self._breakers is None:
            from ..policy.breakers import Breakers

            store = self.ledger()
            with self._lock:
                if self._breakers is None:
                    self._breakers = Breakers(store, self.config.breaker,
                                              max_retry_after=self.config.retry.max_retry_after, clock=self.clock)
        return self._breakers

    def _cache(self, config: Config):
        if not config.cache.enabled or self.db_path is None:
            return None
        from ..policy.cache import ResponseCache

        return ResponseCache(self.ledger(), config, self.clock)

    # ------------------------------------------------------------ a classifier's ModelCaller

    def ask_cheapest(self, prompt: str, system: str, max_tokens: int, config: Config | None = None) -> ModelReply:
        """For a classifier that calls a model: the cheapest tier's models (of ``config``, an
        experiment variant's, else this router's) with the usual retries and fallbacks, at
        temperature 0; its calls are billed to the request it routes."""
        attempts: list[Attempt] = []
        cheapest = (config or self.config).tiers[0]
        failure, _ = self.runner.run(attempts, [(cheapest, m) for m in cheapest.models],
                                     Call(prompt, system, max_tokens, 0.0, role="classifier"))
        if failure is not None:
            return ModelReply(None, None, str(failure), tuple(attempts))
        final = answered(attempts)
        return ModelReply(final.text, final.model, None, tuple(attempts))

    def api_key(self, spec: ProviderSpec) -> str | None:
        """The provider's key from the environment (a classifier's ModelCaller needs it too)."""
        return self.admitter.api_key(spec)

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


def refuse_model_calls(classifier: str) -> None:
    """A dry run calls nothing: a classifier that calls a model is refused (UsageError) before it runs."""
    if classifier in NEEDS_CALLER:
        raise UsageError(f"--dry-run calls nothing, but the {classifier} classifier calls a model; "
                         "give --tier, or --classifier rules or ml")
