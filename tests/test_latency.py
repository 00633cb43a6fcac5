"""Latency as a routing signal (docs/latency.md): first-token timeouts, SLO demotion, hedged requests.

Through the real CLI, the real SDKs and tests/provider_server.py. Timing margins are wide: a slow
model's first token comes 20 s late while the limits are 0.5 s; a call is asserted to have been
given up within 3 s, and a whole command (SDK imports included, on a busy machine) to have taken
less than the 20 s it would have waited.
"""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal

import pytest

from tests.conftest import ledger_rows, write_config
from tests.provider_server import error, reply, tool_call

SLOW = 20.0


def _answer_rows(db_path):
    return [r for r in ledger_rows(db_path) if r["role"] == "answer"]


@pytest.mark.parametrize("slow, fast, stream", [
    ("claude-small", "gpt-small", "--stream"),
    ("claude-small", "gpt-small", "--no-stream"),  # not streamed to the reader: streamed inside, assembled
    ("gpt-small", "claude-small", "--stream"),
])
def test_a_slow_first_token_falls_back_within_the_limit(mmr, server, db_path, slow, fast, stream):
    server.always(slow, reply("late answer", first_token_delay=SLOW))
    started = time.perf_counter()
    tier = "simple" if slow == "claude-small" else "medium"
    if tier == "medium":  # claude-mid first, slow too; then gpt-mid answers
        server.always("claude-mid", reply("late answer", first_token_delay=SLOW))
        slow, fast = "claude-mid", "gpt-mid"
    result = mmr("ask", "--tier", tier, stream, "--json", "--first-token-timeout", "0.5", "hello there")
    wall = time.perf_counter() - started
    assert result.returncode == 0, result.stderr.decode()
    assert wall < SLOW, wall  # never the 20 s the slow model takes
    out = json.loads(result.stdout)
    rows = _answer_rows(db_path)
    assert [(r["model"], r["status"], r["error_kind"]) for r in rows] == [
        (slow, "error", "first_token_timeout"), (fast, "ok", None)]
    assert "no first token within 0.5 s; abandoned" in rows[0]["error"]
    assert 450 <= rows[0]["duration_ms"] < 3000
    assert rows[1]["ttft_ms"] is not None  # the answer streamed (inside, without --stream): its TTFT is known
    assert out["model"] == fast and out["text"] == "Answer to: hello there"
    assert [a["status"] for a in out["attempts"]] == ["error", "ok"]


def test_the_abandoned_call_keeps_the_tokens_its_provider_reported(mmr, server, db_path):
    """Anthropic reports the input tokens when the stream opens (message_start): they were billed."""
    server.always("claude-small", reply("late answer", first_token_delay=SLOW))
    result = mmr("ask", "--tier", "simple", "--json", "--first-token-timeout", "0.5", "hello there")
    assert result.returncode == 0, result.stderr.decode()
    abandoned = _answer_rows(db_path)[0]
    # 2 input tokens at 0.80 USD/M and the 1 output token message_start reports, at 4.00 USD/M.
    assert (abandoned["input_tokens"], abandoned["output_tokens"]) == (2, 1)
    assert abandoned["cost_usd"] == "0.0000056"
    assert json.loads(result.stdout)["attempts"][0]["cost_usd"] == "0.0000056"


