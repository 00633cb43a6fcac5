"""Everything users see. stdout carries only the answer (or JSON); notes and
errors go to stderr, coloured only on a terminal and never with ``NO_COLOR``.
"""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal

from .pricing import format_usd
from .errors import redact


def stderr_is_terminal() -> bool:
    return sys.stderr is not None and sys.stderr.isatty()


def _color(text: str, code: str) -> str:
    if stderr_is_terminal() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb":
        return f"\x1b[{code}m{text}\x1b[0m"
    return text


def error(message: str) -> None:
    """``Error: <message>`` on stderr, with anything key-shaped removed."""
    print(_color("Error:", "1;31"), redact(message, None), file=sys.stderr, flush=True)


def note(message: str) -> None:
    print(_color(f"mmr: {message}", "2"), file=sys.stderr, flush=True)


def stream_text(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def stream_restart(message: str) -> None:
    """A stream broke after text went out and another model starts over: say so, always."""
    sys.stdout.write("\n")
    sys.stdout.flush()
    note(message)


def _json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def answer(answer, *, json_output: bool, streamed: bool, show_note: bool) -> None:
    """Print an :class:`~router_cli.engine.types.Answer`, and the routing note when wanted."""
    if json_output:
        _json(answer.to_json())
    elif streamed:
        sys.stdout.write("" if answer.text.endswith("\n") else "\n")
    else:
        sys.stdout.write(answer.text if answer.text.endswith("\n") else answer.text + "\n")
    sys.stdout.flush()
    final = answer.final
    if show_note:
        tries = sum(1 for a in answer.attempts if a.status != "skipped")
        retried = f" · {tries} attempts" if tries > 1 else ""
        note(
            f"{final.tier} · {final.provider}/{final.model} · {final.input_tokens}→{final.output_tokens} tokens · "
            f"{format_usd(answer.cost)} (premium {format_usd(answer.baseline_cost)}) · {answer.latency_ms / 1000:.2f} s{retried}"
        )
    if answer.best_effort:
        note(f"no tier passed the quality gate; this is the best answer ({final.tier}, score {final.quality:.2f}: {final.gate_reason})")
    if final.stop_reason in ("max_tokens", "length"):
        note(f"the answer was cut off at the token limit ({final.output_tokens} tokens); raise --max-tokens for more")


def estimate(estimate, json_output: bool) -> None:
    """Print a dry run's decision and worst-case cost."""
    if json_output:
        _json(estimate.to_json())
        return
    d = estimate.decision
    lines = [
        f"tier      {estimate.tier}  ({d.classifier}: {d.reason}; score {d.score})",
        f"model     {estimate.provider}/{estimate.model}",
        f"tokens    ~{estimate.input_tokens} in, up to {estimate.max_output_tokens} out",
        f"cost      at most {format_usd(estimate.cost)} (premium baseline at most {format_usd(estimate.baseline_cost)})",
    ]
    if estimate.policy:
        lines.append(f"policy    {estimate.policy}")
    if estimate.missing_key:
        lines.append(f"warning   {estimate.missing_key} is not set: this call would fail")
    sys.stdout.write("\n".join(lines) + "\n")


def cascade_estimate(plan, json_output: bool) -> None:
    """Print a cascade dry run: where it starts, how far it may go, and the cost bounds."""
    if json_output:
        _json(plan.to_json())
        return
    estimate(plan.first, False)
    limits = ", ".join(f"{tier} {limit:g}" for tier, limit in plan.thresholds.items())
    sys.stdout.write(
        f"cascade   {' -> '.join(plan.tiers)}; gate {plan.gate}; thresholds {limits}\n"
        f"worst     {format_usd(plan.worst_cost)} if every tier answers{' and is judged' if plan.gate != 'heuristic' else ''}\n"
    )


def decision_json(decision) -> dict:
    """The ``classify --json`` object (a contract: see DESIGN.md)."""
    return {
        "tier": decision.tier, "score": decision.score, "classifier": decision.classifier,
        "reason": decision.reason, "latency_ms": round(decision.latency_ms, 3),
    }


def decision(decision, json_output: bool) -> None:
    if json_output:
        _json(decision_json(decision))
    else:
        sys.stdout.write(decision.tier + "\n")


def trained(model: dict, path: str) -> None:
    """What mmr train made: where it went, and how it did on held-out folds (stderr)."""
    t = model["training"]
    held = t["held_out"]
    reached = "" if held["reached_target"] else f" (short of the {t['target_quality']:.0%} target: the best it could do)"
    note(
        f"wrote {path}: {t['rows']} rows; lambda {model['lambda']:.4g} (quality per USD)"
        + f"; held out: {held['quality_vs_premium']:.1%} of premium quality, {held['savings_vs_premium']:.1%} cheaper{reached}"
    )


def jsonl_row(obj: dict) -> None:
    _json(obj)
    sys.stdout.flush()


_EVAL_COLUMNS = [
    ("accuracy", "accuracy", "{:.1%}"), ("macro_f1", "macro F1", "{:.3f}"), ("under_routing", "under", "{:.1%}"),
    ("over_routing", "over", "{:.1%}"), ("quality", "quality", "{:.3f}"), ("quality_vs_premium", "vs premium", "{:.1%}"),
    ("cost_per_call", "cost/call", None), ("savings_vs_premium", "savings", "{:.1%}"),
    ("premium_share", "premium", "{:.1%}"), ("latency_ms_p50", "p50 ms", "{:.3f}"),
]


def eval_report(report: dict, tiers: list[str], json_output: bool) -> None:
    """``mmr eval``: one table of classifiers and baselines, then each classifier's confusion matrix."""
    if json_output:
        _json(report)
        return
    from decimal import Decimal

    from rich.console import Console
    from rich.table import Table

    console = Console(no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False, width=None if sys.stdout.isatty() else 200)
    table = Table(title=f"{report['rows']} labelled rows", title_justify="left")
    table.add_column("router")
    for _, header, _ in _EVAL_COLUMNS:
        table.add_column(header, justify="right")

    def cells(m: dict) -> list[str]:
        out = []
        for key, _, fmt in _EVAL_COLUMNS:
            value = m.get(key)
            if value is None:
                out.append("")
            elif fmt is None:
                out.append(format_usd(Decimal(value)))
            else:
                out.append(fmt.format(value))
        return out

    for name, m in report["classifiers"].items():
        table.add_row(name, *cells(m), style="bold")
    table.add_section()
    for name, m in report["baselines"].items():
        table.add_row(name, *cells(m), style="dim")
    console.print(table)
    for name, m in report["classifiers"].items():
        matrix = Table(title=f"{name}: label (rows) x routed (columns)", title_justify="left")
        matrix.add_column("label")
        for t in tiers:
            matrix.add_column(t, justify="right")
        matrix.add_column("recall", justify="right")
        for t in tiers:
            matrix.add_row(t, *[str(m["confusion"][t][u]) for u in tiers], f"{m['per_tier'][t]['recall']:.1%}")
        matrix.add_row("precision", *[f"{m['per_tier'][u]['precision']:.1%}" for u in tiers], "", style="dim")
        console.print(matrix)
    console.print("under: sent below its label (a quality risk); over: sent above it (money wasted).", style="dim")
    for name, m in report["classifiers"].items():
        if "sweep" in m:
            console.print("\n".join(_frontier_lines(name, m["sweep"])))


def _frontier_lines(name: str, sweep: dict) -> list[str]:
    """The cost-quality frontier of a score threshold sweep, as a small text chart."""
    width, height = 50, 10
    points = [(f["cost_vs_premium"], f["quality_vs_premium"]) for f in sweep["frontier"]]
    low, top = min(q for _, q in points), max(q for _, q in points)
    span = (top - low) or 1.0
    grid = [[" "] * (width + 1) for _ in range(height + 1)]
    for cost, quality in points:
        grid[height - round((quality - low) / span * height)][min(width, round(cost * width))] = "•"
    lines = [f"\n{name}: quality vs cost (both as a fraction of always-premium), by score thresholds"]
    for i, cells in enumerate(grid):
        label = f"{top:.0%}" if i == 0 else f"{low:.0%}" if i == height else ""
        lines.append(f"{label:>5} |{''.join(cells)}")
    lines.append("      +" + "-" * (width + 1))
    lines.append("       0%" + " " * (width - 8) + "100% cost")
    best = sweep["cheapest_at_target"]
    if best:
        lines.append(f"cheapest thresholds keeping {sweep['target_quality']:.0%} quality: {best['thresholds']} "
                     f"-> {best['quality_vs_premium']:.1%} quality at {best['cost_vs_premium']:.1%} of the premium cost")
    else:
        lines.append(f"no thresholds keep {sweep['target_quality']:.0%} of premium quality")
    return lines


def frontier_svg(report: dict) -> str:
    """Each classifier's cost-quality frontier as a standalone SVG line chart."""
    from html import escape

    size, pad = 360, 50
    colours = ["#3b7dd8", "#d8633b", "#3bd87d", "#a03bd8"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size + 2 * pad}" height="{size + 2 * pad}" font-family="sans-serif" font-size="11">',
             f'<rect x="{pad}" y="{pad}" width="{size}" height="{size}" fill="none" stroke="#444"/>',
             f'<text x="{pad}" y="{pad - 10}" font-size="13">Quality vs cost (fraction of always-premium)</text>',
             f'<text x="{pad + size / 2}" y="{pad + size + 30}" text-anchor="middle">cost</text>',
             f'<text x="{pad - 30}" y="{pad + size / 2}" transform="rotate(-90 {pad - 30} {pad + size / 2})" text-anchor="middle">quality</text>']
    for i, (name, m) in enumerate(n for n in report["classifiers"].items() if "sweep" in n[1]):
        colour = colours[i % len(colours)]
        xy = [(pad + f["cost_vs_premium"] * size, pad + size - min(1.0, f["quality_vs_premium"]) * size) for f in m["sweep"]["frontier"]]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{pad + size - 5}" y="{pad + 15 + 14 * i}" text-anchor="end" fill="{colour}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


