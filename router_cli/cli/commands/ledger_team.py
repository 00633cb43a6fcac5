"""``mmr ledger sync`` and ``mmr ledger push``: a team's PostgreSQL ledger and the SQLite files beside it."""

from __future__ import annotations

from typing import Annotated

import typer

from ...errors import UsageError
from ..options import ConfigOption, DbOption

app = typer.Typer(no_args_is_help=True, help="A team's ledger: send what was kept locally, merge a local ledger.")


def _team_ledger(db: str | None, config: str | None):
    from ...ledger import open_ledger
    from ...ledger.paths import is_url
    from ..common import ledger_target

    target = ledger_target(db, config)
    if not is_url(str(target)):
        raise UsageError("this needs a PostgreSQL ledger: --db postgresql://..., $MMR_DB or ledger.url in the config")
    return open_ledger(str(target))


@app.command(name="sync")
def sync(db: DbOption = None, config: ConfigOption = None) -> None:
    """Send the calls kept locally while the team's PostgreSQL server was unreachable; each lands exactly once.

    The database is --db, $MMR_DB or ledger.url of the config.

    Example: mmr ledger sync --db postgresql://mmr@db.example.com/mmr
    """
    from ...ledger.outbox import sync as send
    from ...render.text import note

    # Opening the ledger tries already (and says what it sent); this says what is wrong if it cannot.
    with _team_ledger(db, config) as ledger:
        pushed = send(ledger)
    if pushed is None:
        note("nothing to send: no calls were kept locally for this database")
        return
    note(f"sent {pushed.added.get('calls', 0)} calls ({pushed.seen.get('calls', 0)} kept locally)")


@app.command(name="push")
def push(
    source: Annotated[str, typer.Argument(help="The SQLite ledger file to merge.", show_default=False)],
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Merge a local SQLite ledger into the team's PostgreSQL ledger, keeping ids, users, teams and costs.

    Rows already there are skipped, so pushing twice adds nothing the second time.

    Example: mmr ledger push ~/.local/share/mmr/ledger.db --db postgresql://mmr@db.example.com/mmr
    """
    from pathlib import Path

    from ...ledger import open_for_reading
    from ...ledger.outbox import push as merge
    from ...render.text import note

    if not Path(source).is_file():
        raise UsageError(f"{source}: no such ledger file")
    with _team_ledger(db, config) as team, open_for_reading(Path(source)) as local:
        pushed = merge(local, team)
    added = ", ".join(f"{pushed.added[t]} of {pushed.seen[t]} {t}" for t in pushed.seen)
    note(f"pushed {source}: added {added}")
