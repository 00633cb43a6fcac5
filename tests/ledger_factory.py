"""Build ledger rows by hand, for reports over a constructed ledger."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from router_cli.pricing import to_nanousd

NOW = datetime.now(timezone.utc) - timedelta(minutes=5)
_counter = iter(range(10**9))


def iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def attempt(tier: str, status: str = "ok", *, role: str = "answer", quality: float | None = None,
            tokens: tuple[int, int] = (100, 50), cost: str = "0.001", model: str | None = None, provider: str = "anthropic") -> dict:
    return {"tier": tier, "status": status, "role": role, "quality": quality, "tokens": tokens, "cost": cost,
            "model": model or f"m-{tier}", "provider": provider}


def request(attempts: list[dict], *, prompt: str | None = "a prompt", stored: str = "full", routed_tier: str | None = None,
            command: str = "cascade", variant: str | None = None, user: str | None = None, when: datetime | None = None,
            request_id: str | None = None) -> dict[str, list[dict]]:
    """One request's rows for ``LedgerStore.record``: its calls and its prompt."""
    n = next(_counter)
    when = when or NOW
    request_id = request_id or f"R{n:010d}"
    routed_tier = routed_tier or attempts[0]["tier"]
    answers = [a for a in attempts if a["role"] == "answer" and a["status"] in ("ok", "best_effort", "cached")]
    escalated = int(bool(answers) and answers[-1]["tier"] != routed_tier)
    calls = []
    for i, a in enumerate(attempts):
        number = i + 1
        cost = Decimal(a["cost"])
        calls.append({
            "id": f"{request_id}-{i:02d}", "request_id": request_id, "attempt": number, "datetime_utc": iso(when + timedelta(milliseconds=i)),
            "command": command, "tier": a["tier"], "provider": a["provider"], "model": a["model"], "classifier": "rules",
            "score": 0.5, "reason": "constructed", "routed_tier": routed_tier, "escalated": escalated, "role": a["role"],
            "status": a["status"], "error": "HTTP 500" if a["status"] == "error" else None, "quality": a["quality"],
            "input_tokens": a["tokens"][0], "output_tokens": a["tokens"][1], "cost_usd": a["cost"],
            "cost_nanousd": to_nanousd(cost), "baseline_cost_usd": "0", "baseline_cost_nanousd": 0,
            "duration_ms": 100.0, "user": user, "variant": variant, "config_hash": "constructed",
        })
    prompts = []
    if prompt is not None:
        prompts.append({"request_id": request_id, "prompt_hash": hashlib.sha256(prompt.encode()).hexdigest(), "stored": stored,
                        "prompt": prompt if stored == "full" else None, "system": None})
    return {"calls": calls, "prompts": prompts}


def merge(*parts: dict[str, list[dict]]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"calls": [], "prompts": []}
    for part in parts:
        for table, rows in part.items():
            out[table].extend(rows)
    return out
