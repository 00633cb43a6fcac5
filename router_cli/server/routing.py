"""What a request's ``model`` means, and the engine run for it in a worker thread.

The engine is synchronous: each request runs :meth:`Router.ask` (or
:func:`cascade`) in a thread of the server's pool, exactly as ``mmr ask`` runs
it, ledger writes included, so the event loop never waits on a provider or the
ledger. A streamed answer's chunks reach the event loop through an
:class:`asyncio.Queue`; a client that goes away makes the next chunk raise in
the worker, which stops the upstream call and records what was billed.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..config import Config, ModelSpec
from ..engine.options import RequestOptions
from .protocols import Asked, BadRequest

AUTO = ("auto", "mmr")
CASCADE = "cascade"


class ClientGone(Exception):
    """The client disconnected mid-stream: raised in the worker from the next chunk."""


class BrokeOff(Exception):
    """A stream failed after text went out; another model cannot take over without repeating it."""


@dataclass(frozen=True)
class Meaning:
    """What ``model`` asks for: ``kind`` auto, cascade, tier or model."""

    kind: str
    tier: str | None = None
    model: str | None = None


def meaning(config: Config, name: str) -> Meaning:
    """``name`` as the ``model`` field means it; :class:`BadRequest` (404) for anything else."""
    if name in AUTO:
        return Meaning("auto")
    if name == CASCADE:
        return Meaning("cascade")
    if name in config.tier_names:
        return Meaning("tier", tier=name)
    spec = find_model(config, name)
    if spec is not None:
        tier = next(t.name for t in config.tiers if spec in t.models)
        return Meaning("model", tier=tier, model=spec.model)
    raise BadRequest(f"the model {name!r} does not exist here; use auto, cascade, a tier "
                     f"({', '.join(config.tier_names)}) or a configured model id", 404, "model_not_found")


def find_model(config: Config, name: str) -> ModelSpec | None:
    """The configured model ``name`` (``model`` or ``provider/model``), in its cheapest tier."""
    for tier in config.tiers:
        for spec in tier.models:
            if name in (spec.model, f"{spec.provider}/{spec.model}"):
                return spec
    return None


def check_native(config: Config, what: Meaning, asked: Asked) -> None:
    """A request carrying tools or images goes only to a model of its own protocol (the engine keeps to
    those): :class:`BadRequest` when ``what`` it asks for has none."""
    speaks = [m for t in config.tiers for m in t.models if config.providers[m.provider].type == asked.protocol]
    if what.kind == "cascade":
        raise BadRequest(f"this request carries {asked.extras}: cascade judges text answers only; "
                         "use auto, a tier or a model")
    if not speaks:
        raise BadRequest(f"this request carries {asked.extras}, which pass only to a model of the client's own "
                         f"protocol ({asked.protocol}), and no configured model speaks it: configure a model of "
                         f"a provider of type {asked.protocol} to pass them through")
    if what.kind == "model":
        spec = find_model(config, asked.model)
        if spec is not None and config.providers[spec.provider].type != asked.protocol:
            raise BadRequest(f"this request carries {asked.extras}, which pass only to a model of the client's own "
                             f"protocol ({asked.protocol}); {asked.model} is not one: ask for auto, a tier, or one of "
                             + ", ".join(dict.fromkeys(m.model for m in speaks)))


class Sessions:
    """Session affinity: a session stays on the model first chosen (``(tier, model)``) unless it fails.

    In memory, bounded: the least recently used session is forgotten first.
    """

    def __init__(self, bound: int):
        self.bound = bound
        self._map: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session: str) -> tuple[str, str] | None:
        with self._lock:
            chosen = self._map.get(session)
            if chosen is not None:
                self._map.move_to_end(session)
            return chosen

    def keep(self, session: str, tier: str, model: str) -> None:
        with self._lock:
            self._map[session] = (tier, model)
            self._map.move_to_end(session)
            while len(self._map) > self.bound:
                self._map.popitem(last=False)


def options_for(asked: Asked, what: Meaning, *, user: str | None, team: str | None, max_cost: Decimal | None,
                pinned: tuple[str, str] | None) -> RequestOptions:
    """The engine's options for ``asked``; ``pinned`` (a session's tier and model) overrides auto routing."""
    tier, model = what.tier, what.model
    if what.kind == "auto" and pinned is not None:
        tier, model = pinned
    return RequestOptions(system=asked.system, tier=tier, max_tokens=asked.max_tokens, temperature=asked.temperature,
                          max_cost=max_cost, user=user, team=team, history=asked.history, stop=asked.stop,
                          model=model, native=asked.native)


class Worker:
    """One request's engine run in a pool thread; its events go to the event loop's queue.

    Events: ``("text", chunk)``, then ``("done", answer)`` or ``("error", exception)``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.events: asyncio.Queue = asyncio.Queue()
        self.gone = threading.Event()
        self.sent_text = False

    def _put(self, event: tuple[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def on_text(self, piece: str) -> None:
        if self.gone.is_set():
            raise ClientGone("the client disconnected")
        self.sent_text = True
        self._put(("text", piece))

    def on_restart(self, message: str) -> None:
        raise BrokeOff(message)

    def run(self, produce) -> None:
        """Run ``produce()`` (in the worker thread) and report how it ended."""
        try:
            self._put(("done", produce()))
        except BaseException as e:  # noqa: BLE001 - every ending is reported to the client
            self._put(("error", e))
