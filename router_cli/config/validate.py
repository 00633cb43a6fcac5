"""Parsed YAML to a :class:`Config`: what routes where (providers, tiers and their models,
the classifier, experiments); the policies are checked in validate_policy.py.

Unknown keys are errors and every problem names its key path, so a typo never
silently changes routing.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from typing import Any

from ..errors import redact
from . import validate_latency as latency
from . import validate_phrasing as wording
from . import validate_policy as policy
from .checks import Checks, join, kind
from .patterns import backtracking_risk
from .schema import (
    CLASSIFIERS, MAX_OUTPUT_TOKENS, PROMPT_CACHE_MODES, MAX_SECONDS, PROVIDER_TYPES, STANDARD_KEY_ENV, SEED_COMPLEX_PATTERNS,
    SEED_SIMPLE_PATTERNS, Config,
    EmbeddingConfig, Experiment, LocalModel, LongContext, ModelSpec, Phrasing, Price, ProviderSpec, RulesConfig, Tier,
    Variant,
)

TOP_KEYS = {"version", "baseline_tier", "providers", "tiers", "classifier", "retry", "ledger", "cascade",
            "breaker", "budgets", "cache", "experiments", "prompt_cache", "serve", "templates"}
_REMOTE_KEYS = {"type", "api_key_env", "base_url", "timeout"} | wording.WORDING_KEYS | latency.PROVIDER_KEYS
_LOCAL_KEYS = {"type", "model_path", "n_ctx", "n_threads", "chat_format"} | wording.WORDING_KEYS
_WORD = re.compile(r"[A-Za-z0-9_.\-]+")
# OpenAI reasoning models take max_completion_tokens and reject temperature.
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)(?!.*-chat)")


def validate(data: Any, source: str) -> Config:
    """The Config that ``data`` (a parsed tiers file) describes; ``source`` names the file in errors."""
    c = Checks(source)
    if data is None:
        raise c.fail("", "the file is empty")
    top = c.mapping(data, "", TOP_KEYS, {"tiers", "providers"})
    if "version" in top and top["version"] != 1:
        raise c.fail("version", f"unsupported version {top['version']!r} (this mmr reads version 1)")
    words = wording.Wordings(c, top.get("templates", {}))
    providers = _providers(c, top["providers"], words)
    tier_wording: dict[str, Phrasing | None] = {}
    tiers = _tiers(c, top["tiers"], providers, words, tier_wording)
    names = [t.name for t in tiers]
    baseline = c.tier(top.get("baseline_tier", names[-1]), "baseline_tier", names)
    classifier, rules, ml_model, embedding = _classifier(c, top.get("classifier", {}), names, providers)
    section = top.get("classifier", {})
    knn_model, blend_model = (c.relative(c.string(section[key], f"classifier.{key}")) if key in section else None
                              for key in ("knn_model", "blend_model"))
    experiments = _experiments(c, top.get("experiments", {}), names, providers, words)
    tiers, experiments = wording.inherit(tiers, experiments, tier_wording)
    return Config(
        source=source,
        tiers=tiers,
        providers=providers,
        baseline_tier=baseline,
        classifier=classifier,
        rules=rules,
        ml_model=ml_model,
        knn_model=knn_model,
        blend_model=blend_model,
        embedding=embedding,
        retry=policy.retry(c, top.get("retry", {})),
        ledger=policy.ledger(c, top.get("ledger", {})),
        cascade=policy.cascade(c, top.get("cascade", {}), names),
        breaker=policy.breaker(c, top.get("breaker", {})),
        budgets=policy.budgets(c, top.get("budgets", []), names),
        cache=policy.cache(c, top.get("cache", {})),
        serve=policy.serve(c, top.get("serve", {})),
        experiments=experiments,
        prompt_cache=_prompt_cache(c, top.get("prompt_cache", "auto")),
        templates=words.templates,
    )


def _prompt_cache(c: Checks, value: Any) -> str:
    if isinstance(value, bool):  # YAML reads an unquoted off as false (and on as true)
        value = "auto" if value else "off"
    if value not in PROMPT_CACHE_MODES:
        raise c.fail("prompt_cache", f"expected one of {', '.join(PROMPT_CACHE_MODES)}, got {value!r}")
    return str(value)


def _providers(c: Checks, value: Any, words: wording.Wordings) -> dict[str, ProviderSpec]:
    section = c.names(value, "providers")
    if not section:
        raise c.fail("providers", "at least one provider is required")
    out = {}
    for name, entry in section.items():
        path = f"providers.{name}"
        if not isinstance(name, str) or not _WORD.fullmatch(name):
            raise c.fail(path, "a provider name must be a word (letters, digits, _ . -)")
        if not isinstance(entry, dict):
            raise c.fail(path, f"expected a mapping, got {kind(entry)}")
        ptype = entry.get("type", name)
        if ptype not in PROVIDER_TYPES:
            raise c.fail(join(path, "type"), f"unknown provider type {ptype!r}; valid types: {', '.join(PROVIDER_TYPES)}")
        if ptype == "local":
            out[name] = ProviderSpec(name, ptype, None, local=_local(c, entry, path), phrasing=words.own(entry, path))
            continue
        entry = c.mapping(entry, path, _REMOTE_KEYS)
        key_env = entry.get("api_key_env", STANDARD_KEY_ENV[ptype])
        if key_env is not None:
            key_env = c.string(key_env, join(path, "api_key_env"))
            if not is_key_env_name(key_env):  # never echo the value: it may be a key pasted in the wrong place
                raise c.fail(join(path, "api_key_env"), _KEY_ENV_RULE)
        base_url = entry.get("base_url")
        if base_url is not None:
            base_url = c.string(base_url, join(path, "base_url"))
            if not re.match(r"https?://", base_url):
                raise c.fail(join(path, "base_url"), f"expected an http(s) URL, got {redact(repr(base_url), None)}")
        timeout = c.number(entry.get("timeout", 60), join(path, "timeout"), minimum=0.001, maximum=MAX_SECONDS)
        out[name] = ProviderSpec(name, ptype, key_env, base_url, timeout, phrasing=words.own(entry, path),
                                 first_token_timeout=latency.optional_seconds(c, entry, "first_token_timeout", path))
    return out


_KEY_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
_KEY_PREFIX = re.compile(r"(?i)(sk|gsk|xai|pk|rk)_")
_KEY_ENV_RULE = ("must be the NAME of an environment variable (such as OPENAI_API_KEY); this looks like a key, not a "
                 "variable name: a name here is upper-case letters, digits and _, at most 64 characters, no part between "
                 "underscores longer than 24 (the value is not shown)")


def is_key_env_name(name: str) -> bool:
    """Whether ``name`` may be an ``api_key_env``: a short upper-case variable name, nothing shaped like a key.

    Keys are long runs of mixed-case letters and digits, or carry a known prefix; variable names are
    upper-case words joined by underscores.
    """
    return (bool(_KEY_ENV_NAME.fullmatch(name)) and not _KEY_PREFIX.match(name)
            and max(len(part) for part in name.split("_")) <= 24)


def _local(c: Checks, value: Any, path: str) -> LocalModel:
    """A ``local`` provider: the model file is checked when it loads, so a
    missing file fails that model (and the router falls back), not the config."""
    entry = c.mapping(value, path, _LOCAL_KEYS)
    model_path = entry.get("model_path")
    if model_path is not None:
        model_path = c.relative(os.path.expanduser(c.string(model_path, join(path, "model_path"))))
    n_threads = entry.get("n_threads")
    chat_format = entry.get("chat_format")
    return LocalModel(
        model_path=model_path,
        n_ctx=c.integer(entry.get("n_ctx", 2048), join(path, "n_ctx"), minimum=64, maximum=1_048_576),
        n_threads=None if n_threads is None else c.integer(n_threads, join(path, "n_threads"), minimum=1, maximum=1024),
        chat_format=None if chat_format is None else c.string(chat_format, join(path, "chat_format")),
        where=f"{c.source}: {path}",
    )


def _tiers(c: Checks, value: Any, providers: dict[str, ProviderSpec], words: wording.Wordings,
           tier_wording: dict[str, Phrasing | None]) -> tuple[Tier, ...]:
    """The tiers; ``tier_wording`` gets each tier's own wording (given to its models by wording.inherit)."""
    if not isinstance(value, list) or not value:
        raise c.fail("tiers", f"expected a non-empty list of tiers, got {kind(value)}")
    tiers, seen = [], set()
    for i, entry in enumerate(value):
        path = f"tiers[{i}]"
        entry = c.mapping(entry, path, {"name", "models", "strategy"} | wording.WORDING_KEYS | latency.TIER_KEYS,
                          {"name", "models"})
        name = c.string(entry["name"], join(path, "name"))
        strategy = entry.get("strategy", "order")
        if strategy not in ("order", "weighted"):
            raise c.fail(join(path, "strategy"), f"expected order or weighted, got {strategy!r}")
        if name in seen:
            raise c.fail(join(path, "name"), f"duplicate tier name {name!r}")
        seen.add(name)
        specs = _models(c, entry["models"], join(path, "models"), providers, words)
        if strategy == "weighted" and not any(m.weight > 0 for m in specs):
            raise c.fail(join(path, "models"), "with strategy weighted, at least one model needs a weight above 0")
        tier_wording[name] = words.own(entry, path)
        tiers.append(Tier(name, specs, strategy, phrasing=tier_wording[name],
                          hedge=latency.tier_hedge(c, entry, path, len(specs))))
    return tuple(tiers)


