"""The ``mmr`` command line: each command parses, calls the core, renders.

Errors a user can act on print one line, ``Error: ...``, on stderr and exit
with the code documented in the README; ``MMR_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Optional

import typer

from . import render
from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, MmrError, UsageError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # never print locals (they may hold keys)
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ConfigOption = Annotated[
    Optional[str],
    typer.Option("--config", "-c", help="Tiers file. Default: $MMR_CONFIG, ./tiers.yaml, ~/.config/mmr/tiers.yaml, built-in."),
]
DbOption = Annotated[Optional[str], typer.Option("--db", help="Ledger file. Default: $MMR_DB, ~/.local/share/mmr/ledger.db.")]
PromptArgument = Annotated[Optional[str], typer.Argument(help="The prompt; '-' or nothing reads stdin.", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Routing notes on stderr even when it is not a terminal.")]
ClassifierOption = Annotated[Optional[str], typer.Option("--classifier", help="Classifier name (default from config: rules).")]
SystemOption = Annotated[Optional[str], typer.Option("--system", "-s", help="System prompt.")]
MaxTokensOption = Annotated[Optional[int], typer.Option("--max-tokens", help="Cap on output tokens (default: each model's max_tokens).")]
TemperatureOption = Annotated[Optional[float], typer.Option("--temperature", help="Sampling temperature (OpenAI-compatible models).")]
UserOption = Annotated[Optional[str], typer.Option("--user", envvar="MMR_USER", help="Who is asking (for budgets and reports).")]
TeamOption = Annotated[Optional[str], typer.Option("--team", envvar="MMR_TEAM", help="Their team.")]
MaxCostOption = Annotated[Optional[str], typer.Option("--max-cost", help="Most this request may cost, in USD: cheaper tiers are used to stay under it.", show_default=False)]
MlModelOption = Annotated[Optional[str], typer.Option("--ml-model", help="Model file for --classifier ml (default: config, else the shipped one).")]
BatchOption = Annotated[Optional[str], typer.Option(
    "--batch", help="Answer every row of this JSONL file ('-': stdin); rows: prompt, id, system, tier, max_tokens, user. "
    "One JSON row out per row in, in input order.")]
ConcurrencyOption = Annotated[int, typer.Option("--concurrency", "-j", help="With --batch: rows answered at once.")]
ProcessesOption = Annotated[Optional[int], typer.Option(
    "--processes", help="With --batch: processes answering rows (default: one per 16 concurrent rows from 32 on, up to "
    "the CPUs and 4; 1: this process only).", show_default=False)]
StrictOption = Annotated[bool, typer.Option("--strict", help="With --batch: check every line first and stop at a bad one, before any call.")]
ResumeOption = Annotated[Optional[str], typer.Option("--resume", help="With --batch: skip the ids already answered in this earlier output.")]


def _max_cost(value: str | None):
    """``--max-cost`` as an exact Decimal."""
    from decimal import Decimal, InvalidOperation

    if value is None:
        return None
    try:
        amount = Decimal(value.strip().lstrip("$"))
    except InvalidOperation:
        raise UsageError(f"--max-cost: expected an amount in USD such as 0.05, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise UsageError(f"--max-cost must be an amount of 0 USD or more, got {value!r}")
    return amount


def _read_prompt(prompt: str | None) -> str:
    if prompt is not None and prompt != "-":
        text = prompt
    elif sys.stdin is None or sys.stdin.isatty():
        raise UsageError("no prompt: pass it as an argument or pipe it on stdin")
    else:
        data = sys.stdin.buffer.read()
        if b"\0" in data:
            raise UsageError("stdin holds binary data, not a text prompt")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError("stdin is not UTF-8 text") from None
    if not text.strip():
        raise UsageError("the prompt is empty")
    _check_text(text, "the prompt")
    return text


def _check_text(text: str | None, what: str) -> None:
    """Arguments that are not valid UTF-8 reach Python as lone surrogates; refuse them here."""
    if text is not None:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"{what} is not valid UTF-8 text") from None


def _load_config(config: str | None, ml_model: str | None = None):
    from dataclasses import replace

    from .config import load_config

    cfg = load_config(config)
    return cfg if ml_model is None else replace(cfg, ml_model=ml_model)


def _prepare(config: str | None, db: str | None, prompt: str | None, system: str | None,
             temperature: float | None, verbose: bool, dry_run: bool = False, ml_model: str | None = None):
    """Check the shared options, load the config and the prompt, make the router."""
    from .ledger import resolve_db_path
    from .router import Router

    if temperature is not None and not 0 <= temperature <= 2:
        raise UsageError(f"--temperature must be between 0 and 2, got {temperature}")
    cfg = _load_config(config, ml_model)
    text = _read_prompt(prompt)
    _check_text(system, "--system")
    show_notes = verbose or render.stderr_is_terminal()
    router = Router(cfg, None if dry_run else resolve_db_path(db), on_note=render.note if show_notes else None)
    return router, text, show_notes


def _batch(source: str, kind: str, options: dict, *, prompt: str | None, config: str | None, db: str | None,
           ml_model: str | None, system: str | None, temperature: float | None, verbose: bool, concurrency: int,
           processes: int | None, strict: bool, resume: str | None, conflicts: dict[str, bool]) -> None:
    """``--batch``: answer every row of ``source`` with ``kind`` (ask or cascade) and ``options``;
    exit with the batch's code."""
    from dataclasses import replace

    from . import batch, batch_pool
    from .config import parse_config, read_config
    from .ledger import resolve_db_path

    for option, given in conflicts.items():
        if given:
            raise UsageError(f"{option} does not combine with --batch")
    if prompt is not None:
        raise UsageError("--batch reads the prompts from its file; give no PROMPT argument")
    if not 1 <= concurrency <= batch.MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be between 1 and {batch.MAX_CONCURRENCY}, got {concurrency}")
    if processes is None:
        processes = batch_pool.auto_processes(concurrency)
    elif not 1 <= processes <= min(concurrency, batch_pool.MAX_PROCESSES):
        raise UsageError(f"--processes must be between 1 and --concurrency (at most {batch_pool.MAX_PROCESSES}), "
                         f"got {processes}")
    if temperature is not None and not 0 <= temperature <= 2:
        raise UsageError(f"--temperature must be between 0 and 2, got {temperature}")
    _check_text(system, "--system")
    if source == "-" and (sys.stdin is None or sys.stdin.isatty()):
        raise UsageError("--batch -: pipe the JSONL rows in on stdin")
    text, source_name = read_config(config)
    cfg = parse_config(text, source_name)
    if ml_model is not None:
        cfg = replace(cfg, ml_model=ml_model)
    db_path = str(resolve_db_path(db))
    pool = None
    if processes > 1:  # started before the ledger and the input: their SDK imports overlap those
        spec = {"kind": kind, "options": options, "config_text": text, "config_source": source_name,
                "ml_model": ml_model, "db": db_path, "verbose": verbose}
        pool = batch_pool.WorkerPool(spec, processes, concurrency)
    try:
        _run_batch(source, cfg, kind, options, pool, db_path=db_path, verbose=verbose, concurrency=concurrency,
                   strict=strict, resume=resume)
    finally:
        if pool is not None:
            pool.finish(abandon=True)  # a no-op when the batch ran: they have exited


