"""A request worded for one model, right before the call: its template or system prefix and
suffix (config/phrasing.py), its stop sequences and its temperature.

    shaped = shape(model, system="Be brief.", prompt="What is a monad?")
    shaped.system, shaped.prompt, shaped.template, shaped.template_hash

Each model of a fallback chain is shaped on its own, so a tier mixing providers gives each its
own phrasing. Only answers are shaped: a classifier's or a judge's call is sent as mmr wrote it
(its reply is parsed, and a template could break the format it asks for).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ModelSpec


@dataclass(frozen=True)
class Shape:
    """What one model is sent, and the wording's name and hash for the ledger (None: none applied)."""

    system: str | None
    prompt: str
    stop: tuple[str, ...] = ()
    temperature: float | None = None
    template: str | None = None
    template_hash: str | None = None
    wording: str | None = None  # for people: "template xml (0e91bb29dc570201, from providers.anthropic...)"

    def to_json(self) -> dict:
        """A dry run's view of one candidate model's call."""
        return {"template": self.template, "template_hash": self.template_hash, "wording": self.wording,
                "system": self.system, "prompt": self.prompt, "stop": list(self.stop), "temperature": self.temperature}


def shape(model: ModelSpec, system: str | None, prompt: str, stop: tuple[str, ...] = (),
          temperature: float | None = None, role: str = "answer") -> Shape:
    """``prompt`` and ``system`` as ``model`` is sent them; the request's stop sequences come
    first, then the model's, and the request's temperature wins over the model's."""
    if role != "answer":
        return Shape(system, prompt, stop, temperature)
    stops = tuple(dict.fromkeys(stop + model.stop))
    temperature = model.temperature if temperature is None else temperature
    phrasing = model.phrasing
    if phrasing is None:
        return Shape(system, prompt, stops, temperature)
    sent_system, sent_prompt = phrasing.render(system, prompt)
    return Shape(sent_system, sent_prompt, stops, temperature, phrasing.name, phrasing.hash, phrasing.describe())


def wording_fields(model: ModelSpec, role: str = "answer") -> dict:
    """The :class:`~router_cli.engine.types.Attempt` fields naming the wording ``model``'s call is sent in
    (none for a classifier's or a judge's call): ``Attempt(..., **wording_fields(model, call.role))``."""
    if role != "answer" or model.phrasing is None:
        return {}
    return {"template": model.phrasing.name, "template_hash": model.phrasing.hash}


def worded(model: ModelSpec, system: str | None, prompt: str) -> tuple[str, str | None]:
    """(prompt, system) as ``model``'s wording sends them: what a cost bound must count."""
    shaped = shape(model, system, prompt)
    return shaped.prompt, shaped.system
