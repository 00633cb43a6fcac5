"""What several commands do the same way: read the prompt, load the config, find the ledger,
read a time window, write an output file. Errors a user can act on are UsageErrors."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from ..config import Config
    from ..ledger.paths import LedgerURL


def read_prompt(prompt: str | None) -> str:
    """The prompt argument, or stdin for ``-`` or nothing: non-empty UTF-8 text."""
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
    from ..engine.options import check_text

    check_text(text, "the prompt")
    return text


def load_config(config: str | None, ml_model: str | None = None, knn_model: str | None = None,
                blend_model: str | None = None, *, prices: bool = False) -> Config:
    """The config (``--config`` or the default search), with ``--ml-model`` (``--knn-model``,
    ``--blend-model``) when given; with ``prices``, every model priced (the maintained source's
    price where the config gives none: a model with none is a ConfigError here, before anything runs)."""
    from dataclasses import replace

    from ..config import load_config as load

    cfg = load(config)
    if prices:
        from ..prices import resolve_prices

        cfg = resolve_prices(cfg)
    if ml_model is not None:
        cfg = replace(cfg, ml_model=ml_model)
    if knn_model is not None:
        cfg = replace(cfg, knn_model=knn_model)
    if blend_model is not None:
        cfg = replace(cfg, blend_model=blend_model)
    return cfg


def keyless_default(cfg: Config) -> tuple[Config, str]:
    """The built-in default config when no provider key is set: with the local model in every tier
    when the local tier is installed (said on stderr), else unchanged with the hint to add to the
    missing-key error (the other way out). Any other config, or a key set: unchanged, no hint."""
    import os

    from ..config.load import DEFAULT_LABEL

    names = sorted({p.api_key_env for p in cfg.providers.values() if p.api_key_env})
    if cfg.source != DEFAULT_LABEL or "local" in cfg.providers or any(os.environ.get(n) for n in names):
        return cfg, ""
    from ..providers.local import LOCAL_INSTALL, local_tier_installed, with_local_model
    from ..render.text import note

    if not local_tier_installed():
        return cfg, f"; or answer without a key from a local model, installed with: {LOCAL_INSTALL}"
    note(f"no API key is set ({' or '.join(names)}): the local model answers, in process and free "
         "(set a key to use the built-in providers)")
    return with_local_model(cfg), ""


def ledger_target(db: str | None, config: str | None = None, cfg: Config | None = None) -> Path | LedgerURL:
    """The ledger: ``--db``, else ``$MMR_DB``, else ``ledger.url`` of the config (``cfg``, or read only when
    a tiers file exists), else the default file. A PostgreSQL URL comes back as a ``LedgerURL``."""
    import os

    from ..ledger import resolve_db_path

    if db or os.environ.get("MMR_DB"):
        return resolve_db_path(db)
    if cfg is None:
        from ..config.load import DEFAULT_CONFIG, resolve_config_path

        if resolve_config_path(config) == DEFAULT_CONFIG:
            return resolve_db_path()  # the built-in config names no team ledger
        cfg = load_config(config)
    return resolve_db_path(None, cfg.ledger.url)


def ledger_path(db: str | None, config: str | None = None) -> Path | LedgerURL:
    """The ledger to read; a clear error when nothing has been recorded there."""
    return ledger_target_checked(db, None, config)


def ledger_target_checked(db: str | None, cfg: Config | None, config: str | None = None) -> Path | LedgerURL:
    """:func:`ledger_target` (``cfg`` when already loaded), refused when nothing has been recorded there."""
    path = ledger_target(db, config, cfg)
    if not path.exists():
        raise UsageError(f"no ledger at {path}: nothing has been recorded yet (use --db or $MMR_DB to choose another)")
    return path


def window(since: str, until: str | None) -> tuple[datetime, datetime]:
    """``--since`` / ``--until`` as a time window ending now by default."""
    from datetime import datetime, timezone

    from ..reports.when import parse_when

    start = parse_when(since)
    end = parse_when(until, option="--until") if until else datetime.now(timezone.utc)
    if end <= start:
        raise UsageError("--until is not after --since")
    return start, end


def write_file(path: str, option: str, text: str) -> None:
    """Write ``text`` to ``path``, given by ``option``; a clear error when it cannot be written."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise UsageError(f"{option}: cannot write {path}: {e.strerror}") from None


def classifiers(cfg: Config, names: list[str]) -> dict:
    """The named classifiers; those that call a model share one router, without a ledger."""
    from ..classify import NEEDS_CALLER, get_classifier

    caller = None
    if NEEDS_CALLER.intersection(names):
        from ..engine.router import Router

        caller = Router(cfg)
    return {name: get_classifier(name, cfg, caller) for name in dict.fromkeys(names)}