def _models(c: Checks, value: Any, path: str, providers: dict[str, ProviderSpec],
            words: wording.Wordings) -> tuple[ModelSpec, ...]:
    if not isinstance(value, list) or not value:
        raise c.fail(path, f"expected a non-empty list of models, got {kind(value)}")
    return tuple(_model(c, m, f"{path}[{j}]", providers, words) for j, m in enumerate(value))


def _model(c: Checks, value: Any, path: str, providers: dict[str, ProviderSpec], words: wording.Wordings) -> ModelSpec:
    entry = c.mapping(value, path, {"provider", "model", "price", "max_tokens", "reasoning", "weight"}
                      | wording.MODEL_KEYS | latency.MODEL_KEYS,
                      {"provider", "model"})
    provider = c.string(entry["provider"], join(path, "provider"))
    if provider not in providers:
        raise c.fail(join(path, "provider"), f"unknown provider {provider!r}; defined providers: {', '.join(providers)}")
    model = c.string(entry["model"], join(path, "model"))
    max_tokens = c.integer(entry.get("max_tokens", 1024), join(path, "max_tokens"), minimum=1, maximum=MAX_OUTPUT_TOKENS)
    reasoning = entry.get("reasoning")
    if reasoning is None:
        reasoning = providers[provider].type == "openai" and bool(_REASONING_MODEL.match(model))
    else:
        reasoning = c.boolean(reasoning, join(path, "reasoning"))
    return ModelSpec(
        provider=provider,
        model=model,
        price=_price(c, entry.get("price"), join(path, "price"), providers[provider].type),
        max_tokens=max_tokens,
        reasoning=reasoning,
        weight=c.number(entry.get("weight", 1), join(path, "weight")),
        where=path,
        phrasing=words.own(entry, path) or providers[provider].phrasing,
        stop=wording.stop(c, entry["stop"], join(path, "stop")) if "stop" in entry else (),
        temperature=None if "temperature" not in entry else wording.temperature(
            c, entry["temperature"], join(path, "temperature"), providers[provider].type, reasoning),
        **latency.model(c, entry, path, providers[provider].type),
    )