@pytest.mark.parametrize("model, delay", [("claude-small", 0.14), ("gpt-small", 0.15)])
def test_an_answer_that_is_only_a_tool_call_starts_with_its_first_piece(server, config, db_path, model, delay):
    """A slow stream of a tool call (no text at all) that starts within the 1 s limit but ends after
    it (Anthropic's tool_use block opens 0.7 s in, OpenAI's first tool piece 0.3 s in; each stream
    takes 1.2 s or more): it is answered, not abandoned for want of a first token."""
    from router_cli import Router

    step = tool_call("lookup", {"city": "Paris"})
    step.extra["chunk_delay"] = delay
    server.always(model, step)
    with Router(config, db_path) as router:
        answer = router.ask("weather?", tier="simple", model=model, first_token_timeout=1.0)
    assert (answer.final.model, answer.final.status) == (model, "ok")
    assert [a.model for a in answer.attempts] == [model]  # not cut, no other model tried
    assert answer.final.tool_calls and "Paris" in json.dumps(answer.final.tool_calls[0])
    rows = _answer_rows(db_path)
    assert [(r["model"], r["status"], r["error_kind"]) for r in rows] == [(model, "ok", None)]
    assert rows[0]["ttft_ms"] is not None and 100 <= rows[0]["ttft_ms"] < rows[0]["duration_ms"]


def test_a_model_timeout_wins_over_its_providers(tmp_path, server, mmr, db_path):
    """Non-streamed: the model's own ``timeout`` bounds the call, not the provider's 30 s."""
    config = write_config(tmp_path / "t.yaml", server.url, timeout=30)
    text = config.read_text().replace("model: claude-small,", "model: claude-small, timeout: 0.5,")
    config.write_text(text)
    server.always("claude-small", reply("late", delay=SLOW))
    started = time.perf_counter()
    result = mmr("ask", "--config", str(config), "--tier", "simple", "--no-stream", "--json", "hello there")
    assert result.returncode == 0, result.stderr.decode()
    assert time.perf_counter() - started < SLOW  # the slow call was not waited for
    rows = _answer_rows(db_path)
    assert (rows[0]["model"], rows[0]["error_kind"]) == ("claude-small", "timeout")
    assert rows[0]["duration_ms"] < 3000
    assert rows[-1]["model"] == "gpt-small" and rows[-1]["status"] == "ok"


def _slo_config(tmp_path, server, slo: str = "{ttft: 0.2s, min_calls: 3}"):
    config = write_config(tmp_path / "slo.yaml", server.url, extra="breaker:\n  window: 600\n")
    config.write_text(config.read_text().replace("model: claude-small,", f"model: claude-small, slo: {slo},"))
    return config


def test_a_model_over_its_slo_is_demoted_until_it_recovers(tmp_path, server, mmr, db_path):
    from router_cli import Router
    from router_cli.config import load_config

    config = _slo_config(tmp_path, server)
    server.always("claude-small", reply("slow but there", first_token_delay=0.8))
    with Router(load_config(config), db_path) as router:
        for _ in range(3):  # three answers, each 0.8 s to its first token: p95 above the 0.2 s SLO
            assert router.ask("hello there", tier="simple").final.model == "claude-small"
    rows = _answer_rows(db_path)
    assert all(r["ttft_ms"] >= 700 for r in rows)  # not streamed to anyone, streamed inside for its TTFT

    result = mmr("ask", "--config", str(config), "--tier", "simple", "--json", "-v", "hello there")
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["model"] == "gpt-small"  # its tier-mate first now
    stderr = result.stderr.decode()
    assert "demoted anthropic/claude-small: p95 time to first token" in stderr
    assert "above its SLO of 200 ms" in stderr
    assert "demoted anthropic/claude-small" in _answer_rows(db_path)[-1]["policy"]

    health = json.loads(mmr("health", "--config", str(config), "--json").stdout)
    claude = next(m for m in health["models"] if m["model"] == "claude-small")
    assert claude["demoted"] is True and "p95 time to first token" in claude["demoted_reason"]
    assert claude["slo"] == {"ttft_p95_ms": 200.0, "latency_p95_ms": None, "min_calls": 3}
    assert claude["ttft_p50_ms"] >= 700 and claude["ttft_p95_ms"] >= 700
    gpt = next(m for m in health["models"] if m["model"] == "gpt-small")
    assert gpt["demoted"] is False and gpt["demoted_reason"] is None and gpt["slo"] is None
    table = " ".join(mmr("health", "--config", str(config)).stdout.decode().split())
    assert re.search(r"│ anthropic/claude-small │ [\d,]+/[\d,]+ │ [\d,]+/[\d,]+ │ 200/- │ demoted │", table)
    assert "Demoted (slow)" in table and "tried after its tier-mates until it recovers" in table

    # Asked for by name (a session's pin), a demoted model still comes after its tier-mates.
    with Router(load_config(config), db_path) as router:
        assert router.ask("hello there", tier="simple", model="claude-small").final.model == "gpt-small"
        assert router.ask("hello there", tier="simple", model="gpt-small").final.model == "gpt-small"

    # Once the slow calls have left the breaker window (600 s), it is first again.
    server.always("claude-small", None)
    with Router(load_config(config), db_path, clock=lambda: time.time() + 601) as later:
        answer = later.ask("hello there", tier="simple")
        assert later.ask("hello there", tier="simple", model="gpt-small").final.model == "gpt-small"  # pinned first
    assert answer.final.model == "claude-small" and not answer.policy