def _run_batch(source: str, cfg, kind: str, options: dict, pool, *, db_path: str, verbose: bool, concurrency: int,
               strict: bool, resume: str | None) -> None:
    from . import batch
    from .router import Router

    router = Router(cfg, db_path, on_note=render.note if verbose else None)
    call = batch.make_call(router, kind, options)  # checks the options once, not on every row
    router.ledger()  # opened now: a ledger that cannot be written stops us before anything is paid for
    skip = None
    if resume is not None:
        skip, unreadable = batch.read_resume(resume)
        if unreadable:
            render.note(f"--resume: {unreadable} line(s) of {resume} are not JSON rows; ignored")
    rows = batch.open_input(source, strict=strict, tiers=cfg.tier_names, stdin=sys.stdin.buffer)
    progress = None
    if render.stderr_is_terminal():
        progress = render.BatchProgress(None if source == "-" else batch.count_file_rows(source))
    summary = None
    try:
        summary = batch.run_batch(rows, None if pool else call, render.jsonl_row, tiers=cfg.tier_names,
                                  concurrency=concurrency, resume=skip, progress=progress, pool=pool,
                                  on_note=render.note if verbose else None)
    finally:
        if progress is not None:
            progress.stop()
        if summary is None or not summary.abandoned:
            router.close()  # a call abandoned in flight may still be using its connection
        if rows is not sys.stdin.buffer:  # closing stdin would wait for the reader thread blocked reading it
            rows.close()
    if summary.output_closed:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if progress is not None or verbose or summary.failed or summary.interrupted or summary.fatal:
        render.batch_summary(summary)
    if summary.fatal is not None:
        summary.fatal.message += " (the batch stopped; rerun with --resume OUTFILE to answer the rest)"
        raise summary.fatal
    if summary.interrupted:  # main() then says "Error: interrupted"
        render.note("every finished row was written; rerun with --resume OUTFILE to answer the rest")
    raise typer.Exit(summary.exit_code)