_PRICE_KEYS = {"input", "output", "cache_read", "cache_write"}


def _price(c: Checks, value: Any, path: str, provider_type: str) -> Price:
    """A model's ``price``: absent (the maintained source's, resolved when a command needs
    prices; a local model's is 0), ``free``, or USD per 1M tokens of each class."""
    if value is None:
        return Price(Decimal(0), Decimal(0), source="local") if provider_type == "local" else Price.unpriced()
    if value == "free":
        return Price(Decimal(0), Decimal(0), Decimal(0), Decimal(0), source="free")
    if isinstance(value, str):
        raise c.fail(path, f"expected free or a mapping of prices (input, output, cache_read, cache_write, "
                           f"long_context), got {value!r}")

    def rates(section: dict, where: str) -> tuple[Decimal, Decimal, Decimal | None, Decimal | None]:
        money = {k: c.money(section[k], join(where, k)) if k in section else None for k in _PRICE_KEYS}
        return money["input"] or Decimal(0), money["output"] or Decimal(0), money["cache_read"], money["cache_write"]

    entry = c.mapping(value, path, _PRICE_KEYS | {"long_context"}, {"input", "output"})
    long_context = None
    if "long_context" in entry:
        where = join(path, "long_context")
        tier = c.mapping(entry["long_context"], where, _PRICE_KEYS | {"above"}, {"above", "input", "output"})
        above = c.integer(tier["above"], join(where, "above"), minimum=1, maximum=100_000_000)
        long_context = LongContext(above, *rates(tier, where))
    return Price(*rates(entry, path), long_context=long_context)


