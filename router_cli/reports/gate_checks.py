"""``mmr costs --by gate``: how often each shell check (``mmr cascade --check``) passed, failed and erred."""

from __future__ import annotations

import json
from datetime import datetime

from ..ledger.queries import checks_in_window
from .when import checked_window


def gate_report(ledger, since: datetime, until: datetime | None = None, where: dict[str, str] | None = None) -> dict:
    """The ``--by gate`` object: the window and one row per check command, most used first
    (``where``: only the calls of these user/team values)."""
    since, until = checked_window(since, until)
    entries = []
    for text in checks_in_window(ledger, since, until, where):
        try:
            entries.append([c for c in json.loads(text) if isinstance(c, dict) and c.get("verdict") in ("pass", "fail", "error")])
        except ValueError:  # a row written by something else: not a check record
            continue
    return {"since": since.isoformat(), "until": until.isoformat(), "gates": pass_rates(entries)}


def pass_rates(entries: list[list[dict]]) -> list[dict]:
    """``mmr costs --by gate``: per command, how many answers it saw, passed, failed and erred on, and its mean time."""
    by_gate: dict[str, dict] = {}
    for checks in entries:
        for c in checks:
            row = by_gate.setdefault(c["gate"], {"gate": c["gate"], "checks": 0, "pass": 0, "fail": 0, "error": 0, "ms": 0.0})
            row["checks"] += 1
            row[c["verdict"]] += 1
            row["ms"] += float(c.get("ms") or 0.0)
    out = []
    for row in sorted(by_gate.values(), key=lambda r: (-r["checks"], r["gate"])):
        n = row.pop("checks")
        ms = row.pop("ms")
        out.append({**row, "checks": n, "pass_rate": round(row["pass"] / n, 4), "mean_ms": round(ms / n, 3)})
    return out