_COST_FIELDS = [
    ("calls", "calls"), ("requests", "requests"), ("input_tokens", "in tok"), ("output_tokens", "out tok"),
    ("spend_usd", "spend"), ("baseline_usd", "baseline"), ("savings_usd", "savings"), ("savings_pct", "saved %"),
    ("error_rate", "errors"), ("escalation_rate", "escalated"), ("cache_hit_rate", "cached"),
    ("discarded_share", "discarded"), ("judging_share", "judging"),
    ("latency_p50_ms", "p50 ms"), ("latency_p95_ms", "p95 ms"),
    ("rated", "rated"), ("feedback_score", "good"), ("misrouting_rate", "misrouted"), ("needs_higher_share", "needs higher"),
]
_FEEDBACK_FIELDS = 4  # the last entries above: shown in the table only when there is feedback or an experiment


def cost_report(report, *, json_output: bool, csv_output: bool, utc: bool) -> None:
    """The ``mmr costs`` report: a table, or JSON / CSV for scripts."""
    if json_output:
        _json(report.to_json())
        return
    if csv_output:
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(report.by + [name for name, _ in _COST_FIELDS])
        for row in [*report.rows, report.total]:
            data = row.to_json()
            if row.key:
                label = [data.get(k) for k in report.by]
            else:
                label = ["TOTAL"] + [""] * (len(report.by) - 1) if report.by else []
            writer.writerow(label + [data[name] for name, _ in _COST_FIELDS])
        return
    def when(moment):
        # Each end in its own offset: a window may cross a DST change.
        return moment.strftime("%Y-%m-%d %H:%M UTC") if utc else moment.astimezone().strftime("%Y-%m-%d %H:%M %Z")

    title = f"Spend from {when(report.since)} to {when(report.until)}"
    if report.total.calls == 0:
        print(f"{title}: no calls in this window.")
        if report.drift is not None:
            print("\n".join(_drift_lines(report.drift)))
        return
    from rich.console import Console
    from rich.table import Table

    # Off a terminal, rich would squeeze the table into 80 columns; let it be as wide as it needs.
    console = Console(no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False, width=None if sys.stdout.isatty() else 240)
    table = Table(title=title, title_justify="left")
    with_feedback = report.total.rated > 0 or "variant" in report.by
    fields = _COST_FIELDS if with_feedback else _COST_FIELDS[:-_FEEDBACK_FIELDS]
    for key in report.by:
        table.add_column(key)
    for _, header in fields:
        table.add_column(header, justify="right")

    def share(value: float | None) -> str:
        return "" if value is None else f"{value:.1%}"

    def cells(row) -> list[str]:
        pct = row.savings_pct
        feedback = [f"{row.rated:,}", share(row.feedback_score), share(row.misrouting_rate), share(row.needs_higher_share)]
        return [
            f"{row.calls:,}", f"{row.requests:,}", f"{row.input_tokens:,}", f"{row.output_tokens:,}",
            format_usd(row.spend), format_usd(row.baseline), format_usd(row.savings),
            "" if pct is None else f"{pct:.1f}%", f"{row.error_rate:.1%}", f"{row.escalation_rate:.1%}",
            f"{row.cache_hit_rate:.1%}", f"{row.discarded_share:.1%}", f"{row.judging_share:.1%}",
            "" if row.latency_p50_ms is None else f"{row.latency_p50_ms:,.0f}",
            "" if row.latency_p95_ms is None else f"{row.latency_p95_ms:,.0f}",
        ] + (feedback if with_feedback else [])

    for row in report.rows:
        table.add_row(*[str(row.key.get(k) if row.key.get(k) is not None else "-") for k in report.by], *cells(row))
    if report.by:
        table.add_section()
        table.add_row("TOTAL", *[""] * (len(report.by) - 1), *cells(report.total), style="bold")
    else:
        table.add_row(*cells(report.total))
    console.print(table)
    console.print(report.BASELINE_NOTE, style="dim")
    if with_feedback:
        console.print("good / misrouted: shares of rated answers (mmr feedback; the latest verdict per call); "
                      "needs higher: of those marked bad, the share that named a higher tier.", style="dim")
    if report.comparison is not None:
        console.print("\nExperiments", style="bold")
        console.print("\n".join(report.comparison["statements"]))
    chart = _daily_chart(report.daily_spend)
    if chart:
        console.print("\nDaily spend", style="bold")
        console.print("\n".join(chart))
    if report.drift is not None:
        console.print()
        console.print("\n".join(_drift_lines(report.drift)))
    if report.budgets:
        budgets = Table(title="Budgets (current period, UTC)", title_justify="left")
        for header in ("budget", "who", "since", "spent", "limit", "used", "policy"):
            budgets.add_column(header, justify="right" if header in ("spent", "limit", "used") else "left")
        for b in report.budgets:
            used = "" if b["used"] is None else f"{b['used']:.1%}"
            budgets.add_row(b["budget"], b["who"] or "", b["period_start"][:10], format_usd(Decimal(b["spent_usd"])),
                            format_usd(Decimal(b["limit_usd"])), used, b["policy"],
                            style="red" if (b["used"] or 0) >= 1 else "yellow" if (b["used"] or 0) >= 0.8 else None)
        console.print()
        console.print(budgets)


