"""The router through the real SDKs: tiers, fallback, retries, fail-fast, ledger rows, exact costs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from router_cli.errors import EXIT_PROVIDER, EXIT_REQUEST_REJECTED, AllAttemptsFailed, MissingKeyError, UsageError
from router_cli import Router
from tests.conftest import ledger_rows
from tests.provider_server import drop, error, hang, reply


@pytest.mark.parametrize(
    "prompt,tier,model",
    [
        ("hello there", "simple", "claude-small"),
        ("What is the boiling point of water at sea level in Celsius?", "simple", "claude-small"),
        ("Please write code that parses a CSV file and reports the column types", "complex", "claude-big"),
        ("I have a long-ish question about gardening, roses in particular, and soil.", "medium", "claude-mid"),
    ],
)
def test_rules_route_each_prompt_to_its_tier(server, router, prompt, tier, model):
    answer = router.ask(prompt)
    assert (answer.final.tier, answer.final.model) == (tier, model)
    assert answer.decision.classifier == "rules"
    assert [c["model"] for c in server.calls()] == [model]


def test_tier_override_skips_classification(server, router):
    answer = router.ask("hello", tier="complex")
    assert answer.final.model == "claude-big"
    assert answer.decision.classifier == "override"


def test_unknown_tier_is_a_usage_error(router):
    with pytest.raises(UsageError, match="valid tiers: simple, medium, complex"):
        router.ask("hi", tier="premium")


def test_fallback_across_providers_then_tiers(server, router, db_path):
    server.always("claude-small", error(500))
    server.always("gpt-small", error(404))
    answer = router.ask("hello")
    assert answer.final.model == "claude-mid" and answer.final.tier == "medium"
    # A 500 fails over at once to the tier's other model; a 404 is not retried either.
    assert [c["model"] for c in server.calls()] == ["claude-small", "gpt-small", "claude-mid"]
    rows = ledger_rows(db_path)
    assert [(r["model"], r["status"], r["attempt"]) for r in rows] == [
        ("claude-small", "error", 1), ("gpt-small", "error", 2), ("claude-mid", "ok", 3),
    ]
    assert len({r["request_id"] for r in rows}) == 1
    assert rows[0]["error_kind"] == "server" and rows[0]["http_status"] == 500
    assert {(r["routed_tier"], r["escalated"]) for r in rows} == {("simple", 1)}
    assert rows[1]["error_kind"] == "not_found"
    assert router.sleeps == []  # no backoff while an equivalent model was left to try


def test_last_model_of_a_tier_is_retried_before_the_next_tier(server, router, db_path):
    server.always("claude-mid", error(503))
    server.always("gpt-mid", error(500))
    answer = router.ask("hello", tier="medium")
    assert answer.final.tier == "complex"
    # claude-mid fails over at once; gpt-mid, the last of medium, is retried (1 + max_retries) first.
    assert [c["model"] for c in server.calls()] == ["claude-mid", "gpt-mid", "gpt-mid", "gpt-mid", "claude-big"]
    assert len(router.sleeps) == 2


def test_retry_then_success_on_the_same_model(server, router, monkeypatch):
    monkeypatch.delenv("TEST_ANTHROPIC_KEY")  # gpt-small is then simple's only model: it is retried
    server.script("gpt-small", error(500), error(429))
    answer = router.ask("hello")
    assert answer.final.model == "gpt-small"
    assert [a.status for a in answer.attempts] == ["skipped", "error", "error", "ok"]
    assert all(0 <= s <= 0.01 for s in router.sleeps) and len(router.sleeps) == 2


def test_retry_after_is_honoured(server, config, db_path, monkeypatch):
    monkeypatch.delenv("TEST_ANTHROPIC_KEY")
    server.script("gpt-small", error(429, retry_after=1.5))
    now, sleeps = [1000.0], []

    def sleep(seconds: float) -> None:  # a clock that moves only when the router sleeps
        sleeps.append(seconds)
        now[0] += seconds

    with Router(config, db_path, sleep=sleep, monotonic=lambda: now[0]) as router:
        answer = router.ask("hello")
    # The wait is a pause of the provider, slept out in full before the next call to it.
    assert sleeps == [1.5]
    assert [(a.model, a.status) for a in answer.attempts] == [("claude-small", "skipped"), ("gpt-small", "error"),
                                                             ("gpt-small", "ok")]


def test_a_rate_limited_model_hands_over_to_its_tier_mate_at_once(server, router, db_path):
    server.script("claude-small", error(429, retry_after=1.5))
    answer = router.ask("hello")
    assert answer.final.model == "gpt-small" and answer.final.tier == "simple"
    assert router.sleeps == []
    assert [(r["model"], r["status"], r["escalated"]) for r in ledger_rows(db_path)] == [
        ("claude-small", "error", 0), ("gpt-small", "ok", 0)]


def test_retry_after_longer_than_allowed_moves_to_the_next_model(server, router):
    server.script("claude-small", error(429, retry_after=600))
    answer = router.ask("hello")
    assert answer.final.model == "gpt-small"
    assert router.sleeps == []


def test_a_hanging_model_times_out_and_falls_back(server, tmp_path, db_path):
    from router_cli.config import load_config
    from tests.conftest import write_config

    config = load_config(write_config(tmp_path / "fast.yaml", server.url, timeout=0.3))
    server.always("claude-small", hang(2))
    with Router(config, db_path, sleep=lambda s: None) as r:
        answer = r.ask("hello")
    assert answer.final.model == "gpt-small"
    assert [a.error_kind for a in answer.attempts[:-1]] == ["timeout"]  # its tier-mate takes over, no retries


def test_bad_request_fails_fast_without_fallback(server, router, db_path):
    server.script("claude-small", error(400, message="prompt is too long"))
    with pytest.raises(AllAttemptsFailed, match="prompt is too long") as info:
        router.ask("hello")
    assert info.value.exit_code == EXIT_REQUEST_REJECTED
    assert len(server.calls()) == 1
    assert [r["status"] for r in ledger_rows(db_path)] == ["error"]


def test_rejected_key_fails_fast_naming_the_variable(server, router, db_path):
    server.api_key = "the-right-key"
    with pytest.raises(MissingKeyError, match="TEST_ANTHROPIC_KEY") as info:
        router.ask("hello")
    assert "sk-" not in str(info.value)
    assert len(server.calls()) == 1
    assert ledger_rows(db_path)[0]["http_status"] == 401


def test_model_without_a_key_is_skipped(server, config, db_path, monkeypatch):
    monkeypatch.delenv("TEST_ANTHROPIC_KEY")
    with Router(config, db_path) as r:
        answer = r.ask("hello")
    assert answer.final.model == "gpt-small"
    assert [(a.model, a.status) for a in answer.attempts] == [("claude-small", "skipped"), ("gpt-small", "ok")]
    assert [r["model"] for r in ledger_rows(db_path)] == ["gpt-small"]  # skipped models were never called


def test_no_key_at_all_names_the_variables_and_writes_nothing(server, config, db_path, monkeypatch):
    monkeypatch.delenv("TEST_ANTHROPIC_KEY")
    monkeypatch.delenv("TEST_OPENAI_KEY")
    with pytest.raises(MissingKeyError, match="set TEST_ANTHROPIC_KEY or TEST_OPENAI_KEY"):
        Router(config, db_path).ask("hello")
    assert server.calls() == []
    assert ledger_rows(db_path) == []


def test_every_model_failing_lists_every_attempt(server, config, router, db_path):
    for tier in config.tiers:
        for m in tier.models:
            server.always(m.model, error(503))
    with pytest.raises(AllAttemptsFailed) as info:
        router.ask("hello")
    message = str(info.value)
    assert info.value.exit_code == EXIT_PROVIDER
    assert "12 attempts" in message
    for m in ("claude-small", "gpt-small", "claude-mid", "gpt-mid", "claude-big", "gpt-big"):
        assert f"{m}: HTTP 503 server: " in message and "(x3)" in message
    rows = ledger_rows(db_path)
    assert len(rows) == 12 and {r["status"] for r in rows} == {"error"}
    assert all(r["baseline_cost_nanousd"] == 0 for r in rows)


def test_costs_are_exact(server, router, db_path):
    server.script("claude-small", reply("one two three four five six seven", input_tokens=1234, output_tokens=567))
    answer = router.ask("hello")
    # 1234 * 0.80 / 1e6 + 567 * 4.00 / 1e6
    assert answer.cost == Decimal("0.0032552")
    # The baseline is the complex tier's first model at the same tokens: 1234 * 15 / 1e6 + 567 * 75 / 1e6
    assert answer.baseline_cost == Decimal("0.061035")
    row = ledger_rows(db_path)[0]
    assert row["cost_usd"] == "0.0032552" and row["cost_nanousd"] == 3_255_200
    assert row["baseline_cost_usd"] == "0.061035" and row["baseline_cost_nanousd"] == 61_035_000
    assert answer.to_json()["cost_usd"] == "0.0032552"


def test_tokens_billed_before_a_dropped_stream_count_in_the_cost(server, router, db_path):
    server.script("claude-small", drop(after_chunks=2))
    chunks = []
    answer = router.ask("hello world", on_text=chunks.append)
    failed, ok = answer.attempts
    # claude-small reported 2 input tokens ("hello world") and then broke off after "Answer to:" (2 of 4
    # chunks): 10 characters, estimated at (10 + 3) // 4 = 3 output tokens, more than the 1 it reported.
    # 2 * 0.80 + 3 * 4.00 = 13.6 micro-dollars. gpt-small then answered "Answer to: hello world":
    # 2 in, 4 out: 2 * 0.15 + 4 * 0.60 = 2.7 micro-dollars. Total 16.3.
    assert (failed.status, failed.model, failed.input_tokens, failed.output_tokens) == ("error", "claude-small", 2, 3)
    assert failed.usage_estimated and failed.cost == Decimal("0.0000136")
    assert (ok.model, ok.input_tokens, ok.output_tokens, ok.cost) == ("gpt-small", 2, 4, Decimal("0.0000027"))
    assert answer.cost == Decimal("0.0000163")
    assert [r["cost_nanousd"] for r in ledger_rows(db_path)] == [13_600, 2_700]
    assert "".join(chunks).endswith(answer.text)


def test_streaming_answer_and_time_to_first_token(server, router, db_path):
    chunks = []
    answer = router.ask("hello", on_text=chunks.append)
    assert "".join(chunks) == answer.text == "Answer to: hello"
    row = ledger_rows(db_path)[0]
    assert row["stream"] == 1 and row["ttft_ms"] is not None and row["ttft_ms"] <= row["duration_ms"]


@pytest.mark.parametrize("store,prompt_col,response_col,has_hash", [
    ("full", "hello " * 60, "Answer to: " + "hello " * 60, True),
    ("preview", ("hello " * 60)[:20] + "…", "Answer to: hello hel…", True),
    ("hash", None, None, True),
    ("none", None, None, False),
])
def test_what_is_stored_of_prompt_and_answer(server, tmp_path, db_path, store, prompt_col, response_col, has_hash):
    from router_cli.config import load_config
    from tests.conftest import write_config

    config = load_config(write_config(tmp_path / "t.yaml", server.url, extra=f"ledger:\n  store: {store}\n  preview_chars: 20\n"))
    with Router(config, db_path) as r:
        r.ask("hello " * 60, tier="simple")
    row = ledger_rows(db_path)[0]
    assert row["prompt"] == prompt_col
    assert row["response"] == response_col
    assert (row["prompt_hash"] is not None) is has_hash


def test_user_team_and_config_hash_are_recorded(server, router, db_path, config):
    router.ask("hello", user="ada", team="research")
    row = ledger_rows(db_path)[0]
    assert (row["user"], row["team"], row["command"]) == ("ada", "research", "ask")
    assert row["config_hash"] == config.config_hash and len(config.config_hash) == 16


def test_empty_prompt_and_zero_max_tokens_are_rejected_before_any_call(server, router, db_path):
    with pytest.raises(UsageError):
        router.ask("   \n")
    with pytest.raises(UsageError):
        router.ask("hello", max_tokens=0)
    assert server.calls() == [] and not db_path.exists()


@pytest.mark.parametrize("usage", ["null", "absent"])
@pytest.mark.parametrize("stream", [False, True])
def test_openai_compatible_servers_without_usage_get_estimates(server, router, db_path, usage, stream):
    server.script("gpt-small", reply("one two three four", usage=usage))
    server.always("claude-small", error(404))
    answer = router.ask("hello there", on_text=(lambda t: None) if stream else None)
    final = answer.final
    assert final.model == "gpt-small" and final.usage_estimated
    assert (final.input_tokens, final.output_tokens) == (3, 5)  # about four characters per token
    assert ledger_rows(db_path)[-1]["usage_estimated"] == 1


def test_413_moves_to_a_model_that_may_take_a_longer_prompt(server, router):
    server.script("claude-small", error(413, message="request too large"))
    assert router.ask("hello").final.model == "gpt-small"


# The first model that weights 3 : 1 draw for request ids 01SEEDED000...0 to ...11, pinned once.
SEEDED_FIRSTS = ["claude-small", "gpt-small"] + ["claude-small"] * 5 + ["gpt-small"] + ["claude-small"] * 4


def test_weighted_strategy_spreads_first_tries_by_weight_and_keeps_fallbacks(server, tmp_path, db_path, monkeypatch):
    from router_cli.config import load_config
    from tests.conftest import write_config

    text = write_config(tmp_path / "w.yaml", server.url).read_text().replace(
        "  - name: simple\n    models:\n", "  - name: simple\n    strategy: weighted\n    models:\n").replace(
        "max_tokens: 64}\n      - {provider: openai, model: gpt-small, price: {input: 0.15, output: 0.60}, max_tokens: 64}",
        "max_tokens: 64, weight: 3}\n      - {provider: openai, model: gpt-small, price: {input: 0.15, output: 0.60}, max_tokens: 64, weight: 1}")
    (tmp_path / "w.yaml").write_text(text)
    config = load_config(tmp_path / "w.yaml")
    simple = config.tier("simple")
    assert simple.strategy == "weighted" and [m.weight for m in simple.models] == [3.0, 1.0]
    firsts = [Router.models_of(simple, f"request-{i}")[0].model for i in range(4000)]
    assert 0.72 < firsts.count("claude-small") / 4000 < 0.78
    assert Router.models_of(simple, "same") == Router.models_of(simple, "same")  # reproducible per request
    assert all(len(Router.models_of(simple, f"r{i}")) == 2 for i in range(50))  # the other stays as fallback
    # Request ids are random; a fixed sequence of them makes the draw below the same on every run.
    ids = iter(f"01SEEDED{i:018d}" for i in range(1000))
    monkeypatch.setattr("router_cli.engine.router.new_id", lambda: next(ids))
    with Router(config, db_path, sleep=lambda s: None) as router:
        answers = [router.ask("hello", tier="simple") for _ in range(12)]
    assert [a.final.model for a in answers] == [Router.models_of(simple, a.request_id)[0].model for a in answers]
    assert [a.final.model for a in answers] == SEEDED_FIRSTS
