"""`mmr eval --replay`: past prompts re-routed offline; cost arithmetic exact in Decimal; bad input."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest

from router_cli.classify import get_classifier
from router_cli.errors import UsageError
from router_cli.reports.feedback import record
from router_cli.ledger import open_ledger
from router_cli.reports.replay import check_classifiers, replay
from tests.ledger_factory import NOW, attempt, merge, request


@pytest.fixture
def db_path(ledger_url):
    """Every test here runs on an SQLite file and on a PostgreSQL database."""
    return ledger_url

TIERS = ["simple", "medium", "complex"]
# The rules: "hi ..." -> simple; "debug ..." -> complex; a long plain prompt -> medium.
GREETING = "hi there, how are you doing today?"
DEBUG = "debug this function, it returns None when the list is empty"
PLAIN = "Tell me about the history of the printing press in Europe, briefly."


def _ledger(db_path):
    parts = [
        # routed medium, answered by medium: 1000 in, 500 out
        request([attempt("medium", tokens=(1000, 500), cost="0.0105")], prompt=GREETING, routed_tier="medium", command="ask"),
        # routed simple, failed there, escalated to medium: the answer's tokens count, 2000 in / 300 out
        request([attempt("simple", "error", tokens=(0, 0), cost="0"), attempt("medium", tokens=(2000, 300), cost="0.0105")],
                prompt=DEBUG, routed_tier="simple", command="ask"),
        request([attempt("medium", tokens=(123, 45), cost="0.001044")], prompt=PLAIN, routed_tier="medium", command="ask"),
        request([attempt("simple", tokens=(10, 10))], prompt="kept as a hash", stored="hash"),
        request([attempt("simple", "error", cost="0.0001")], prompt="nobody answered"),
        request([attempt("medium")], prompt="long ago", when=NOW - timedelta(days=40)),
    ]
    with open_ledger(db_path) as ledger:
        ledger.record(merge(*parts))
        record(ledger, parts[0]["calls"][0]["id"], "good", should_be="simple", tiers=TIERS)
    return parts


def test_replay_cost_arithmetic_is_exact(db_path, config, server):
    _ledger(db_path)
    with open_ledger(db_path) as ledger:
        report = replay(ledger, config, {"rules": get_classifier("rules", config)}, NOW - timedelta(days=30), NOW + timedelta(hours=1))
    # Prices (USD per 1M tokens): simple 0.80 / 4.00, medium 3.00 / 15.00, complex 15.00 / 75.00.
    greeting = Decimal("0.80") * 1000 / 10**6 + Decimal("4.00") * 500 / 10**6  # simple
    debug = Decimal("15.00") * 2000 / 10**6 + Decimal("75.00") * 300 / 10**6  # complex
    plain = Decimal("3.00") * 123 / 10**6 + Decimal("15.00") * 45 / 10**6  # medium
    rules = report["classifiers"]["rules"]
    assert Decimal(rules["estimated_cost_usd"]) == greeting + debug + plain == Decimal("0.056344")
    assert rules["tier_mix"] == {"simple": 1, "medium": 1, "complex": 1} and rules["changed_routes"] == 2
    as_routed = (Decimal("3.00") * 1000 + Decimal("15.00") * 500 + Decimal("0.80") * 2000 + Decimal("4.00") * 300
                 + Decimal("3.00") * 123 + Decimal("15.00") * 45) / 10**6
    assert Decimal(report["as_routed"]["estimated_cost_usd"]) == as_routed
    assert Decimal(rules["vs_as_routed_usd"]) == greeting + debug + plain - as_routed
    assert Decimal(report["as_routed"]["actual_cost_usd"]) == Decimal("0.0105") * 2 + Decimal("0.001044")
    baseline = (Decimal(15) * (1000 + 2000 + 123) + Decimal(75) * (500 + 300 + 45)) / 10**6
    assert Decimal(report["as_routed"]["baseline_cost_usd"]) == baseline
    assert report["requests"] == 3
    assert report["skipped"] == {"prompt not stored in full": 1, "no answer (every attempt failed)": 1}
    # The greeting's feedback says simple would do: the rules agree, the recorded route did not.
    assert (rules["labelled"], rules["accuracy"], report["as_routed"]["accuracy"]) == (1, 1.0, 0.0)
    assert report["as_routed"]["over_routing"] == 1.0
    assert server.calls() == []  # no provider was called


def test_replay_cli_with_ml_thresholds(db_path, mmr, server):
    _ledger(db_path)
    strict = json.loads(mmr("eval", "--replay", "--classifier", "ml", "--thresholds", "simple=1,medium=1", "--json").stdout)
    assert strict["classifiers"]["ml"]["tier_mix"] == {"simple": 0, "medium": 0, "complex": 3}
    lax = json.loads(mmr("eval", "--replay", "--classifier", "ml", "--thresholds", "simple=0", "--json").stdout)
    assert lax["classifiers"]["ml"]["tier_mix"] == {"simple": 3, "medium": 0, "complex": 0}
    table = mmr("eval", "--replay", "--classifier", "rules,ml", "--since", "30d", env={"COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    text = table.stdout.decode()
    assert "Replay of 3 requests" in text and "as recorded" in text and "rules" in text
    assert "Skipped: prompt not stored in full (1), no answer (every attempt failed) (1)" in text
    assert server.calls() == []


def test_replay_refuses_classifiers_that_call_models():
    with pytest.raises(UsageError, match="--replay makes no provider calls, but the llm classifier calls a model"):
        check_classifiers(["rules", "llm"])


@pytest.mark.parametrize("args, message", [
    (["--replay", "--classifier", "embedding"], "the embedding classifier calls a model"),
    (["--replay", "--classifier", "rules", "--thresholds", "simple=0.5"], "--thresholds sets the ml classifier's thresholds; add --classifier ml"),
    (["--replay", "--classifier", "ml", "--thresholds", "complex=0.5"], "--thresholds: 'complex' is not a tier below the top"),
    (["--replay", "--classifier", "ml", "--thresholds", "simple=high"], "--thresholds: 'simple=high': expected TIER=P"),
    (["--replay", "--classifier", "ml", "--thresholds", "simple=2"], "--thresholds: simple=2: must be in [0, 1]"),
    (["--replay", "--since", "yesterday"], "--since: cannot read 'yesterday'"),
    (["--replay", "x.jsonl"], "--replay reads the ledger; give no FILE"),
    ([], "give a labelled FILE, or --replay"),
])
def test_bad_replay_input(db_path, mmr, args, message):
    _ledger(db_path)
    result = mmr("eval", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.decode() and result.stderr.decode().count("\n") == 1


@pytest.mark.sqlite_only  # about a ledger file that does not exist yet
def test_replay_without_a_ledger(mmr):
    result = mmr("eval", "--replay", "--classifier", "rules")
    assert result.returncode == 2 and b"no ledger at" in result.stderr


CACHE_PRICES = {  # USD per 1M: input / output / cache read / cache write, each tier's first model
    "{input: 0.80, output: 4.00}": "{input: 0.80, output: 4.00, cache_read: 0.08, cache_write: 1.00}",
    "{input: 3.00, output: 15.00}": "{input: 3.00, output: 15.00, cache_read: 0.30, cache_write: 3.75}",
    "{input: 15.00, output: 75.00}": "{input: 15.00, output: 75.00, cache_read: 1.50, cache_write: 18.75}",
}


def test_replay_prices_every_token_class_as_the_engine_bills(db_path, tmp_path, server):
    from router_cli.config import load_config
    from tests.conftest import write_config

    path = write_config(tmp_path / "cached.yaml", server.url)
    text = path.read_text()
    for plain, cached in CACHE_PRICES.items():
        text = text.replace(plain, cached)
    path.write_text(text)
    config = load_config(path)
    # Anthropic: input 100 outside cache reads 2000 and writes 400; OpenAI: prompt 1200 holds 1024 cached.
    claude = request([attempt("medium", tokens=(100, 50))], prompt=PLAIN, routed_tier="medium", command="ask")
    claude["calls"][0].update(cache_read_tokens=2000, cache_write_tokens=400, reasoning_tokens=0)
    gpt = request([attempt("medium", tokens=(1200, 80), provider="openai")], prompt=GREETING, routed_tier="medium",
                  command="ask")
    gpt["calls"][0].update(cache_read_tokens=1024, cache_write_tokens=0, reasoning_tokens=30)
    with open_ledger(db_path) as ledger:
        ledger.record(merge(claude, gpt))
        report = replay(ledger, config, {"rules": get_classifier("rules", config)}, NOW - timedelta(days=1),
                        NOW + timedelta(hours=1))
    # As routed (medium): 100*3 + 2000*0.30 + 400*3.75 + 50*15 = 3150; 176*3 + 1024*0.30 + 80*15 = 2035.2 (per 1M)
    assert report["as_routed"]["estimated_cost_usd"] == "0.0051852"
    # The rules send the greeting to simple: 176*0.80 + 1024*0.08 + 80*4 = 542.72; the other stays 3150
    assert report["classifiers"]["rules"]["estimated_cost_usd"] == "0.00369272"
    # Baseline: 100*15 + 2000*1.5 + 400*18.75 + 50*75 = 15750; 176*15 + 1024*1.5 + 80*75 = 10176
    assert report["as_routed"]["baseline_cost_usd"] == "0.025926"
