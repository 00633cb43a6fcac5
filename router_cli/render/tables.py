"""The report tables of ``mmr eval``, ``costs``, ``health`` and ``eval --replay`` (rich, imported
only when a table is printed), or their JSON and CSV forms."""

from __future__ import annotations

import os
import sys
from decimal import Decimal

from ..pricing import format_usd
from .charts import daily_chart, frontier_lines
from .text import emit_json, safe_text, shown, usd, write_lines


# Off a terminal, tables are laid out for this many columns (and each fits in it).
_PIPED_WIDTH = 100
_EVAL_COLUMNS = [  # the first five in one table, the rest in another
    ("accuracy", "accuracy", "{:.1%}"), ("macro_f1", "macro F1", "{:.3f}"), ("under_routing", "under", "{:.1%}"),
    ("over_routing", "over", "{:.1%}"), ("latency_ms_p50", "p50 ms", "{:.3f}"),
    ("quality", "quality", "{:.3f}"), ("quality_vs_premium", "vs premium", "{:.1%}"),
    ("cost_per_call", "cost/call", None), ("savings_vs_premium", "savings", "{:.1%}"),
    ("premium_share", "premium", "{:.1%}"),
]


def eval_report(report: dict, tiers: list[str], json_output: bool) -> None:
    """``mmr eval``: one table of classifiers and baselines, then each classifier's confusion matrix."""
    if json_output:
        emit_json(report)
        return
    console = _console(_PIPED_WIDTH)

    def cells(m: dict, columns) -> list[str]:
        out = []
        for key, _, fmt in columns:
            value = m.get(key)
            if value is None:
                out.append("")
            elif fmt is None:
                out.append(format_usd(Decimal(value)))
            else:
                out.append(fmt.format(value))
        return out

    # Two narrower tables rather than one as wide as a terminal seldom is (and a pipe never).
    for title, columns in ((f"{report['rows']} labelled rows: agreement with the labels", _EVAL_COLUMNS[:5]),
                           ("cost and quality (needs per-tier outcomes and costs)", _EVAL_COLUMNS[5:])):
        table = _table(title)
        table.add_column("router")
        for _, header, _ in columns:
            table.add_column(header, justify="right")
        for name, m in report["classifiers"].items():
            _row(table, _router_label(name, m, report["rows"]), *cells(m, columns), style="bold")
        table.add_section()
        for name, m in report["baselines"].items():
            _row(table, name, *cells(m, columns), style="dim")
        console.print(table)
    for name, m in report["classifiers"].items():
        matrix = _table(f"{name}: label (rows) x routed (columns)")
        matrix.add_column("label")
        for t in tiers:
            matrix.add_column(t, justify="right")
        matrix.add_column("recall", justify="right")
        for t in tiers:
            _row(matrix, t, *[str(m["confusion"][t][u]) for u in tiers], f"{m['per_tier'][t]['recall']:.1%}")
        _row(matrix, "precision", *[f"{m['per_tier'][u]['precision']:.1%}" for u in tiers], "", style="dim")
        console.print(matrix)
    _say(console, "under: sent below its label (a quality risk); over: sent above it (money wasted).", style="dim")
    for name, m in report["classifiers"].items():
        if "quality_vs_premium_bound" in m and m.get("quality_vs_premium") is not None:
            b = m["quality_vs_premium_bound"]
            _say(console, f"{name}: {m['quality_vs_premium']:.1%} of premium quality expected, "
                          f"at least {b['lower']:.1%} at {b['confidence']:.0%} confidence (rows resampled)")
        if "promised" in m:
            p = m["promised"]
            kept = "" if "kept" not in p else (f"; here {m['quality_vs_premium']:.1%}: "
                                              + ("kept" if p["kept"] else f"below the {p['target']:.0%} target"))
            _say(console, f"{name}: trained to expect {p['expected']:.1%} of premium quality, guaranteed at least "
                          f"{p['guaranteed']:.1%} at {p['confidence']:.0%} confidence{kept}")
    for name, m in report["classifiers"].items():
        if "sweep" in m:
            _say(console, "\n".join(frontier_lines(name, m["sweep"])))


def _router_label(name: str, m: dict, rows: int) -> str:
    """A classifier's name in the eval table, with what its scores must be read with."""
    marks = ["in-sample"] if m.get("in_sample") else []
    if m.get("failures"):
        marks.append(f"{m['failures']}/{rows} failed")
    return f"{name} ({', '.join(marks)})" if marks else name


