"""``mmr eval`` (score classifiers on labelled data, or replay the ledger) and ``mmr train``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ...errors import UsageError
from ..common import classifiers, ledger_path, ledger_target_checked, load_config, window, write_file
from ..options import BlendModelOption, ConfigOption, DbOption, JsonOption, KnnModelOption, MlModelOption, SkipBadOption

if TYPE_CHECKING:
    from ...config import Config


def evaluate(
    file: Annotated[Optional[str], typer.Argument(help="Labelled JSONL: prompt and label and/or per-tier outcomes and costs.", show_default=False)] = None,
    classifier: Annotated[Optional[str], typer.Option("--classifier", help="Classifiers to compare, comma-separated (default from config).")] = None,
    json_output: JsonOption = False,
    skip_bad: SkipBadOption = False,
    target_quality: Annotated[float, typer.Option("--target-quality", help="Quality (fraction of premium) the threshold sweep must keep.")] = 0.95,
    confidence: Annotated[float, typer.Option("--confidence", help="Also report each router's quality as the lower bootstrap bound at this confidence (0: not).")] = 0.9,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Also write the cost-quality frontier to this .svg file.")] = None,
    replay: Annotated[bool, typer.Option("--replay", help="Instead of FILE: re-route the ledger's past prompts and estimate their cost; no model is called.")] = False,
    since: Annotated[str, typer.Option("--since", help="With --replay: start (7d, 24h, YYYY-MM-DD...).")] = "30d",
    until: Annotated[Optional[str], typer.Option("--until", help="With --replay: end (default: now).")] = None,
    thresholds: Annotated[Optional[str], typer.Option("--thresholds", help="ml thresholds to try, e.g. simple=0.6,medium=0.5.")] = None,
    tolerate_failures: Annotated[bool, typer.Option("--tolerate-failures", help="Exit 0 even when a classifier that calls a model could not run for some rows (they are scored at its fallback tier).")] = False,
    ml_model: MlModelOption = None,
    knn_model: KnnModelOption = None,
    blend_model: BlendModelOption = None,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Score classifiers on labelled data, next to the always-<tier>, random and oracle baselines;
    or, with --replay, re-route past traffic from the ledger and estimate what it would have cost.

    A classifier that calls a model (llm) and could not run for some rows is said so on stderr,
    counted ("failures"), and the command exits 5 unless --tolerate-failures.

    Example: mmr eval labeled.jsonl --classifier rules,ml --json; mmr eval --replay --since 30d --classifier ml
    """
    from ...labelled import read_labelled_file
    from ...reports.evaluate import evaluate as score, mark_in_sample, mark_promised
    from ...render.charts import frontier_svg
    from ...render.tables import eval_report
    from ...render.text import note
    from ...reports.thresholds import with_thresholds

    cfg = load_config(config, ml_model, knn_model, blend_model)  # evaluate and replay price it when they need prices
    if thresholds is not None:
        cfg = with_thresholds(cfg, thresholds)
    names = [n.strip() for n in (classifier or cfg.classifier).split(",") if n.strip()]
    if replay:
        _replay(cfg, names, file, since, until, db, json_output)
        return
    if file is None:
        raise UsageError("give a labelled FILE, or --replay to re-route the ledger's past prompts")
    chosen = classifiers(cfg, names)
    if not 0 < target_quality <= 1:
        raise UsageError(f"--target-quality must be in (0, 1], got {target_quality:g}")
    if plot is not None and not plot.lower().endswith(".svg"):
        raise UsageError(f"--plot writes SVG: give a file name ending in .svg, not {plot!r}")
    labelled = read_labelled_file(file, cfg.tier_names, skip_bad=skip_bad)
    for problem in labelled.problems:
        note(f"skipped {problem}")
    if not 0 <= confidence < 1:
        raise UsageError(f"--confidence must be in [0, 1) (0: no bound), got {confidence:g}")
    report = score(labelled.rows, chosen, cfg, target_quality=target_quality, confidence=confidence or None)
    for name in mark_in_sample(report, chosen, labelled.sha256):
        note(f"{name}: in-sample: {file} is the data its model was trained on, so these scores overstate how it "
             "routes prompts it has not seen (its held-out scores are in the model file's training section)")
    mark_promised(report, chosen)
    if plot is not None:
        write_file(plot, "--plot", frontier_svg(report))
    eval_report(report, cfg.tier_names, json_output)
    _check_failures(report, tolerate_failures)


def _check_failures(report: dict, tolerate: bool) -> None:
    """A classifier that could not run was not scored as itself: say so, and fail unless tolerated."""
    from ...errors import AllAttemptsFailed
    from ...render.text import note

    failed = {name: m for name, m in report["classifiers"].items() if m.get("failures")}
    for name, m in failed.items():
        note(f"the {name} classifier could not run for {m['failures']} of {report['rows']} rows, scored at its "
             f"fallback tier: {m['first_failure']}")
    if failed and not tolerate:
        names = ", ".join(failed)
        raise AllAttemptsFailed(f"{names}: the classifier could not run for some rows, so its scores are not its own: "
                                "fix the cause above, or pass --tolerate-failures to keep them")


