"""A/B routing: which variant of each experiment a request runs under, and what that changes.

    assignment = assign(config.experiments, unit="alice")
    config = apply(config, assignment)         # the variant's classifier, thresholds, tier models
    assignment.label                           # "ml-router/ml", recorded on every ledger row

Assignment is deterministic: the variant is chosen by SHA-256 of the
experiment's name and the unit (the user, else the request id), mapped onto
the variants' cumulative weights. The same user always sees the same variant
of an experiment, and experiments are assigned independently of each other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from ..config import Config, Experiment, Tier, Variant


@dataclass(frozen=True)
class Assignment:
    """The variant chosen in each experiment, in experiment order."""

    chosen: tuple[tuple[Experiment, Variant], ...]

    @property
    def label(self) -> str | None:
        """``experiment/variant`` pairs joined by commas; None when no experiment runs."""
        if not self.chosen:
            return None
        return ",".join(f"{e.name}/{v.name}" for e, v in self.chosen)


def bucket(experiment: str, unit: str) -> float:
    """A stable number in [0, 1) for ``unit`` in ``experiment``."""
    digest = hashlib.sha256(f"{experiment}\0{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick(experiment: Experiment, unit: str) -> Variant:
    """The variant ``unit`` falls into, by weight."""
    total = sum(v.weight for v in experiment.variants)
    point = bucket(experiment.name, unit) * total
    running = 0.0
    for variant in experiment.variants:
        running += variant.weight
        if point < running:
            return variant
    return next(v for v in reversed(experiment.variants) if v.weight > 0)  # float rounding at the very top


def assign(experiments: tuple[Experiment, ...], unit: str) -> Assignment:
    """The variant of every experiment for ``unit`` (a user name, else a request id)."""
    return Assignment(tuple((e, pick(e, unit)) for e in experiments))


def apply(config: Config, assignment: Assignment) -> Config:
    """``config`` with the chosen variants' overrides; fields a variant leaves out are unchanged."""
    for _, v in assignment.chosen:
        changes: dict = {}
        if v.classifier is not None:
            changes["classifier"] = v.classifier
        if v.ml_model is not None:
            changes["ml_model"] = v.ml_model
        if v.thresholds is not None:
            changes["ml_thresholds"] = {**(config.ml_thresholds or {}), **v.thresholds}
        if v.tiers:
            changes["tiers"] = tuple(Tier(t.name, v.tiers.get(t.name, t.models)) for t in config.tiers)
        if changes:
            config = replace(config, **changes)
    return config


__all__ = ["Assignment", "apply", "assign", "bucket", "pick"]
