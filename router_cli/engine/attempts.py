"""The fallback chain: try each model in order, with retries, appending every try.

Retryable errors (429, 5xx, overloaded, timeouts, dropped connections) are
retried on the same model with exponential backoff and full jitter, honouring
``retry-after``; a retryable failure moves at once to the next model of the
same tier when one is ready (an equivalent model elsewhere answers sooner than
a backoff), and the last of a tier is retried before the next tier is tried.
A 404 or 402/403 moves straight to the next model. A 400 (the request itself
is wrong) and a 401 (the key is wrong) stop at once: every other model would
fail the same way, or the user must fix the key.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Callable

from ..config import Config, ModelSpec, ProviderSpec
from ..errors import EXIT_REQUEST_REJECTED, AllAttemptsFailed, BudgetExceeded, MissingKeyError, MmrError
from ..pricing import estimate_tokens
from .admission import Admitter, Chain
from .billing import bill, fill_answer, fill_failure
from .call import Call
from .shaping import Shape, shape
from .types import Attempt, Note

if TYPE_CHECKING:
    from .request import Request


class ChainRunner:
    """Walks fallback chains for a router; shared by the threads of a batch.

    ``provider`` returns the (shared, thread-safe) provider for a spec.
    """

    def __init__(self, config: Config, admitter: Admitter, provider: Callable[[ProviderSpec], object],
                 sleep: Callable[[float], None], on_note: Note):
        self.config, self.admitter, self.provider, self.sleep, self.on_note = config, admitter, provider, sleep, on_note

    def run(self, attempts: list[Attempt], chain: Chain, call: Call,
            request: "Request | None" = None) -> tuple[MmrError | None, bool]:
        """Try the models of ``chain`` in order, appending each try to ``attempts``.

        Returns ``(None, False)`` when :func:`answered` is the attempt that answered, else ``(error, fatal)``:
        ``fatal`` when no other model should be tried (a rejected key or request).
        """
        start = len(attempts)
        try:
            outcome = self._walk(attempts, chain, call, request, start)
        finally:
            self._settle_unreached(call, attempts[start:])
        return outcome

    def _walk(self, attempts: list[Attempt], chain: Chain, call: Call, request: "Request | None",
              start: int) -> tuple[MmrError | None, bool]:
        for position, (tier, model) in enumerate(chain):
            if position in call.hedged:
                continue  # called already, as the hedge of the model before it
            spec = self.config.providers[model.provider]
            ticket = self.admitter.admit(request, attempts, chain, position,
                                         (call.transcript, call.system, call.limit(model)), call.role)
            if ticket is None:
                continue
            if call.temperature is not None and spec.type == "anthropic" and call.role == "answer":
                self.on_note(f"{spec.name}/{model.model}: the Anthropic API takes no temperature; ignored")
            outcome = self._with_retries(attempts, chain, position, call, request, ticket)
            if outcome != "next":
                return outcome  # type: ignore[return-value]
        return self.exhausted_error(attempts[start:]), False

    def _with_retries(self, attempts: list[Attempt], chain: Chain, position: int, call: Call,
                      request: "Request | None", ticket):
        """One model, retried while that is worth it: ``(None, False)``, ``(error, fatal)`` or ``"next"``."""
        from ..providers import OutputFailed, ProviderError
        from .hedging import HedgeAnswered, HedgeFailed, hedged_call, mate

        tier, model = chain[position]
        spec = self.config.providers[model.provider]
        provider = self.provider(spec)
        chat = self.chat(call, model, spec)
        for retry in range(self.config.retry.max_retries + 1):
            attempt = Attempt(tier.name, spec.name, model.model, "ok", role=call.role,
                              **call.wording(model))
            if retry and not self.admitter.budget_allows(request, attempts, tier, model,
                                                         (call.transcript, call.system, call.limit(model)), call.role):
                return "next"  # a retry may bill another worst case: it must fit too
            if call.streamed and call.on_restart is not None:
                call.on_restart(f"the answer broke off; {attempt.label} answers again from the start")
                call.streamed = False
            paused = self.admitter.pauses.remaining(spec.name)
            if paused > 0 and not retry:  # a retry's own wait was announced with its failure
                self.on_note(f"{spec.name} asked to hold off (retry-after): waiting {paused:.2f} s before {attempt.label}")
            self.admitter.pauses.wait(spec.name, self.sleep)
            emitted: list[str] = []
            after: list[Attempt] = []  # a hedge's attempt, recorded after this one (it started later)
            try:
                if retry == 0 and mate(chain, position, call) is not None:
                    forward = _sink(call.on_text, emitted) if call.on_text else _discard
                    response = hedged_call(self, attempts, chain, position, call, request, chat, forward, attempt,
                                           after)
                else:
                    response = self._complete(provider, chat, call, model, spec, emitted)
            except HedgeAnswered as h:
                self._hedge_failures(attempts, h.failures, chain, ticket, call)  # an answer came: nothing is fatal
                return None, False
            except HedgeFailed as h:
                call.streamed = call.streamed or bool(emitted)
                return self._hedge_failures(attempts, h.failures, chain, ticket, call) or "next"
            except OutputFailed as e:
                attempt.status, attempt.error, attempt.error_kind = "error", f"output failed: {e.error!r}", "output"
                attempt.usage_estimated = e.usage[2]
                bill(attempt, model, spec.type, e.usage[0], e.usage[1], *e.cache_tokens)
                attempts += [attempt, *after]
                raise e.error from None
            except ProviderError as e:
                call.streamed = call.streamed or bool(emitted)
                fill_failure(attempt, model, spec.type, e)
                attempts.append(attempt)
                action = self._after_failure(e, attempts, chain, position, retry, ticket, call)
                attempts += after
                if action == "retry":
                    continue
                return action
            except BaseException:
                # Ctrl-C (or a bug) mid-call: keep the attempt; text already streamed was billed.
                if not any(a is attempt for a in attempts):  # a hedge that lost has it recorded already
                    _fill_interrupted(attempt, model, spec.type, call, emitted)
                    attempts.append(attempt)
                attempts += after
                raise
            fill_answer(attempt, model, spec.type, response)
            attempts += [attempt, *after]
            self.admitter.outcome(spec, model, ticket)
            return None, False
        return "next"

    def chat(self, call: Call, model: ModelSpec, spec: ProviderSpec):
        """The ChatRequest ``model`` is sent for ``call``."""
        from ..providers import ChatRequest

        if call.native is None:  # this model's wording
            sent = shape(model, call.system, call.prompt, call.stop, call.temperature, call.role)
        else:  # a native request (tools, images) is sent as the client wrote it
            sent = Shape(call.system, call.prompt, call.stop, call.temperature)
        return ChatRequest(model, sent.prompt, sent.system, call.limit(model), sent.temperature, call.history, sent.stop,
                           cache_system=call.prompt_cache == "auto" and worth_caching(spec.type, model.model, sent.system),
                           native=call.native)

    @staticmethod
    def _complete(provider, chat, call: Call, model: ModelSpec, spec: ProviderSpec, emitted: list[str]):
        """One call: streamed (to a reader, or assembled) when its first token is watched, and then
        abandoned if that token is late (engine/latency.py)."""
        from .latency import call_watched, first_token_limit, needs_stream

        limit = first_token_limit(model, spec, call.first_token_timeout)
        forward = _sink(call.on_text, emitted) if call.on_text else None
        if forward is None and needs_stream(model, limit, False):
            forward = _discard
        if limit is None:
            return provider.complete(chat, on_text=forward)
        return call_watched(provider, chat, forward or _discard, limit)

    def _settle_unreached(self, call: Call, tried: list[Attempt]) -> None:
        """Count the failures to connect against their circuits, unless every call of the chain failed
        to connect to two or more providers: then this machine is offline (no network, no DNS) and no
        provider is to blame."""
        pending, call.unreached = call.unreached, []
        calls = [a for a in tried if a.status != "skipped"]
        if len({spec.name for spec, _, _, _ in pending}) > 1 and all(not a.reached for a in calls):
            self.on_note("no provider could be reached (is this machine offline?): no circuit was opened")
            return
        for spec, model, ticket, error in pending:
            self.admitter.outcome(spec, model, ticket, error)

    def _after_failure(self, e, attempts: list[Attempt], chain: Chain, position: int, retry: int, ticket,
                       call: Call):
        """After a failed try (the last of ``attempts``): ``"retry"`` (having slept), ``"next"``, or ``(error, True)``."""
        attempt = attempts[-1]
        tier, model = chain[position]
        policy = self.config.retry
        fatal = self._failed(e, attempts, attempt, model, ticket, call)
        if fatal is not None:
            return fatal
        if e.retryable and self.admitter.mate_ready(chain, position):
            self.on_note(f"{attempt.label} failed: {e}; trying the next model of {tier.name}")
            return "next"
        wait = self._retry_wait(e, retry) if e.retryable and retry < policy.max_retries else None
        if wait is None:
            same = len(attempts) > 1 and attempts[-2].error == attempt.error and attempts[-2].status == "error"
            self.on_note(f"{attempt.label} failed the same way; trying the next model" if same
                         else f"{attempt.label} failed: {e}; trying the next model")
            return "next"
        self.on_note(f"{attempt.label} failed: {e}; retrying in {wait:.2f} s")
        if e.retry_after is None:
            self.sleep(wait)  # else the pause is slept out before the next call
        return "retry"

    def _failed(self, e, attempts: list[Attempt], attempt: Attempt, model: ModelSpec, ticket, call: Call):
        """What any failed call of ``model`` tells (its breaker; a retry-after pause), and the
        ``(error, True)`` that ends the chain when no other model would do better (a rejected key or
        request); else None."""
        spec = self.config.providers[model.provider]
        if e.reached or ticket.probe:
            self.admitter.outcome(spec, model, ticket, e)
        else:
            call.unreached.append((spec, model, ticket, e))
        if e.retryable and e.retry_after is not None and e.retry_after <= self.config.retry.max_retry_after:
            # The provider told us to hold off: every thread waits it out, or uses a
            # tier-mate, before calling this provider again.
            self.admitter.pauses.pause(spec.name, e.retry_after)
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
        return None

    def _hedge_failures(self, attempts: list[Attempt], failures: list, chain: Chain, ticket, call: Call):
        """The failures of a hedged pair of calls, each told as any failure is (not retried: the chain
        goes on after both): the first ``(error, True)`` that ends the chain, or None. ``failures``
        holds (error, attempt, position, ticket), the ticket None for the first model's own."""
        fatal = None
        for e, attempt, at, theirs in failures:
            told = self._failed(e, attempts, attempt, chain[at][1], theirs if theirs is not None else ticket, call)
            fatal = fatal or told
        return fatal

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
        tried = sum(1 for a in attempts if a.status != "skipped")
        if not tried:
            # Every model was passed over (open circuits, pauses): none failed, none was called.
            return AllAttemptsFailed("no model was tried: " + "; ".join(
                dict.fromkeys(f"{a.label}: {a.error}" for a in attempts)), attempts)
        if all(not a.reached for a in attempts if a.status != "skipped"):
            head = f"no provider could be reached ({tried} attempts, none connected: is this machine online?)"
        else:
            head = f"every model failed ({tried} attempts)"
        if len(attempts) > 1 and {(a.error_kind, a.error) for a in attempts} == {("load_error", attempts[0].error)}:
            # The same local model failing to load on every tier (not installed): said once.
            labels = ", ".join(dict.fromkeys(a.label for a in attempts))
            return AllAttemptsFailed(f"{head}, each the same way: {labels}: {attempts[0].error}", attempts)
        return AllAttemptsFailed(f"{head}: " + "; ".join(_counted(attempts)), attempts)