def health(rows, json_output: bool) -> None:
    """The ``mmr health`` table (or JSON: one object per provider/model)."""
    if json_output:
        _json({"models": [r.to_json() for r in rows]})
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False, width=None if sys.stdout.isatty() else 200)
    table = Table(title="Providers and models", title_justify="left")
    for header in ("provider/model", "tiers", "circuit", "recent failures", "calls", "error rate", "p50 ms", "retry at", "last error"):
        table.add_column(header, justify="right" if header in ("recent failures", "calls", "error rate", "p50 ms") else "left")
    styles = {"open": "red", "half_open": "yellow", "probe_due": "yellow"}
    for r in rows:
        table.add_row(
            f"{r.provider}/{r.model}", ",".join(r.tiers) or "(not in config)", r.state.replace("_", "-"),
            str(r.recent_failures), f"{r.calls:,}", "" if r.error_rate is None else f"{r.error_rate:.1%}",
            "" if r.latency_p50_ms is None else f"{r.latency_p50_ms:,.0f}",
            "" if r.retry_at is None else r.retry_at.strftime("%H:%M:%S"), redact(r.last_error or "", None)[:60],
            style=styles.get(r.state),
        )
    console.print(table)


def _daily_chart(daily: dict) -> list[str]:
    """One bar per day, scaled to the largest day, with eighth-block resolution."""
    if len(daily) < 2:
        return []
    top = max(daily.values())
    width = 40
    lines = []
    for day, spend in daily.items():
        eighths = int(spend / top * width * 8) if top else 0
        bar = "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]
        lines.append(f"{day}  {bar:<{width}}  {format_usd(spend)}")
    return lines


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