_COST_FIELDS = [
    ("calls", "calls"), ("requests", "requests"), ("input_tokens", "in tok"), ("output_tokens", "out tok"),
    ("spend_usd", "spend"), ("baseline_usd", "baseline"), ("savings_usd", "savings"), ("savings_pct", "saved %"),
    ("error_rate", "errors"), ("escalation_rate", "escalated"), ("cache_hit_rate", "cached"),
    ("discarded_share", "discarded"), ("judging_share", "judging"),
    ("latency_p50_ms", "p50 ms"), ("latency_p95_ms", "p95 ms"),
    ("rated", "rated"), ("feedback_score", "good"), ("misrouting_rate", "misrouted"), ("needs_higher_share", "needs higher"),
]
_FEEDBACK_KEYS = ("rated", "feedback_score", "misrouting_rate", "needs_higher_share")
# The table's columns in groups, one table each, so that each fits 100 columns (with two --by keys).
_COST_GROUPS = {
    "spend": ("calls", "requests", "spend_usd", "baseline_usd", "savings_usd", "savings_pct"),
    "tokens and latency": ("input_tokens", "output_tokens", "latency_p50_ms", "latency_p95_ms"),
    "rates": ("error_rate", "escalation_rate", "cache_hit_rate", "discarded_share", "judging_share"),
    "feedback (shares of rated answers)": _FEEDBACK_KEYS,  # only when there is feedback or an experiment
}


def cost_report(report, *, json_output: bool, csv_output: bool, utc: bool) -> None:
    """The ``mmr costs`` report: a table, or JSON / CSV for scripts."""
    if json_output:
        emit_json(report.to_json())
        return
    if csv_output:
        _cost_csv(report)
        return

    def when(moment):
        # Each end in its own offset: a window may cross a DST change.
        return moment.strftime("%Y-%m-%d %H:%M UTC") if utc else moment.astimezone().strftime("%Y-%m-%d %H:%M %Z")

    title = f"Spend from {when(report.since)} to {when(report.until)}"
    if report.total.calls == 0:
        write_lines([f"{title}: no calls in this window."] + (_drift_lines(report.drift) if report.drift is not None else []))
        return
    console = _console(_PIPED_WIDTH)
    with_feedback = report.total.rated > 0 or "variant" in report.by
    for group, (heading, keys) in enumerate(_COST_GROUPS.items()):
        if keys == _FEEDBACK_KEYS and not with_feedback:
            continue
        console.print(_cost_table(report, f"{title}: {heading}" if group == 0 else heading, keys))
    _say(console, report.BASELINE_NOTE, style="dim")
    if with_feedback:
        _say(console, "good / misrouted: shares of rated answers (mmr feedback; the latest verdict per call); "
                      "needs higher: of those marked bad, the share that named a higher tier.", style="dim")
    if report.comparison is not None:
        _say(console, "\nExperiments", style="bold")
        _say(console, "\n".join(report.comparison["statements"]))
    chart = daily_chart(report.daily_spend)
    if chart:
        _say(console, "\nDaily spend", style="bold")
        _say(console, "\n".join(chart))
    if report.drift is not None:
        console.print()
        _say(console, "\n".join(_drift_lines(report.drift)))
    if report.cache is not None and (report.cache.cache_read or report.cache.cache_write):
        c = report.cache
        _say(console, f"\nPrompt caching: {c.read_share:.1%} of {c.input_tokens:,} input tokens read from a cache "
                      f"({c.cache_write:,} written); it saved {format_usd(c.saved)} (net of cache-write premiums).")
    if report.hedging and report.hedging["requests"]:
        h = report.hedging
        _say(console, f"\nHedging: {h['requests']:,} hedged requests; the {h['cancelled_calls']:,} calls they cancelled "
                      f"cost {format_usd(Decimal(h['cancelled_usd']))}, {h['share_of_spend']:.1%} of spend.")
    if report.reprice is not None:
        console.print()
        console.print(_reprice_table(report.reprice))
    if report.budgets:
        console.print()
        console.print(_budget_table(report.budgets))


def _console(width: int):
    """A console for stdout: no colour with ``NO_COLOR``; off a terminal, ``width`` columns.

    Markup and emoji codes are off: a user named ``[/]`` or ``:x:`` is printed as such."""
    from rich.console import Console

    return Console(no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False, markup=False, emoji=False,
                   width=None if sys.stdout.isatty() else width)


def _table(title: str):
    from rich.table import Table

    return Table(title=safe_text(title), title_justify="left")


def _row(table, *cells: str, style: str | None = None) -> None:
    """Add a row whose every cell is made safe for a terminal; mmr's colours come only from ``style``."""
    table.add_row(*(safe_text(cell) for cell in cells), style=style)


