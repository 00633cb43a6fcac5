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
import hashlib
import os
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Callable, Mapping

from .classify import Decision, get_classifier
from .config import Config, ModelSpec, ProviderSpec, Tier
from .errors import EXIT_REQUEST_REJECTED, AllAttemptsFailed, LedgerError, MissingKeyError, MmrError, UsageError
from .pauses import ProviderPauses
from .pricing import cost_usd, decimal_str, estimate_tokens, to_nanousd

Note = Callable[[str], None]


@dataclass
class Attempt:
    """One try of one model. ``status`` is ``ok``, ``error`` or ``skipped`` (never called)."""

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
            "cached": False,
            "stop_reason": self.final.stop_reason,
            "attempts": [a.to_json() for a in self.attempts],
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

    def to_json(self) -> dict:
        return {
            "dry_run": True, "tier": self.tier, "provider": self.provider, "model": self.model,
            "classifier": self.decision.classifier, "score": self.decision.score, "reason": self.decision.reason,
            "estimated_input_tokens": self.input_tokens, "max_output_tokens": self.max_output_tokens,
            "max_cost_usd": decimal_str(self.cost), "max_baseline_cost_usd": decimal_str(self.baseline_cost),
            "missing_key": self.missing_key,
        }


_last_id = 0
_id_lock = threading.Lock()


def new_id() -> str:
    """A sortable unique id: 48-bit millisecond time + 80 random bits, Crockford base32.

    Monotonic within a process, so the attempts of one request sort in order.
    """
    global _last_id
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    with _id_lock:
        value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
        if value <= _last_id:
            value = _last_id + 1
        _last_id = value
    return "".join(alphabet[(value >> shift) & 31] for shift in range(125, -1, -5))