def _classifier_name(c: Checks, value: Any, path: str) -> str:
    name = c.string(value, path)
    if name not in CLASSIFIERS:
        raise c.fail(path, f"unknown classifier {name!r}; valid classifiers: {', '.join(CLASSIFIERS)}")
    return name


def _classifier(c: Checks, value: Any, tiers: list[str], providers: dict[str, ProviderSpec]):
    """The ``classifier`` section: its name, the rules, the ml model file, the embedding settings."""
    section = c.mapping(value, "classifier", {"name", "rules", "ml_model", "knn_model", "blend_model", "embedding"})
    ml_model = section.get("ml_model")
    if ml_model is not None:
        ml_model = c.relative(c.string(ml_model, "classifier.ml_model"))
    embedding = _embedding(c, section["embedding"], providers) if "embedding" in section else None
    name = _classifier_name(c, section.get("name", "rules"), "classifier.name")
    return name, _rules(c, section.get("rules", {}), tiers), ml_model, embedding


def _embedding(c: Checks, value: Any, providers: dict[str, ProviderSpec]) -> EmbeddingConfig:
    e = c.mapping(value, "classifier.embedding", {"backend", "provider", "model", "labelled", "method", "k"})
    backend = e.get("backend", "openai")
    if backend not in ("openai", "local"):
        raise c.fail("classifier.embedding.backend", f"expected openai or local, got {backend!r}")
    provider = None
    if backend == "openai":
        for key in ("provider", "model"):
            if key not in e:
                raise c.fail(f"classifier.embedding.{key}", "required key is missing")
        provider = c.string(e["provider"], "classifier.embedding.provider")
        if provider not in providers or providers[provider].type != "openai":
            openai_like = [n for n, p in providers.items() if p.type == "openai"]
            raise c.fail("classifier.embedding.provider",
                         f"must name an OpenAI-compatible provider ({', '.join(openai_like) or 'none defined'}), got {provider!r}")
    elif "provider" in e or "model" in e:
        raise c.fail("classifier.embedding", "backend: local runs all-MiniLM-L6-v2 itself; drop provider and model")
    method = e.get("method", "centroid")
    if method not in ("centroid", "knn"):
        raise c.fail("classifier.embedding.method", f"expected centroid or knn, got {method!r}")
    labelled = e.get("labelled")
    model = c.string(e["model"], "classifier.embedding.model") if backend == "openai" else "local/all-MiniLM-L6-v2"
    return EmbeddingConfig(
        provider, model,
        None if labelled is None else c.relative(c.string(labelled, "classifier.embedding.labelled")),
        method, c.integer(e.get("k", 7), "classifier.embedding.k", minimum=1, maximum=1000), backend,
    )


