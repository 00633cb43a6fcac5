"""``mmr costs`` (spend, savings, drift, budgets) and ``mmr health`` (providers and models)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ...errors import UsageError
from ..common import ledger_target, load_config, write_file
from ..options import ConfigOption, DbOption, JsonOption


def costs(
    since: Annotated[str, typer.Option("--since", help="Start: 7d, 24h, 30m, 2w, YYYY-MM-DD or an ISO timestamp.")] = "7d",
    until: Annotated[Optional[str], typer.Option("--until", help="End (default: now), same forms as --since.")] = None,
    by: Annotated[Optional[str], typer.Option("--by", help="Group by tier, routed_tier, model, provider, day, week, user, team, command, status, role, variant, template, template_hash (comma-separated); or gate alone: pass rates of cascade --check commands.")] = None,
    json_output: JsonOption = False,
    csv_output: Annotated[bool, typer.Option("--csv", help="CSV on stdout.")] = False,
    utc: Annotated[bool, typer.Option("--utc", help="Read and show times in UTC instead of the local zone.")] = False,
    drift_points: Annotated[float, typer.Option("--drift-points", help="Flag tier-mix shifts larger than this many points.")] = 10.0,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Also write the daily spend chart to this .svg file.")] = None,
    reprice: Annotated[bool, typer.Option("--reprice", help="Also show what the window would cost at today's prices (recorded costs never change).")] = False,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Spend, premium baseline and net savings from the ledger, with drift against the previous window,
    and prompt caching's share of input tokens and what it saved.

    With --by user or team (or --config), also each budget's use in its current period. With
    --reprice, the window's tokens at today's prices beside what was recorded.

    Example: mmr costs --since 30d --by tier,model; mmr costs --since 30d --reprice; mmr costs --by gate
    """
    from ...policy.budgets import budget_use
    from ...reports.cache_money import cache_summary, reprice as reprice_window
    from ...reports.costs import cost_report, empty_report, hedge_summary, parse_by
    from ...reports.drift import drift
    from ...reports.when import parse_when
    from ...ledger import open_for_reading
    from ...render.charts import spend_svg
    from ...render.tables import cost_report as show
    from ...render.text import note

    if by is not None and "gate" in [k.strip() for k in by.split(",")]:
        _gates(by, since, until, utc, json_output, csv_output, db, config)
        return
    keys = parse_by(by)
    start = parse_when(since, utc=utc)
    end = parse_when(until, utc=utc, option="--until") if until else None
    if not 0 < drift_points <= 100:
        raise UsageError(f"--drift-points must be above 0 and at most 100, got {drift_points:g}")
    if plot is not None and not plot.lower().endswith(".svg"):
        raise UsageError(f"--plot writes SVG: give a file name ending in .svg, not {plot!r}")
    # Budgets live in the config; reading it is skipped when no report needs it (start-up time).
    budgets = load_config(config).budgets if config or {"user", "team"} & set(keys) else None
    path = ledger_target(db, config)
    if path.exists():
        with open_for_reading(path) as ledger:
            report = cost_report(ledger, start, end, keys, utc=utc)
            report.drift = drift(ledger, report.since, report.until, drift_points, current=report.total)
            if budgets is not None:
                report.budgets = budget_use(ledger, budgets)
            report.cache = cache_summary(ledger, report.since, report.until, lambda: _provider_types(config))
            report.hedging = hedge_summary(ledger, report.since, report.until, report.total.spend)
            if reprice:
                report.reprice = reprice_window(ledger, load_config(config, prices=True), report.since, report.until)
    else:
        note(f"no ledger yet at {path}: nothing has been recorded")
        report = empty_report(start, end, keys, utc, drift_points)
        if budgets is not None:
            report.budgets = budget_use(None, budgets)
    if plot is not None:
        write_file(plot, "--plot", spend_svg(report.daily_spend))
    show(report, json_output=json_output, csv_output=csv_output, utc=utc)


def _provider_types(config: str | None) -> dict[str, str]:
    """Provider name -> type, from the config; {} when it cannot be read (the report guesses then)."""
    from ...errors import ConfigError

    try:
        return {name: spec.type for name, spec in load_config(config).providers.items()}
    except ConfigError:
        return {}


def _gates(by: str, since: str, until: str | None, utc: bool, json_output: bool, csv_output: bool, db: str | None,
           config: str | None) -> None:
    """``--by gate``: each shell check's pass, fail and error counts in the window."""
    from ...ledger import open_for_reading
    from ...render.tables import gate_table
    from ...reports.gate_checks import gate_report
    from ...reports.when import parse_when

    if [k.strip() for k in by.split(",") if k.strip()] != ["gate"]:
        raise UsageError("--by gate stands alone: shell checks are counted per answer, not per group of calls")
    if csv_output:
        raise UsageError("--by gate has no CSV form; use --json")
    start = parse_when(since, utc=utc)
    end = parse_when(until, utc=utc, option="--until") if until else None
    path = ledger_target(db, config)
    if not path.exists():
        from ...reports.when import checked_window

        s, e = checked_window(start, end)
        report = {"since": s.isoformat(), "until": e.isoformat(), "gates": []}
    else:
        with open_for_reading(path) as ledger:
            report = gate_report(ledger, start, end)
    gate_table(report, json_output)


def health(
    since: Annotated[str, typer.Option("--since", help="Window for error rates and latency: 1h, 24h, 30m...")] = "1h",
    json_output: JsonOption = False,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Each provider/model: circuit state, recent error rate, p50 latency, when it will be retried.

    Example: mmr health --since 24h
    """
    from datetime import datetime, timezone

    from ...reports.health import health_report
    from ...reports.when import parse_when
    from ...ledger import open_for_reading
    from ...render.health import health as show
    from ...render.text import note

    cfg = load_config(config)
    now = datetime.now(timezone.utc)
    window = now - parse_when(since, now=now)
    if window.total_seconds() <= 0:
        raise UsageError(f"--since must reach into the past, got {since!r}")
    path = ledger_target(db, cfg=cfg)
    if path.exists():
        with open_for_reading(path) as ledger:
            rows = health_report(ledger, cfg, window, now.timestamp())
    else:
        note(f"no ledger yet at {path}: nothing has been recorded")
        rows = health_report(None, cfg, window, now.timestamp())
    show(rows, json_output, since=since, breaker=cfg.breaker)
