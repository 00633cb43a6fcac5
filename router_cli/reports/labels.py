"""Training labels from the ledger: what cascades and feedback say each prompt needed.

    result = ledger_labels(ledger, config.tier_names, since, until)
    result.rows      # labelled JSONL objects: {"prompt", "label", "id", "source", "evidence"}
    result.skipped   # Counter of reasons

Per request, the latest feedback wins: ``--should-be T`` labels it T; ``good``
labels it the tier that answered; ``bad`` the tier above that one. Without
feedback, a cascade's gate decides: the label is the tier whose answer passed
(the tiers below it failed the gate), or, when none passed, the tier above the
highest one tried (the top tier if it was tried). A request answered without a
gate or feedback says nothing about what it needed and is skipped, as is one
whose prompt was not stored in full. When a prompt was asked several times,
one row is kept: feedback before gates, then the latest.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from ..ledger.queries import calls_of_requests_started, latest_feedback
from .feedback import RETURNED

NOT_STORED = "prompt not stored in full"
NO_OUTCOME = "answered without a quality gate or feedback"
NO_ANSWER = "no answer (every attempt failed)"
DUPLICATE = "the same prompt has a better or later label"
TOP_BAD = "rated bad at the top tier with no --should-be"
UNKNOWN_TIER = "answered by a tier that is not in the config"


@dataclass
class LedgerLabels:
    rows: list[dict] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    requests: int = 0

    def summary(self) -> str:
        """``N labelled rows from M requests; skipped K: reason (n), ...``"""
        parts = ", ".join(f"{reason} ({n:,})" for reason, n in self.skipped.most_common())
        skipped = sum(self.skipped.values())
        return (f"{len(self.rows):,} labelled rows from {self.requests:,} requests"
                + (f"; skipped {skipped:,}: {parts}" if skipped else ""))

    def jsonl(self) -> str:
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in self.rows)


def requests_in(ledger, since: datetime, until: datetime):
    """Each request whose first answer falls in [since, until): (request_id, its calls with the prompt), oldest first."""
    current: str | None = None
    calls: list[dict] = []
    for row in calls_of_requests_started(ledger, since, until):
        if row["request_id"] != current:
            if calls:
                yield current, calls
            current, calls = row["request_id"], []
        calls.append(row)
    if calls:
        yield current, calls


def requests_with_feedback(ledger, since: datetime, until: datetime, chunk: int = 500):
    """:func:`requests_in` with each request's latest feedback (or None), looked up ``chunk`` requests at a time."""
    batch: list[tuple[str, list[dict]]] = []

    def with_feedback():
        given = latest_feedback(ledger, [rid for rid, _ in batch])
        for rid, calls in batch:
            yield rid, calls, given.get(rid)

    for item in requests_in(ledger, since, until):
        batch.append(item)
        if len(batch) >= chunk:
            yield from with_feedback()
            batch = []
    yield from with_feedback()


def label_request(calls: list[dict], feedback: dict | None, tiers: list[str]) -> tuple[str | None, str, dict]:
    """``(label, source, evidence)`` of one request, or ``(None, reason, {})`` when it teaches nothing."""
    answers = [c for c in calls if c["role"] == "answer"]
    if any(c["tier"] not in tiers for c in answers):
        return None, UNKNOWN_TIER, {}
    if feedback is not None:
        rated = next((c for c in calls if c["id"] == feedback["call_id"]), None)
        evidence = {"verdict": feedback["verdict"], "rated_tier": rated["tier"] if rated else None}
        if feedback["should_be"] in tiers:
            return feedback["should_be"], "feedback", evidence
        if rated is not None and feedback["verdict"] == "good":
            return rated["tier"], "feedback", evidence
        if rated is not None:
            above = tiers.index(rated["tier"]) + 1
            if above == len(tiers):
                return None, TOP_BAD, {}
            return tiers[above], "feedback", evidence
    if not any(c["status"] in RETURNED for c in answers):
        return None, NO_ANSWER, {}
    gated = [c for c in answers if c["quality"] is not None and c["status"] in ("ok", "rejected", "best_effort")]
    if not gated:
        return None, NO_OUTCOME, {}
    evidence = {"gate": {c["tier"]: c["quality"] for c in gated}}
    passed = next((c for c in gated if c["status"] == "ok"), None)
    if passed is not None:
        return passed["tier"], "cascade", evidence
    highest = max(tiers.index(c["tier"]) for c in gated)
    return tiers[min(highest + 1, len(tiers) - 1)], "cascade", evidence


def ledger_labels(ledger, tiers: list[str], since: datetime, until: datetime) -> LedgerLabels:
    """Labelled rows for the requests of [since, until); see the module docstring for the rules."""
    out = LedgerLabels()
    chosen: dict[str, tuple[int, str, dict]] = {}  # prompt hash -> (rank, request id, row)
    for rid, calls, feedback in requests_with_feedback(ledger, since, until):
        out.requests += 1
        first = calls[0]
        if first["stored"] != "full" or not first["prompt"]:
            out.skipped[NOT_STORED] += 1
            continue
        label, source, evidence = label_request(calls, feedback, tiers)
        if label is None:
            out.skipped[source] += 1
            continue
        rank = 1 if source == "feedback" else 0
        key = first["prompt_hash"] or first["prompt"]
        previous = chosen.get(key)
        if previous is not None:
            out.skipped[DUPLICATE] += 1
            if previous[0] > rank:
                continue
        chosen[key] = (rank, rid, {"prompt": first["prompt"], "label": label, "id": rid, "source": source,
                                   "evidence": evidence})
    out.rows = [row for _, _, row in sorted(chosen.values(), key=lambda item: item[1])]
    return out
