"""Every ``mmr`` option, declared once, and the one function that turns the request options
of ``ask`` and ``cascade`` into a validated :class:`~router_cli.engine.options.RequestOptions`.

Only Typer is imported here: ``mmr --help`` reads these declarations and nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from ..engine.options import RequestOptions

# -- shared by many commands
ConfigOption = Annotated[
    Optional[str],
    typer.Option("--config", "-c", help="Tiers file. Default: $MMR_CONFIG, ./tiers.yaml, ~/.config/mmr/tiers.yaml, built-in."),
]
DbOption = Annotated[Optional[str], typer.Option("--db", help="Ledger file. Default: $MMR_DB, ~/.local/share/mmr/ledger.db.")]
PromptArgument = Annotated[Optional[str], typer.Argument(help="The prompt; '-' or nothing reads stdin.", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Routing notes on stderr even when it is not a terminal.")]
ClassifierOption = Annotated[Optional[str], typer.Option("--classifier", help="Classifier name (default from config: rules).")]
MlModelOption = Annotated[Optional[str], typer.Option("--ml-model", help="Model file for --classifier ml (default: config, else the shipped one).")]
KnnModelOption = Annotated[Optional[str], typer.Option("--knn-model", help="Model file for --classifier knn (mmr train --router knn).")]
BlendModelOption = Annotated[Optional[str], typer.Option("--blend-model", help="Model file for --classifier blend (mmr train --router blend).")]
CheckOption = Annotated[Optional[list[str]], typer.Option("--check", help="Shell command each answer is piped to: exit 0 passes, 1 escalates, else a gate error (repeatable), e.g. --check 'jq -e .'.")]
CheckTimeoutOption = Annotated[Optional[float], typer.Option("--check-timeout", help="Seconds a --check may run before it counts as a gate error (default: cascade.check_timeout, 10).")]
UserOption = Annotated[Optional[str], typer.Option("--user", envvar="MMR_USER", help="Who is asking (for budgets and reports).")]
SkipBadOption = Annotated[bool, typer.Option("--skip-bad", help="Report bad lines on stderr and go on, instead of stopping.")]

# -- a request (ask and cascade)
SystemOption = Annotated[Optional[str], typer.Option("--system", "-s", help="System prompt.")]
MaxTokensOption = Annotated[Optional[int], typer.Option("--max-tokens", help="Cap on output tokens (default: each model's max_tokens).")]
TemperatureOption = Annotated[Optional[float], typer.Option("--temperature", help="Sampling temperature (OpenAI-compatible models).")]
TeamOption = Annotated[Optional[str], typer.Option("--team", envvar="MMR_TEAM", help="Their team.")]
MaxCostOption = Annotated[Optional[str], typer.Option("--max-cost", help="Most this request may cost, in USD: cheaper tiers are used to stay under it.", show_default=False)]
TierOption = Annotated[Optional[str], typer.Option("--tier", "-t", help="Use this tier; skip classification.")]
StreamOption = Annotated[Optional[bool], typer.Option("--stream/--no-stream", help="Stream the answer (default: when stdout is a terminal).", show_default=False)]
AskDryRunOption = Annotated[bool, typer.Option("--dry-run", help="Show the decision and a cost estimate; call nothing.")]
PromptCacheOption = Annotated[Optional[str], typer.Option(
    "--prompt-cache", help="auto: mark long system prompts for Anthropic's prompt cache; off (default: config, auto).",
    show_default=False)]
FirstTokenTimeoutOption = Annotated[Optional[float], typer.Option(
    "--first-token-timeout", help="Seconds to wait for a model's first token before the next model answers "
    "(default: the config's first_token_timeout).", show_default=False)]
NoCacheOption = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the response cache.")]
RefreshOption = Annotated[bool, typer.Option("--refresh", help="Ask again and replace the cached answer.")]
# -- cascade only
StartTierOption = Annotated[Optional[str], typer.Option("--start-tier", help="First tier to try (default: the cheapest).")]
FromClassifierOption = Annotated[bool, typer.Option("--from-classifier", help="Start where the classifier would route.")]
MaxTierOption = Annotated[Optional[str], typer.Option("--max-tier", help="Highest tier to escalate to (default: the top).")]
ThresholdOption = Annotated[Optional[float], typer.Option("--threshold", help="Minimum gate score in [0, 1] for every tier (default: config).")]
GateOption = Annotated[Optional[str], typer.Option("--gate", help="heuristic, judge or both (default: config).")]
CascadeDryRunOption = Annotated[bool, typer.Option("--dry-run", help="Show the plan and its cost bounds; call nothing.")]

# -- --batch (ask and cascade)
BatchOption = Annotated[Optional[str], typer.Option(
    "--batch", help="Answer every row of this JSONL file ('-': stdin); rows: prompt, id, system, tier, max_tokens, user. "
    "One JSON row out per row in, in input order.")]
ConcurrencyOption = Annotated[int, typer.Option("--concurrency", "-j", help="With --batch: rows answered at once.")]
ProcessesOption = Annotated[Optional[int], typer.Option(
    "--processes", help="With --batch: processes answering rows (default: one per 16 concurrent rows from 32 on, up to "
    "the CPUs and 4; 1: this process only).", show_default=False)]
StrictOption = Annotated[bool, typer.Option("--strict", help="With --batch: check every line first and stop at a bad one, before any call.")]
ResumeOption = Annotated[Optional[str], typer.Option(
    "--resume", help="With --batch: skip the ids already answered in this earlier output, and write those the ledger "
    "answered for this batch from the ledger.")]
BatchIdOption = Annotated[Optional[str], typer.Option(
    "--batch-id", help="With --batch: the batch's name in the ledger (default: from the command and the input file's "
    "content; stdin: a new one per run).", show_default=False)]


def request_options(*, system: str | None = None, tier: str | None = None, classifier: str | None = None,
                    max_tokens: int | None = None, temperature: float | None = None, max_cost: str | None = None,
                    user: str | None = None, team: str | None = None, no_cache: bool = False, refresh: bool = False,
                    max_tier: str | None = None, from_classifier: bool = False, threshold: float | None = None,
                    gate: str | None = None, prompt_cache: str | None = None, checks: list[str] | None = None,
                    check_timeout: float | None = None, first_token_timeout: float | None = None) -> RequestOptions:
    """The request options as given on the command line, checked (a UsageError names the flag).

    ``tier`` is ``--tier`` for ask and ``--start-tier`` for cascade.
    """
    from ..engine.options import RequestOptions, parse_max_cost

    return RequestOptions(system=system, tier=tier, classifier=classifier, max_tokens=max_tokens,
                          temperature=temperature, max_cost=parse_max_cost(max_cost), user=user, team=team,
                          use_cache=not no_cache, refresh=refresh, max_tier=max_tier,
                          from_classifier=from_classifier, threshold=threshold, gate=gate, prompt_cache=prompt_cache,
                          checks=tuple(checks or ()), check_timeout=check_timeout,
                          first_token_timeout=first_token_timeout)
