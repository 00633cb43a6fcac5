"""``mmr ask`` and ``mmr cascade``: one prompt (or, with ``--batch``, a file of them) answered."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

import typer

from ...errors import MissingKeyError, MmrError
from ..common import keyless_default, ledger_target, load_config, read_prompt
from ..options import (
    AskDryRunOption,
    BatchIdOption,
    BatchOption,
    CascadeDryRunOption,
    CheckOption,
    CheckTimeoutOption,
    ClassifierOption,
    ConcurrencyOption,
    ConfigOption,
    DbOption,
    FirstTokenTimeoutOption,
    FromClassifierOption,
    GateOption,
    JsonOption,
    MaxCostOption,
    MaxTierOption,
    MaxTokensOption,
    MlModelOption,
    NoCacheOption,
    ProcessesOption,
    PromptArgument,
    PromptCacheOption,
    RefreshOption,
    ResumeOption,
    StartTierOption,
    StreamOption,
    StrictOption,
    SystemOption,
    TeamOption,
    TemperatureOption,
    ThresholdOption,
    TierOption,
    UserOption,
    VerboseOption,
    request_options,
)

if TYPE_CHECKING:
    from ...engine.router import Router
    from ...engine.types import Answer


def ask(
    prompt: PromptArgument = None,
    system: SystemOption = None,
    tier: TierOption = None,
    classifier: ClassifierOption = None,
    max_tokens: MaxTokensOption = None,
    temperature: TemperatureOption = None,
    stream: StreamOption = None,
    json_output: JsonOption = False,
    dry_run: AskDryRunOption = False,
    max_cost: MaxCostOption = None,
    no_cache: NoCacheOption = False,
    refresh: RefreshOption = False,
    prompt_cache: PromptCacheOption = None,
    first_token_timeout: FirstTokenTimeoutOption = None,
    user: UserOption = None,
    team: TeamOption = None,
    ml_model: MlModelOption = None,
    config: ConfigOption = None,
    db: DbOption = None,
    verbose: VerboseOption = False,
    batch: BatchOption = None,
    concurrency: ConcurrencyOption = 8,
    processes: ProcessesOption = None,
    strict: StrictOption = False,
    resume: ResumeOption = None,
    batch_id: BatchIdOption = None,
) -> None:
    """Answer a prompt from the cheapest suitable tier.

    Example: cat prompt.txt | mmr ask --json --max-cost 0.02

    Many prompts: mmr ask --batch prompts.jsonl --concurrency 16 > answers.jsonl
    """
    with _json_on_failure(json_output):  # a bad option is a failure like any other
        options = request_options(system=system, tier=tier, classifier=classifier, max_tokens=max_tokens,
                                  temperature=temperature, max_cost=max_cost, user=user, team=team,
                                  no_cache=no_cache, refresh=refresh, prompt_cache=prompt_cache,
                                  first_token_timeout=first_token_timeout)
    if batch is not None:
        from .batch import answer_batch

        answer_batch("ask", options, batch, prompt=prompt, config=config, db=db, ml_model=ml_model, verbose=verbose,
                     concurrency=concurrency, processes=processes, strict=strict, resume=resume, batch_id=batch_id,
                     conflicts={"--dry-run": dry_run, "--stream": bool(stream)})  # exits with the batch's code
    from ...render import text as render

    with _json_on_failure(json_output):
        router, text, show_notes, key_hint = _prepare(config, db, prompt, verbose, dry_run, ml_model)
        if not dry_run and tier is None:
            _overlap_model_load(router.config, classifier)
        if dry_run:
            render.estimate(router.estimate(text, options), json_output)
            return
        if stream is None:
            stream = sys.stdout.isatty() and not json_output
        on_text = render.stream_text if stream and not json_output else None
        _deliver(router, lambda: router.ask(text, options, on_text=on_text, on_restart=render.stream_restart),
                 json_output=json_output, streamed=on_text is not None, show_notes=show_notes, key_hint=key_hint)


def cascade(
    prompt: PromptArgument = None,
    system: SystemOption = None,
    start_tier: StartTierOption = None,
    from_classifier: FromClassifierOption = False,
    classifier: ClassifierOption = None,
    max_tier: MaxTierOption = None,
    threshold: ThresholdOption = None,
    gate: GateOption = None,
    check: CheckOption = None,
    check_timeout: CheckTimeoutOption = None,
    max_tokens: MaxTokensOption = None,
    temperature: TemperatureOption = None,
    json_output: JsonOption = False,
    dry_run: CascadeDryRunOption = False,
    max_cost: MaxCostOption = None,
    prompt_cache: PromptCacheOption = None,
    first_token_timeout: FirstTokenTimeoutOption = None,
    user: UserOption = None,
    team: TeamOption = None,
    ml_model: MlModelOption = None,
    config: ConfigOption = None,
    db: DbOption = None,
    verbose: VerboseOption = False,
    batch: BatchOption = None,
    concurrency: ConcurrencyOption = 8,
    processes: ProcessesOption = None,
    strict: StrictOption = False,
    resume: ResumeOption = None,
    batch_id: BatchIdOption = None,
) -> None:
    """Answer from the cheapest tier whose answer passes the quality gate, escalating otherwise.

    The answer is printed once, when accepted (no streaming: it may still be rejected).

    Example: mmr cascade --gate both --threshold 0.8 "Prove that sqrt(2) is irrational"

    Gates in shell: mmr cascade --gate heuristic --check 'jq -e .' "Reply with the JSON for a user named Ana"

    Many prompts: mmr cascade --batch prompts.jsonl > answers.jsonl (a row's tier is where it starts)
    """
    with _json_on_failure(json_output):
        options = request_options(system=system, tier=start_tier, from_classifier=from_classifier,
                                  classifier=classifier, max_tier=max_tier, threshold=threshold, gate=gate,
                                  max_tokens=max_tokens, temperature=temperature, max_cost=max_cost, user=user,
                                  team=team, prompt_cache=prompt_cache, checks=check,
                                  check_timeout=check_timeout, first_token_timeout=first_token_timeout)
    if batch is not None:
        from .batch import answer_batch

        answer_batch("cascade", options, batch, prompt=prompt, config=config, db=db, ml_model=ml_model,
                     verbose=verbose, concurrency=concurrency, processes=processes, strict=strict, resume=resume,
                     batch_id=batch_id, conflicts={"--dry-run": dry_run})  # exits with the batch's code
    from ...engine import cascade as cascading
    from ...render import text as render

    with _json_on_failure(json_output):
        router, text, show_notes, key_hint = _prepare(config, db, prompt, verbose, dry_run, ml_model)
        if dry_run:
            render.cascade_estimate(cascading.estimate(router, text, options), json_output)
            return
        _deliver(router, lambda: cascading.cascade(router, text, options), json_output=json_output, streamed=False,
                 show_notes=show_notes, key_hint=key_hint)


@contextmanager
def _json_on_failure(json_output: bool) -> Iterator[None]:
    """With --json, a failure prints its JSON object on stdout too; the stderr line and exit code stay."""
    try:
        yield
    except MmrError as e:
        if json_output:
            from ...render.text import emit_json, failure_json

            emit_json(failure_json(e))
            sys.stdout.flush()
        raise


def _overlap_model_load(cfg, classifier: str | None) -> None:
    """With a router that embeds prompts locally (knn, blend, embedding with backend: local), load the
    model in a thread while this one imports the SDKs of the providers the tiers call first: neither
    waits for the other, so the cold start costs about the longer of the two, not their sum."""
    name = classifier or cfg.classifier
    local = name in ("knn", "blend") or (name == "embedding" and cfg.embedding is not None and cfg.embedding.backend == "local")
    if not local:
        return
    from ...classify.minilm import preload_in_background
    from ...providers import import_sdk

    if preload_in_background() is None:
        return  # a part is missing: the classifier says which when it is built
    for provider_type in dict.fromkeys(cfg.providers[t.models[0].provider].type for t in cfg.tiers):
        import_sdk(provider_type)


def _prepare(config: str | None, db: str | None, prompt: str | None, verbose: bool, dry_run: bool,
             ml_model: str | None) -> tuple[Router, str, bool, str]:
    """Load the config and the prompt, make the router; say whether routing notes are shown, and
    what to add to a missing-key error (see :func:`keyless_default`)."""
    from ...render import text as render
    from ...engine.router import Router

    cfg = load_config(config, ml_model)
    text = read_prompt(prompt)
    cfg, key_hint = keyless_default(cfg)
    show_notes = verbose or render.stderr_is_terminal()
    router = Router(cfg, None if dry_run else ledger_target(db, cfg=cfg), on_note=render.note if show_notes else None)
    return router, text, show_notes, key_hint


def _deliver(router: Router, produce: Callable[[], Answer], *, json_output: bool, streamed: bool,
             show_notes: bool, key_hint: str = "") -> None:
    """Run ``produce()`` for an Answer and print it; a closed stdout ends quietly; a missing key's
    error gets ``key_hint``."""
    from ...render import text as render

    from .. import STARTED

    try:
        answer = produce()
        answer.latency_ms = (time.perf_counter() - STARTED) * 1000  # wall_ms: the whole command
        render.answer(answer, json_output=json_output, streamed=streamed, show_note=show_notes)
    except MissingKeyError as e:
        e.message += key_hint
        raise
    except BrokenPipeError:
        # The reader went away (mmr ask | head): stop writing, quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    finally:
        router.close()
    if answer.ledger_error is not None:
        raise answer.ledger_error

