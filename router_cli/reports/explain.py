"""``mmr explain CALL_ID``: why a request went where it went, from the ledger alone.

    report = explain(ledger, "01JD...")      # a call id or a request id

The report covers the routing decision (classifier, score, reason, the
thresholds it was compared with), the config hash and experiment variant it
ran under, budget, cache or breaker decisions when the ledger has a ``policy``
column, every attempt with its error or gate score and the wording it was sent in (a template's
name and hash), and the feedback given.
"""

from __future__ import annotations

import json
from decimal import Decimal

from ..ledger.queries import prompt_stored_mode, request_calls, request_feedback
from ..pricing import decimal_str
from .feedback import RETURNED, find_call


def explain(ledger, ident: str, current_config_hash: str | None = None, wordings: dict | None = None) -> dict:
    """The explanation of the request that ``ident`` (a call or request id) belongs to.

    ``wordings`` maps a template hash to the current config's wording of that hash
    (config/phrasing.py): an attempt sent in a wording the config still has shows its text.
    """
    wordings = wordings or {}
    call = find_call(ledger, ident)
    rows = request_calls(ledger, call["request_id"])
    answers = [r for r in rows if r.get("role") == "answer"]
    first = answers[0] if answers else rows[0]
    returned = next((r for r in reversed(answers) if r.get("status") in RETURNED), None)
    feedback = request_feedback(ledger, call["request_id"])
    latest_per_call = {f["call_id"]: f["id"] for f in feedback}
    config_hash = first.get("config_hash")
    return {
        "request_id": first["request_id"],
        "call_id": call["id"],
        "datetime_utc": first.get("datetime_utc"),
        "command": first.get("command"),
        "user": first.get("user"),
        "team": first.get("team"),
        "prompt_stored": prompt_stored_mode(ledger, first["request_id"]),
        "prompt": first.get("prompt"),
        "routing": {
            "classifier": first.get("classifier"),
            "score": first.get("score"),
            "reason": first.get("reason"),
            "routed_tier": first.get("routed_tier"),
            "thresholds": json.loads(first["thresholds_json"]) if first.get("thresholds_json") else None,
            "config_hash": config_hash,
            "config_is_current": None if current_config_hash is None or config_hash is None else config_hash == current_config_hash,
            "variant": first.get("variant"),
            "policy": first.get("policy"),  # budget, cache and breaker decisions, on ledgers that record them
        },
        "answered_by": None if returned is None else {
            "call_id": returned["id"], "tier": returned["tier"], "provider": returned["provider"],
            "model": returned["model"], "status": returned["status"],
        },
        "escalated": bool(first.get("escalated")),
        "cost_usd": decimal_str(sum((Decimal(r["cost_usd"] or "0") for r in rows), Decimal(0))),
        "baseline_cost_usd": decimal_str(sum((Decimal(r["baseline_cost_usd"] or "0") for r in rows), Decimal(0))),
        "attempts": [
            {
                "call_id": r["id"], "attempt": r.get("attempt"), "role": r.get("role"), "tier": r["tier"],
                "provider": r["provider"], "model": r["model"], "status": r["status"], "error": r.get("error"),
                "error_kind": r.get("error_kind"), "http_status": r.get("http_status"), "quality": r.get("quality"),
                "gate_reason": r.get("gate_reason"), "input_tokens": r.get("input_tokens"),
                "output_tokens": r.get("output_tokens"), "cost_usd": r.get("cost_usd"), "duration_ms": r.get("duration_ms"),
                "template": r.get("template"), "template_hash": r.get("template_hash"),
                **({"template_text": _wording_text(wordings[r["template_hash"]])}
                   if r.get("template_hash") in wordings else {}),
                **({"policy": r["policy"]} if r.get("policy") and r["policy"] != first.get("policy") else {}),
            }
            for r in rows
        ],
        "feedback": [
            {**{k: f[k] for k in ("call_id", "datetime_utc", "verdict", "should_be", "note", "user")},
             "latest": latest_per_call[f["call_id"]] == f["id"]}
            for f in feedback
        ],
    }



def _wording_text(phrasing) -> dict:
    """A wording's text, as the config holds it: a template's two parts, or a prefix and suffix."""
    if phrasing.kind == "template":
        return {"system": phrasing.system, "user": phrasing.user}
    return {"system_prefix": phrasing.prefix, "system_suffix": phrasing.suffix}
