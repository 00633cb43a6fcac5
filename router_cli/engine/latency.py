"""Calls that are not waited for in full: a first-token timeout, and hedged requests.

A watched call runs in its own thread (the SDKs block); this thread waits for its
first token, its end, or a deadline, whichever comes first. A call abandoned
(too slow to start, or beaten by a hedge) has its connection shut, so its thread
ends at once, and keeps the tokens its provider reported before that: they were
billed. Streaming is how a first token is seen, so a call with a first-token limit
(or a ``ttft`` SLO, or in a hedged tier) is streamed even when nobody reads the
stream: its text is assembled into one answer as usual.

    race = Race()
    flight = race.launch(provider, chat, forward=print)
    outcome = race.settle({flight: 0.5})  # flight -> its first-token limit in seconds
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from ..config import ModelSpec, ProviderSpec
from ..providers.base import ProviderError, Watch, elapsed_ms


def first_token_limit(model: ModelSpec, spec: ProviderSpec, override: float | None) -> float | None:
    """Seconds ``model`` may take to its first token: ``--first-token-timeout``, else the model's, else its
    provider's. None for a local model: llama.cpp runs in this process, and a call given up would run on."""
    if spec.type == "local":
        return None
    if override is not None:
        return override
    return model.first_token_timeout if model.first_token_timeout is not None else spec.first_token_timeout


def needs_stream(model: ModelSpec, limit: float | None, hedged: bool) -> bool:
    """Whether a call must stream to be watched: a first-token limit, a hedge, or an SLO on the first token."""
    return limit is not None or hedged or (model.slo is not None and model.slo.ttft is not None)


class _Abandoned(Exception):
    """Raised inside an abandoned call's thread at its next token, to end it."""


class Flight:
    """One provider call in its own thread. Only the race's winner passes its text on to ``forward``."""

    def __init__(self, race: "Race", provider, chat, forward: Callable[[str], None]):
        self.race, self.provider, self.chat, self.forward = race, provider, chat, forward
        self.watch = Watch(on_start=self._claim)
        self.response = None
        self.parts: list[str] = []
        self.error: BaseException | None = None
        self.done = False
        self.lost = False  # abandoned: too slow to start, or another call won
        self.start = time.perf_counter()
        self.thread = threading.Thread(target=self._run, name="mmr-call", daemon=True)

    def _sink(self, text: str) -> None:
        self._claim()
        self.forward(text)
        self.parts.append(text)  # what went out: billed as an estimate if the call is cut by Ctrl-C

    def _claim(self) -> None:
        """A piece of this call's answer came (text or a tool call): it wins the race, unless it lost."""
        with self.race.cond:
            if self.lost or (self.race.winner is not None and self.race.winner is not self):
                self.lost = True
                raise _Abandoned()
            if self.race.winner is None:
                self.race.winner = self
                self.race.cond.notify_all()

    def _run(self) -> None:
        try:
            self.response = self.provider.complete(self.chat, on_text=self._sink, watch=self.watch)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            self.error = e
        with self.race.cond:
            if self.error is None and not self.lost and self.race.winner is None:
                self.race.winner = self  # an answer with no text at all still answered
            self.done = True
            self.race.cond.notify_all()

    def abandon(self) -> None:
        """Stop waiting for this call (the race's lock is held by the caller for ``lost``)."""
        self.lost = True

    @property
    def waited_ms(self) -> float:
        return elapsed_ms(self.start)

    def billed(self) -> tuple[list[int], bool, float]:
        """The tokens to bill for this call, abandoned, whether they are estimated, and the milliseconds it
        was given (not counting the wait for its thread to end). The tokens are those its provider
        reported before the cut; when it reported none (OpenAI reports usage only at the end) but the
        request reached it (its stream opened), an estimate of the input, as for an interrupted stream."""
        duration = self.waited_ms  # the time it was given, not the wait for its thread below
        if self.thread.ident is not None and self.thread is not threading.current_thread():
            self.thread.join(0.5)  # cut: it ends at once, and may still be taking the counts of its last event
        tokens = list(self.watch.tokens)
        if not any(tokens) and self.watch.reached:
            from ..pricing import estimate_tokens

            return [estimate_tokens(self.chat.sent_text), 0, 0, 0], True, duration
        return tokens, False, duration

    def slow_error(self, limit: float) -> ProviderError:
        """The error of a call abandoned for want of a first token, with the tokens billed before it."""
        tokens, estimated, duration = self.billed()
        error = ProviderError("first_token_timeout", f"no first token within {limit:g} s; abandoned",
                              input_tokens=tokens[0], output_tokens=tokens[1], duration_ms=duration,
                              usage_estimated=estimated)
        error.cache_tokens = (tokens[2], tokens[3])
        return error


@dataclass
class Outcome:
    """How a race ended: the winner (None: no call answered in time), and every flight's fate."""

    winner: Flight | None
    slow: list[Flight]  # abandoned for want of a first token
    lost: list[Flight]  # abandoned because another call started first
    failed: list[Flight]  # ended with an error before any other started