def test_too_few_calls_do_not_demote(tmp_path, server, db_path):
    from router_cli import Router
    from router_cli.config import load_config

    config = _slo_config(tmp_path, server, "{ttft: 0.2s, min_calls: 5}")
    server.always("claude-small", reply("slow", first_token_delay=0.5))
    with Router(load_config(config), db_path) as router:
        answers = [router.ask("hello there", tier="simple") for _ in range(3)]
    assert {a.final.model for a in answers} == {"claude-small"} and not any(a.policy for a in answers)


def _hedge_config(tmp_path, server, hedge: str = "0.3s"):
    config = write_config(tmp_path / "hedge.yaml", server.url, timeout=30)  # no provider timeout in the race
    config.write_text(config.read_text().replace("  - name: simple\n", f"  - name: simple\n    hedge: {hedge}\n"))
    return config


@pytest.mark.parametrize("stream", ["--stream", "--no-stream"])
def test_a_hedged_request_returns_the_faster_answer_and_records_both(tmp_path, server, mmr, db_path, stream):
    config = _hedge_config(tmp_path, server)
    server.always("claude-small", reply("slow answer", first_token_delay=SLOW))
    started = time.perf_counter()
    result = mmr("ask", "--config", str(config), "--tier", "simple", stream, "--json", "-v", "hello there")
    assert result.returncode == 0, result.stderr.decode()
    assert time.perf_counter() - started < SLOW  # the slow call was not waited for
    out = json.loads(result.stdout)
    assert (out["model"], out["text"]) == ("gpt-small", "Answer to: hello there")
    assert [(a["model"], a["status"], a["hedge"]) for a in out["attempts"]] == [
        ("claude-small", "error", "lost"), ("gpt-small", "ok", "won")]
    rows = _answer_rows(db_path)
    assert [(r["model"], r["status"], r["error_kind"], r["hedge"]) for r in rows] == [
        ("claude-small", "error", "hedge_lost", "lost"), ("gpt-small", "ok", None, "won")]
    # The loser is billed what Anthropic reported when its stream opened: 2 input tokens, 1 output token.
    assert (rows[0]["input_tokens"], rows[0]["output_tokens"], rows[0]["cost_usd"]) == (2, 1, "0.0000056")
    assert 250 <= rows[0]["duration_ms"] < 3000
    # gpt-small: 2 tokens in at 0.15 USD/M, 4 out at 0.60 USD/M = 0.0000027; with the loser, 0.0000083.
    assert out["cost_usd"] == "0.0000083"
    assert "had not started after 0.3 s: hedged with openai/gpt-small" in result.stderr.decode()

    costs = json.loads(mmr("costs", "--json").stdout)
    assert costs["hedging"] == {"requests": 1, "cancelled_calls": 1, "cancelled_usd": "0.0000056",
                                "share_of_spend": pytest.approx(56 / 83)}
    text = " ".join(mmr("costs").stdout.decode().split())
    assert "Hedging: 1 hedged requests; the 1 calls they cancelled cost $0.000006, 67.5% of spend." in text
    # The cancelled call is a call of claude-small, not one of its failures.
    health = json.loads(mmr("health", "--config", str(config), "--json").stdout)
    claude = next(m for m in health["models"] if m["model"] == "claude-small")
    assert (claude["calls"], claude["errors"], claude["error_rate"]) == (1, 0, 0.0)
    # Nor in the dashboard's per-model errors.
    from datetime import datetime, timedelta, timezone

    from router_cli.ledger import open_ledger
    from router_cli.reports.dashboard import dashboard

    with open_ledger(db_path) as ledger:
        data = dashboard(ledger, datetime.now(timezone.utc) - timedelta(hours=1))
    models = {m["model"]: m for m in data["models"]}
    assert (models["claude-small"]["calls"], models["claude-small"]["errors"]) == (1, 0)
    assert (models["gpt-small"]["calls"], models["gpt-small"]["errors"]) == (1, 0)


