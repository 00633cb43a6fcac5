"""The tiers file's wording keys: ``templates:``, and per model, provider or tier ``system_prefix``,
``system_suffix`` or ``system_template``; per model ``stop`` and ``temperature`` (see phrasing.py).

A model's wording is the first level that sets one of the three keys, model before provider
before tier, taken whole (levels are not mixed). Every problem names its key path.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .checks import Checks, join, kind
from .phrasing import INLINE, Phrasing, placeholders
from .schema import Experiment, ModelSpec, Tier

WORDING_KEYS = {"system_prefix", "system_suffix", "system_template"}
MODEL_KEYS = WORDING_KEYS | {"stop", "temperature"}
_TEMPLATE_KEYS = {"system", "user"}
MAX_STOP = 16  # more stop sequences than any API takes (OpenAI: 4, Anthropic: a few thousand characters)


class Wordings:
    """The named templates of one file, and the wording keys of each level checked against them."""

    def __init__(self, c: Checks, value: Any):
        self.c = c
        self.templates: dict[str, Phrasing] = {}
        for name, entry in c.names(value, "templates").items():
            path = join("templates", name)
            if not isinstance(name, str) or not name.strip() or name == INLINE:
                raise c.fail(path, f"a template name must be a non-empty string other than {INLINE!r}")
            self.templates[name] = self._parts(entry, path, name)

    def own(self, entry: dict, path: str) -> Phrasing | None:
        """The wording that ``entry`` (a model's, provider's or tier's mapping) sets itself, else None."""
        c = self.c
        if "system_template" in entry:
            where = join(path, "system_template")
            clash = sorted(WORDING_KEYS & set(entry) - {"system_template"})
            if clash:
                raise c.fail(join(path, clash[0]), "cannot be combined with system_template: put the text in the template")
            value = entry["system_template"]
            if isinstance(value, dict):
                return self._parts(value, where, INLINE)
            name = c.string(value, where)
            if name not in self.templates:
                defined = ", ".join(sorted(self.templates)) or "none defined"
                raise c.fail(where, f"unknown template {name!r}; templates: {defined} (an inline template is a mapping "
                                    "with system and/or user)")
            return replace(self.templates[name], where=where)
        if "system_prefix" in entry or "system_suffix" in entry:
            parts = {key: _text(c, entry[key], join(path, key)) if key in entry else ""
                     for key in ("system_prefix", "system_suffix")}
            for key, text in parts.items():
                _literal(c, text, join(path, key))
            return Phrasing.affix(parts["system_prefix"], parts["system_suffix"], where=path)
        return None

    def _parts(self, value: Any, path: str, name: str) -> Phrasing:
        c = self.c
        entry = c.mapping(value, path, _TEMPLATE_KEYS)
        if not entry:
            raise c.fail(path, "a template needs system, user or both")
        parts = {key: _text(c, entry[key], join(path, key)) for key in entry}
        used = {key: _placeholders(c, text, join(path, key)) for key, text in parts.items()}
        if "prompt" not in used.get("system", []) + used.get("user", ["prompt"]):
            raise c.fail(path, "{prompt} appears in neither system nor user: the user's prompt would be dropped")
        if "user" in parts and "prompt" not in used["user"] and not _visible(parts["user"]):
            raise c.fail(join(path, "user"), "renders an empty user turn: add {prompt} or some text")
        return Phrasing.template(name, parts.get("system", "{system}"), parts.get("user", "{prompt}"), where=path)


def stop(c: Checks, value: Any, path: str) -> tuple[str, ...]:
    """A model's ``stop``: a list of non-empty strings (a single string is a list of one)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise c.fail(path, f"expected a list of strings, got {kind(value)}")
    if len(value) > MAX_STOP:
        raise c.fail(path, f"at most {MAX_STOP} stop sequences, got {len(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise c.fail(f"{path}[{i}]", f"expected a non-empty string, got {kind(item)}")
    return tuple(value)


def temperature(c: Checks, value: Any, path: str, provider_type: str, reasoning: bool) -> float:
    """A model's ``temperature``, from 0 to 2, on a model whose API takes one."""
    number = c.number(value, path, minimum=0.0, maximum=2.0)
    if provider_type == "anthropic":
        raise c.fail(path, "the Anthropic API takes no temperature (it rejects sampling parameters); remove it")
    if reasoning:
        raise c.fail(path, "reasoning models take no temperature; remove it (or set reasoning: false)")
    return number


def inherit(tiers: tuple[Tier, ...], experiments: tuple[Experiment, ...],
            tier_wording: dict[str, Phrasing | None]) -> tuple[tuple[Tier, ...], tuple[Experiment, ...]]:
    """Give each model without its own (or its provider's) wording its tier's, in the tiers and in
    the experiment variants (a variant's models take the wording of the tier they replace)."""

    def fill(models: tuple[ModelSpec, ...], tier: str) -> tuple[ModelSpec, ...]:
        wording = tier_wording.get(tier)
        return tuple(replace(m, phrasing=wording) if m.phrasing is None and wording else m for m in models)

    tiers = tuple(replace(t, models=fill(t.models, t.name)) for t in tiers)
    experiments = tuple(replace(e, variants=tuple(
        replace(v, tiers={name: fill(models, name) for name, models in v.tiers.items()}) for v in e.variants
    )) for e in experiments)
    return tiers, experiments


def _text(c: Checks, value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise c.fail(path, f"expected a string, got {kind(value)}")
    return value


def _placeholders(c: Checks, text: str, path: str) -> list[str]:
    try:
        return placeholders(text)
    except ValueError as e:
        raise c.fail(path, str(e)) from None


def _literal(c: Checks, text: str, path: str) -> None:
    """A prefix or suffix is sent as written: a placeholder there is a mistake (use system_template)."""
    if any(name for name in _TEMPLATE_NAMES if name in text):
        raise c.fail(path, "a prefix or suffix is sent as written; for {system} or {prompt} use system_template")


_TEMPLATE_NAMES = ("{system}", "{prompt}")


def _visible(text: str) -> bool:
    """Whether ``text`` has something besides placeholders and whitespace."""
    for name in _TEMPLATE_NAMES:
        text = text.replace(name, "")
    return bool(text.strip())