class RequestLog:
    """One request's attempts, written to the ledger together when it ends."""

    def __init__(self, router: "Router", command: str, decision: Decision, prompt: str, system: str | None,
                 user: str | None, team: str | None, stream: bool):
        self.router = router
        self.request_id = new_id()
        self.command, self.decision, self.prompt, self.system = command, decision, prompt, system
        self.user, self.team, self.stream = user, team, stream
        self.attempts: list[Attempt] = list(decision.calls)  # a classifier's own calls come first
        self.baseline = Decimal(0)

    def finish(self, returned: Attempt | None) -> LedgerError | None:
        """Record every attempt; the baseline is one premium call at ``returned``'s tokens."""
        if returned is not None:
            self.baseline = cost_usd(self.router.config.baseline_model.price, returned.input_tokens, returned.output_tokens)
        try:
            self.router._record(self, returned)
        except LedgerError as e:
            return e
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
    ):
        self.config = config
        self.db_path = db_path
        self.env = os.environ if env is None else env
        self.on_note = on_note or (lambda message: None)
        self.sleep = sleep
        self._providers: dict[str, object] = {}
        self._classifiers: dict[str, object] = {}
        # One Router serves many threads (mmr ask --batch): providers, their SDK
        # clients and classifiers are built once and shared; SQLite connections
        # are per thread.
        self._lock = threading.RLock()
        self._local = threading.local()
        self._ledgers: list = []
        self.pauses = ProviderPauses()

    # ------------------------------------------------------------ decisions

    def decide(self, prompt: str, tier: str | None = None, classifier: str | None = None) -> Decision:
        """The tier for ``prompt``: ``tier`` if given, else the classifier's choice."""
        if tier is not None:
            if tier not in self.config.tier_names:
                raise UsageError(f"--tier: unknown tier {tier!r}; valid tiers: {', '.join(self.config.tier_names)}")
            score = (self.config.tier_index(tier) + 0.5) / len(self.config.tiers)
            return Decision(tier, round(score, 4), "--tier given", "override")
        name = classifier or self.config.classifier
        chosen = self._classifiers.get(name)
        if chosen is None:
            with self._lock:
                chosen = self._classifiers.get(name) or get_classifier(name, self.config, router=self)
                self._classifiers[name] = chosen
        return chosen.classify(prompt)  # type: ignore[attr-defined]

    def chain(self, tier: str) -> list[tuple[Tier, ModelSpec]]:
        """The fallback chain: ``tier``'s models in order, then every tier above."""
        start = self.config.tier_index(tier)
        return [(t, m) for t in self.config.tiers[start:] for m in t.models]

    def api_key(self, spec: ProviderSpec) -> str | None:
        if spec.api_key_env is None:
            return None
        return self.env.get(spec.api_key_env) or None

    def estimate(self, prompt: str, *, system: str | None = None, tier: str | None = None,
                 classifier: str | None = None, max_tokens: int | None = None) -> Estimate:
        """Decision and worst-case cost (prompt estimate + max_tokens), without calling anyone."""
        decision = self.decide(prompt, tier, classifier)
        usable = [(t, m) for t, m in self.chain(decision.tier) if self._key_problem(m) is None]
        t, m = usable[0] if usable else self.chain(decision.tier)[0]
        tokens = estimate_tokens(f"{system or ''}\n{prompt}")
        out = max_tokens or m.max_tokens
        baseline = self.config.baseline_model
        return Estimate(
            decision, t.name, m.provider, m.model, tokens, out,
            cost_usd(m.price, tokens, out), cost_usd(baseline.price, tokens, max_tokens or baseline.max_tokens),
            None if usable else self._key_problem(m),
        )

    # ------------------------------------------------------------ the call

    def ask(
        self,
        prompt: str,
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
    ) -> Answer:
        """Answer ``prompt`` from the cheapest suitable tier, falling back on errors.

        Streams text to ``on_text`` when given; when a stream breaks after text
        went out and another model takes over, ``on_restart`` is told first.
        Every attempt is written to the ledger, failed ones included; raises
        :class:`AllAttemptsFailed` or :class:`MissingKeyError` when no model
        answered, and re-raises an exception of ``on_text`` (a closed pipe)
        after recording what was billed.
        """
        if not prompt.strip():
            raise UsageError("the prompt is empty")
        if max_tokens is not None and max_tokens < 1:
            raise UsageError(f"--max-tokens must be at least 1, got {max_tokens}")
        started = time.perf_counter()
        decision = self.decide(prompt, tier, classifier)
        log = self.begin_request(command, decision, prompt, system, user, team, stream=on_text is not None)
        with log.recording_on_interrupt():
            failure, _ = self.try_models(log.attempts, self.chain(decision.tier), prompt, system, max_tokens,
                                         temperature, on_text, on_restart)
        final = None if failure else log.attempts[-1]
        ledger_error = log.finish(final)
        if failure is not None:
            if ledger_error is not None:
                failure.message += f" (and the ledger could not be written: {ledger_error})"
            raise failure
        assert final is not None
        return Answer(final.text or "", log.request_id, decision, log.attempts, final, log.baseline,
                      (time.perf_counter() - started) * 1000, ledger_error)

    def begin_request(self, command: str, decision: Decision, prompt: str, system: str | None,
                      user: str | None, team: str | None, stream: bool = False) -> "RequestLog":
        """Start a request's bookkeeping; the ledger is opened now, before anything is paid for."""
        if self.db_path is not None:
            self.ledger()
        return RequestLog(self, command, decision, prompt, system, user, team, stream)

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

    def try_models(self, attempts: list[Attempt], chain: list[tuple[Tier, ModelSpec]], prompt: str,
                   system: str | None, max_tokens: int | None, temperature: float | None,
                   on_text=None, on_restart: Note | None = None, role: str = "answer") -> tuple[MmrError | None, bool]:
        """Try the models of ``chain`` in order with retries, appending each try to ``attempts``.

        Returns ``(None, False)`` when the last attempt answered, else ``(error, fatal)``:
        ``fatal`` when no other model should be tried (a rejected key or request).
        """
        from .providers import ChatRequest, OutputFailed, ProviderError

        policy = self.config.retry
        streamed = False
        start = len(attempts)
        for tier, model in chain:
            spec = self.config.providers[model.provider]
            missing = self._key_problem(model)
            if missing:
                attempts.append(Attempt(tier.name, spec.name, model.model, "skipped", error=f"{missing} is not set",
                                        error_kind="no_key", role=role))
                continue
            self._check_key(spec)
            if temperature is not None and spec.type == "anthropic" and role == "answer":
                self.on_note(f"{spec.name}/{model.model}: the Anthropic API takes no temperature; ignored")
            provider = self._provider(spec)
            limit = max_tokens or model.max_tokens
            if role != "answer" and model.reasoning:
                # Reasoning models spend output tokens thinking: a 5-token budget comes back empty.
                limit = max(limit, model.max_tokens)
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
                    wait = self._retry_wait(e, retry) if e.retryable and retry < policy.max_retries else None
                    if wait is None:
                        self.on_note(f"{attempt.label} failed: {e}; trying the next model")
                        break
                    self.on_note(f"{attempt.label} failed: {e}; retrying in {wait:.2f} s")
                    if e.retry_after is not None:
                        # The provider told us to hold off: every thread waits it out before its next call there.
                        self.pauses.pause(spec.name, wait)
                    else:
                        self.sleep(wait)
                    continue
                attempt.text = response.text
                attempt.input_tokens, attempt.output_tokens = response.input_tokens, response.output_tokens
                attempt.cost = cost_usd(model.price, response.input_tokens, response.output_tokens)
                attempt.duration_ms, attempt.ttft_ms = response.duration_ms, response.ttft_ms
                attempt.stop_reason, attempt.usage_estimated = response.stop_reason, response.usage_estimated
                attempts.append(attempt)
                return None, False
        return self.exhausted_error(attempts[start:]), False

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
        if all(a.status == "skipped" for a in attempts):
            names = sorted({self.config.providers[a.provider].api_key_env or a.provider for a in attempts})
            return MissingKeyError(f"no API key for any model of this route: set {' or '.join(names)}")
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
        """This thread's ledger connection, opened on first use (None without a ledger)."""
        if self.db_path is None:
            return None
        ledger = getattr(self._local, "ledger", None)
        if ledger is None:
            from .ledger import Ledger

            ledger = Ledger(self.db_path, busy_timeout=self.config.ledger.busy_timeout)
            self._local.ledger = ledger
            with self._lock:
                self._ledgers.append(ledger)
        return ledger

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
        escalated = int(returned is not None and returned.tier != log.decision.tier)
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
        """Close every thread's ledger connection (call when no thread is using the router)."""
        with self._lock:
            ledgers, self._ledgers = self._ledgers, []
            self._local = threading.local()
        for ledger in ledgers:
            ledger.close()

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


__all__ = ["Answer", "Attempt", "Estimate", "Router", "new_id"]