def test_the_first_model_wins_when_it_starts_first(tmp_path, server, mmr, db_path):
    config = _hedge_config(tmp_path, server)
    server.always("claude-small", reply("first after all", first_token_delay=1.0))
    server.always("gpt-small", reply("later", first_token_delay=SLOW))
    result = mmr("ask", "--config", str(config), "--tier", "simple", "--json", "hello there")
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["text"] == "first after all"
    rows = _answer_rows(db_path)
    # In the order the calls started: the first model (it won), then its hedge.
    assert [(r["model"], r["status"], r["hedge"], r["attempt"]) for r in rows] == [
        ("claude-small", "ok", "won", 1), ("gpt-small", "error", "lost", 2)]
    rows = rows[::-1]
    # OpenAI reports usage only at the end: the request reached it (its stream opened), so its input is
    # billed as an estimate, as for an interrupted stream: "\nhello there" is 3 tokens at 0.15 USD/M.
    assert (rows[0]["input_tokens"], rows[0]["output_tokens"], rows[0]["usage_estimated"]) == (3, 0, 1)
    assert rows[0]["cost_usd"] == "0.00000045"


def test_an_abandoned_openai_call_is_billed_its_estimated_input(server, config, db_path):
    from router_cli import Router

    server.always("gpt-small", reply("late answer", first_token_delay=SLOW))
    with Router(config, db_path) as router:
        answer = router.ask("hello there", tier="simple", model="gpt-small", first_token_timeout=0.5)
    assert answer.final.model == "claude-small"
    rows = _answer_rows(db_path)
    assert [(r["model"], r["error_kind"]) for r in rows] == [("gpt-small", "first_token_timeout"), ("claude-small", None)]
    # 3 input tokens estimated ("\nhello there") at 0.15 USD/M; no output.
    assert (rows[0]["input_tokens"], rows[0]["output_tokens"], rows[0]["usage_estimated"]) == (3, 0, 1)
    assert rows[0]["cost_usd"] == "0.00000045" and answer.attempts[0].cost == Decimal("0.00000045")


def test_ctrl_c_while_the_winning_hedge_streams_keeps_both_calls(tmp_path, server, db_path):
    """Ctrl-C (a KeyboardInterrupt out of the reader, after the first chunk went out) while the hedge
    that won streams its answer: both calls are in the ledger, each billed."""
    from router_cli import Router
    from router_cli.config import load_config

    server.always("claude-small", reply("slow answer", first_token_delay=SLOW))
    server.always("gpt-small", reply("one two three four five six", chunk_delay=0.05))
    seen: list[str] = []

    def reader(text: str) -> None:
        seen.append(text)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with Router(load_config(_hedge_config(tmp_path, server)), db_path) as router:
        with pytest.raises(KeyboardInterrupt):
            router.ask("hello there", tier="simple", on_text=reader)
    rows = _answer_rows(db_path)
    assert [(r["model"], r["status"], r["error_kind"], r["hedge"]) for r in rows] == [
        ("claude-small", "error", "hedge_lost", "lost"), ("gpt-small", "error", "interrupted", "won")]
    assert rows[0]["cost_usd"] == "0.0000056"  # 2 in, 1 out, as Anthropic reported when its stream opened
    # OpenAI reported nothing yet: "\nhello there" estimated at 3 tokens in, the one chunk that went out
    # ("one") at 1 token out: 3 x 0.15 + 1 x 0.60 USD/M.
    assert (rows[1]["input_tokens"], rows[1]["output_tokens"], rows[1]["usage_estimated"]) == (3, 1, 1)
    assert rows[1]["cost_usd"] == "0.00000105"


