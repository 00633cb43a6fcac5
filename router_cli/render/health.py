"""The ``mmr health`` tables: each model's circuit and errors, then its latency against its SLO, and
why any model is demoted (tried after its tier-mates for missing its SLO)."""

from __future__ import annotations

from .tables import _console, _row, _say, _table
from .text import emit_json, shown


def health(rows, json_output: bool, *, since: str = "1h", breaker=None) -> None:
    """The ``mmr health`` tables (or JSON: one object per provider/model), each model's last error
    and any demotion under them."""
    if json_output:
        emit_json({"models": [r.to_json() for r in rows]})
        return
    console = _console(100)
    table = _table("Providers and models")
    numbers = ("to open", "calls", "errors", "p50 ms")
    for header in ("provider/model", "tiers", "circuit", *numbers, "retry at"):
        table.add_column(header, justify="right" if header in numbers else "left")
    styles = {"open": "red", "half_open": "yellow", "probe_due": "yellow"}
    errors = []
    for r in rows:
        _row(
            table, f"{r.provider}/{r.model}", ",".join(r.tiers) or "(not in config)", r.state.replace("_", "-"),
            f"{r.recent_failures} of {r.failures_to_open}", f"{r.calls:,}",
            "" if r.error_rate is None else f"{r.error_rate:.1%}", _ms(r.latency_p50_ms),
            "" if r.retry_at is None else r.retry_at.strftime("%H:%M:%S"),
            style=styles.get(r.state),
        )
        if r.last_error:
            errors.append(f"{r.provider}/{r.model}: {shown(r.last_error)[:200]}")
    console.print(table)
    console.print(_latency_table(rows))
    if breaker is not None:
        _say(console, f"to open: retryable failures (429, 5xx, timeouts, dropped connections) in the last "
                      f"{breaker.window:g} s, of the {breaker.failures} that open a circuit for {breaker.cooldown:g} s. "
                      f"calls, errors (the error rate), p50/p95 (of answers) and ttft (time to first token, of "
                      f"streamed calls): every call in the last {since} (--since). slo: the model's p95 SLO, checked "
                      f"over the last {breaker.window:g} s.", style="dim")
    demoted = [f"{r.provider}/{r.model}: {r.demoted}; tried after its tier-mates until it recovers"
               for r in rows if r.demoted]
    if demoted:
        _say(console, "\nDemoted (slow)", style="bold")
        _say(console, "\n".join(demoted))
    if errors:
        _say(console, "\nLast errors", style="bold")
        _say(console, "\n".join(errors))


def _latency_table(rows):
    table = _table("Latency")
    numbers = ("p50/p95 ms", "ttft p50/p95 ms", "slo ttft/total ms")
    for header in ("provider/model", *numbers, "routing"):
        table.add_column(header, justify="right" if header in numbers else "left")
    for r in rows:
        _row(table, f"{r.provider}/{r.model}", _pair(r.latency_p50_ms, r.latency_p95_ms),
             _pair(r.ttft_p50_ms, r.ttft_p95_ms), _slo(r.slo), "demoted" if r.demoted else "",
             style="yellow" if r.demoted else None)
    return table


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def _pair(p50: float | None, p95: float | None) -> str:
    return "" if p50 is None else f"{_ms(p50)}/{_ms(p95)}"


def _slo(slo: dict | None) -> str:
    if slo is None:
        return ""
    return f"{_ms(slo['ttft_p95_ms']) or '-'}/{_ms(slo['latency_p95_ms']) or '-'}"