def spend_svg(daily: dict) -> str:
    """A bar chart of daily spend as a standalone SVG document."""
    from decimal import Decimal
    from html import escape

    days = list(daily.items())
    bar, gap, height, left, bottom = 18, 4, 240, 70, 60
    width = left + max(1, len(days)) * (bar + gap) + 20
    top = max((v for _, v in days), default=Decimal(0)) or Decimal(1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + bottom + 30}" font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="18" font-size="14">Daily spend (USD), total {escape(format_usd(sum((v for _, v in days), Decimal(0))))}</text>',
        f'<line x1="{left}" y1="{height + 30}" x2="{width - 10}" y2="{height + 30}" stroke="#444"/>',
        f'<text x="{left - 6}" y="38" text-anchor="end">{escape(format_usd(top))}</text>',
    ]
    for i, (day, spend) in enumerate(days):
        h = float(spend / top) * (height - 10)
        x = left + i * (bar + gap)
        parts.append(f'<rect x="{x}" y="{height + 30 - h:.1f}" width="{bar}" height="{h:.1f}" fill="#3b7dd8"><title>{escape(day)}: {escape(format_usd(spend))}</title></rect>')
        parts.append(f'<text x="{x + bar / 2}" y="{height + 42}" transform="rotate(60 {x + bar / 2} {height + 42})">{escape(day[5:])}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def feedback_recorded(entry, json_output: bool) -> None:
    """``mmr feedback``: the stored record as JSON, or a one-line confirmation on stderr."""
    if json_output:
        _json(entry.to_json())
        return
    should = f"; should be {entry.should_be}" if entry.should_be else ""
    note(f"recorded: {entry.verdict} for call {entry.call_id} (answered by {entry.tier}){should}")


def _usd(text: str | None) -> str:
    from decimal import Decimal

    return "" if text is None else format_usd(Decimal(text))


def explain(report: dict, json_output: bool) -> None:
    """``mmr explain``: the routing decision, the attempts and the feedback of one request."""
    if json_output:
        _json(report)
        return
    r = report["routing"]
    who = " ".join(f"{k} {report[k]}" for k in ("user", "team") if report.get(k))
    lines = [f"request    {report['request_id']}  {report['datetime_utc']}  mmr {report['command']}" + (f"  ({who})" if who else "")]
    if report.get("prompt"):
        text = report["prompt"].strip()
        first = text.splitlines()[0] if text else ""
        more = "…" if len(first) > 100 or len(first) < len(text) else ""
        lines.append(f"prompt     {first[:100]}{more}")
    else:
        lines.append(f"prompt     not stored (ledger.store: {report.get('prompt_stored') or 'none'})")
    lines.append(f"routed     {r['routed_tier']} by {r['classifier']} (score {r['score']}): {r['reason']}")
    for kind, limits in (r.get("thresholds") or {}).items():
        label = "classifier thresholds" if kind == "classifier" else "gate thresholds"
        lines.append(f"           {label}: " + ", ".join(f"{t} {v:g}" for t, v in limits.items()))
    current = {True: " (the current config)", False: " (the config has changed since)", None: ""}[r.get("config_is_current")]
    lines.append(f"config     {r['config_hash'] or 'unknown'}{current}")
    lines.append(f"variant    {r['variant'] or 'none (no experiment)'}")
    if r.get("policy"):
        lines.append(f"policy     {r['policy']}")
    lines.append("attempts")
    for a in report["attempts"]:
        role = "" if a["role"] == "answer" else f" [{a['role']}]"
        detail = a["error"] or ""
        if a.get("quality") is not None or a.get("gate_reason"):
            q = "" if a.get("quality") is None else f"{a['quality']:.2f}"
            detail = f"gate {q} {a.get('gate_reason') or ''}".rstrip() if a["role"] == "answer" else f"verdict {q or a.get('gate_reason')}"
        if a.get("policy"):
            detail = f"{detail} · {a['policy']}".strip(" ·")
        lines.append(f"  {a['attempt'] if a['attempt'] is not None else '-':>2}  {a['tier']:<10} {a['provider']}/{a['model']}{role}  "
                     f"{a['status']}  {_usd(a['cost_usd'])}  {a['duration_ms'] or 0:,.0f} ms" + (f"  {detail}" if detail else ""))
    by = report["answered_by"]
    if by is None:
        lines.append("answered   no: every attempt failed")
    else:
        escalated = f" (escalated from {r['routed_tier']})" if report["escalated"] else ""
        lines.append(f"answered   {by['tier']} {by['provider']}/{by['model']}{escalated}; call {by['call_id']}")
    lines.append(f"cost       {_usd(report['cost_usd'])} (premium baseline {_usd(report['baseline_cost_usd'])})")
    for f in report["feedback"]:
        should = f", should be {f['should_be']}" if f["should_be"] else ""
        text = f": {f['note']!r}" if f["note"] else ""
        latest = "" if f["latest"] else " (superseded)"
        lines.append(f"feedback   {f['datetime_utc']} {f['verdict']}{should}{text}{latest}")
    sys.stdout.write("\n".join(lines) + "\n")


def replay_report(report: dict, json_output: bool) -> None:
    """``mmr eval --replay``: the recorded routes and each classifier's, side by side."""
    if json_output:
        _json(report)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False, width=None if sys.stdout.isatty() else 200)
    tiers = list(report["as_routed"]["tier_mix"])
    table = Table(title=f"Replay of {report['requests']:,} requests from {report['since']} to {report['until']} (no model called)",
                  title_justify="left")
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
        table.add_row(
            name, *[f"{m['tier_mix'][t]:,}" for t in tiers], "" if recorded else f"{m['changed_routes']:,}",
            _usd(m["estimated_cost_usd"]), "" if recorded else _usd(m["vs_as_routed_usd"]),
            f"{m['labelled']:,}", share(m, "accuracy"), share(m, "under_routing"), share(m, "over_routing"),
            style="dim" if recorded else None,
        )
    console.print(table)
    console.print(
        f"Actually billed for these requests: {_usd(report['as_routed']['actual_cost_usd'])} (retries, escalations and judges "
        f"included); all at the premium tier: {_usd(report['as_routed']['baseline_cost_usd'])}. Estimates price each route's "
        "first model at the tokens the recorded answer used.", style="dim")
    if report["skipped"]:
        console.print("Skipped: " + ", ".join(f"{reason} ({n:,})" for reason, n in report["skipped"].items()), style="dim")