def _say(console, text: str, style: str | None = None) -> None:
    console.print(safe_text(text, lines=True), style=style)


def csv_text(value: str | None) -> str:
    """A text cell for CSV that a spreadsheet shows and never evaluates: controls escaped (so a
    tab or carriage return never leads a cell, OWASP's other two), and a leading ``'`` on a cell
    starting with ``=``, ``+``, ``-`` or ``@``.

    Only for text (names from the ledger or config): mmr's own numbers are written as they are,
    so a negative saving stays a number."""
    if value is None:
        return ""
    text = safe_text(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def _cost_csv(report) -> None:
    import csv

    # Rows of one kind: the groups of --by, or without it the one row of the whole window.
    # Totals over the groups are in --json and the table.
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(report.by + [name for name, _ in _COST_FIELDS])
    for row in report.rows if report.by else [report.total]:
        data = row.to_json()
        writer.writerow([csv_text(data.get(k)) for k in report.by] + [data[name] for name, _ in _COST_FIELDS])


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _cost_cells(row, keys: tuple[str, ...]) -> list[str]:
    pct = row.savings_pct
    latency = {"latency_p50_ms": row.latency_p50_ms, "latency_p95_ms": row.latency_p95_ms}
    cell = {
        "calls": f"{row.calls:,}", "requests": f"{row.requests:,}", "input_tokens": f"{row.input_tokens:,}",
        "output_tokens": f"{row.output_tokens:,}", "spend_usd": format_usd(row.spend),
        "baseline_usd": format_usd(row.baseline), "savings_usd": format_usd(row.savings),
        "savings_pct": "" if pct is None else f"{pct:.1f}%", "error_rate": f"{row.error_rate:.1%}",
        "escalation_rate": f"{row.escalation_rate:.1%}", "cache_hit_rate": f"{row.cache_hit_rate:.1%}",
        "discarded_share": f"{row.discarded_share:.1%}", "judging_share": f"{row.judging_share:.1%}",
        **{k: "" if v is None else f"{v:,.0f}" for k, v in latency.items()},
        "rated": f"{row.rated:,}", "feedback_score": _share(row.feedback_score),
        "misrouting_rate": _share(row.misrouting_rate), "needs_higher_share": _share(row.needs_higher_share),
    }
    return [cell[k] for k in keys]


def _cost_table(report, title: str, keys: tuple[str, ...]):
    table = _table(title)
    headers = dict(_COST_FIELDS)
    for key in report.by:
        table.add_column(key)
    for key in keys:
        table.add_column(headers[key], justify="right")
    for row in report.rows:
        _row(table, *[str(row.key.get(k) if row.key.get(k) is not None else "-") for k in report.by],
             *_cost_cells(row, keys))
    if report.by:
        table.add_section()
        _row(table, "TOTAL", *[""] * (len(report.by) - 1), *_cost_cells(report.total, keys), style="bold")
    else:
        _row(table, *_cost_cells(report.total, keys))
    return table


def _reprice_table(reprice: dict):
    table = _table("At today's prices (recorded costs are unchanged)")
    for header in ("provider/model", "calls", "recorded", "today", "source"):
        table.add_column(header, justify="right" if header in ("calls", "recorded", "today") else "left")
    for r in reprice["models"]:
        _row(table, f"{r['provider']}/{r['model']}", f"{r['calls']:,}", format_usd(Decimal(r["recorded_usd"])),
             format_usd(Decimal(r["today_usd"])), r["source"])
    for r in reprice["not_repriced"]:
        _row(table, f"{r['provider']}/{r['model']}", f"{r['calls']:,}", format_usd(Decimal(r["recorded_usd"])),
             "-", "not in the config")
    _row(table, "TOTAL", "", format_usd(Decimal(reprice["recorded_usd"])), format_usd(Decimal(reprice["today_usd"])), "",
         style="bold")
    return table


def _budget_table(budgets: list[dict]):
    table = _table("Budgets (current period, UTC)")
    for header in ("budget", "who", "since", "spent", "limit", "used", "policy"):
        table.add_column(header, justify="right" if header in ("spent", "limit", "used") else "left")
    for b in budgets:
        used = "" if b["used"] is None else f"{b['used']:.1%}"
        _row(table, b["budget"], b["who"] or "", b["period_start"][:10], format_usd(Decimal(b["spent_usd"])),
             format_usd(Decimal(b["limit_usd"])), used, b["policy"],
             style="red" if (b["used"] or 0) >= 1 else "yellow" if (b["used"] or 0) >= 0.8 else None)
    return table


def gate_table(report: dict, json_output: bool) -> None:
    """``mmr costs --by gate``: per shell check, answers seen, pass/fail/error and pass rate (or the JSON)."""
    if json_output:
        emit_json(report)
        return
    console = _console(200)
    table = _table("Shell checks (mmr cascade --check)")
    for header in ("check", "answers", "pass", "fail", "error", "pass rate", "mean ms"):
        table.add_column(header, justify="left" if header == "check" else "right")
    for g in report["gates"]:
        _row(table, shown(g["gate"])[:60], f"{g['checks']:,}", f"{g['pass']:,}", f"{g['fail']:,}", f"{g['error']:,}",
             f"{g['pass_rate']:.1%}", f"{g['mean_ms']:,.1f}")
    console.print(table)
    if not report["gates"]:
        _say(console, "no answer was checked in this window")


def _drift_lines(drift) -> list[str]:
    lines = [f"Drift against the previous window ({drift.previous_requests:,} requests before, {drift.current_requests:,} now):"]
    for tier, (before, now) in drift.tier_mix.items():
        lines.append(f"  {tier:<16} {before:>6.1%} -> {now:>6.1%}  ({(now - before) * 100:+.1f} points)")
    for name, (before, now) in drift.rates.items():
        lines.append(f"  {name.replace('_', ' '):<16} {before:>6.1%} -> {now:>6.1%}")
    if min(drift.previous_requests, drift.current_requests) < 20:
        lines.append("  too few requests in one of the windows to flag drift")
    elif drift.flags:
        lines += [f"  ! {flag}" for flag in drift.flags]
    else:
        lines.append(f"  no shift above {drift.threshold_points:g} points")
    return lines


def replay_report(report: dict, json_output: bool) -> None:
    """``mmr eval --replay``: the recorded routes and each classifier's, side by side."""
    if json_output:
        emit_json(report)
        return
    console = _console(200)
    tiers = list(report["as_routed"]["tier_mix"])
    table = _table(f"Replay of {report['requests']:,} requests from {report['since']} to {report['until']} (no model called)")
    table.add_column("routes")
    for t in tiers:
        table.add_column(t, justify="right")
    for header in ("changed", "est. cost", "vs recorded", "labelled", "accuracy", "under", "over"):
        table.add_column(header, justify="right")

    def share(m: dict, key: str) -> str:
        return f"{m[key]:.1%}" if m.get(key) is not None else ""

    rows = [("as recorded", report["as_routed"])] + list(report["classifiers"].items())
    for name, m in rows:
        recorded = name == "as recorded"
        _row(
            table, name, *[f"{m['tier_mix'][t]:,}" for t in tiers], "" if recorded else f"{m['changed_routes']:,}",
            usd(m["estimated_cost_usd"]), "" if recorded else usd(m["vs_as_routed_usd"]),
            f"{m['labelled']:,}", share(m, "accuracy"), share(m, "under_routing"), share(m, "over_routing"),
            style="dim" if recorded else None,
        )
    console.print(table)
    _say(
        console, f"Actually billed for these requests: {usd(report['as_routed']['actual_cost_usd'])} (retries, escalations and judges "
        f"included); all at the premium tier: {usd(report['as_routed']['baseline_cost_usd'])}. Estimates price each route's "
        "first model at the tokens the recorded answer used.", style="dim")
    if report["skipped"]:
        _say(console, "Skipped: " + ", ".join(f"{reason} ({n:,})" for reason, n in report["skipped"].items()), style="dim")


def price_table(rows: list[dict], json_output: bool) -> None:
    """``mmr prices``: one row per model, USD per 1M tokens; warnings under the table."""
    if json_output:
        from .text import emit_json

        emit_json({"models": rows, "unit": "USD per 1M tokens"})
        return
    table = _table("Prices (USD per 1M tokens)")
    for column in ("provider/model", "input", "cached input", "cache write", "output", "long context", "source"):
        table.add_column(column, justify="right" if column in ("input", "cached input", "cache write", "output") else "left")
    for r in rows:
        tier = r["long_context"]
        long_context = (f"above {tier['above']:,}: {tier['input']} / {tier['cache_read']} / {tier['cache_write']} / "
                        f"{tier['output']}") if tier else "-"
        _row(table, f"{r['provider']}/{r['model']}", r["input"], r["cache_read"], r["cache_write"], r["output"],
             long_context, r["source"])
    console = _console(160)
    console.print(table)
    if any(r["long_context"] for r in rows):
        _say(console, "long context: a request with more input tokens than that (cached ones included) is billed "
                      "whole at input / cached input / cache write / output", style="dim")
    for r in rows:
        if r["warning"]:
            _say(console, f"warning: {r['provider']}/{r['model']}: {r['warning']}", style="yellow")