def test_a_hedge_rejecting_the_request_stops_the_chain(tmp_path, server, db_path):
    """The hedge's 400 (the request itself is wrong) ends the chain as any 400 does: no other model is
    tried; the first model, too slow to start, is given up."""
    from router_cli import Router
    from router_cli.config import load_config
    from router_cli.errors import EXIT_REQUEST_REJECTED, AllAttemptsFailed

    server.always("claude-small", reply("slow answer", first_token_delay=SLOW))
    server.always("gpt-small", error(400, message="bad field"))
    with Router(load_config(_hedge_config(tmp_path, server)), db_path) as router:
        with pytest.raises(AllAttemptsFailed) as failed:
            router.ask("hello there", tier="simple", first_token_timeout=0.5)
    assert failed.value.exit_code == EXIT_REQUEST_REJECTED
    assert "rejected the request" in str(failed.value) and "bad field" in str(failed.value)
    assert [(r["model"], r["error_kind"]) for r in _answer_rows(db_path)] == [
        ("claude-small", "first_token_timeout"), ("gpt-small", "bad_request")]
    assert server.calls("claude-mid") == [] and server.calls("gpt-mid") == []


def test_a_hedge_given_up_at_its_own_first_token_limit_is_labelled_so(tmp_path, server, db_path):
    """The hedge (gpt-small, its own limit 0.2 s) runs out of time before the first model starts:
    it is a first_token_timeout, not a call cancelled because the other started first."""
    from router_cli import Router
    from router_cli.config import load_config

    config = _hedge_config(tmp_path, server)
    config.write_text(config.read_text().replace("model: gpt-small,", "model: gpt-small, first_token_timeout: 0.2,"))
    server.always("claude-small", reply("first after all", first_token_delay=1.0))
    server.always("gpt-small", reply("later", first_token_delay=SLOW))
    with Router(load_config(config), db_path) as router:
        assert router.ask("hello there", tier="simple").text == "first after all"
    rows = {r["model"]: r for r in _answer_rows(db_path)}
    assert (rows["gpt-small"]["error_kind"], rows["gpt-small"]["hedge"]) == ("first_token_timeout", "lost")
    assert "no first token within 0.2 s; abandoned" in rows["gpt-small"]["error"]
    assert (rows["claude-small"]["status"], rows["claude-small"]["hedge"]) == ("ok", "won")


def test_a_hedges_retry_after_pauses_its_provider(tmp_path, server, db_path):
    """The hedge's 429 with retry-after 4 s: its provider is paused as after any such failure (the
    next tier's OpenAI model waits; its Anthropic model answers)."""
    from router_cli import Router
    from router_cli.config import load_config

    server.always("claude-small", reply("slow answer", first_token_delay=SLOW))
    server.always("gpt-small", error(429, retry_after=4))
    with Router(load_config(_hedge_config(tmp_path, server)), db_path) as router:
        answer = router.ask("hello there", tier="simple", first_token_timeout=0.5)
        assert router.admitter.pauses.remaining("openai") > 2
    assert answer.final.model == "claude-mid"
    assert [(r["model"], r["error_kind"]) for r in _answer_rows(db_path)] == [
        ("claude-small", "first_token_timeout"), ("gpt-small", "rate_limit"), ("claude-mid", None)]