def _deliver(router, produce, *, json_output: bool, streamed: bool, show_notes: bool) -> None:
    """Run ``produce()`` for an Answer and print it; a closed stdout ends quietly."""
    try:
        answer = produce()
        render.answer(answer, json_output=json_output, streamed=streamed, show_note=show_notes)
    except BrokenPipeError:
        # The reader went away (mmr ask | head): stop writing, quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    finally:
        router.close()
    if answer.ledger_error is not None:
        raise answer.ledger_error


@app.command()
def ask(
    prompt: PromptArgument = None,
    system: SystemOption = None,
    tier: Annotated[Optional[str], typer.Option("--tier", "-t", help="Use this tier; skip classification.")] = None,
    classifier: ClassifierOption = None,
    max_tokens: MaxTokensOption = None,
    temperature: TemperatureOption = None,
    stream: Annotated[Optional[bool], typer.Option("--stream/--no-stream", help="Stream the answer (default: when stdout is a terminal).", show_default=False)] = None,
    json_output: JsonOption = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the decision and a cost estimate; call nothing.")] = False,
    max_cost: MaxCostOption = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the response cache.")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="Ask again and replace the cached answer.")] = False,
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
) -> None:
    """Answer a prompt from the cheapest suitable tier.

    Example: cat prompt.txt | mmr ask --json --max-cost 0.02

    Many prompts: mmr ask --batch prompts.jsonl --concurrency 16 > answers.jsonl
    """
    if max_tokens is not None and max_tokens < 1:
        raise UsageError(f"--max-tokens must be at least 1, got {max_tokens}")
    if no_cache and refresh:
        raise UsageError("--no-cache and --refresh contradict each other: give one")
    cost_cap = _max_cost(max_cost)
    if batch is not None:
        options = {"system": system, "tier": tier, "classifier": classifier, "max_tokens": max_tokens,
                   "temperature": temperature, "user": user, "team": team,
                   "max_cost": None if cost_cap is None else str(cost_cap), "use_cache": not no_cache, "refresh": refresh}
        _batch(batch, "ask", options, prompt=prompt, config=config, db=db, ml_model=ml_model, system=system,
               temperature=temperature, verbose=verbose, concurrency=concurrency, processes=processes, strict=strict,
               resume=resume, conflicts={"--dry-run": dry_run, "--stream": bool(stream)})
        return
    router, text, show_notes = _prepare(config, db, prompt, system, temperature, verbose, dry_run, ml_model)
    if dry_run:
        estimate = router.estimate(text, system=system, tier=tier, classifier=classifier, max_tokens=max_tokens, user=user,
                                   max_cost=cost_cap)
        render.estimate(estimate, json_output)
        return
    if stream is None:
        stream = sys.stdout.isatty() and not json_output
    on_text = render.stream_text if stream and not json_output else None
    _deliver(
        router,
        lambda: router.ask(text, system=system, tier=tier, classifier=classifier, max_tokens=max_tokens,
                           temperature=temperature, on_text=on_text, on_restart=render.stream_restart,
                           user=user, team=team, max_cost=cost_cap, use_cache=not no_cache, refresh=refresh),
        json_output=json_output, streamed=on_text is not None, show_notes=show_notes,
    )


