"""Training data for the ml classifier taken from the ledger: the labels of ``mmr labels``
as rows for ``mmr train --from-ledger``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from ..labelled import LabelledRow
from .labels import ledger_labels


@dataclass(frozen=True)
class TrainingData:
    """Labelled rows, the SHA-256 of their JSONL (recorded in the model) and what was skipped."""

    rows: list[LabelledRow]
    sha256: str
    summary: str


def ledger_training_rows(ledger, tiers: list[str], since: datetime, until: datetime) -> TrainingData:
    """The ledger's labelled requests between ``since`` and ``until`` as training rows."""
    result = ledger_labels(ledger, tiers, since, until)
    rows = [LabelledRow(r["prompt"], r["label"], i, extra={"id": r["id"], "source": r["source"]})
            for i, r in enumerate(result.rows, 1)]
    return TrainingData(rows, hashlib.sha256(result.jsonl().encode()).hexdigest(), result.summary())