def _replay(cfg: Config, names: list[str], file: str | None, since: str, until: str | None, db: str | None,
            json_output: bool) -> None:
    from ...ledger import open_for_reading
    from ...render.tables import replay_report
    from ...reports.replay import check_classifiers, replay

    if file is not None:
        raise UsageError("--replay reads the ledger; give no FILE")
    if cfg.ml_thresholds and "ml" not in names:
        raise UsageError("--thresholds sets the ml classifier's thresholds; add --classifier ml")
    check_classifiers(names)
    start, end = window(since, until)
    chosen = classifiers(cfg, names)
    with open_for_reading(ledger_target_checked(db, cfg)) as ledger:
        report = replay(ledger, cfg, chosen, start, end)
    replay_report(report, json_output)


def train(
    file: Annotated[Optional[str], typer.Argument(help="Labelled JSONL (labels and/or per-tier outcomes).", show_default=False)] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Where to write the model (JSON).")] = "",
    target_quality: Annotated[float, typer.Option("--target-quality", help="Fraction of the premium tier's quality to keep (held-out folds).")] = 0.95,
    confidence: Annotated[float, typer.Option("--confidence", help="Keep --target-quality at the lower bootstrap bound at this confidence, not just on average (0: on average).")] = 0.9,
    router: Annotated[str, typer.Option("--router", help="What to train: ml (TF-IDF), knn (sentence embeddings; needs the embed extra) or blend (two of them).")] = "ml",
    parts: Annotated[str, typer.Option("--parts", help="With --router blend: the two routers to blend, of ml, knn and rules (the weight is chosen on held-out folds).")] = "ml,knn",
    folds: Annotated[int, typer.Option("--folds", help="Cross-validation folds that pick lambda (the price of quality).")] = 5,
    skip_bad: SkipBadOption = False,
    from_ledger: Annotated[bool, typer.Option("--from-ledger", help="Instead of FILE: labels from the ledger's cascades and feedback (see mmr labels).")] = False,
    since: Annotated[str, typer.Option("--since", help="With --from-ledger: start (30d, YYYY-MM-DD...).")] = "30d",
    until: Annotated[Optional[str], typer.Option("--until", help="With --from-ledger: end (default: now).")] = None,
    config: ConfigOption = None,
    db: DbOption = None,
) -> None:
    """Train a router on labelled data: ml (needs the ml extra: scikit-learn), knn or blend (also the embed extra).

    Example: mmr train labeled.jsonl -o router.json --target-quality 0.95; mmr train --from-ledger --since 30d -o router.json;
    mmr train labeled.jsonl --router knn -o knn.npz --target-quality 0.95 --confidence 0.9;
    mmr train labeled.jsonl --router blend --parts ml,rules -o blend.json
    """
    from ...labelled import read_labelled_file
    from ...render.text import note, trained

    if router not in ("ml", "knn", "blend"):
        raise UsageError(f"--router: expected ml, knn or blend, got {router!r}")
    if router == "blend":
        from ...classify.blend_train import parse_parts

        blend_parts = parse_parts(parts)
    elif parts != "ml,knn":
        raise UsageError("--parts goes with --router blend")
    if not 0 <= confidence < 1:
        raise UsageError(f"--confidence must be in [0, 1) (0: keep the target on average), got {confidence:g}")
    if not 2 <= folds <= 100:
        raise UsageError(f"--folds must be between 2 and 100, got {folds}")
    if not output:
        raise UsageError("give --output FILE: where to write the model")
    if (file is None) == (not from_ledger):
        raise UsageError("give a labelled FILE or --from-ledger (one of the two)")
    cfg = load_config(config)  # train prices it when rows carry no costs
    if from_ledger:
        from ...ledger import open_for_reading
        from ...reports.training import ledger_training_rows

        start, end = window(since, until)
        with open_for_reading(ledger_path(db, config)) as ledger:
            data = ledger_training_rows(ledger, cfg.tier_names, start, end)
        note(data.summary)
        rows, digest = data.rows, data.sha256
    else:
        assert file is not None
        labelled = read_labelled_file(file, cfg.tier_names, skip_bad=skip_bad)
        for problem in labelled.problems:
            note(f"skipped {problem}")
        rows, digest = labelled.rows, labelled.sha256
    bound = confidence or None
    if router == "knn":
        from ...classify.knn import save
        from ...classify.knn_train import train_knn

        header, arrays = train_knn(rows, cfg, target_quality=target_quality, folds=folds, data_sha256=digest,
                                   on_progress=note, confidence=bound)
        save(output, header, arrays)
        trained(header, output)
        return
    if router == "blend":
        from ...classify.blend_train import train_blend

        model = train_blend(rows, cfg, output, parts=blend_parts, target_quality=target_quality, folds=folds,
                            data_sha256=digest, on_progress=note, confidence=bound)
    else:
        from ...classify.ml_train import train as train_model

        model = train_model(rows, cfg, target_quality=target_quality, folds=folds, data_sha256=digest,
                            on_progress=note, confidence=bound)
    write_file(output, "--output", json.dumps(model, separators=(",", ":")) + "\n")
    trained(model, output)