@app.command(name="cascade")
def cascade_command(
    prompt: PromptArgument = None,
    system: SystemOption = None,
    start_tier: Annotated[Optional[str], typer.Option("--start-tier", help="First tier to try (default: the cheapest).")] = None,
    from_classifier: Annotated[bool, typer.Option("--from-classifier", help="Start where the classifier would route.")] = False,
    classifier: ClassifierOption = None,
    max_tier: Annotated[Optional[str], typer.Option("--max-tier", help="Highest tier to escalate to (default: the top).")] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Minimum gate score in [0, 1] for every tier (default: config).")] = None,
    gate: Annotated[Optional[str], typer.Option("--gate", help="heuristic, judge or both (default: config).")] = None,
    max_tokens: MaxTokensOption = None,
    temperature: TemperatureOption = None,
    json_output: JsonOption = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan and its cost bounds; call nothing.")] = False,
    max_cost: MaxCostOption = None,
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
) -> None:
    """Answer from the cheapest tier whose answer passes the quality gate, escalating otherwise.

    The answer is printed once, when accepted (no streaming: it may still be rejected).

    Example: mmr cascade --gate both --threshold 0.8 "Prove that sqrt(2) is irrational"

    Many prompts: mmr cascade --batch prompts.jsonl > answers.jsonl (a row's tier is where it starts)
    """
    from .cascade import cascade, estimate

    cost_cap = _max_cost(max_cost)
    if batch is not None:
        options = {"system": system, "start_tier": start_tier, "max_tier": max_tier,
                   "from_classifier": from_classifier, "classifier": classifier, "threshold": threshold, "gate": gate,
                   "max_tokens": max_tokens, "temperature": temperature, "user": user, "team": team,
                   "max_cost": None if cost_cap is None else str(cost_cap)}
        _batch(batch, "cascade", options, prompt=prompt, config=config, db=db, ml_model=ml_model, system=system,
               temperature=temperature, verbose=verbose, concurrency=concurrency, processes=processes, strict=strict,
               resume=resume, conflicts={"--dry-run": dry_run})
        return
    router, text, show_notes = _prepare(config, db, prompt, system, temperature, verbose, dry_run, ml_model)
    if dry_run:
        plan = estimate(router, text, system=system, start_tier=start_tier, max_tier=max_tier,
                        from_classifier=from_classifier, classifier=classifier, threshold=threshold, gate=gate,
                        max_tokens=max_tokens)
        render.cascade_estimate(plan, json_output)
        return
    _deliver(
        router,
        lambda: cascade(router, text, system=system, start_tier=start_tier, max_tier=max_tier,
                        from_classifier=from_classifier, classifier=classifier, threshold=threshold, gate=gate,
                        max_tokens=max_tokens, temperature=temperature, user=user, team=team, max_cost=cost_cap),
        json_output=json_output, streamed=False, show_notes=show_notes,
    )


