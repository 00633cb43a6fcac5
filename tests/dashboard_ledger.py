"""A small ledger for the dashboard's tests, with every figure computed by hand.

Three requests an hour ago (all routed to simple):
- R1 alice/ml, ask: simple answers, $0.001 (baseline $0.010); rated bad, should be medium.
- R2 the hostile user and team, ask: simple fails, medium answers, $0.004 (baseline $0.020): escalated.
- R3 bob/ml, cascade: simple's answer rejected by the gate ($0.002), the judge ($0.0005), complex
  answers ($0.030, baseline $0.030): escalated; rated good.
Spend $0.0375, baseline $0.060, saved $0.0225 (37.5 %); 3 requests, 6 calls, 1 error, 2 escalated.
Team ml: $0.0335 of it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from router_cli.pricing import to_nanousd

HOSTILE_USER = "<script>alert(1)</script>"
HOSTILE_TEAM = '=HYPERLINK("http://evil.example","x")'
SPEND, BASELINE, SAVINGS = "0.0375", "0.06", "0.0225"
ML_SPEND = "0.0335"


def _stamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _call(request_id: str, n: int, when: datetime, tier: str, status: str, cost: str, baseline: str = "0", *,
          user: str, team: str, command: str = "ask", role: str = "answer", escalated: int = 0, ms: float = 200.0) -> dict:
    return {
        "id": f"{request_id}-{n}", "request_id": request_id, "attempt": n, "datetime_utc": _stamp(when + timedelta(milliseconds=n)),
        "command": command, "tier": tier, "provider": "anthropic", "model": f"claude-{tier}", "classifier": "rules",
        "score": 0.5, "reason": "constructed", "routed_tier": "simple", "escalated": escalated, "role": role, "status": status,
        "error": "HTTP 500" if status == "error" else None, "input_tokens": 100, "output_tokens": 50,
        "cost_usd": cost, "cost_nanousd": to_nanousd(Decimal(cost)), "baseline_cost_usd": baseline,
        "baseline_cost_nanousd": to_nanousd(Decimal(baseline)), "duration_ms": ms, "user": user, "team": team,
    }


def rows(when: datetime | None = None) -> dict[str, list[dict]]:
    when = when or datetime.now(timezone.utc) - timedelta(hours=1)
    calls = [
        _call("R1", 1, when, "simple", "ok", "0.001", "0.010", user="alice", team="ml", ms=120.0),
        _call("R2", 1, when, "simple", "error", "0", user=HOSTILE_USER, team=HOSTILE_TEAM, escalated=1, ms=50.0),
        _call("R2", 2, when, "medium", "ok", "0.004", "0.020", user=HOSTILE_USER, team=HOSTILE_TEAM, escalated=1, ms=400.0),
        _call("R3", 1, when, "simple", "rejected", "0.002", user="bob", team="ml", command="cascade", escalated=1, ms=150.0),
        _call("R3", 2, when, "medium", "ok", "0.0005", user="bob", team="ml", command="cascade", role="judge", escalated=1),
        _call("R3", 3, when, "complex", "ok", "0.030", "0.030", user="bob", team="ml", command="cascade", escalated=1, ms=900.0),
    ]
    feedback = [
        {"id": "F1", "call_id": "R1-1", "request_id": "R1", "datetime_utc": _stamp(when), "verdict": "bad",
         "should_be": "medium", "needs_higher": 1, "note": None, "user": "alice"},
        {"id": "F2", "call_id": "R3-3", "request_id": "R3", "datetime_utc": _stamp(when), "verdict": "good",
         "should_be": None, "needs_higher": None, "note": None, "user": "bob"},
    ]
    return {"calls": calls, "feedback": feedback}


def build(path: Path | str, when: datetime | None = None) -> None:
    from router_cli.ledger import open_ledger

    with open_ledger(path) as ledger:
        ledger.record(rows(when))


def add_request(path: Path | str, request_id: str, cost: str, *, team: str = "ml", user: str = "alice") -> None:
    """One more answered request, now (for the live page to pick up)."""
    from router_cli.ledger import open_ledger

    when = datetime.now(timezone.utc) - timedelta(seconds=5)
    with open_ledger(path) as ledger:
        ledger.record({"calls": [_call(request_id, 1, when, "simple", "ok", cost, cost, user=user, team=team)]})
