"""A batch's identity in the ledger, and ``--resume`` answers taken from the ledger instead of paid again.

Every call a batch row makes is recorded with the batch's id and the row's id
(``calls.batch_id``, ``calls.batch_row``). The id is ``--batch-id`` when given;
else, for an input file, a digest of the command (ask or cascade), its request
options and the file's bytes, so that rerunning the same command on the same
file finds the same batch; for stdin (or a pipe) a new id per run. With
``--resume OUT``, a row whose answer is in the ledger but not in ``OUT`` (mmr
was killed after the call was recorded, before the row was written) is written
from the ledger: same keys as the row the first run would have written.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from ..engine.record import prompt_hash
from ..errors import UsageError
from ..ids import new_id
from .calls import Outcome
from .rows import IdSet, Row

if TYPE_CHECKING:
    from ..engine.options import RequestOptions
    from ..engine.types import Answer

MAX_BATCH_ID = 200  # characters


def batch_identity(kind: str, options: RequestOptions, source: str, given: str | None) -> tuple[str, bool]:
    """The batch's id, and whether a later run of the same command finds it again by itself.

    ``given`` (``--batch-id``) wins. A regular input file gives a digest of ``kind``,
    ``options`` and the file's bytes; stdin or a pipe, which can be read only once, a new id.
    """
    if given is not None:
        try:
            given.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError("--batch-id is not valid UTF-8 text") from None
        if not given.strip() or len(given) > MAX_BATCH_ID or not given.isprintable():
            raise UsageError(f"--batch-id must be 1 to {MAX_BATCH_ID} printable characters")
        return given, True
    if source == "-" or not _regular_file(source):
        return f"run-{new_id()}", False
    digest = hashlib.sha256(b"mmr batch\0")
    digest.update(f"{kind}\0{json.dumps(options.to_json(), sort_keys=True)}\0".encode("utf-8", "surrogatepass"))
    try:
        with open(source, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as e:
        raise UsageError(f"--batch: cannot read {source}: {e.strerror}") from None
    return digest.hexdigest()[:32], True


def _regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False  # open_input says why


class LedgerAnswers:
    """``--resume``'s second source: rows of the batch that the ledger holds an answer for.

    Call it with a row: the output row rebuilt from the ledger, or None when the
    row must be asked (no answer recorded, the prompt differs, or the answer's
    text was not kept because ``ledger.store`` was not ``full``).
    """

    def __init__(self, store, batch_id: str, options: RequestOptions, written: IdSet | None):
        self.store, self.batch_id, self.options = store, batch_id, options
        self.ids = IdSet()
        self.missing = 0  # answered in the ledger, not in the output being resumed
        for key in store.batch_answered(batch_id):
            self.ids.add(key)
            self.missing += written is None or key not in written

    def __call__(self, row: Row) -> Outcome | None:
        if row.key not in self.ids:
            return None
        calls = self.store.batch_answer(self.batch_id, row.key)
        if not calls or calls[0].get("prompt_hash") != _prompt_hash(row, self.options):
            return None
        if calls[0].get("stored") != "full":
            return None
        answer = answer_from_calls(calls)
        return Outcome({"id": row.id, **answer.to_json()}, True, recovered=True)


def _prompt_hash(row: Row, options: RequestOptions) -> str:
    """As engine/record.py hashes a request's texts, for the system prompt this row is asked with."""
    return prompt_hash(row.system if row.system is not None else options.system, row.prompt)


def answer_from_calls(calls: list[dict]) -> Answer:
    """The :class:`Answer` a request's ledger rows describe (its calls, oldest first).

    The calls it skipped without calling (no key, an open circuit) were never recorded,
    so they are not among its attempts; its wall time (``wall_ms``) runs from its first
    call's start to its last call's end.
    """
    from ..classify import Decision
    from ..engine.types import Answer, Attempt

    attempts = [Attempt(c["tier"], c["provider"], c["model"], c["status"], started=_when(c["datetime_utc"]),
                        error=c["error"], error_kind=c["error_kind"], http_status=c["http_status"],
                        input_tokens=c["input_tokens"] or 0, output_tokens=c["output_tokens"] or 0,
                        cost=Decimal(c["cost_usd"] or "0"), duration_ms=c["duration_ms"] or 0.0, ttft_ms=c["ttft_ms"],
                        stop_reason=c["stop_reason"], usage_estimated=bool(c["usage_estimated"]), text=c["response"],
                        call_id=c["id"], role=c["role"], quality=c["quality"], gate_reason=c["gate_reason"],
                        saved=Decimal(c["saved_usd"] or "0"), template=c.get("template"),
                        template_hash=c.get("template_hash")) for c in calls]
    final_at = max(i for i, c in enumerate(calls) if _answers(c))
    final, shared = attempts[final_at], calls[final_at]  # its baseline is on the returned call only
    decision = Decision(shared["routed_tier"] or final.tier, shared["score"], shared["reason"] or "", shared["classifier"])
    ends = [a.started.timestamp() * 1000 + a.duration_ms for a in attempts]
    latency = max(ends) - min(a.started.timestamp() * 1000 for a in attempts)
    policy = tuple(shared["policy"].split("; ")) if shared["policy"] else ()
    return Answer(final.text or "", shared["request_id"], decision, attempts, final,
                  Decimal(shared["baseline_cost_usd"] or "0"), latency, best_effort=final.status == "best_effort",
                  policy=policy, variant=shared["variant"])


def _answers(call: dict) -> bool:
    return call["role"] == "answer" and call["status"] in ("ok", "cached", "best_effort")


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))

