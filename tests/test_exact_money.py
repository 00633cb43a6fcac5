"""Exact money for real traffic: every token class both APIs report, through the real SDKs and
the real CLI, billed at its own price; long-context tiers; prices from genai-prices or the config.

Every expected amount below is computed by hand in its comment (USD per 1M tokens x tokens).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import replace
from decimal import Decimal

import pytest

from router_cli.config import LongContext, Price
from router_cli.pricing import Usage, cache_saving, cost, max_cost_usd, to_nanousd
from router_cli.providers import ChatRequest, get_provider
from tests.conftest import KEYS, ROOT
from tests.provider_server import reply

MONEY_CONFIG = """\
version: 1
baseline_tier: complex
providers:
  anthropic: {{type: anthropic, api_key_env: TEST_ANTHROPIC_KEY, base_url: "{url}", timeout: 5}}
  openai: {{type: openai, api_key_env: TEST_OPENAI_KEY, base_url: "{url}/v1", timeout: 5}}
tiers:
  - name: simple
    models:
      - provider: anthropic
        model: claude-cache
        price: {{input: 3.00, output: 15.00, cache_read: 0.30, cache_write: 3.75,
                long_context: {{above: 200000, input: 6.00, output: 22.50, cache_read: 0.60, cache_write: 7.50}}}}
  - name: medium
    models:
      - {{provider: openai, model: gpt-cache, price: {{input: 0.15, output: 0.60, cache_read: 0.075}}}}
  - name: complex
    models:
      - {{provider: anthropic, model: claude-big, price: {{input: 15, output: 75, cache_read: 1.50, cache_write: 18.75}}}}
{extra}"""


@pytest.fixture
def money_config(tmp_path, server):
    def write(extra: str = "", name: str = "money.yaml"):
        path = tmp_path / name
        path.write_text(MONEY_CONFIG.format(url=server.url, extra=extra))
        return path
    return write


def _ask(mmr, config, *args, env=None):
    stream = [] if {"--stream", "--no-stream"} & set(args) else ["--no-stream"]
    run = mmr("ask", "--config", str(config), "--json", *stream, *args, env=env)
    assert run.returncode == 0, run.stderr.decode()
    return json.loads(run.stdout)


def _row(db_path, call_id=None):
    """The ledger row of ``call_id``, else the latest one."""
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    if call_id is None:
        return dict(conn.execute("SELECT * FROM calls ORDER BY id DESC LIMIT 1").fetchone())
    return dict(conn.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone())


def _streamed(mmr, config, *args):
    """``mmr ask --stream`` (--json never streams): the answer goes out as it comes."""
    run = mmr("ask", "--config", str(config), "--stream", *args)
    assert run.returncode == 0, run.stderr.decode()
    return run.stdout.decode()


# ------------------------------------------------------------------ the arithmetic, by hand


def test_each_class_at_its_price():
    price = Price(Decimal("3"), Decimal("15"), Decimal("0.30"), Decimal("3.75"))
    # 1234 x 3 + 40000 x 0.30 + 2000 x 3.75 + 567 x 15 = 3702 + 12000 + 7500 + 8505 = 31707 micro-dollars
    assert cost(price, Usage(1234, 567, 40000, 2000)) == Decimal("0.031707")
    # Caching saved 40000 x (3 - 0.30) = 108000, less the write premium 2000 x (3.75 - 3) = 1500: 106500
    assert cache_saving(price, Usage(1234, 567, 40000, 2000)) == Decimal("0.1065")


def test_openai_cached_tokens_are_inside_prompt_tokens_and_never_counted_twice():
    usage = Usage.reported(5000, 300, 4096, 0, 200, cache_in_input=True)
    assert (usage.input, usage.cache_read, usage.output, usage.reasoning) == (904, 4096, 300, 200)
    price = Price(Decimal("0.15"), Decimal("0.60"), Decimal("0.075"))
    # 904 x 0.15 + 4096 x 0.075 + 300 x 0.60 = 135.6 + 307.2 + 180 = 622.8 micro-dollars; reasoning is output
    assert cost(price, usage) == Decimal("0.0006228")
    assert to_nanousd(cost(price, usage)) == 622_800


def test_a_long_context_request_is_billed_whole_at_the_higher_rates():
    tier = LongContext(200_000, Decimal("6"), Decimal("22.5"), Decimal("0.6"), Decimal("7.5"))
    price = Price(Decimal("3"), Decimal("15"), Decimal("0.3"), Decimal("3.75"), tier)
    # 150000 + 60000 = 210000 input tokens > 200000: 150000 x 6 + 60000 x 0.6 + 1000 x 22.5 = 958500
    assert cost(price, Usage(150_000, 1000, 60_000)) == Decimal("0.9585")
    # Exactly 200000 is not above it: 140000 x 3 + 60000 x 0.3 + 1000 x 15 = 453000
    assert cost(price, Usage(140_000, 1000, 60_000)) == Decimal("0.453")


def test_the_worst_case_of_a_long_prompt_takes_the_long_context_rates():
    tier = LongContext(100, Decimal("6"), Decimal("22.5"), Decimal("0.6"), Decimal("7.5"))
    price = Price(Decimal("3"), Decimal("15"), Decimal("0.3"), Decimal("3.75"), tier)
    # 100 "x" + 16 + 32 framing = 148 input tokens, above 100: 148 x 7.5 + 10 x 22.5 = 1110 + 225 = 1335
    assert max_cost_usd(price, "x" * 100, None, 10) == Decimal("0.001335")


def test_unnamed_cache_prices_default_to_the_input_price():
    price = Price(Decimal("2"), Decimal("10"))
    # (1000 + 10000 + 500) x 2 + 100 x 10 = 24000
    assert cost(price, Usage(1000, 100, 10_000, 500)) == Decimal("0.024")


def test_the_worst_case_takes_the_dearest_input_rate():
    price = Price(Decimal("3"), Decimal("15"), Decimal("0.3"), Decimal("3.75"))
    # "hi": 32 + 16 + 2 = 50 input tokens at the cache-write rate 3.75, 100 output at 15: 187.5 + 1500
    assert max_cost_usd(price, "hi", None, 100) == Decimal("0.0016875")


# ------------------------------------------------------------------ through the SDKs and the CLI


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_cache_classes_through_the_cli(server, mmr, money_config, db_path, stream):
    config = money_config()
    server.script("claude-cache", reply("one two three", input_tokens=1234, output_tokens=567, cache_read=40000,
                                        cache_write=2000))
    if stream:
        assert _streamed(mmr, config, "--tier", "simple", "hello").startswith("one two three")
    else:
        out = _ask(mmr, config, "--tier", "simple", "hello")
        assert (out["cache_read_tokens"], out["cache_write_tokens"]) == (40000, 2000)
        assert out["cost_usd"] == "0.031707"  # see test_each_class_at_its_price
        # Baseline: the same classes at claude-big's prices:
        # 1234 x 15 + 40000 x 1.5 + 2000 x 18.75 + 567 x 75 = 18510 + 60000 + 37500 + 42525 = 158535
        assert out["baseline_cost_usd"] == "0.158535"
    row = _row(db_path)
    assert row["stream"] == int(stream)
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (1234, 40000, 2000)
    assert (row["cost_nanousd"], row["baseline_cost_nanousd"]) == (31_707_000, 158_535_000)
    assert row["price_source"] == "config" and row["cache_saved_nanousd"] == 106_500_000


@pytest.mark.parametrize("stream", [False, True])
def test_openai_cached_and_reasoning_tokens_through_the_cli(server, mmr, money_config, db_path, stream):
    config = money_config()
    server.script("gpt-cache", reply("one two three", input_tokens=5000, output_tokens=300, cache_read=4096,
                                     reasoning=200))
    if stream:
        _streamed(mmr, config, "--tier", "medium", "hello")
    else:
        _ask(mmr, config, "--tier", "medium", "hello")
    row = _row(db_path)
    assert row["stream"] == int(stream)
    # As reported: 5000 prompt tokens of which 4096 cached; 300 completion tokens of which 200 reasoning.
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"], row["reasoning_tokens"]) == (5000, 4096, 300, 200)
    assert row["cost_nanousd"] == 622_800  # see test_openai_cached_tokens_are_inside_prompt_tokens...
    # Baseline at claude-big: 904 x 15 + 4096 x 1.5 + 300 x 75 = 13560 + 6144 + 22500 = 42204
    assert row["baseline_cost_nanousd"] == 42_204_000
    assert server.calls("gpt-cache")[0]["body"].get("stream_options") == ({"include_usage": True} if stream else None)


def test_a_long_context_request_through_the_cli(server, mmr, money_config, db_path):
    server.script("claude-cache", reply("ok", input_tokens=150_000, output_tokens=1000, cache_read=60_000))
    out = _ask(mmr, money_config(), "--tier", "simple", "hello")
    assert _row(db_path, out["call_id"])["cost_nanousd"] == 958_500_000  # 0.9585 USD, see above


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider,model", [("anthropic", "claude-cache"), ("openai", "gpt-cache")])
def test_the_sdks_read_every_usage_field(server, money_config, provider, model, stream):
    from router_cli.config import load_config

    config = load_config(money_config())
    spec = config.providers[provider]
    chosen = next(m for m in config.models() if m.model == model)
    server.script(model, reply("a b c", input_tokens=900, output_tokens=70, cache_read=512, cache_write=64, reasoning=30))
    response = get_provider(spec, KEYS[spec.api_key_env]).complete(
        ChatRequest(chosen, "hi"), on_text=(lambda t: None) if stream else None)
    if provider == "anthropic":
        assert (response.input_tokens, response.output_tokens, response.cache_read_tokens, response.cache_write_tokens) == (900, 70, 512, 64)
    else:
        assert (response.input_tokens, response.output_tokens, response.cache_read_tokens, response.reasoning_tokens) == (900, 70, 512, 30)


def test_the_server_caches_a_marked_anthropic_prefix_and_repeated_openai_prompts(server, money_config):
    from router_cli.config import load_config

    config = load_config(money_config())
    claude = next(m for m in config.models() if m.model == "claude-cache")
    gpt = next(m for m in config.models() if m.model == "gpt-cache")
    system = " ".join(f"w{i}" for i in range(1500))
    anthropic = get_provider(config.providers["anthropic"], KEYS["TEST_ANTHROPIC_KEY"])
    first = anthropic.complete(ChatRequest(claude, "one two", system=system, cache_system=True))
    second = anthropic.complete(ChatRequest(claude, "three", system=system, cache_system=True), on_text=lambda t: None)
    assert (first.cache_write_tokens, first.cache_read_tokens, first.input_tokens) == (1500, 0, 2)
    assert (second.cache_write_tokens, second.cache_read_tokens, second.input_tokens) == (0, 1500, 1)
    assert server.calls("claude-cache")[0]["body"]["system"][0]["cache_control"] == {"type": "ephemeral"}
    openai = get_provider(config.providers["openai"], KEYS["TEST_OPENAI_KEY"])
    first = openai.complete(ChatRequest(gpt, "one two", system=system))
    second = openai.complete(ChatRequest(gpt, "three", system=system))
    # 1500 shared tokens: cached in steps of 128 above 1024, 1024 + 3 x 128 = 1408, inside the 1501 prompt tokens
    assert (first.cache_read_tokens, second.cache_read_tokens, second.input_tokens) == (0, 1408, 1501)


# ------------------------------------------------------------------ where prices come from


def test_a_model_without_a_config_price_takes_genai_prices(server, mmr, money_config, db_path):
    extra = "experiments: {}\n"
    config = money_config(extra).read_text().replace(
        "model: claude-cache\n        price: {input: 3.00, output: 15.00, cache_read: 0.30, cache_write: 3.75,\n"
        "                long_context: {above: 200000, input: 6.00, output: 22.50, cache_read: 0.60, cache_write: 7.50}}",
        "model: claude-sonnet-4-5")
    path = db_path.parent / "library.yaml"
    path.write_text(config)
    server.script("claude-sonnet-4-5", reply("ok", input_tokens=1000, output_tokens=100, cache_read=10_000, cache_write=500))
    out = _ask(mmr, path, "--tier", "simple", "hello")
    row = _row(db_path, out["call_id"])
    # genai-prices 0.2.3: claude-sonnet-4-5 at 3 / 0.30 / 3.75 / 15:
    # 1000 x 3 + 10000 x 0.3 + 500 x 3.75 + 100 x 15 = 3000 + 3000 + 1875 + 1500 = 9375
    assert row["cost_nanousd"] == 9_375_000
    assert row["price_source"] == "genai-prices 0.2.3"
    # Overridden in the config, the classes it does not name are billed at its input price:
    path.write_text(config.replace("model: claude-sonnet-4-5", "model: claude-sonnet-4-5\n        price: {input: 2, output: 10}"))
    server.script("claude-sonnet-4-5", reply("ok", input_tokens=1000, output_tokens=100, cache_read=10_000, cache_write=500))
    row = _row(db_path, _ask(mmr, path, "--tier", "simple", "hello")["call_id"])
    assert (row["cost_nanousd"], row["price_source"]) == (24_000_000, "config")  # 11500 x 2 + 100 x 10


def _unknown(money_config):
    return money_config("", "unknown.yaml").read_text().replace("model: gpt-cache, price: {input: 0.15, output: 0.60, cache_read: 0.075}",
                                                               "model: gpt-nobody-knows")


def test_a_model_no_source_prices_fails_where_prices_are_needed(mmr, money_config, tmp_path):
    path = tmp_path / "unknown.yaml"
    path.write_text(_unknown(money_config))
    for args in (["ask", "--tier", "simple", "hello"], ["ask", "--dry-run", "hello"], ["prices"]):
        run = mmr(*args, "--config", str(path), db=args[0] != "prices")
        assert run.returncode == 3, (args, run.stderr)
        err = run.stderr.decode()
        assert "tiers[1].models[0]" in err and "openai/gpt-nobody-knows has no price" in err and "price: free" in err
        assert "Traceback" not in err
    # Commands that need no prices do not ask for them.
    assert mmr("classify", "hello", "--config", str(path), db=False).returncode == 0
    assert mmr("costs", "--config", str(path)).returncode == 0
    path.write_text(_unknown(money_config).replace("model: gpt-nobody-knows", "model: gpt-nobody-knows, price: free"))
    run = mmr("prices", "--json", "--config", str(path), db=False)
    assert run.returncode == 0
    free = next(r for r in json.loads(run.stdout)["models"] if r["model"] == "gpt-nobody-knows")
    assert (free["input"], free["cache_read"], free["output"], free["source"]) == ("0", "0", "0", "free")


def _blocked_env(tmp_path, error: str = "ImportError('No module named genai_prices (blocked by the test)')"):
    """A real process in which ``import genai_prices`` fails, as on an install without it (or a broken one)."""
    blocker = tmp_path / "blocker"
    blocker.mkdir(exist_ok=True)
    (blocker / "genai_prices.py").write_text(f"raise {error}\n")
    return {"PYTHONPATH": f"{blocker}:{ROOT}"}


@pytest.mark.parametrize("error", ["ImportError('No module named genai_prices')", "RuntimeError('bad data file')"])
def test_without_genai_prices_a_model_without_a_price_names_the_package(mmr, money_config, tmp_path, error):
    path = tmp_path / "library.yaml"
    path.write_text(money_config().read_text().replace("model: gpt-cache, price: {input: 0.15, output: 0.60, cache_read: 0.075}",
                                                       "model: gpt-4o-mini"))
    run = mmr("ask", "--tier", "simple", "hello", "--config", str(path), env=_blocked_env(tmp_path, error))
    assert run.returncode == 3
    err = run.stderr.decode()
    assert "genai-prices could not be imported" in err and "pip install 'genai-prices" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_without_genai_prices_config_prices_alone_are_enough(server, mmr, money_config, tmp_path, db_path):
    server.script("claude-cache", reply("ok", input_tokens=10, output_tokens=2))
    run = mmr("ask", "--tier", "simple", "--json", "hello", "--config", str(money_config()), env=_blocked_env(tmp_path))
    assert run.returncode == 0, run.stderr.decode()
    assert json.loads(run.stdout)["cost_usd"] == "0.00006"  # 10 x 3 + 2 x 15 = 60 micro-dollars


def test_mmr_prices_shows_each_class_its_source_and_a_differing_config_price(mmr, money_config, tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text(money_config().read_text().replace(
        "model: gpt-cache, price: {input: 0.15, output: 0.60, cache_read: 0.075}", "model: gpt-4o-mini, price: {input: 0.20, output: 0.60}"
    ).replace("model: claude-big, price: {input: 15, output: 75, cache_read: 1.50, cache_write: 18.75}", "model: claude-sonnet-4-5"))
    run = mmr("prices", "--json", "--config", str(path), db=False)
    assert run.returncode == 0, run.stderr.decode()
    rows = {r["model"]: r for r in json.loads(run.stdout)["models"]}
    sonnet = rows["claude-sonnet-4-5"]
    assert (sonnet["input"], sonnet["cache_read"], sonnet["cache_write"], sonnet["output"]) == ("3", "0.3", "3.75", "15")
    assert sonnet["long_context"] == {"above": 200000, "input": "6", "output": "22.5", "cache_read": "0.6", "cache_write": "7.5"}
    assert sonnet["source"] == "genai-prices 0.2.3" and sonnet["warning"] is None
    mini = rows["gpt-4o-mini"]
    assert mini["source"] == "config" and mini["cache_read"] == "0.2"
    assert "input: config 0.20, genai-prices 0.2.3 0.15" in mini["warning"]
    assert "cache_read: not in the config" in mini["warning"]
    assert rows["claude-cache"]["warning"] is None  # the library does not know it: nothing to compare
    text = mmr("prices", "--config", str(path), db=False)
    assert text.returncode == 0 and "warning: openai/gpt-4o-mini" in text.stdout.decode()


def test_fast_commands_never_import_genai_prices(money_config, tmp_path):
    code = ("import sys, runpy; sys.argv = ['mmr'] + sys.argv[1:]\n"
            "try:\n    from router_cli.cli.app import main; main()\nexcept SystemExit: pass\n"
            "print('genai_prices' in sys.modules, file=sys.stderr)")
    for args in (["--help"], ["classify", "hello", "--config", str(money_config())], ["costs", "--db", str(tmp_path / "l.db")]):
        run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, timeout=60)
        assert run.stderr.decode().strip().endswith("False"), (args, run.stderr)


def test_resolved_prices_reach_experiment_variants(money_config):
    from router_cli.config import parse_config
    from router_cli.prices import resolve_prices

    text = money_config().read_text() + (
        "experiments:\n  x:\n    variants:\n      a: {weight: 1}\n"
        "      b: {weight: 1, tiers: {simple: [{provider: anthropic, model: claude-haiku-4-5}]}}\n")
    config = resolve_prices(parse_config(text, "t.yaml"))
    haiku = config.experiments[0].variants[1].tiers["simple"][0]
    assert (haiku.price.input, haiku.price.cache_read, haiku.price.source) == (Decimal("1"), Decimal("0.1"), "genai-prices 0.2.3")
    assert replace(haiku, where="elsewhere") == haiku  # where a model is written is not part of what it is


# ------------------------------------------------------------------ costs: cache share, savings, reprice

REPRICED = {
    "price: {input: 3.00, output: 15.00, cache_read: 0.30, cache_write: 3.75,":
        "price: {input: 2, output: 10, cache_read: 0.2, cache_write: 2.5,",
    "long_context: {above: 200000, input: 6.00, output: 22.50, cache_read: 0.60, cache_write: 7.50}":
        "long_context: {above: 200000, input: 4, output: 15, cache_read: 0.4, cache_write: 5}",
    "model: gpt-cache,": "model: gpt-other,",
}


def test_costs_shows_caching_and_reprices_without_changing_what_was_recorded(server, mmr, money_config, db_path, tmp_path):
    config = money_config()
    server.script("claude-cache", reply("a", input_tokens=1234, output_tokens=567, cache_read=40000, cache_write=2000),
                  reply("b", input_tokens=150_000, output_tokens=1000, cache_read=60_000))
    server.script("gpt-cache", reply("c", input_tokens=5000, output_tokens=300, cache_read=4096, reasoning=200))
    for tier in ("simple", "simple", "medium"):
        _ask(mmr, config, "--tier", tier, "hello")
    before = json.loads(mmr("costs", "--json", "--config", str(config)).stdout)
    # 0.031707 + 0.9585 + 0.0006228 (each computed above)
    assert before["total"]["spend_usd"] == "0.9908298"
    # Input tokens: 1234 + 40000 + 2000, 150000 + 60000, and OpenAI's 5000 (its 4096 cached inside) = 258234;
    # read from a cache: 40000 + 60000 + 4096 = 104096, a share of 0.40311.
    # Saved: 40000 x 2.70 - 2000 x 0.75 = 106500, 60000 x 5.40 = 324000 (long context), 4096 x 0.075 = 307.2
    assert before["prompt_cache"] == {"input_tokens": 258234, "cache_read_tokens": 104096, "cache_write_tokens": 2000,
                                      "cache_read_share": 0.4031, "cache_saved_usd": "0.4308072"}
    text = mmr("costs", "--config", str(config)).stdout.decode()
    assert "Prompt caching: 40.3% of 258,234 input tokens read from a cache (2,000 written); it saved $0.430807" in text
    repriced = tmp_path / "repriced.yaml"
    body = config.read_text()
    for old, new in REPRICED.items():
        body = body.replace(old, new)
    repriced.write_text(body)
    run = mmr("costs", "--json", "--reprice", "--config", str(repriced))
    assert run.returncode == 0, run.stderr.decode()
    after = json.loads(run.stdout)
    # claude-cache at the new prices: 1234 x 2 + 40000 x 0.2 + 2000 x 2.5 + 567 x 10 = 21138, and the long request
    # 150000 x 4 + 60000 x 0.4 + 1000 x 15 = 639000: 0.660138 against 0.990207 recorded.
    assert after["reprice"]["models"] == [{"provider": "anthropic", "model": "claude-cache", "calls": 2,
                                           "source": "config", "recorded_usd": "0.990207", "today_usd": "0.660138"}]
    # gpt-cache is no longer configured: listed with what it cost, not repriced.
    assert after["reprice"]["not_repriced"] == [{"provider": "openai", "model": "gpt-cache", "calls": 1,
                                                 "recorded_usd": "0.0006228"}]
    assert (after["reprice"]["recorded_usd"], after["reprice"]["today_usd"]) == ("0.990207", "0.660138")
    assert after["total"] == before["total"]  # what was recorded is what the report says
    text = mmr("costs", "--reprice", "--config", str(repriced)).stdout.decode()
    assert "At today's prices" in text and "$0.660138" in text and "not in the config" in text


# ------------------------------------------------------------------ prompt caching


def test_worth_caching_only_long_anthropic_system_prompts():
    from router_cli.engine.attempts import worth_caching

    long_text = "x" * 4096  # about 1,024 tokens at four characters each
    assert worth_caching("anthropic", "claude-sonnet-4-5", long_text)
    assert not worth_caching("anthropic", "claude-sonnet-4-5", long_text[:-8])
    assert not worth_caching("anthropic", "claude-haiku-4-5", long_text)  # Haiku caches from 2,048 tokens
    assert worth_caching("anthropic", "claude-haiku-4-5", long_text * 2)
    assert not worth_caching("openai", "gpt-5", long_text * 2)  # OpenAI caches by itself
    assert not worth_caching("anthropic", "claude-sonnet-4-5", None)


def test_prompt_cache_marks_a_long_system_prompt_and_the_second_call_reads_it(server, mmr, money_config, db_path):
    config = money_config()
    system = " ".join(f"rule{i}" for i in range(1500))
    costs = []
    for _ in range(2):
        out = _ask(mmr, config, "--tier", "simple", "--system", system, "hello")
        costs.append(out["cost_usd"])
    marked = server.calls("claude-cache")
    assert marked[0]["body"]["system"] == [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
    # "Answer to: hello" is 3 output tokens; the 1501 input tokens are 1500 of system prompt and 1 of prompt.
    # First: 1 x 3 + 1500 x 3.75 (written) + 3 x 15 = 5673; second: 1 x 3 + 1500 x 0.30 (read) + 45 = 498.
    assert costs == ["0.005673", "0.000498"]
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT input_tokens, cache_write_tokens, cache_read_tokens FROM calls ORDER BY id").fetchall()
    assert rows == [(1, 1500, 0), (1, 0, 1500)]
    # Off (flag or config): sent as a plain string, every token at the input price: 1501 x 3 + 45 = 4548.
    out = _ask(mmr, config, "--tier", "simple", "--system", system, "--prompt-cache", "off", "hello")
    assert server.calls("claude-cache")[-1]["body"]["system"] == system and out["cost_usd"] == "0.004548"
    out = _ask(mmr, money_config("prompt_cache: off\n", "off.yaml"), "--tier", "simple", "--system", system, "hello")
    assert server.calls("claude-cache")[-1]["body"]["system"] == system and out["cost_usd"] == "0.004548"
    # A short system prompt is never marked.
    _ask(mmr, config, "--tier", "simple", "--system", "be brief", "hello")
    assert server.calls("claude-cache")[-1]["body"]["system"] == "be brief"
    bad = mmr("ask", "--config", str(config), "--prompt-cache", "always", "hello")
    assert bad.returncode == 2 and "--prompt-cache: expected one of auto, off" in bad.stderr.decode()


# ------------------------------------------------------------------ budget warnings


def test_a_budget_passing_80_and_95_percent_is_said_once(server, mmr, money_config):
    config = money_config("budgets: [{scope: global, period: day, limit: 0.01, policy: block}]\n")
    # 2700 x 3 = 8100 micro-dollars (81 %), then 500 x 3 = 1500 (96 %), then 10 x 3 = 30 (96.3 %)
    server.script("claude-cache", reply("a", input_tokens=2700, output_tokens=0), reply("b", input_tokens=500, output_tokens=0),
                  reply("c", input_tokens=10, output_tokens=0))
    first = _ask(mmr, config, "--tier", "simple", "--max-tokens", "1", "hello")
    assert first["budget_warnings"] == ["global daily budget: 81.0% of $0.010000 used ($0.008100 spent); passed 80%"]
    second = mmr("ask", "--config", str(config), "--tier", "simple", "--max-tokens", "1", "hello")
    assert second.returncode == 0
    assert ("warning: global daily budget: 96.0% of $0.010000 used ($0.009600 spent); passed 95%"
            in second.stderr.decode())
    third = mmr("ask", "--config", str(config), "--tier", "simple", "--max-tokens", "1", "hello")
    assert third.returncode == 0 and "warning" not in third.stderr.decode()


def test_concurrent_requests_passing_a_mark_together_say_it_once(server, mmr, money_config, tmp_path):
    config = money_config("budgets: [{scope: global, period: day, limit: 0.01, policy: block}]\n")
    # Nine rows answered together, each 354 x 3 = 1062 micro-dollars: 9558 in all (95.58 %), past 80 % and 95 %.
    server.always("claude-cache", reply("a", input_tokens=354, output_tokens=0, delay=0.6))
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": i, "prompt": f"row {i}"}) + "\n" for i in range(9)))
    run = mmr("ask", "--batch", str(rows), "--tier", "simple", "--max-tokens", "1", "--concurrency", "9",
              "--config", str(config))
    assert run.returncode == 0, run.stderr.decode()
    answers = [json.loads(line) for line in run.stdout.decode().splitlines()]
    assert len(answers) == 9 and {a["cost_usd"] for a in answers} == {"0.001062"}
    # One warning names the highest mark it passed: 95 % once; 80 % once or inside that 95 %, never twice.
    marks = [w.rsplit("passed ", 1)[1] for a in answers for w in a["budget_warnings"]]
    assert marks.count("95%") == 1 and marks.count("80%") <= 1, marks
    stderr = run.stderr.decode()
    assert stderr.count("passed 95%") == 1 and stderr.count("passed 80%") == marks.count("80%")
    # Another process later in the period: both marks were said already.
    again = mmr("ask", "--config", str(config), "--tier", "simple", "--max-tokens", "1", "one more")
    assert again.returncode == 0 and "warning" not in again.stderr.decode()


def test_batch_rows_sharing_a_system_prompt_write_it_once_and_read_it_after(server, mmr, money_config, db_path, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": i, "prompt": f"ticket {i}"}) + "\n" for i in range(3)))
    system = " ".join(f"rule{i}" for i in range(1200))
    run = mmr("ask", "--batch", str(rows), "--system", system, "--tier", "simple", "--concurrency", "1",
              "--config", str(money_config()))
    assert run.returncode == 0, run.stderr.decode()
    with sqlite3.connect(db_path) as conn:
        got = conn.execute("SELECT cache_write_tokens, cache_read_tokens, cost_nanousd FROM calls ORDER BY batch_row").fetchall()
    # "ticket N": 2 input tokens; "Answer to: ticket N": 4 output tokens.
    # Row 0: 2 x 3 + 1200 x 3.75 + 4 x 15 = 4566; rows 1, 2: 2 x 3 + 1200 x 0.30 + 60 = 426 micro-dollars.
    assert got == [(1200, 0, 4_566_000), (0, 1200, 426_000), (0, 1200, 426_000)]


def test_a_batch_says_a_budget_warning_once_on_stderr(server, mmr, money_config, tmp_path):
    config = money_config("budgets: [{scope: global, period: day, limit: 0.01, policy: block}]\n")
    server.script("claude-cache", reply("a", input_tokens=2700, output_tokens=0), reply("b", input_tokens=10, output_tokens=0))
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": 1, "prompt": "one"}\n{"id": 2, "prompt": "two"}\n')
    run = mmr("ask", "--batch", str(rows), "--tier", "simple", "--max-tokens", "1", "--concurrency", "1",
              "--config", str(config))
    assert run.returncode == 0, run.stderr.decode()
    out = [json.loads(line) for line in run.stdout.decode().splitlines()]
    assert [len(r["budget_warnings"]) for r in out] == [1, 0]
    assert run.stderr.decode().count("warning: global daily budget: 81.0% of $0.010000 used") == 1
