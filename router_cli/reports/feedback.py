"""What people say about answers: ``mmr feedback CALL_ID good|bad [--should-be TIER]``.

    record(ledger, "01JD...", "bad", should_be="complex", tiers=config.tier_names)

Feedback is stored in the ledger's ``feedback`` table, several per call if
need be; the latest counts (in reports, and as a training label). A request
id may be given for a call id: it stands for the call that answered it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from ..errors import UsageError
from ..ledger.queries import answering_call, call_by_id, insert_feedback

VERDICTS = ("good", "bad")
# Statuses of an answer that reached the user (or, in a cascade, was judged).
ANSWERED = ("ok", "best_effort", "cached", "rejected")
RETURNED = ("ok", "best_effort", "cached")


@dataclass(frozen=True)
class Feedback:
    id: str
    call_id: str
    request_id: str
    datetime_utc: str
    verdict: str
    should_be: str | None
    needs_higher: int | None
    note: str | None
    user: str | None
    tier: str  # the tier that answered

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("id", "call_id", "request_id", "datetime_utc", "verdict", "should_be",
                                              "needs_higher", "note", "user", "tier")}


def find_call(ledger, ident: str) -> dict:
    """The ``calls`` row of a call id, or of the call that answered a request id (with the prompt's
    ``stored`` mode); an unknown id is a :class:`UsageError`."""
    row = call_by_id(ledger, ident)
    if row is None:  # a request id: its answer, else (nothing answered) its last call
        row = answering_call(ledger, ident, RETURNED)
    if row is None:
        raise UsageError(f"unknown call id {ident!r}: no call or request with that id in {ledger.path} "
                         "(call ids are in 'mmr ask --json' as call_id)")
    return row


def record(ledger, ident: str, verdict: str, *, should_be: str | None = None, note: str | None = None,
           user: str | None = None, tiers: list[str] | None = None, allow_unstored: bool = False) -> Feedback:
    """Store one verdict on an answer. ``tiers`` (cheapest first) checks ``should_be`` and tells
    whether it is above the tier that answered."""
    from ..ids import new_id

    if verdict not in VERDICTS:
        raise UsageError(f"the verdict must be good or bad, got {verdict!r}")
    if should_be is not None and (tiers is None or should_be not in tiers):
        raise UsageError(f"--should-be: unknown tier {should_be!r}; valid tiers: {', '.join(tiers or [])}")
    if note is not None and not note.strip():
        raise UsageError("--note is empty")
    call = find_call(ledger, ident)
    if call.get("role") != "answer" or call.get("status") not in ANSWERED:
        what = f"a {call['role']} call" if call.get("role") != "answer" else f"a failed attempt ({call.get('status')})"
        raise UsageError(f"call {call['id']} is {what}, not an answer; rate the answer of request {call['request_id']} "
                         f"(mmr explain {call['request_id']} lists its calls)")
    if call.get("stored") != "full" and not allow_unstored:
        stored = call.get("stored") or "none"
        raise UsageError(f"call {call['id']}: its prompt was not stored in full (ledger.store: {stored}), so this "
                         "feedback could never become a training label; give --allow-unstored to record it for reports only")
    needs_higher = None
    if should_be is not None and tiers is not None and call["tier"] in tiers:
        needs_higher = int(tiers.index(should_be) > tiers.index(call["tier"]))
    entry = Feedback(new_id(), call["id"], call["request_id"],
                     datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                     verdict, should_be, needs_higher, note, user, call["tier"])
    row = entry.to_json()
    del row["tier"]
    insert_feedback(ledger, row)
    return entry

