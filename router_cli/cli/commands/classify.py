"""``mmr classify``: the tier a prompt (or each JSONL row on stdin) would be routed to; no model is called."""

from __future__ import annotations

import sys
from typing import Annotated, Iterator

import typer

from ...errors import UsageError
from ..common import classifiers, load_config, read_prompt
from ..options import ClassifierOption, ConfigOption, JsonOption, BlendModelOption, KnnModelOption, MlModelOption, PromptArgument


def classify(
    prompt: PromptArgument = None,
    classifier: ClassifierOption = None,
    json_output: JsonOption = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="Read JSONL rows with 'prompt' (and optional 'id') on stdin; one decision per line.")] = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="With --jsonl: report a bad line as an error row and go on.")] = False,
    ml_model: MlModelOption = None,
    knn_model: KnnModelOption = None,
    blend_model: BlendModelOption = None,
    config: ConfigOption = None,
) -> None:
    """Print the tier a prompt would be routed to, without calling any model.

    Example: mmr classify "Write code to parse a CSV file"  # -> complex
    """
    from ...render.text import decision, decision_json, jsonl_row

    cfg = load_config(config, ml_model, knn_model, blend_model)
    name = classifier or cfg.classifier
    chosen = classifiers(cfg, [name])[name]
    if not jsonl:
        decision(chosen.classify(read_prompt(prompt)), json_output)
        return
    if prompt is not None:
        raise UsageError("--jsonl reads prompts from stdin; give no PROMPT argument")
    for number, row in _stdin_rows():
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            message = f"stdin:{number}: {row if isinstance(row, str) else 'expected an object with a non-empty prompt'}"
            if not skip_bad:
                raise UsageError(message) from None
            jsonl_row({"line": number, "error": message})
            continue
        jsonl_row({**({"id": row["id"]} if "id" in row else {}), **decision_json(chosen.classify(row["prompt"]))})


def _stdin_rows() -> Iterator[tuple[int, object]]:
    """(line number, parsed value) of each non-blank stdin line; a line that is not usable JSON gives its reason as a str."""
    from ...jsonl import NotJSON, check_length, lines, loads

    encoding, errors = sys.stdin.encoding or "utf-8", sys.stdin.errors or "strict"
    for number, raw in enumerate(lines(sys.stdin.buffer), 1):
        try:
            check_length(raw)  # before decoding: lines() may have cut a character in two
            line = raw.decode(encoding, errors)
            if number == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark is not part of the first row
            if not line.strip():
                continue
            yield number, loads(line)
        except UnicodeDecodeError:
            yield number, "not UTF-8 text"
        except NotJSON as e:
            yield number, str(e)