def test_no_hedge_when_the_budget_could_not_hold_both_calls(tmp_path, server, mmr, db_path):
    from router_cli.config import load_config
    from router_cli.engine.admission import worst_case

    config = _hedge_config(tmp_path, server)
    first, second = load_config(config).tiers[0].models
    one = worst_case(first, "hello there", None, 64)
    both = one + worst_case(second, "hello there", None, 64)
    server.always("claude-small", reply("slow but alone", first_token_delay=1.0))
    result = mmr("ask", "--config", str(config), "--tier", "simple", "--json", "-v", "--max-cost", str((one + both) / 2),
                 "hello there")
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["text"] == "slow but alone"
    assert "not hedging with simple openai/gpt-small: --max-cost could not hold both calls" in result.stderr.decode()
    assert [(r["model"], r["hedge"]) for r in _answer_rows(db_path)] == [("claude-small", None)]


@pytest.mark.parametrize("old, new, message", [
    ("    timeout: 2.0\n", "    timeout: 2.0\n    first_token_timeout: soon\n",
     "providers.anthropic.first_token_timeout: expected seconds or a duration like 1.5s, 500ms, 2m; got 'soon'"),
    ("model: claude-small,", "model: claude-small, first_token_timeout: 0,",
     "tiers[0].models[0].first_token_timeout: must be above 0 and at most 3600 seconds, got 0"),
    ("model: claude-small,", "model: claude-small, timeout: 2h,",
     "tiers[0].models[0].timeout: expected seconds or a duration like 1.5s, 500ms, 2m; got '2h'"),
    ("model: claude-small,", "model: claude-small, slo: {p99: 2s},",
     "tiers[0].models[0].slo.p99: unknown key (allowed: min_calls, total, ttft)"),
    ("model: claude-small,", "model: claude-small, slo: {min_calls: 3},",
     "tiers[0].models[0].slo: give ttft (p95 seconds to the first token), total (p95 seconds of the call), or both"),
    ("model: claude-small,", "model: claude-small, slo: {ttft: -1},",
     "tiers[0].models[0].slo.ttft: must be above 0 and at most 3600 seconds, got -1"),
    ("model: claude-small,", "model: claude-small, slo: {total: 3s, min_calls: 0},",
     "tiers[0].models[0].slo.min_calls: must be between 1 and 100000"),
    ("  - name: medium\n", "  - name: medium\n    hedge: [1]\n",
     "tiers[1].hedge: expected seconds or a duration like 1.5s, 500ms, 2m; got a list"),
    ("  - name: simple\n", "  - name: simple\n    hedge: true\n",
     "tiers[0].hedge: expected seconds or a duration like 1.5s, 500ms, 2m; got a boolean (True)"),
])
def test_bad_latency_values_are_config_errors_naming_the_key(tmp_path, server, mmr, old, new, message):
    config = write_config(tmp_path / "bad.yaml", server.url)
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new, 1))
    result = mmr("ask", "--config", str(config), "--tier", "simple", "hello")
    assert result.returncode == 3
    assert result.stderr.decode() == f"Error: {config}: {message}\n"
    assert b"Traceback" not in result.stderr


def test_a_local_model_takes_no_first_token_timeout(tmp_path, server, mmr):
    """llama.cpp runs in process and cannot be cut off: the key is refused on a local model, and a
    local provider takes no such key at all."""
    config = write_config(tmp_path / "local.yaml", server.url)
    text = config.read_text().replace("  openai:\n", "  llama:\n    type: local\n  openai:\n", 1)
    model = "      - {provider: llama, model: tiny, first_token_timeout: 1s}\n"
    config.write_text(text.replace("  - name: medium\n", model + "  - name: medium\n", 1))
    result = mmr("ask", "--config", str(config), "--tier", "simple", "hello")
    assert result.returncode == 3
    assert result.stderr.decode() == (
        f"Error: {config}: tiers[0].models[2].first_token_timeout: a local model's call cannot be cut off "
        "(llama.cpp runs in this process): drop first_token_timeout from this model\n")
    config.write_text(text.replace("    type: local\n", "    type: local\n    first_token_timeout: 1s\n", 1))
    result = mmr("ask", "--config", str(config), "--tier", "simple", "hello")
    assert result.returncode == 3 and "providers.llama.first_token_timeout: unknown key" in result.stderr.decode()