@app.command()
def classify(
    prompt: PromptArgument = None,
    classifier: ClassifierOption = None,
    json_output: JsonOption = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="Read JSONL rows with 'prompt' (and optional 'id') on stdin; one decision per line.")] = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="With --jsonl: report a bad line as an error row and go on.")] = False,
    ml_model: MlModelOption = None,
    config: ConfigOption = None,
) -> None:
    """Print the tier a prompt would be routed to, without calling any model.

    Example: mmr classify "Write code to parse a CSV file"  # -> complex
    """
    from .classify import get_classifier

    cfg = _load_config(config, ml_model)
    chosen = get_classifier(classifier or cfg.classifier, cfg)
    if not jsonl:
        render.decision(chosen.classify(_read_prompt(prompt)), json_output)
        return
    if prompt is not None:
        raise UsageError("--jsonl reads prompts from stdin; give no PROMPT argument")
    for number, line in enumerate(sys.stdin, 1):
        if number == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark is not part of the first row
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            row = f"not JSON ({e.msg})"
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            message = f"stdin:{number}: {row if isinstance(row, str) else 'expected an object with a non-empty prompt'}"
            if not skip_bad:
                raise UsageError(message) from None
            render.jsonl_row({"line": number, "error": message})
            continue
        render.jsonl_row({**({"id": row["id"]} if "id" in row else {}), **render.decision_json(chosen.classify(row["prompt"]))})


