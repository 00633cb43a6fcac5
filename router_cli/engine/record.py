"""Finishing a request: its attempts as ledger rows (``calls``, one per attempt, with
``prompts`` and ``responses``), written together, and its budget hold released."""

from __future__ import annotations

import contextlib
import hashlib
import json
from decimal import Decimal
from typing import TYPE_CHECKING

from ..errors import LedgerError
from ..ids import new_id
from ..pricing import cost, decimal_str, to_nanousd
from ..version import __version__
from .request import Request
from .types import Attempt

if TYPE_CHECKING:
    from ..config import LedgerConfig


def finish(request: Request, returned: Attempt | None) -> LedgerError | None:
    """Record every attempt of ``request``; the baseline is one premium call at ``returned``'s tokens,
    each class (input, cache read, cache write, output) at the baseline model's price for it.

    A ledger that cannot be written is returned, not raised: the answer was paid for
    and still goes out, with the error beside it.
    """
    if returned is not None:
        request.baseline = cost(request.config.baseline_model.price, returned.usage)
    if request.store is not None:
        try:
            record_request(request.store, request, returned)
        except LedgerError as e:
            return e  # the hold stays until it expires: the billed calls are not in the ledger to count
        if request.guard is not None:
            try:
                billed = sum(to_nanousd(a.cost) for a in request.attempts)  # as the rows just written hold it
                request.budget_warnings = request.guard.crossed(billed)  # type: ignore[attr-defined]
            except LedgerError:
                pass  # a warning is not worth failing an answer that was paid for
    if request.guard is not None:
        request.guard.release()  # type: ignore[attr-defined]
    return None


@contextlib.contextmanager
def recording_on_interrupt(request: Request):
    """Interrupted, or the output went away: keep what was billed, then let it through."""
    try:
        yield
    except BaseException:
        finish(request, None)
        raise


def record_request(store, request: Request, returned: Attempt | None) -> None:
    """Write ``request``'s attempts that reached a provider to ``store``, in one transaction.

    Attempt 1 is the request's first answer (reports count requests by it); a
    classifier's calls, made before any answer, are attempt 0.
    """
    keep = request.config.ledger
    called = [a for a in request.attempts if a.status != "skipped"]
    if not called:
        return
    shared = _request_columns(request, returned)
    calls, responses = [], []
    numbers = iter(range(1, len(called) + 1))
    for a in called:
        a.call_id = new_id()
        baseline = request.baseline if a is returned else Decimal(0)
        calls.append({
            **shared, "id": a.call_id, "attempt": 0 if a.role == "classifier" else next(numbers),
            "datetime_utc": a.started.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "tier": a.tier, "provider": a.provider, "model": a.model, "role": a.role,
            "status": a.status, "error": a.error, "error_kind": a.error_kind, "http_status": a.http_status,
            "quality": a.quality, "gate_reason": a.gate_reason,
            "checks_json": json.dumps([c.to_json() for c in a.checks]) if a.checks else None, "hedge": a.hedge,
            "input_tokens": a.input_tokens, "output_tokens": a.output_tokens, "usage_estimated": int(a.usage_estimated),
            "cache_read_tokens": a.cache_read_tokens, "cache_write_tokens": a.cache_write_tokens,
            "reasoning_tokens": a.reasoning_tokens, "price_source": a.price_source,
            "cache_saved_nanousd": to_nanousd(a.cache_saved),
            "cost_usd": decimal_str(a.cost), "cost_nanousd": to_nanousd(a.cost),
            "baseline_cost_usd": decimal_str(baseline), "baseline_cost_nanousd": to_nanousd(baseline),
            "duration_ms": round(a.duration_ms, 3), "ttft_ms": None if a.ttft_ms is None else round(a.ttft_ms, 3),
            "stop_reason": a.stop_reason,
            "saved_usd": decimal_str(a.saved) if a.saved else None, "saved_nanousd": to_nanousd(a.saved),
            "template": a.template, "template_hash": a.template_hash,
        })
        if a.text is not None and keep.store in ("full", "preview"):
            responses.append({"call_id": a.call_id, "response": _stored(a.text + _tool_calls(a.tool_calls), keep)})
    prompts = []
    if keep.store != "none":
        digest = prompt_hash(request.system, request.prompt)
        prompts.append({"request_id": request.request_id, "prompt_hash": digest, "stored": keep.store,
                        "prompt": _stored(request.prompt, keep), "system": _stored(request.system, keep)})
    store.record({"calls": calls, "prompts": prompts, "responses": responses})


def prompt_hash(system: str | None, prompt: str) -> str:
    """The ``prompts.prompt_hash`` of a request: what --resume matches a batch row against."""
    return hashlib.sha256(f"{system or ''}\0{prompt}".encode()).hexdigest()


def _request_columns(request: Request, returned: Attempt | None) -> dict:
    """The columns every row of one request shares."""
    tiers = request.config.tier_names
    escalated = int(returned is not None and returned.tier in tiers and request.start_tier in tiers
                    and tiers.index(returned.tier) > tiers.index(request.start_tier))
    limits = {k: v for k, v in (("classifier", request.decision.thresholds), ("gate", request.gate_thresholds)) if v}
    decision = request.decision
    batch_id, batch_row = request.batch_row or (None, None)
    return {
        "request_id": request.request_id, "command": request.command,
        "classifier": decision.classifier, "score": decision.score, "reason": decision.reason,
        "routed_tier": decision.tier, "escalated": escalated,
        "stream": int(request.stream), "user": request.user, "team": request.team,
        "config_hash": request.config.config_hash, "mmr_version": __version__,
        "policy": "; ".join(request.policy) or None,
        "variant": request.variant, "thresholds_json": json.dumps(limits) if limits else None,
        "batch_id": batch_id, "batch_row": batch_row,
    }


def _tool_calls(calls: tuple) -> str:
    """An answer's tool calls (Anthropic tool_use blocks or OpenAI tool_calls) as the text the ledger
    keeps after its words: ``[tool call NAME: ARGUMENTS]`` each, as a request's prompt shows them."""
    out = []
    for call in calls:
        function = call.get("function") or {}
        name = function.get("name") or call.get("name")
        arguments = function.get("arguments") if function else json.dumps(call.get("input"))
        out.append(f"[tool call {name}: {arguments}]")
    return ("\n" if out else "") + "\n".join(out)


def _stored(text: str | None, keep: "LedgerConfig") -> str | None:
    """``text`` as ``ledger.store`` keeps it: whole, a preview, or not at all."""
    if text is None or keep.store in ("hash", "none"):
        return None
    if keep.store == "preview" and len(text) > keep.preview_chars:
        return text[: keep.preview_chars] + "…"
    return text