def test_the_first_token_timeout_flag_skips_local_models(config):
    """``--first-token-timeout`` is for the models that can be cut off: not a local one."""
    from router_cli.config import ProviderSpec
    from router_cli.engine.latency import first_token_limit

    model = config.tiers[0].models[1]
    assert first_token_limit(model, config.providers["openai"], 0.5) == 0.5
    assert first_token_limit(model, ProviderSpec("llama", "local", None), 0.5) is None


def test_hedge_needs_a_second_model_in_its_tier(tmp_path, server, mmr):
    config = tmp_path / "one.yaml"
    config.write_text(f"providers:\n  openai: {{type: openai, base_url: '{server.url}/v1', api_key_env: TEST_OPENAI_KEY}}\n"
                      "tiers:\n  - name: only\n    hedge: 1.5s\n    models:\n      - {provider: openai, model: gpt-small, price: free}\n")
    result = mmr("ask", "--config", str(config), "hello")
    assert result.returncode == 3
    assert "one.yaml: tiers[0].hedge: hedging calls the tier's next model too: this tier has only one" in result.stderr.decode()


def test_a_bad_first_token_timeout_flag_is_a_usage_error(mmr):
    result = mmr("ask", "--first-token-timeout", "0", "hello")
    assert result.returncode == 2
    assert "--first-token-timeout must be above 0 and at most 3600 seconds, got 0" in result.stderr.decode()


def test_first_token_timeouts_from_the_config_model_over_provider(tmp_path, server, mmr, db_path):
    """The provider's 0.5 s applies to claude-small; claude-mid's own 30 s wins over it; the flag over both."""
    config = write_config(tmp_path / "ftt.yaml", server.url)
    text = config.read_text().replace("    timeout: 2.0\n", "    timeout: 2.0\n    first_token_timeout: 500ms\n", 1)
    config.write_text(text.replace("model: claude-mid,", "model: claude-mid, first_token_timeout: 30,"))
    server.always("claude-small", reply("late", first_token_delay=SLOW))
    result = mmr("ask", "--config", str(config), "--tier", "simple", "--json", "hello there")
    assert result.returncode == 0, result.stderr.decode()
    assert [(r["model"], r["error_kind"]) for r in _answer_rows(db_path)] == [
        ("claude-small", "first_token_timeout"), ("gpt-small", None)]
    server.always("claude-mid", reply("worth the wait", first_token_delay=1.0))
    result = mmr("ask", "--config", str(config), "--tier", "medium", "--json", "hello there")
    assert json.loads(result.stdout)["text"] == "worth the wait"  # 1 s is within its own 30 s
    result = mmr("ask", "--config", str(config), "--tier", "medium", "--json", "--first-token-timeout", "0.3", "hello there")
    assert json.loads(result.stdout)["model"] == "gpt-mid"  # the flag's 0.3 s over the model's 30 s


def test_health_json_keys(mmr):
    models = json.loads(mmr("health", "--json").stdout)["models"]
    assert set(models[0]) == {
        "provider", "model", "tiers", "state", "recent_failures", "failures_to_open", "calls", "errors", "error_rate",
        "latency_p50_ms", "latency_p95_ms", "ttft_p50_ms", "ttft_p95_ms", "slo", "demoted", "demoted_reason",
        "retry_at", "last_error"}
    assert (models[0]["slo"], models[0]["demoted"], models[0]["demoted_reason"]) == (None, False, None)