def batch_status(done: int, total: int | None, errors: int, spend, seconds: float) -> str:
    """One line of batch progress: ``412/1,000 · 131 rows/s · $0.0123 · 2 errors · ETA 5 s``."""
    rate = done / seconds if seconds > 0 else 0.0
    parts = [f"{done:,}/{total:,}" if total is not None else f"{done:,} rows", f"{rate:,.0f} rows/s",
             format_usd(spend), f"{errors:,} error{'' if errors == 1 else 's'}"]
    if total is not None and rate > 0 and done < total:
        left = (total - done) / rate
        parts.append(f"ETA {left:,.0f} s" if left < 120 else f"ETA {left / 60:,.0f} min")
    return " · ".join(parts)


class BatchProgress:
    """A batch's progress bar on stderr; make one only when stderr is a terminal."""

    def __init__(self, total: int | None):
        import time
        from decimal import Decimal

        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self.total = total
        self._clock = time.perf_counter
        self._started = time.perf_counter()
        console = Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False)
        # stdout carries the rows: only stderr (routing notes) is redirected above the bar.
        self._bar = Progress(BarColumn(), TextColumn("{task.fields[status]}"), console=console,
                             redirect_stdout=False, refresh_per_second=8)
        self._task = self._bar.add_task("batch", total=total, status=batch_status(0, total, 0, Decimal(0), 0.0))
        self._bar.start()

    def update(self, done: int, errors: int, spend) -> None:
        status = batch_status(done, self.total, errors, spend, self._clock() - self._started)
        self._bar.update(self._task, completed=done, status=status)

    def note(self, message: str) -> None:
        self._bar.console.print(f"mmr: {message}", style="dim", markup=False, highlight=False)

    def stop(self) -> None:
        self._bar.stop()


def batch_summary(summary) -> None:
    """One line on stderr: how a batch went."""
    parts = [f"{summary.answered:,} answered"]
    if summary.failed:
        kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(summary.problems.items()))
        parts.append(f"{summary.failed:,} failed ({kinds})")
    if summary.skipped:
        parts.append(f"{summary.skipped:,} already answered")
    if summary.not_started:
        parts.append(f"{summary.not_started:,} not started")
    if summary.abandoned:
        parts.append(f"{summary.abandoned:,} abandoned in flight (maybe billed, not in the ledger)")
    rate = summary.written / summary.seconds if summary.seconds else 0.0
    note(f"{summary.written:,} rows in {summary.seconds:.1f} s ({rate:,.0f}/s): {', '.join(parts)} · {format_usd(summary.spend)}")
