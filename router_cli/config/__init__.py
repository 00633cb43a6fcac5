"""The tiers file: its schema (schema.py), finding and reading it (load.py), and its validation
(validate.py, validate_policy.py, validate_phrasing.py; phrasing.py: how a model's calls are worded). Imports nothing of mmr above ``errors``."""

from .load import DEFAULT_CONFIG, load_config, parse_config, read_config, resolve_config_path, user_config_dir
from .phrasing import Phrasing
from .schema import (
    CLASSIFIERS, GATES, MAX_OUTPUT_TOKENS, MAX_RETRIES, MAX_SECONDS, MAX_USD, PROVIDER_TYPES, STORE_MODES,
    BreakerConfig, Budget, CacheConfig, CascadeConfig, Config, EmbeddingConfig, Experiment, LedgerConfig, LocalModel,
    LongContext, ModelSpec, Price, ProviderSpec, RetryPolicy, RulesConfig, ServeConfig, ServeKey, Slo, Tier, Variant,
)

__all__ = [
    "CLASSIFIERS", "DEFAULT_CONFIG", "GATES", "MAX_OUTPUT_TOKENS", "MAX_RETRIES", "MAX_SECONDS", "MAX_USD",
    "PROVIDER_TYPES", "STORE_MODES", "BreakerConfig", "Budget", "CacheConfig", "CascadeConfig", "Config",
    "EmbeddingConfig", "Experiment", "LedgerConfig", "LocalModel", "LongContext", "ModelSpec", "Phrasing", "Price", "ProviderSpec",
    "RetryPolicy", "RulesConfig", "ServeConfig", "ServeKey", "Slo", "Tier", "Variant", "load_config", "parse_config", "read_config",
    "resolve_config_path",
    "user_config_dir",
]
