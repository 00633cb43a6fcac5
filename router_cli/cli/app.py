"""The ``mmr`` command line: the Typer app, and :func:`main`, which turns every failure into
one line and an exit code.

Errors a user can act on print one line, ``Error: ...``, on stderr and exit
with the code documented in the README; ``MMR_DEBUG=1`` shows tracebacks.
Only Typer and the commands' option declarations load at start; each command
imports what it needs when it runs.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from ..errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, MmrError
from .commands import ask, classify, costs, eval as evaluation, ledger_data, ledger_team, prices, report, serve

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # never print locals (they may hold keys)
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# In the order `mmr --help` lists them, each with a line short enough not to be cut there.
app.command(name="ask", short_help="Answer a prompt from the cheapest suitable tier.")(ask.ask)
app.command(name="cascade", short_help="Answer from the cheapest tier that passes a quality gate.")(ask.cascade)
app.command(name="classify", short_help="Print the tier a prompt would go to; call no model.")(classify.classify)
app.command(name="eval", short_help="Score classifiers on labelled data, or replay the ledger.")(evaluation.evaluate)
app.command(name="train", short_help="Train the ml classifier (needs the ml extra).")(evaluation.train)
app.command(name="costs", short_help="Spend, baseline, savings and drift from the ledger.")(costs.costs)
app.command(name="report", short_help="The routing dashboard as one offline HTML page.")(report.report)
app.command(name="labels", short_help="Labelled JSONL from the ledger's gates and feedback.")(ledger_data.labels)
app.command(name="feedback", short_help="Say whether an answer was good or bad.")(ledger_data.feedback)
app.command(name="explain", short_help="Why a request went where it went.")(ledger_data.explain)
app.command(name="health", short_help="Each model's circuit, error rate and latency.")(costs.health)
app.command(name="prices", short_help="Each model's price per token class and where it came from.")(prices.prices)
app.command(name="serve", short_help="Serve the router as an OpenAI- and Anthropic-compatible API.")(serve.serve)
app.add_typer(ledger_team.app, name="ledger", short_help="Sync the outbox or push a local ledger to the team's.")


def _print_version(value: bool) -> None:
    if value:
        from ..version import __version__

        print(f"mmr {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", help="Show the version and exit.", is_eager=True, callback=_print_version)
    ] = False,
) -> None:
    """mmr: route each prompt to the cheapest LLM tier that should do, and keep the bill.

    Examples: cat prompt.txt | mmr ask; mmr cascade "..."; mmr costs --since 7d; mmr eval labeled.jsonl
    """


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and turn every failure into one line and an exit code."""
    try:  # recent Typer vendors its own Click
        from typer._click import exceptions as click
    except ImportError:  # pragma: no cover - older Typer uses Click itself
        from click import exceptions as click  # type: ignore[no-redef]

    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="mmr", standalone_mode=False)
        if result == EXIT_INTERRUPTED:  # Typer turns Ctrl-C into a silent exit code
            _error("interrupted")
        return result if isinstance(result, int) else 0
    except MmrError as e:
        if os.environ.get("MMR_DEBUG"):
            import traceback

            traceback.print_exc()
        _error(str(e))
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except click.NoArgsIsHelpError as e:
        print(e.format_message())
        return 0
    except click.UsageError as e:
        hint = f" (see 'mmr {e.ctx.info_name} --help')" if e.ctx is not None and e.ctx.info_name != "mmr" else ""
        _error(e.format_message() + hint)
        return EXIT_USAGE
    except click.ClickException as e:
        _error(e.format_message())
        return e.exit_code
    except (KeyboardInterrupt, typer.Abort):
        _error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the last line of defence
        if os.environ.get("MMR_DEBUG"):
            raise
        _error(f"internal error: {type(e).__name__}: {e} (set MMR_DEBUG=1 for the traceback)")
        return EXIT_INTERNAL


def _error(message: str) -> None:
    from ..render.text import error

    error(message)


def run() -> None:
    """Console-script entry point."""
    from ..process import exit_now

    exit_now(main())
