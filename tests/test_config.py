"""Config: the shipped example, resolution order, and one precise error per kind of mistake."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from router_cli.config import DEFAULT_CONFIG, load_config, parse_config, resolve_config_path
from router_cli.config.load import PREBUILT_DEFAULT, ExactFloat, parse_yaml, prebuilt_default
from router_cli.config.validate import validate
from router_cli.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_builtin_default_is_the_example_file():
    assert DEFAULT_CONFIG.read_bytes() == (ROOT / "tiers.example.yaml").read_bytes()


def test_example_has_three_tiers_anthropic_first_openai_second():
    config = load_config(ROOT / "tiers.example.yaml")
    assert config.tier_names == ["simple", "medium", "complex"]
    assert config.baseline_tier == "complex"
    for tier in config.tiers:
        assert [config.providers[m.provider].type for m in tier.models] == ["anthropic", "openai"]
    assert config.tier("simple").models[0].price.source == "unpriced"  # genai-prices' price, resolved when needed
    assert config.providers["anthropic"].api_key_env == "ANTHROPIC_API_KEY"
    assert config.tier("complex").models[1].reasoning  # gpt-5 takes max_completion_tokens


def test_resolution_order(tmp_path, monkeypatch):
    assert resolve_config_path() == DEFAULT_CONFIG
    user = tmp_path / "config" / "mmr" / "tiers.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("x")
    assert resolve_config_path() == user
    Path("tiers.yaml").write_text("x")
    assert resolve_config_path() == Path("tiers.yaml")
    monkeypatch.setenv("MMR_CONFIG", "env.yaml")
    assert resolve_config_path() == Path("env.yaml")
    assert resolve_config_path("flag.yaml") == Path("flag.yaml")


BASE = (ROOT / "tiers.example.yaml").read_text()


@pytest.mark.parametrize(
    "old,new,message",
    [
        ("model: claude-sonnet-4-5\n", "model: claude-sonnet-4-5\n        price: {input: 3.00, output: cheap}\n", "tiers[1].models[0].price.output: not a number: 'cheap'"),
        ("model: claude-sonnet-4-5\n", "model: claude-sonnet-4-5\n        price: {input: -3, output: 15.00}\n", "tiers[1].models[0].price.input: must be an amount between 0 and 1000000"),
        ("model: claude-sonnet-4-5\n", "model: claude-sonnet-4-5\n        price: {input: 3.00}\n", "tiers[1].models[0].price.output: required key is missing"),
        ("max_tokens: 2048\n      - provider: openai", "max_tokens: 0\n      - provider: openai", "tiers[1].models[0].max_tokens: must be between 1 and"),
        ("provider: anthropic\n        model: claude-sonnet-4-5", "provider: antropic\n        model: claude-sonnet-4-5", "tiers[1].models[0].provider: unknown provider 'antropic'; defined providers: anthropic, openai"),
        ("    timeout: 60            # seconds per request", "    timeout: 60\n    api_key: sk-secret", "providers.anthropic.api_key: unknown key"),
        ("api_key_env: OPENAI_API_KEY", "api_key_env: sk-abc123", "providers.openai.api_key_env: must be the NAME of an environment variable"),
        ("baseline_tier: complex", "baseline_tier: premium", "baseline_tier: unknown tier 'premium'"),
        ("  - name: medium", "  - name: simple", "tiers[1].name: duplicate tier name 'simple'"),
        ("        - debug\n", "        - debug(\n", "classifier.rules.patterns.complex[5]: invalid regular expression"),
        ("    default_tier: medium", "    default_tier: huge", "classifier.rules.default_tier: unknown tier 'huge'"),
        ("  store: full", "  store: everything", "ledger.store: expected one of full, preview, hash, none"),
        ("version: 1", "version: 1\nmodels: []", "models: unknown key"),
        ("    type: openai", "    type: gemini", "providers.openai.type: unknown provider type 'gemini'"),
        ("  max_retries: 2", "  max_retries: two", "retry.max_retries: expected an integer"),
        ("    timeout: 60            # seconds per request", "    timeout: " + "9" * 400, "providers.anthropic.timeout: must be a number between"),
        ("  backoff_base: 0.5", "  backoff_base: .nan", "retry.backoff_base: must be a number between"),
        ("model: claude-sonnet-4-5\n", 'model: claude-sonnet-4-5\n        price: {input: "1e999999", output: 15.00}\n', "tiers[1].models[0].price.input: must be an amount between"),
        ("        - debug\n", "        - a{99999999999}\n", "classifier.rules.patterns.complex[5]: invalid regular expression"),
        ("        - debug\n", "        - " + "(" * 1200 + ")" * 1200 + "\n", "classifier.rules.patterns.complex[5]: invalid regular expression"),
        ("  name: ml", "  name: magic", "classifier.name: unknown classifier 'magic'; valid classifiers: blend, embedding, knn, llm, ml, rules"),
        ("baseline_tier: complex", "baseline_tier: complex\nbaseline_tier: simple", "duplicate key 'baseline_tier'"),
        ("api_key_env: OPENAI_API_KEY", "api_key_env: gsk_7f3kAbCdEf0123456789", "providers.openai.api_key_env: must be the NAME"),
        ("  openai:\n    type: openai", "  1:\n    type: openai", "a provider name must be a word"),
    ],
)
def test_errors_name_the_file_and_key_path(old, new, message):
    assert old in BASE
    with pytest.raises(ConfigError) as info:
        parse_config(BASE.replace(old, new, 1), "my-tiers.yaml")
    assert str(info.value).startswith("my-tiers.yaml: ")
    assert message in str(info.value)
    assert "sk-secret" not in str(info.value) and "gsk_7f3k" not in str(info.value)


def test_an_integer_too_long_for_python_is_a_config_error():
    with pytest.raises(ConfigError, match="invalid YAML"):
        parse_config(BASE.replace("max_tokens: 1024", "max_tokens: " + "9" * 5000, 1), "t.yaml")


def test_float_prices_keep_every_digit():
    config = parse_config(BASE.replace("model: gpt-5-mini\n", "model: gpt-5-mini\n        price: {input: 0.12345678901234567891, output: 2.00}\n", 1), "t.yaml")
    assert config.tier("simple").models[1].price.input == Decimal("0.12345678901234567891")


def test_the_api_key_hint_points_to_api_key_env():
    with pytest.raises(ConfigError, match="name that in api_key_env"):
        parse_config(BASE.replace("    timeout: 60            # seconds per request", "    api_key: x", 1), "t.yaml")


@pytest.mark.parametrize("text,message", [
    ("", "the file is empty"),
    ("tiers: [", "line 2, column 1: invalid YAML"),
    ("- just\n- a list\n", "expected a mapping"),
    ("providers: {}\ntiers: []\n", "providers: at least one provider"),
])
def test_structural_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(text, "t.yaml")


def test_openai_compatible_provider_without_a_key():
    text = BASE.replace("providers:\n", "providers:\n  ollama:\n    type: openai\n    base_url: http://localhost:11434/v1\n    api_key_env: null\n", 1)
    config = parse_config(text, "t.yaml")
    assert config.providers["ollama"].api_key_env is None
    assert config.providers["ollama"].base_url == "http://localhost:11434/v1"


def test_prices_keep_the_digits_written():
    config = parse_config(BASE.replace("model: gpt-5-mini\n", 'model: gpt-5-mini\n        price: {input: "0.075", output: 0.3}\n', 1), "t.yaml")
    price = config.tier("simple").models[1].price
    assert (price.input, price.output) == (Decimal("0.075"), Decimal("0.3"))


@pytest.mark.parametrize("extra, problem", [
    ("breaker: {failures: 0}\n", "breaker.failures: must be between 1 and 10000"),
    ("breaker: {cooldown: soon}\n", "breaker.cooldown: expected seconds or a duration"),
    ("breaker: {enabled: maybe}\n", "breaker.enabled: expected true or false"),
    ("cache: {scope: team}\n", "cache.scope: expected user or global"),
    ("cache: {ttl: -5}\n", "cache.ttl: must be a number between 0"),
    ("cache: {ttl: 2x}\n", "cache.ttl: expected seconds or a duration"),
    ("budgets: {scope: global}\n", "budgets: expected a list of budgets"),
])
def test_resilience_sections_are_validated(tmp_path, extra, problem):
    from tests.conftest import write_config

    path = write_config(tmp_path / "r.yaml", "http://127.0.0.1:1", extra=extra)
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_config(path)


def test_resilience_sections_parse(tmp_path):
    from tests.conftest import write_config

    path = write_config(tmp_path / "r.yaml", "http://127.0.0.1:1", extra=(
        "breaker: {failures: 3, window: 2m, cooldown: 45s}\ncache: {enabled: true, ttl: 7d, scope: global}\n"
        "budgets:\n  - {scope: team, team: ml, period: month, limit: '500.10', policy: block}\n"))
    config = load_config(path)
    assert (config.breaker.failures, config.breaker.window, config.breaker.cooldown) == (3, 120.0, 45.0)
    assert (config.cache.enabled, config.cache.ttl, config.cache.scope) == (True, 7 * 86400.0, "global")
    (budget,) = config.budgets
    assert budget.limit == Decimal("500.10") and budget.who == "ml" and budget.floor_tier == "simple"
    assert budget.label() == "team ml monthly budget"


def test_config_imports_nothing_above_it():
    """Loading a config never imports a classifier, a quality gate or the request path."""
    code = ("import sys; from router_cli.config import load_config; load_config(); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('router_cli'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(result.stdout.split())
    assert "router_cli.config.validate" in loaded
    assert loaded <= {"router_cli", "router_cli.errors", "router_cli.version"} | {m for m in loaded if m.startswith("router_cli.config")}


def _prebuilt_text() -> str:
    """What tiers.default.json must hold: the default's YAML parsed, each float as written."""
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")

    def mark_floats(value):
        if isinstance(value, ExactFloat):
            assert isinstance(json.loads(value.text), float), f"not a JSON number: {value.text}"
            return f"\0{value.text}\0"
        if isinstance(value, dict):
            return {k: mark_floats(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark_floats(v) for v in value]
        return value

    digest = hashlib.sha256(text.encode()).hexdigest()
    dumped = json.dumps({"sha256": digest, "data": mark_floats(parse_yaml(text, "default"))}, indent=1)
    return re.sub(r'"\\u0000(.*?)\\u0000"', r"\1", dumped) + "\n"


def test_the_prebuilt_default_is_the_default_parsed():
    """tiers.default.json is tiers.default.yaml parsed; after editing the YAML, run this test with
    MMR_WRITE_PREBUILT=1 to write it again."""
    expected = _prebuilt_text()
    if os.environ.get("MMR_WRITE_PREBUILT"):
        PREBUILT_DEFAULT.write_text(expected, encoding="utf-8")
    assert PREBUILT_DEFAULT.read_text(encoding="utf-8") == expected, "rerun with MMR_WRITE_PREBUILT=1"
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    data = prebuilt_default(hashlib.sha256(text.encode()).hexdigest())
    assert data is not None and repr(validate(data, "d")) == repr(validate(parse_yaml(text, "d"), "d"))
    assert prebuilt_default(hashlib.sha256((text + "\n").encode()).hexdigest()) is None
    assert load_config(DEFAULT_CONFIG).config_hash == hashlib.sha256(text.encode()).hexdigest()[:16]


def test_the_default_config_loads_without_a_yaml_parser():
    code = ("import sys; from router_cli.config import DEFAULT_CONFIG, load_config; load_config(DEFAULT_CONFIG); "
            "print('yaml' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("old, new, problem", [
    ("  max_retries: 2\n", "  max_retries: 1000000000\n", "retry.max_retries: must be between 0 and 100"),
    ("  backoff_max: 0.01\n", "  backoff_max: 1.0e+300\n", "retry.backoff_max: must be a number between 0 and 3600"),
    ("  max_retry_after: 5\n", "  max_retry_after: .inf\n", "retry.max_retry_after: must be a number between 0 and 3600"),
    ("    timeout: 2.0\n", "    timeout: 99999999\n", "providers.anthropic.timeout: must be a number between 0.001 and 3600"),
    ("max_tokens: 64}", "max_tokens: 1000000000}", "tiers[0].models[0].max_tokens: must be between 1 and 1000000"),
    ("max_retry_after: 5\n", "max_retry_after: 5\nbudgets:\n  - {scope: global, period: day, limit: 1e999999999}\n",
     "budgets[0].limit: must be an amount of at most 1000000000 USD, got 1e999999999"),
    ("max_retry_after: 5\n", "max_retry_after: 5\ncascade: {judge_max_tokens: 99999999}\n",
     "cascade.judge_max_tokens: must be between 1 and 1000000"),
    ("max_retry_after: 5\n", "max_retry_after: 5\nledger: {preview_chars: 999999999999}\n",
     "ledger.preview_chars: must be between 1 and 1000000"),
])
def test_every_number_has_a_range(tmp_path, mmr, old, new, problem):
    """Through the real CLI: a one-line error naming the file and key, exit 3, no traceback."""
    from tests.conftest import write_config

    path = write_config(tmp_path / "n.yaml", "http://127.0.0.1:1")
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    result = mmr("ask", "--dry-run", "--config", str(path), "hello")
    assert result.returncode == 3 and result.stdout == b""
    assert result.stderr.decode() == f"Error: {path}: {problem}\n"
