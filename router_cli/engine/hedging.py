"""Hedged requests: a tier with ``hedge: 1.5s`` calls its next model too when the first has not
started answering after that delay; the first to start wins, the other is cancelled.

Both calls are in the ledger (``calls.hedge``: ``won``, ``lost``), the loser with the tokens its
provider reported before it was cut (``error_kind`` ``hedge_lost``), so ``mmr costs`` can show
what hedging cost. A hedge is not sent when a budget could not hold both calls' worst cases at
once, nor when the next model is not ready (no key, a retry-after pause, an open circuit): the
first call is then waited for alone, and a note says why.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ..errors import LedgerError
from ..pricing import decimal_str
from .admission import Chain, worst_case
from .billing import bill, fill_answer, fill_failure
from .call import Call
from .latency import Flight, Race, first_token_limit
from .types import Attempt

if TYPE_CHECKING:
    from .request import Request


class Runner(Protocol):
    """What a hedge needs of the fallback loop's runner (attempts.ChainRunner), named here so that
    this module does not import the loop that calls it."""

    config: Any
    admitter: Any
    on_note: Callable[[str], None]

    def provider(self, spec) -> Any: ...

    def chat(self, call: Call, model, spec) -> Any: ...


class HedgeAnswered(Exception):
    """The hedge won: its attempt (the last of the attempts) answered. ``failures``: the first model's
    own failure, if it failed (error, attempt, position, None: the caller's ticket)."""

    def __init__(self, failures: list | None = None):
        super().__init__("the hedge answered")
        self.failures = failures or []


class HedgeFailed(Exception):
    """Both calls of a hedge are over and neither answered (both attempts appended): try the next model,
    unless a failure says no model would do better. ``failures``: (error, attempt, position, ticket or
    None for the caller's own), told as any failure is (engine/attempts.py)."""

    def __init__(self, failures: list | None = None):
        super().__init__("neither call of the hedge answered")
        self.failures = failures or []


def mate(chain: Chain, position: int, call: "Call") -> int | None:
    """The position of the model that hedges ``chain[position]``: the next of the same tier, when that
    tier hedges; else None."""
    tier = chain[position][0]
    nxt = position + 1
    if tier.hedge is None or nxt >= len(chain) or chain[nxt][0].name != tier.name or nxt in call.hedged:
        return None
    return nxt


def hedged_call(runner: "Runner", attempts: list[Attempt], chain: Chain, position: int, call: "Call",
                request: "Request | None", chat, forward: Callable[[str], None], attempt: Attempt,
                after: list[Attempt]):
    """The first call of a hedging tier, with its hedge: the first model's response when it wins
    (the hedge's attempt put in ``after``, for the caller to record after ``attempt``: in the order
    the calls started; so too when interrupted before either answered). Raises the first model's
    error when it fails and no hedge was sent, :class:`HedgeAnswered` when the hedge won, and
    :class:`HedgeFailed` when both calls failed (both attempts appended)."""
    tier, model = chain[position]
    spec = runner.config.providers[model.provider]
    second = mate(chain, position, call)
    assert second is not None
    race = Race()
    first = race.launch(runner.provider(spec), chat, forward)
    hedges: list[tuple[Flight, int, object]] = []
    # The hedge's SDK is imported while the first call runs, so a hedge is not held up by the import.
    threading.Thread(target=_warm, args=(runner, runner.config.providers[chain[second][1].provider]),
                     name="mmr-hedge-warm", daemon=True).start()

    def hedge() -> tuple[Flight, float | None] | None:
        ticket = _admit(runner, chain, position, second, call, request)
        if ticket is None:
            return None
        _, other = chain[second]
        other_spec = runner.config.providers[other.provider]
        flight = race.launch(runner.provider(other_spec), runner.chat(call, other, other_spec), forward)
        hedges.append((flight, second, ticket))
        call.hedged.add(second)
        (request.note if request is not None else runner.on_note)(
            f"{tier.name} {spec.name}/{model.model} had not started after {tier.hedge:g} s: hedged with "
            f"{other_spec.name}/{other.model}")
        return flight, first_token_limit(other, other_spec, call.first_token_timeout)

    try:
        outcome = race.settle({first: first_token_limit(model, spec, call.first_token_timeout)}, tier.hedge, hedge)
    except BaseException:
        for flight, at, _ in hedges:  # Ctrl-C: the hedge is kept too, with what its provider reported
            _, other = chain[at]
            other_spec = runner.config.providers[other.provider]
            theirs = Attempt(tier.name, other_spec.name, other.model, "error", error="interrupted",
                             error_kind="interrupted", role=call.role, hedge="lost", **call.wording(other))
            _bill_cut(theirs, flight, other, other_spec.type)
            after.append(theirs)
        raise
    if not hedges:  # no hedge was sent: the first call alone, as without hedging
        if outcome.slow:
            raise first.slow_error(first_token_limit(model, spec, call.first_token_timeout) or 0.0)
        return race.finish(first)
    return _resolve(runner, attempts, chain, position, call, race, outcome, hedges[0], (attempt, after))


def _warm(runner: "Runner", spec) -> None:
    try:
        runner.provider(spec)
    except Exception:  # noqa: BLE001 - the hedge's own launch reports it
        pass


def _resolve(runner: "Runner", attempts: list[Attempt], chain: Chain, position: int, call: "Call", race: Race,
             outcome, hedge: tuple[Flight, int, object], mine: tuple[Attempt, list[Attempt]]):
    """A race with a hedge, settled: both calls' attempts, and the answer (see :func:`hedged_call`)."""
    from ..providers import ProviderError

    tier, model = chain[position]
    spec = runner.config.providers[model.provider]
    first = race.flights[0]
    flight, at, ticket = hedge
    attempt, after = mine
    _, other = chain[at]
    other_spec = runner.config.providers[other.provider]
    theirs = Attempt(tier.name, other_spec.name, other.model, "ok", role=call.role, hedge="lost",
                     **call.wording(other))
    attempt.hedge = "lost"
    if outcome.winner is first:
        attempt.hedge = "won"
        _lost(theirs, flight, other, other_spec.type, outcome,
              first_token_limit(other, other_spec, call.first_token_timeout))
        after.append(theirs)
        return race.finish(first)
    failed = _first_failed(attempt, first, model, spec.type, outcome,
                           first_token_limit(model, spec, call.first_token_timeout))
    failures = [(failed, attempt, position, None)] if failed is not None else []
    if outcome.winner is flight:
        theirs.hedge = "won"
        try:
            response = race.finish(flight)
        except Exception as e:  # noqa: BLE001 - a ProviderError, or the reader gone (OutputFailed)
            attempts.append(attempt)
            return _hedge_error(attempts, theirs, e, other, other_spec, (at, ticket), failures)
        except BaseException:  # Ctrl-C while the hedge streams its answer: both calls kept, each billed
            theirs.status, theirs.error, theirs.error_kind = "error", "interrupted", "interrupted"
            _bill_cut(theirs, flight, other, other_spec.type)
            attempts += [attempt, theirs]
            raise
        fill_answer(theirs, other, other_spec.type, response)
        attempts += [attempt, theirs]
        runner.admitter.outcome(other_spec, other, ticket)
        raise HedgeAnswered(failures)
    attempts.append(attempt)
    # Neither answered: the hedge failed or ran out of time too.
    error = flight.error if flight.error is not None else flight.slow_error(
        first_token_limit(other, other_spec, call.first_token_timeout) or 0.0)
    if not isinstance(error, ProviderError):
        raise error  # not a failure of the call (a bug): let it through
    fill_failure(theirs, other, other_spec.type, error)
    attempts.append(theirs)
    raise HedgeFailed([*failures, (error, theirs, at, ticket)])


def _hedge_error(attempts, theirs, e, other, other_spec, hedge: tuple[int, object], failures: list):
    """The winning hedge broke off after it started: its failure recorded, then the next model."""
    from ..providers import OutputFailed, ProviderError

    if isinstance(e, OutputFailed):
        theirs.status, theirs.error, theirs.error_kind = "error", f"output failed: {e.error!r}", "output"
        theirs.usage_estimated = e.usage[2]
        bill(theirs, other, other_spec.type, e.usage[0], e.usage[1], *e.cache_tokens)
        attempts.append(theirs)
        raise e.error from None
    if not isinstance(e, ProviderError):
        raise e
    fill_failure(theirs, other, other_spec.type, e)
    attempts.append(theirs)
    raise HedgeFailed([*failures, (e, theirs, *hedge)])


def _lost(attempt: Attempt, flight: Flight, model, provider_type: str, outcome, limit: float | None = None) -> None:
    """A call beaten by the other: cancelled, billed what its provider reported before the cut; or
    given up already, at its own first-token ``limit``, or failed on its own."""

    from ..providers import ProviderError

    if flight in outcome.failed and isinstance(flight.error, ProviderError):
        fill_failure(attempt, model, provider_type, flight.error)  # it had failed on its own first
        return
    if flight in outcome.slow:  # it ran out of its own first-token limit before the other started
        fill_failure(attempt, model, provider_type, flight.slow_error(limit or 0.0))
        return
    error = flight.slow_error(0.0)
    error.kind, error.message = "hedge_lost", "the other call of the hedge started first; cancelled"
    fill_failure(attempt, model, provider_type, error)


def _bill_cut(attempt: Attempt, flight: Flight, model, provider_type: str) -> None:
    """A call cut by Ctrl-C: what its provider reported, or an estimate of what it was sent and of the
    text it streamed (as an interrupted stream is billed)."""
    from ..providers.base import billed_before_failure

    tokens, estimated, duration = flight.billed()
    input_tokens, output_tokens, streamed = billed_before_failure(flight.chat, tokens[:2], flight.parts)
    bill(attempt, model, provider_type, input_tokens, output_tokens, tokens[2], tokens[3])
    attempt.usage_estimated = estimated or streamed
    attempt.duration_ms = duration


def _first_failed(attempt: Attempt, flight: Flight, model, provider_type: str, outcome, limit):
    """The first call, when it did not win: its own failure, too slow a start, or beaten by the hedge;
    the error when it failed (not when it was only beaten)."""
    from ..providers import ProviderError

    if flight in outcome.slow:
        error = flight.slow_error(limit or 0.0)
        fill_failure(attempt, model, provider_type, error)
        return error
    _lost(attempt, flight, model, provider_type, outcome)
    return flight.error if flight in outcome.failed and isinstance(flight.error, ProviderError) else None


def _admit(runner: "Runner", chain: Chain, position: int, second: int, call: "Call",
           request: "Request | None"):
    """The breaker's ticket for the hedge, or None (with a note) when it may not be sent now."""
    tier, model = chain[position]
    _, other = chain[second]
    admitter = runner.admitter
    label = f"{tier.name} {other.provider}/{other.model}"

    def refuse(why: str) -> None:
        message = f"not hedging with {label}: {why}"
        (request.note if request is not None else runner.on_note)(message)

    if admitter.key_problem(other) is not None:
        return refuse(f"{admitter.key_problem(other)} is not set")
    if admitter.pauses.remaining(other.provider) > 0:
        return refuse(f"{other.provider} asked to wait (retry-after)")
    if request is not None and request.guard is not None:
        both = worst_case(model, call.transcript, call.system, call.limit(model), call.native) + \
            worst_case(other, call.transcript, call.system, call.limit(other), call.native)
        spec = runner.config.providers[model.provider]
        lease = (spec.timeout + 5) * (runner.config.retry.max_retries + 1)
        try:
            over = request.guard.hold(both, request.billed, lease=lease)  # type: ignore[attr-defined]
        except LedgerError as e:
            return refuse(f"the budget could not be checked ({e})")
        if over is not None:
            return refuse(f"{over.label} could not hold both calls (up to {decimal_str(both)} USD with "
                          f"{decimal_str(over.left(request.billed))} USD left)")
    ticket = admitter._breaker_ticket(runner.config.providers[other.provider], other)
    if not ticket.allowed:
        return refuse(ticket.reason or "its circuit is open")
    return ticket