@app.command(name="eval")
def eval_command(
    file: Annotated[Optional[str], typer.Argument(help="Labelled JSONL: prompt and label and/or per-tier outcomes and costs.", show_default=False)] = None,
    classifier: Annotated[Optional[str], typer.Option("--classifier", help="Classifiers to compare, comma-separated (default from config).")] = None,
    json_output: JsonOption = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Report bad lines on stderr and go on, instead of stopping.")] = False,
    target_quality: Annotated[float, typer.Option("--target-quality", help="Quality (fraction of premium) the threshold sweep must keep.")] = 0.95,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Also write the cost-quality frontier to this .svg file.")] = None,
    replay: Annotated[bool, typer.Option("--replay", help="Instead of FILE: re-route the ledger's past prompts and estimate their cost; no model is called.")] = False,
    since: Annotated[str, typer.Option("--since", help="With --replay: start (7d, 24h, YYYY-MM-DD...).")] = "30d",
    until: Annotated[Optional[str], typer.Option("--until", help="With --replay: end (default: now).")] = None,
    thresholds: Annotated[Optional[str], typer.Option("--thresholds", help="ml thresholds to try, e.g. simple=0.6,medium=0.5.")] = None,
    ml_model: MlModelOption = None,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Score classifiers on labelled data, next to the always-<tier>, random and oracle baselines;
    or, with --replay, re-route past traffic from the ledger and estimate what it would have cost.

    Example: mmr eval labeled.jsonl --classifier rules,ml --json; mmr eval --replay --since 30d --classifier ml
    """
    from .classify import get_classifier
    from .labelled import read_labelled
    from .reports.evaluate import evaluate

    cfg = _load_config(config, ml_model)
    if thresholds is not None:
        cfg = _with_thresholds(cfg, thresholds)
    names = [n.strip() for n in (classifier or cfg.classifier).split(",") if n.strip()]
    if replay:
        _replay(cfg, names, file, since, until, db, json_output)
        return
    if file is None:
        raise UsageError("give a labelled FILE, or --replay to re-route the ledger's past prompts")
    chosen = {name: get_classifier(name, cfg) for name in dict.fromkeys(names)}
    if not 0 < target_quality <= 1:
        raise UsageError(f"--target-quality must be in (0, 1], got {target_quality:g}")
    if plot is not None and not plot.lower().endswith(".svg"):
        raise UsageError(f"--plot writes SVG: give a file name ending in .svg, not {plot!r}")
    rows, problems = read_labelled(file, cfg.tier_names, skip_bad=skip_bad)
    for problem in problems:
        render.note(f"skipped {problem}")
    report = evaluate(rows, chosen, cfg, target_quality=target_quality)
    if plot is not None:
        try:
            with open(plot, "w", encoding="utf-8") as f:
                f.write(render.frontier_svg(report))
        except OSError as e:
            raise UsageError(f"--plot: cannot write {plot}: {e.strerror}") from None
    render.eval_report(report, cfg.tier_names, json_output)


@app.command()
def train(
    file: Annotated[Optional[str], typer.Argument(help="Labelled JSONL (labels and/or per-tier outcomes).", show_default=False)] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Where to write the model (JSON).")] = "",
    target_quality: Annotated[float, typer.Option("--target-quality", help="Fraction of the premium tier's quality to keep (held-out folds).")] = 0.95,
    folds: Annotated[int, typer.Option("--folds", help="Cross-validation folds that pick lambda (the price of quality).")] = 5,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Report bad lines on stderr and go on, instead of stopping.")] = False,
    from_ledger: Annotated[bool, typer.Option("--from-ledger", help="Instead of FILE: labels from the ledger's cascades and feedback (see mmr labels).")] = False,
    since: Annotated[str, typer.Option("--since", help="With --from-ledger: start (30d, YYYY-MM-DD...).")] = "30d",
    until: Annotated[Optional[str], typer.Option("--until", help="With --from-ledger: end (default: now).")] = None,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Train the ml classifier on labelled data (needs the ml extra: scikit-learn).

    Example: mmr train labeled.jsonl -o router.json --target-quality 0.95; mmr train --from-ledger --since 30d -o router.json
    """
    from .classify.ml import train as train_model
    from .labelled import read_labelled_file

    if folds < 2:
        raise UsageError(f"--folds must be at least 2, got {folds}")
    if not output:
        raise UsageError("give --output FILE: where to write the model")
    if (file is None) == (not from_ledger):
        raise UsageError("give a labelled FILE or --from-ledger (one of the two)")
    cfg = _load_config(config)
    if from_ledger:
        rows, digest = _ledger_training_rows(cfg, since, until, db)
    else:
        assert file is not None
        data = read_labelled_file(file, cfg.tier_names, skip_bad=skip_bad)
        for problem in data.problems:
            render.note(f"skipped {problem}")
        rows, digest = data.rows, data.sha256
    model = train_model(rows, cfg, target_quality=target_quality, folds=folds, data_sha256=digest, on_progress=render.note)
    try:
        with open(output, "w", encoding="utf-8") as f:
            json.dump(model, f, separators=(",", ":"))
            f.write("\n")
    except OSError as e:
        raise UsageError(f"--output: cannot write {output}: {e.strerror}") from None
    render.trained(model, output)


@app.command()
def costs(
    since: Annotated[str, typer.Option("--since", help="Start: 7d, 24h, 30m, 2w, YYYY-MM-DD or an ISO timestamp.")] = "7d",
    until: Annotated[Optional[str], typer.Option("--until", help="End (default: now), same forms as --since.")] = None,
    by: Annotated[Optional[str], typer.Option("--by", help="Group by tier, model, provider, day, week, user, team, command, status, variant (comma-separated).")] = None,
    json_output: JsonOption = False,
    csv_output: Annotated[bool, typer.Option("--csv", help="CSV on stdout.")] = False,
    utc: Annotated[bool, typer.Option("--utc", help="Read and show times in UTC instead of the local zone.")] = False,
    drift_points: Annotated[float, typer.Option("--drift-points", help="Flag tier-mix shifts larger than this many points.")] = 10.0,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Also write the daily spend chart to this .svg file.")] = None,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Spend, premium baseline and net savings from the ledger, with drift against the previous window.

    With --by user or team (or --config), also each budget's use in its current period.

    Example: mmr costs --since 30d --by tier,model
    """
    from .budgets import budget_use
    from .reports.costs import cost_report, empty_report, parse_by
    from .reports.drift import drift
    from .reports.when import parse_when
    from .ledger import Ledger, resolve_db_path

    keys = parse_by(by)
    start = parse_when(since, utc=utc)
    end = parse_when(until, utc=utc, option="--until") if until else None
    if not 0 < drift_points <= 100:
        raise UsageError(f"--drift-points must be above 0 and at most 100, got {drift_points:g}")
    if plot is not None and not plot.lower().endswith(".svg"):
        raise UsageError(f"--plot writes SVG: give a file name ending in .svg, not {plot!r}")
    # Budgets live in the config; reading it is skipped when no report needs it (start-up time).
    budgets = _load_config(config).budgets if config or {"user", "team"} & set(keys) else None
    path = resolve_db_path(db)
    if path.exists():
        with Ledger.for_reading(path) as ledger:
            report = cost_report(ledger, start, end, keys, utc=utc)
            report.drift = drift(ledger, report.since, report.until, drift_points, current=report.total)
            if budgets is not None:
                report.budgets = budget_use(ledger, budgets)
    else:
        render.note(f"no ledger yet at {path}: nothing has been recorded")
        report = empty_report(start, end, keys, utc, drift_points)
        if budgets is not None:
            report.budgets = budget_use(None, budgets)
    if plot is not None:
        try:
            with open(plot, "w", encoding="utf-8") as f:
                f.write(render.spend_svg(report.daily_spend))
        except OSError as e:
            raise UsageError(f"--plot: cannot write {plot}: {e.strerror}") from None
    render.cost_report(report, json_output=json_output, csv_output=csv_output, utc=utc)


def _ledger_path(db: str | None):
    """The ledger to read; a clear error when nothing has been recorded there."""
    from .ledger import resolve_db_path

    path = resolve_db_path(db)
    if not path.exists():
        raise UsageError(f"no ledger at {path}: nothing has been recorded yet (use --db or $MMR_DB to choose another)")
    return path


def _window(since: str, until: str | None):
    from datetime import datetime, timezone

    from .reports.when import parse_when

    start = parse_when(since)
    end = parse_when(until, option="--until") if until else datetime.now(timezone.utc)
    if end <= start:
        raise UsageError("--until is not after --since")
    return start, end


def _with_thresholds(cfg, text: str):
    """The config with ml thresholds from ``simple=0.6,medium=0.5``."""
    from dataclasses import replace

    out = {}
    for part in text.split(","):
        tier, _, value = part.partition("=")
        tier = tier.strip()
        if tier not in cfg.tier_names[:-1]:
            raise UsageError(f"--thresholds: {tier!r} is not a tier below the top; give TIER=P for any of "
                             f"{', '.join(cfg.tier_names[:-1])}")
        try:
            out[tier] = float(value)
        except ValueError:
            raise UsageError(f"--thresholds: {part.strip()!r}: expected TIER=P with P a number in [0, 1]") from None
        if not 0 <= out[tier] <= 1:
            raise UsageError(f"--thresholds: {tier}={value.strip()}: must be in [0, 1]")
    return replace(cfg, ml_thresholds=out)


def _replay(cfg, names: list[str], file: str | None, since: str, until: str | None, db: str | None, json_output: bool) -> None:
    from .classify import get_classifier
    from .ledger import Ledger
    from .reports.replay import check_classifiers, replay

    if file is not None:
        raise UsageError("--replay reads the ledger; give no FILE")
    if cfg.ml_thresholds and "ml" not in names:
        raise UsageError("--thresholds sets the ml classifier's thresholds; add --classifier ml")
    check_classifiers(names)
    start, end = _window(since, until)
    chosen = {name: get_classifier(name, cfg) for name in dict.fromkeys(names)}
    with Ledger.for_reading(_ledger_path(db)) as ledger:
        report = replay(ledger, cfg, chosen, start, end)
    render.replay_report(report, json_output)


def _ledger_training_rows(cfg, since: str, until: str | None, db: str | None):
    import hashlib

    from .labelled import LabelledRow
    from .reports.labels import ledger_labels
    from .ledger import Ledger

    start, end = _window(since, until)
    with Ledger.for_reading(_ledger_path(db)) as ledger:
        result = ledger_labels(ledger, cfg.tier_names, start, end)
    render.note(result.summary())
    rows = [LabelledRow(r["prompt"], r["label"], i, extra={"id": r["id"], "source": r["source"]})
            for i, r in enumerate(result.rows, 1)]
    return rows, hashlib.sha256(result.jsonl().encode()).hexdigest()


@app.command()
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
    from .reports.labels import ledger_labels
    from .ledger import Ledger

    cfg = _load_config(config)
    start, end = _window(since, until)
    with Ledger.for_reading(_ledger_path(db)) as ledger:
        result = ledger_labels(ledger, cfg.tier_names, start, end)
    if output is None:
        sys.stdout.write(result.jsonl())
    else:
        try:
            with open(output, "w", encoding="utf-8") as f:
                f.write(result.jsonl())
        except OSError as e:
            raise UsageError(f"--output: cannot write {output}: {e.strerror}") from None
    render.note(result.summary())


@app.command()
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
    from .reports.feedback import record
    from .ledger import Ledger

    _check_text(note, "--note")
    tiers = _load_config(config).tier_names if should_be is not None else None
    with Ledger(_ledger_path(db)) as ledger:
        entry = record(ledger, call_id, verdict, should_be=should_be, note=note, user=user, tiers=tiers,
                       allow_unstored=allow_unstored)
    render.feedback_recorded(entry, json_output)


@app.command()
def explain(
    call_id: Annotated[str, typer.Argument(help="A call id (call_id in ask --json) or a request id.", show_default=False)],
    json_output: JsonOption = False,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Why a request went where it went: classifier, score, thresholds, config, variant, every attempt, feedback.

    Example: mmr explain 01JDX7Q9M4N8R2T5V6W7X8Y9Z0
    """
    from .errors import ConfigError
    from .reports.explain import explain as explain_call
    from .ledger import Ledger

    try:
        current = _load_config(config).config_hash
    except ConfigError as e:
        render.note(f"the config could not be loaded ({e}); not checking whether the request ran under it")
        current = None
    with Ledger.for_reading(_ledger_path(db)) as ledger:
        report = explain_call(ledger, call_id, current)
    render.explain(report, json_output)


@app.command()
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

    from .reports.health import health_report
    from .reports.when import parse_when
    from .ledger import Ledger, resolve_db_path

    cfg = _load_config(config)
    now = datetime.now(timezone.utc)
    window = now - parse_when(since, now=now)
    if window.total_seconds() <= 0:
        raise UsageError(f"--since must reach into the past, got {since!r}")
    path = resolve_db_path(db)
    if path.exists():
        with Ledger.for_reading(path) as ledger:
            rows = health_report(ledger, cfg, window, now.timestamp())
    else:
        render.note(f"no ledger yet at {path}: nothing has been recorded")
        rows = health_report(None, cfg, window, now.timestamp())
    render.health(rows, json_output)


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

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
            render.error("interrupted")
        return result if isinstance(result, int) else 0
    except MmrError as e:
        if os.environ.get("MMR_DEBUG"):
            import traceback

            traceback.print_exc()
        render.error(str(e))
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except click.NoArgsIsHelpError as e:
        print(e.format_message())
        return 0
    except click.UsageError as e:
        hint = f" (see 'mmr {e.ctx.info_name} --help')" if e.ctx is not None and e.ctx.info_name != "mmr" else ""
        render.error(e.format_message() + hint)
        return EXIT_USAGE
    except click.ClickException as e:
        render.error(e.format_message())
        return e.exit_code
    except (KeyboardInterrupt, typer.Abort):
        render.error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the last line of defence
        if os.environ.get("MMR_DEBUG"):
            raise
        render.error(f"internal error: {type(e).__name__}: {e} (set MMR_DEBUG=1 for the traceback)")
        return EXIT_INTERNAL


def run() -> None:
    """Console-script entry point."""
    from .process import exit_now

    exit_now(main())
