"""``mmr report --html FILE``: the routing dashboard as one self-contained HTML page."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ...errors import UsageError
from ..common import ledger_target, load_config, write_file
from ..options import ConfigOption, DbOption


def report(
    html: Annotated[Optional[str], typer.Option("--html", help="Write the dashboard to this .html file ('-': stdout).")] = None,
    since: Annotated[str, typer.Option("--since", help="Start: 30d, 24h, 2w, YYYY-MM-DD or an ISO timestamp.")] = "30d",
    until: Annotated[Optional[str], typer.Option("--until", help="End (default: now), same forms as --since.")] = None,
    by: Annotated[str, typer.Option("--by", help="Chart periods: day or week.")] = "day",
    user: Annotated[Optional[str], typer.Option("--user", help="Only this user's calls (no environment default).")] = None,
    team: Annotated[Optional[str], typer.Option("--team", help="Only this team's calls (no environment default).")] = None,
    utc: Annotated[bool, typer.Option("--utc", help="Cut days at UTC midnight instead of the local zone's.")] = False,
    drift_points: Annotated[float, typer.Option("--drift-points", help="Flag tier-mix shifts larger than this many points.")] = 10.0,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """The routing dashboard: spend against the premium baseline by tier, the routing mix and its
    drift, escalation and gates, misrouting from feedback, latency and errors per model, budgets
    and the costliest requests, as one HTML file that opens offline (charts are inline SVG; hover
    a bar for its figures; every chart's numbers are in a table under it).

    Its figures are those of ``mmr costs --json`` for the same window.

    Example: mmr report --html spend.html --since 30d; mmr report --html - --by week --team ml > ml.html
    """
    from ...reports.when import parse_when
    from ...render.text import note

    if html is None:
        raise UsageError("mmr report needs --html FILE (the page to write; '-' for stdout)")
    if html != "-" and not html.lower().endswith((".html", ".htm")):
        raise UsageError(f"--html writes HTML: give a file name ending in .html, not {html!r}")
    if by not in ("day", "week"):
        raise UsageError(f"--by: the dashboard's periods are day or week, got {by!r}")
    if not 0 < drift_points <= 100:
        raise UsageError(f"--drift-points must be above 0 and at most 100, got {drift_points:g}")
    start = parse_when(since, utc=utc)
    end = parse_when(until, utc=utc, option="--until") if until else None
    where = {k: v for k, v in (("user", user), ("team", team)) if v is not None}
    cfg = load_config(config)
    path = ledger_target(db, cfg=cfg)
    if not path.exists():
        note(f"no ledger yet at {path}: nothing has been recorded")
    text = render(path if path.exists() else None, cfg, start, end, period=by, utc=utc, where=where,
                  drift_points=drift_points)
    if html == "-":
        typer.echo(text, nl=False)
    else:
        write_file(html, "--html", text)
        note(f"wrote {html}")


def render(path, cfg, start, end, **options) -> str:
    """The page for the ledger at ``path`` (None: none yet) under ``cfg``'s budgets."""
    from ...ledger import open_for_reading
    from ...policy.budgets import budget_use
    from ...render.dashboard import page
    from ...reports.dashboard import dashboard, visible_budgets

    where = options.get("where") or {}
    options["tiers"] = cfg.tier_names
    if path is None:
        data = dashboard(None, start, end, budgets=visible_budgets(budget_use(None, cfg.budgets), where), **options)
    else:
        with open_for_reading(path) as ledger:
            budgets = visible_budgets(budget_use(ledger, cfg.budgets), where)
            data = dashboard(ledger, start, end, budgets=budgets, **options)
    return page(data)
