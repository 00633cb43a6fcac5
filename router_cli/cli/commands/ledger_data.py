"""Commands about recorded requests: ``mmr labels`` (export), ``mmr feedback`` (rate an answer)
and ``mmr explain`` (why a request went where it went)."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from ..common import ledger_path, load_config, window, write_file
from ..options import ConfigOption, DbOption, JsonOption, UserOption


def labels(
    since: Annotated[str, typer.Option("--since", help="Start: 30d, 24h, YYYY-MM-DD or an ISO timestamp.")] = "30d",
    until: Annotated[Optional[str], typer.Option("--until", help="End (default: now).")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the JSONL here instead of stdout.")] = None,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Export labelled JSONL from the ledger (cascade gate outcomes; feedback overrides), for mmr train or mmr eval.

    Only requests whose prompt was stored in full are used; how many were skipped, and why, goes to stderr.

    Example: mmr labels --since 30d -o labels.jsonl && mmr train labels.jsonl -o router.json
    """
    from ...reports.labels import ledger_labels
    from ...ledger import open_for_reading
    from ...render.text import json_text, note

    cfg = load_config(config)
    start, end = window(since, until)
    with open_for_reading(ledger_path(db, config)) as ledger:
        result = ledger_labels(ledger, cfg.tier_names, start, end)
    rows = "".join(json_text(row) + "\n" for row in result.rows)  # no raw control or bidi character reaches a terminal
    if output is None:
        sys.stdout.write(rows)
    else:
        write_file(output, "--output", rows)
    note(result.summary())


def feedback(
    call_id: Annotated[str, typer.Argument(help="The call (call_id in ask --json) or request id to rate.", show_default=False)],
    verdict: Annotated[str, typer.Argument(help="good or bad.", show_default=False)],
    should_be: Annotated[Optional[str], typer.Option("--should-be", help="The tier that should have answered.")] = None,
    note: Annotated[Optional[str], typer.Option("--note", help="Free text kept with the verdict.")] = None,
    allow_unstored: Annotated[bool, typer.Option("--allow-unstored", help="Record it even though the prompt was not stored in full (reports only).")] = False,
    user: UserOption = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Say whether an answer was good or bad; several per call are kept, the latest counts.

    Example: mmr feedback 01JDX7Q9M4N8R2T5V6W7X8Y9Z0 bad --should-be complex --note "missed the edge case"
    """
    from ...engine.options import check_text
    from ...ledger import open_ledger
    from ...render.text import feedback_recorded
    from ...reports.feedback import record

    check_text(note, "--note")
    tiers = load_config(config).tier_names if should_be is not None else None
    with open_ledger(ledger_path(db, config)) as ledger:
        entry = record(ledger, call_id, verdict, should_be=should_be, note=note, user=user, tiers=tiers,
                       allow_unstored=allow_unstored)
    feedback_recorded(entry, json_output)


def explain(
    call_id: Annotated[str, typer.Argument(help="A call id (call_id in ask --json) or a request id.", show_default=False)],
    json_output: JsonOption = False,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Why a request went where it went: classifier, score, thresholds, config, variant, every attempt (with the
    template it was sent in), feedback.

    Example: mmr explain 01JDX7Q9M4N8R2T5V6W7X8Y9Z0
    """
    from ...errors import ConfigError
    from ...reports.explain import explain as explain_call
    from ...ledger import open_for_reading
    from ...render.text import explain as show, note

    try:
        cfg = load_config(config)
        current = cfg.config_hash
        wordings = {m.phrasing.hash: m.phrasing for m in cfg.models() if m.phrasing is not None}
    except ConfigError as e:
        note(f"the config could not be loaded ({e}); not checking whether the request ran under it")
        current, wordings = None, {}
    with open_for_reading(ledger_path(db, config)) as ledger:
        report = explain_call(ledger, call_id, current, wordings)
    show(report, json_output)
