"""Labelled data: the JSONL files that train and score classifiers, one prompt per line.

    rows, problems = read_labelled("labeled.jsonl", config.tier_names)

Each line of the file is an object with ``prompt`` and ``label`` (a tier),
and/or ``outcomes`` (each tier's answer quality in [0, 1]) and ``costs`` (each
tier's cost in USD). A tier missing from ``outcomes``/``costs`` takes the next
tier up that is present. Without ``label``, the label is the cheapest tier
with the best outcome.

Classifiers read these files (``mmr train``, the embedding classifier's
examples) and reports score them (:mod:`router_cli.reports.evaluate`), so the
reader lives below both, next to the prices it needs.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from .errors import UsageError
from .jsonl import NotJSON, check_length, lines, loads
from .pricing import cost_usd, estimate_tokens

# Output tokens assumed per answer when a row has no costs and config prices are used.
ASSUMED_OUTPUT_TOKENS = 200


@dataclass
class LabelledRow:
    prompt: str
    label: str
    line: int
    outcomes: dict[str, float] | None = None  # every tier, filled upwards
    costs: dict[str, Decimal] | None = None
    extra: dict = field(default_factory=dict)


class BadLine(UsageError):
    """A labelled line that cannot be used; the message names file and line."""


def read_labelled(path: str | Path, tiers: list[str], *, skip_bad: bool = False) -> tuple[list[LabelledRow], list[str]]:
    """Read a labelled JSONL file. Returns the rows and, with ``skip_bad``, the problems skipped."""
    data = read_labelled_file(path, tiers, skip_bad=skip_bad)
    return data.rows, data.problems


@dataclass
class LabelledFile:
    rows: list[LabelledRow]
    problems: list[str]  # lines skipped with ``skip_bad``
    sha256: str  # of the file's bytes, as read


def read_labelled_file(path: str | Path, tiers: list[str], *, skip_bad: bool = False) -> LabelledFile:
    """Read a labelled JSONL file once: its rows, the lines skipped and the hash of its bytes."""
    path = Path(path)
    digest = hashlib.sha256()
    rows, problems = [], []
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(lines(handle, seen=digest.update), 1):
                try:
                    row = _parse_line(raw, number, tiers)
                except UnicodeDecodeError:
                    raise UsageError(f"{path}:{number}: not UTF-8 text") from None
                except BadLine as e:
                    if not skip_bad:
                        raise BadLine(f"{path}:{number}: {e}") from None
                    problems.append(f"{path}:{number}: {e}")
                    continue
                if row is not None:
                    rows.append(row)
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None
    if not rows:
        raise UsageError(f"{path}: no labelled rows" + (f" ({len(problems)} bad lines skipped)" if problems else ""))
    return LabelledFile(rows, problems, digest.hexdigest())


def _parse_line(raw: bytes, number: int, tiers: list[str]) -> LabelledRow | None:
    """The row on one line (None for a blank one); UnicodeDecodeError for bytes that are not UTF-8."""
    try:
        check_length(raw)  # before decoding: lines() may have cut a character in two
        # A byte-order mark some editors write is not part of line 1.
        line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        if not line.strip():
            return None
        data = loads(line)
    except NotJSON as e:
        raise BadLine(str(e)) from None
    if not isinstance(data, dict):
        raise BadLine("expected a JSON object")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadLine("'prompt' is missing or empty")
    outcomes = _per_tier(data.get("outcomes"), "outcomes", tiers, upper=1.0)
    raw_costs = _per_tier(data.get("costs"), "costs", tiers, upper=None)
    # str() gives back the digits written in the file, so costs stay exact.
    costs = None if raw_costs is None else {t: Decimal(str(v)) for t, v in raw_costs.items()}
    label = data.get("label")
    if label is None:
        if outcomes is None:
            raise BadLine("needs a 'label' or 'outcomes'")
        best = max(outcomes.values())
        label = next(t for t in tiers if outcomes[t] == best)
    elif label not in tiers:
        raise BadLine(f"label {label!r} is not a tier of the config ({', '.join(tiers)})")
    extra = {k: v for k, v in data.items() if k not in ("prompt", "label", "outcomes", "costs")}
    return LabelledRow(prompt, label, number, outcomes, costs, extra)


def _per_tier(value, key: str, tiers: list[str], upper: float | None) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise BadLine(f"'{key}' must be an object of tier: number")
    for tier, v in value.items():
        if tier not in tiers:
            raise BadLine(f"'{key}' names {tier!r}, which is not a tier of the config ({', '.join(tiers)})")
        if not _number_in(v, upper):
            bound = f"[0, {upper:g}]" if upper is not None else ">= 0"
            shown = repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "..."
            raise BadLine(f"'{key}.{tier}' must be a number in {bound}, got {shown}")
    filled: dict[str, float] = {}
    above = None
    for tier in reversed(tiers):  # a missing tier takes the next tier up that is present
        if tier in value:
            above = float(value[tier])
        if above is not None:
            filled[tier] = above
    missing = [t for t in tiers if t not in filled]
    if missing:
        raise BadLine(f"'{key}' has no value for {', '.join(missing)} or any tier above it")
    return filled


def _number_in(v, upper: float | None) -> bool:
    """A finite number >= 0 (and <= upper) that converts to float: a 400-digit integer does not."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        f = float(v)
    except OverflowError:
        return False
    return math.isfinite(f) and f >= 0 and (upper is None or f <= upper)


def row_costs(row: LabelledRow, config) -> dict[str, Decimal]:
    """A row's cost per tier: its own, else the config's prices at a token estimate."""
    if row.costs is not None:
        return row.costs
    tokens = estimate_tokens(row.prompt)
    return {t.name: cost_usd(t.models[0].price, tokens, ASSUMED_OUTPUT_TOKENS) for t in config.tiers}