class Race:
    """Calls that compete to answer first (one call alone: a call with a first-token deadline)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.winner: Flight | None = None
        self.flights: list[Flight] = []

    def launch(self, provider, chat, forward: Callable[[str], None]) -> Flight:
        # The SDK is imported and its client built here, so a limit counts the call, not the import.
        provider.client()
        flight = Flight(self, provider, chat, forward)
        with self.cond:
            self.flights.append(flight)
        flight.thread.start()
        return flight

    def settle(self, limits: dict[Flight, float | None], hedge_at: float | None = None,
               hedge: Callable[[], tuple[Flight, float | None] | None] | None = None) -> Outcome:
        """Wait until one flight starts answering (it wins; the others are abandoned), every flight
        has failed, or each has run out of its first-token limit. At ``hedge_at`` seconds after the
        first flight started, ``hedge()`` may launch another (None: it may not). Ctrl-C abandons all."""
        slow: list[Flight] = []
        failed: list[Flight] = []
        first = next(iter(limits))
        try:
            while True:
                with self.cond:
                    pending = [f for f in limits if not f.done and not f.lost]
                    for f in limits:
                        if f.done and f is not self.winner and f not in failed and not f.lost:
                            failed.append(f)
                    if self.winner is not None or not pending:
                        break
                    now = time.perf_counter()
                    deadlines = [f.start + limit for f, limit in limits.items() if f in pending and limit is not None]
                    if hedge is not None and hedge_at is not None:
                        deadlines.append(first.start + hedge_at)
                    wait = max(0.0, min(deadlines) - now) if deadlines else None
                    self.cond.wait_for(lambda: self.winner is not None or any(f.done for f in pending), wait)
                    if self.winner is not None or any(f.done for f in pending):
                        continue
                    now = time.perf_counter()
                    for f in pending:
                        limit = limits[f]
                        if limit is not None and now >= f.start + limit:
                            f.abandon()
                            slow.append(f)
                    launch = hedge is not None and hedge_at is not None and now >= first.start + hedge_at
                for f in slow:
                    f.watch.abandon()
                if launch:
                    started = hedge() if hedge is not None else None
                    hedge = None  # once
                    if started is not None and started[0] not in limits:
                        limits[started[0]] = started[1]
        except BaseException:
            self.abandon_all()
            raise
        with self.cond:
            lost = [f for f in limits if f is not self.winner and f not in slow and f not in failed]
            for f in lost:
                f.abandon()
        for f in lost:
            f.watch.abandon()
        return Outcome(self.winner, slow, lost, failed)

    def finish(self, flight: Flight):
        """The winner's response once it has streamed to its end (or its error, raised)."""
        try:
            with self.cond:
                self.cond.wait_for(lambda: flight.done)
        except BaseException:
            self.abandon_all()
            raise
        if flight.error is not None:
            raise flight.error
        return flight.response

    def abandon_all(self) -> None:
        with self.cond:
            flights = [f for f in self.flights if not f.done]
            for f in flights:
                f.abandon()
        for f in flights:
            f.watch.abandon()


def call_watched(provider, chat, forward: Callable[[str], None], limit: float | None):
    """One call, abandoned when no first token came within ``limit`` seconds (a ``first_token_timeout``
    ProviderError carrying the tokens billed so far); its response otherwise."""
    race = Race()
    flight = race.launch(provider, chat, forward)
    outcome = race.settle({flight: limit})
    if outcome.slow:
        raise flight.slow_error(limit or 0.0)
    return race.finish(flight)


def demote_slow(chain: list, request, now: float, pinned: str | None = None) -> list:
    """``chain`` with each model over its latency SLO moved behind its tier-mates (policy/latency.py),
    each demotion noted on ``request``; unchanged when no model of it has an SLO or nothing is recorded.
    ``pinned`` (a model asked for by name) is then put first, unless it was demoted: a slow model stays
    behind its tier-mates even when asked for."""
    reasons = _slow_models(chain, request, now)
    if reasons:
        from ..policy.latency import demote

        chain = demote(chain, reasons)
    if pinned is not None and not any(model == pinned for _, model in reasons):
        chain = sorted(chain, key=lambda link: link[1].model != pinned)
    return chain


def _slow_models(chain: list, request, now: float) -> dict[tuple[str, str], str]:
    """Why each model of ``chain`` over its latency SLO is demoted, by (provider, model), each noted."""
    if request.store is None or not any(m.slo is not None for _, m in chain):
        return {}
    from datetime import datetime, timezone

    from ..errors import LedgerError
    from ..ledger.queries import latency_samples
    from ..policy.latency import demotion, model_latency

    window = request.config.breaker.window
    try:
        stats = model_latency(latency_samples(request.store, datetime.fromtimestamp(now - window, timezone.utc)))
    except LedgerError as e:
        request.on_note(f"latency SLOs not checked ({e})")
        return {}
    reasons: dict[tuple[str, str], str] = {}
    for _, model in chain:
        why = demotion(model, stats.get((model.provider, model.model)), window)
        if why is not None and (model.provider, model.model) not in reasons:
            reasons[(model.provider, model.model)] = why
            request.note(f"demoted {model.provider}/{model.model}: {why}")
    return reasons