def test_costs_json_has_hedging_with_no_hedges(mmr, server):
    assert mmr("ask", "--tier", "simple", "hello").returncode == 0
    hedging = json.loads(mmr("costs", "--json").stdout)["hedging"]
    assert hedging == {"requests": 0, "cancelled_calls": 0, "cancelled_usd": "0", "share_of_spend": 0.0}


def test_demotion_and_hedging_read_both_ledgers(tmp_path, server, ledger_url):
    """The SLO samples and the hedging spend are read the same way from SQLite and PostgreSQL."""
    from datetime import datetime, timedelta, timezone

    from router_cli import Router
    from router_cli.config import load_config
    from router_cli.ledger import open_ledger
    from router_cli.ledger.queries import model_call_counts
    from router_cli.reports.costs import hedge_summary
    from router_cli.reports.dashboard import dashboard

    config = _slo_config(tmp_path, server, "{ttft: 0.2s, min_calls: 2}")
    config.write_text(config.read_text().replace("  - name: simple\n", "  - name: simple\n    hedge: 0.3s\n"))
    server.always("claude-small", reply("slow", first_token_delay=SLOW))
    with Router(load_config(config), ledger_url) as router:
        answers = [router.ask("hello there", tier="simple") for _ in range(3)]
    assert [a.final.model for a in answers] == ["gpt-small"] * 3
    assert [a.final.hedge for a in answers] == ["won", "won", None]  # then demoted: gpt-small first, no hedge
    assert any("demoted anthropic/claude-small" in p for p in answers[2].policy)
    now = datetime.now(timezone.utc)
    with open_ledger(ledger_url) as ledger:
        summary = hedge_summary(ledger, now - timedelta(hours=1), now + timedelta(minutes=1), answers[0].cost * 2)
        # The two cancelled calls are calls of claude-small, not failures: in mmr health and the dashboard.
        counts = {m: (calls, errors) for _, m, calls, errors in model_call_counts(ledger, now - timedelta(hours=1))}
        models = {m["model"]: m for m in dashboard(ledger, now - timedelta(hours=1))["models"]}
    assert counts["claude-small"] == (2, 0)
    assert (models["claude-small"]["calls"], models["claude-small"]["errors"]) == (2, 0)
    assert summary["requests"] == 2 and summary["cancelled_calls"] == 2
    assert summary["cancelled_usd"] == "0.0000112"  # 2 x (2 input tokens at 0.80 + 1 output at 4.00 per M)


@pytest.mark.parametrize("doc", ["README.md", "docs/latency.md"])
def test_the_documented_latency_config_is_valid(doc):
    from router_cli.config import parse_config
    from tests.conftest import ROOT

    text = (ROOT / doc).read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "hedge:" in b]
    assert blocks
    for block in blocks:
        config = parse_config(block, doc)
        assert config.tiers[0].hedge == 1.5
        assert config.tiers[0].models[0].slo is not None


def test_cascade_and_batch_take_the_first_token_timeout(server, mmr, db_path):
    server.always("claude-small", reply("late", first_token_delay=SLOW))
    result = mmr("cascade", "--json", "--gate", "heuristic", "--first-token-timeout", "0.5",
                 "Explain briefly why the sky is blue to a curious child")
    assert result.returncode == 0, result.stderr.decode()
    out = json.loads(result.stdout)
    assert out["model"] == "gpt-small" and out["attempts"][0]["status"] == "error"
    rows = [json.dumps({"id": i, "prompt": f"hello there {i}"}) for i in range(2)]
    result = mmr("ask", "--batch", "-", "--processes", "2", "--concurrency", "2", "--tier", "simple",
                 "--first-token-timeout", "0.5", input="\n".join(rows) + "\n")
    assert result.returncode == 0, result.stderr.decode()
    assert [json.loads(line)["model"] for line in result.stdout.decode().splitlines()] == ["gpt-small"] * 2
    abandoned = [r for r in _answer_rows(db_path) if r["error_kind"] == "first_token_timeout"]
    assert len(abandoned) == 3 and all(r["duration_ms"] < 3000 for r in abandoned)