def answered(attempts: list[Attempt]) -> Attempt:
    """The attempt that answered, once :meth:`ChainRunner.run` returned no error: the last one, but for
    the cancelled hedge of a first model that won (recorded after it: attempts are in the order the
    calls started)."""
    return next((a for a in reversed(attempts) if a.hedge != "lost"), attempts[-1])


def _counted(attempts: list[Attempt]) -> list[str]:
    """Each attempt as ``label: error``; consecutive identical ones (the retries of one model) once, with a count."""
    counts: list[tuple[str, int]] = []
    for a in attempts:
        text = f"{a.label}: {'skipped, ' if a.status == 'skipped' else ''}{a.error}"
        if counts and counts[-1][0] == text:
            counts[-1] = (text, counts[-1][1] + 1)
        else:
            counts.append((text, 1))
    return [text + (f" (x{n})" if n > 1 else "") for text, n in counts]


def _sink(on_text: Callable[[str], None], emitted: list[str]) -> Callable[[str], None]:
    """``on_text``, keeping what went out; its own failure (a closed pipe) is an OutputFailed."""
    from ..providers import OutputFailed

    def sink(text: str) -> None:
        try:
            on_text(text)
        except Exception as e:
            raise OutputFailed(e) from e
        emitted.append(text)

    return sink


def _discard(text: str) -> None:
    """A stream nobody reads as it comes: the provider assembles the answer."""


def worth_caching(provider_type: str, model: str, system: str | None) -> bool:
    """Whether to mark ``system`` for the provider's prompt cache: Anthropic only (OpenAI caches
    by itself), and only at or above the model's minimum cacheable length (1,024 tokens; 2,048 for
    Haiku models). The length is the average-case estimate: a mark below the minimum costs nothing
    (the API does not cache it), while an estimate on the low side would lose a cache read."""
    if provider_type != "anthropic" or not system:
        return False
    return estimate_tokens(system) >= (2048 if "haiku" in model.lower() else 1024)


def _fill_interrupted(attempt: Attempt, model: ModelSpec, provider_type: str, call: Call, emitted: list[str]) -> None:
    attempt.status, attempt.error, attempt.error_kind = "error", "interrupted", "interrupted"
    if emitted:
        attempt.usage_estimated = True
        bill(attempt, model, provider_type, estimate_tokens(f"{call.system or ''}\n{call.transcript}"),
             estimate_tokens("".join(emitted)))