def _rules(c: Checks, value: Any, tiers: list[str]) -> RulesConfig:
    rules = c.mapping(value, "classifier.rules", {"patterns", "short_prompt_chars", "short_prompt_tier", "default_tier"})
    if "patterns" in rules:
        patterns_in = c.mapping(rules["patterns"], "classifier.rules.patterns", set(tiers))
    else:
        patterns_in = {tiers[-1]: list(SEED_COMPLEX_PATTERNS), tiers[0]: list(SEED_SIMPLE_PATTERNS)}
    patterns = {}
    for tier, items in patterns_in.items():
        path = f"classifier.rules.patterns.{tier}"
        if not isinstance(items, list):
            raise c.fail(path, f"expected a list of regular expressions, got {kind(items)}")
        for j, pattern in enumerate(items):
            c.string(pattern, f"{path}[{j}]")
            try:
                re.compile(pattern)
            except (re.error, OverflowError, RecursionError) as e:
                raise c.fail(f"{path}[{j}]", f"invalid regular expression {pattern!r}: {e}") from None
            if (risk := backtracking_risk(pattern)) is not None:
                raise c.fail(f"{path}[{j}]", f"pattern {pattern!r} could hang on a long prompt: {risk}")
        patterns[tier] = tuple(items)
    short_chars = c.integer(rules.get("short_prompt_chars", 50), "classifier.rules.short_prompt_chars")
    short_tier = c.tier(rules.get("short_prompt_tier", tiers[0]), "classifier.rules.short_prompt_tier", tiers)
    default_tier = c.tier(rules.get("default_tier", tiers[len(tiers) // 2]), "classifier.rules.default_tier", tiers)
    return RulesConfig(patterns, short_chars, short_tier, default_tier)


def _experiments(c: Checks, value: Any, tiers: list[str], providers: dict[str, ProviderSpec],
                 words: wording.Wordings) -> tuple[Experiment, ...]:
    """A/B experiments: no two may change the same field (the classifier, or one tier's models)."""
    section = c.names(value, "experiments")
    out: list[Experiment] = []
    claimed: dict[str, str] = {}  # field -> the experiment that changes it
    for name, entry in section.items():
        path = f"experiments.{name}"
        if not isinstance(name, str) or not _WORD.fullmatch(name):
            raise c.fail(path, "an experiment name must be a word (letters, digits, _ . -)")
        entry = c.mapping(entry, path, {"variants"}, {"variants"})
        vpath = f"{path}.variants"
        variants_in = c.names(entry["variants"], vpath)
        if not variants_in:
            raise c.fail(vpath, "at least one variant is required")
        variants: list[Variant] = []
        fields: dict[str, str] = {}  # field -> where in this experiment it is changed
        for vname, v in variants_in.items():
            p = f"{vpath}.{vname}"
            if not isinstance(vname, str) or not _WORD.fullmatch(vname):
                quote = f"; YAML reads {vname} as a boolean: quote the name" if isinstance(vname, bool) else ""
                raise c.fail(p, f"a variant name must be a word (letters, digits, _ . -){quote}")
            v = c.mapping(v, p, {"weight", "classifier", "ml_model", "thresholds", "tiers"}, {"weight"})
            variant = _variant(c, vname, v, p, tiers, providers, words)
            variants.append(variant)
            for key in ("classifier", "ml_model", "thresholds"):
                if key in v:  # the classifier and its settings are one field
                    fields.setdefault("the classifier", f"{p}.{key}")
            for tier in variant.tiers:
                fields.setdefault(f"tier {tier}'s models", f"{p}.tiers.{tier}")
        total = sum(v.weight for v in variants)
        if not total > 0:
            raise c.fail(vpath, f"the weights must sum to a positive number (they sum to {total:g})")
        for what, where in fields.items():
            if what in claimed:
                raise c.fail(where, f"experiment {claimed[what]!r} already changes {what}; two experiments may not "
                                    "claim the same field (make them variants of one experiment)")
            claimed[what] = name
        out.append(Experiment(name, tuple(variants)))
    return tuple(out)


def _variant(c: Checks, name: str, v: dict, path: str, tiers: list[str], providers: dict[str, ProviderSpec],
             words: wording.Wordings) -> Variant:
    weight = c.number(v["weight"], f"{path}.weight")
    classifier = None if "classifier" not in v else _classifier_name(c, v["classifier"], f"{path}.classifier")
    ml_model = None if "ml_model" not in v else c.relative(c.string(v["ml_model"], f"{path}.ml_model"))
    thresholds = None
    if "thresholds" in v:
        raw = c.mapping(v["thresholds"], f"{path}.thresholds", set(tiers[:-1]))
        thresholds = {t: c.number(x, f"{path}.thresholds.{t}", maximum=1) for t, x in raw.items()}
    tier_models = {}
    if "tiers" in v:
        raw = c.mapping(v["tiers"], f"{path}.tiers", set(tiers))
        for tier, models in raw.items():
            tier_models[tier] = _models(c, models, f"{path}.tiers.{tier}", providers, words)
    return Variant(name, weight, classifier, ml_model, thresholds, tier_models)
