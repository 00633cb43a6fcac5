"""`mmr cascade` through the real SDKs: gates, escalation, judge parsing and failures, exact costs."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from router_cli import cascade
from router_cli.config import load_config
from router_cli.errors import EXIT_PROVIDER, EXIT_USAGE, AllAttemptsFailed, UsageError
from router_cli.engine.gates import heuristic_gate, parse_judge_score
from router_cli import Router
from tests.conftest import ledger_rows, write_config
from tests.provider_server import error, reply


@pytest.fixture
def db_path(ledger_url):
    """Every test here runs on an SQLite file and on a PostgreSQL database."""
    return ledger_url

QUESTION = "Explain why the sky is blue"


@pytest.fixture
def make_router(tmp_path, server, db_path):
    routers = []

    def make(extra: str = "") -> Router:
        config = load_config(write_config(tmp_path / "cascade.yaml", server.url, extra=extra))
        r = Router(config, db_path, sleep=lambda s: None)
        routers.append(r)
        return r

    yield make
    for r in routers:
        r.close()


def test_a_weak_answer_escalates_and_a_strong_one_stops(server, make_router, db_path):
    server.script("claude-small", reply("I don't know."))
    answer = cascade(make_router(), QUESTION, gate="heuristic")
    assert answer.final.model == "claude-mid" and not answer.best_effort
    assert [(a.tier, a.status, a.quality) for a in answer.attempts] == [("simple", "rejected", 0.1), ("medium", "ok", 1.0)]
    rows = ledger_rows(db_path)
    assert [(r["status"], r["role"], r["quality"]) for r in rows] == [("rejected", "answer", 0.1), ("ok", "answer", 1.0)]
    assert rows[0]["gate_reason"] == "a refusal or 'I don't know'"
    assert {(r["command"], r["routed_tier"], r["escalated"]) for r in rows} == {("cascade", "simple", 1)}
    assert [r["model"] for r in server.calls()] == ["claude-small", "claude-mid"]  # no judge with the heuristic gate


def test_a_good_first_answer_costs_one_call(server, make_router, db_path):
    answer = cascade(make_router(), QUESTION, gate="heuristic")
    assert answer.final.tier == "simple" and len(server.calls()) == 1
    assert ledger_rows(db_path)[0]["escalated"] == 0


def test_a_truncated_answer_escalates(server, make_router):
    server.script("claude-small", reply(" ".join(["blue"] * 100)))  # over the tier's max_tokens of 64
    answer = cascade(make_router(), QUESTION, gate="heuristic")
    first = answer.attempts[0]
    assert first.stop_reason == "max_tokens" and first.status == "rejected" and first.gate_reason == "cut off at the token limit"
    assert answer.final.tier == "medium"


@pytest.mark.parametrize("verdict,score", [
    ("0.8", 0.8), ("8/10", 0.8), ("Score: 0.8", 0.8), ("score=0.9", 0.9), (" 1 ", 1.0), ("4/5.", 0.8),
    ("Excellent answer", None), ("8", None), ("1.5", None), ("0.8 because it is clear", None), ("", None),
])
def test_judge_outputs(verdict, score):
    assert parse_judge_score(verdict) == score


@pytest.mark.parametrize("verdict,accepted_tier,first_quality", [("0.9", "simple", 0.9), ("8/10", "simple", 0.8),
                                                                   ("Score: 0.3", "medium", 0.3), ("great", "medium", 0.0)])
def test_the_judge_decides(server, make_router, db_path, verdict, accepted_tier, first_quality):
    # claude-small both answers (simple tier) and judges (the cheapest tier judges by default).
    server.script("claude-small", reply(), reply(verdict), reply("0.95"))
    answer = cascade(make_router(), QUESTION, gate="judge")
    assert answer.final.tier == accepted_tier
    assert answer.attempts[0].quality == first_quality
    judge_calls = [c for c in server.calls() if "Score (0 to 1)" in c["body"]["messages"][0]["content"]]
    # Anthropic's API takes no temperature; a few output tokens are enough for a score.
    assert judge_calls and all("temperature" not in c["body"] and c["body"]["max_tokens"] == 16 for c in judge_calls)
    roles = [(r["role"], r["status"]) for r in ledger_rows(db_path)]
    assert roles[:2] == [("answer", "ok" if accepted_tier == "simple" else "rejected"), ("judge", "ok")]


def test_an_openai_judge_runs_at_temperature_zero(server, make_router):
    server.script("claude-small", reply(), error(404))  # the answer, then the judge's first model is gone
    server.script("gpt-small", reply("0.9"))
    answer = cascade(make_router(), QUESTION, gate="judge")
    assert answer.final.tier == "simple" and answer.final.quality == 0.9
    body = server.calls("gpt-small")[0]["body"]
    assert body["temperature"] == 0 and body["max_tokens"] == 16
    assert body["messages"][0]["role"] == "system" and "grade answers" in body["messages"][0]["content"]


def test_gate_both_skips_the_judge_when_the_free_checks_fail(server, make_router):
    server.script("claude-small", reply(""), reply("0.9"))
    answer = cascade(make_router(), QUESTION, gate="both")
    assert answer.attempts[0].gate_reason == "empty answer"
    # medium's answer passes the free checks, so the judge (claude-small) is asked about it.
    assert [c["model"] for c in server.calls()] == ["claude-small", "claude-mid", "claude-small"]


def test_a_failing_judge_falls_back_to_the_heuristic_gate(server, make_router, db_path):
    router = make_router("cascade:\n  judge_tier: complex\n")
    server.always("claude-big", error(500))
    server.always("gpt-big", error(503))
    notes = []
    router.on_note = notes.append
    answer = cascade(router, QUESTION, gate="judge")
    assert answer.final.tier == "simple" and answer.final.status == "ok"
    assert answer.final.gate_reason.startswith("judge failed; heuristic gate used")
    assert any("using the heuristic gate" in n for n in notes)
    judge_rows = [r for r in ledger_rows(db_path) if r["role"] == "judge"]
    # claude-big fails over to gpt-big at once; gpt-big, the tier's last model, is tried 1 + 2 retries.
    assert [r["model"] for r in judge_rows] == ["claude-big"] + ["gpt-big"] * 3
    assert {r["status"] for r in judge_rows} == {"error"}


def test_a_failing_judge_fails_the_gate_when_configured(server, make_router):
    router = make_router("cascade:\n  judge_tier: complex\n  on_judge_error: fail\n")
    server.always("claude-big", error(404))
    server.always("gpt-big", error(404))
    answer = cascade(router, QUESTION, gate="judge", max_tier="medium")
    assert answer.best_effort  # every gate failed, so the best (here: the last) answer comes back
    assert [a.status for a in answer.attempts if a.role == "answer"] == ["rejected", "best_effort"]


def test_best_effort_when_no_tier_passes(server, make_router, mmr, config_path, db_path):
    for model in ("claude-small", "claude-mid", "claude-big"):
        server.always(model, reply("I'm sorry, I can't help with that."))
    result = mmr("cascade", "--json", "--gate", "heuristic", QUESTION)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["best_effort"] is True and out["tier"] == "complex" and out["quality"] == 0.1
    assert [a["status"] for a in out["attempts"]] == ["rejected", "rejected", "best_effort"]
    assert "no tier passed the quality gate" in result.stderr.decode()  # said even without --verbose


def test_costs_of_answers_and_judge_calls_add_up_exactly(server, make_router, db_path):
    server.script("claude-small", reply("too short", input_tokens=1000, output_tokens=3),  # answer: fails the judge
                  reply("0.2", input_tokens=1200, output_tokens=1),  # judge of simple's answer
                  reply("0.9", input_tokens=1300, output_tokens=1))  # judge of medium's answer
    server.script("claude-mid", reply("a full and careful answer", input_tokens=1000, output_tokens=500))
    answer = cascade(make_router(), QUESTION, gate="judge")
    # In micro-dollars (prices are per 1M tokens):
    #   simple's answer  claude-small 1000 in, 3 out:    1000 * 0.80 +   3 *  4.00 =   812
    #   its judge        claude-small 1200 in, 1 out:    1200 * 0.80 +   1 *  4.00 =   964
    #   medium's answer  claude-mid   1000 in, 500 out:  1000 * 3.00 + 500 * 15.00 = 10500
    #   its judge        claude-small 1300 in, 1 out:    1300 * 0.80 +   1 *  4.00 =  1044
    #   total 13320 -> $0.01332
    # Baseline: one claude-big call with the accepted answer's tokens: 1000 * 15 + 500 * 75 = 52500 -> $0.0525
    assert answer.cost == Decimal("0.01332")
    assert answer.baseline_cost == Decimal("0.0525")
    out = answer.to_json()
    assert out["cost_usd"] == "0.01332" and out["savings_usd"] == "0.03918"  # 52500 - 13320 = 39180
    rows = ledger_rows(db_path)
    assert sum(r["cost_nanousd"] for r in rows) == 13_320_000
    assert sum(r["baseline_cost_nanousd"] for r in rows) == 52_500_000


def test_savings_can_be_negative(server, make_router):
    for model in ("claude-small", "claude-mid"):
        server.script(model, reply("I don't know.", input_tokens=10, output_tokens=3))
    server.script("claude-big", reply("ok then", input_tokens=10, output_tokens=3))
    answer = cascade(make_router(), "hello there friend", gate="heuristic")
    assert answer.final.tier == "complex" and answer.baseline_cost < answer.cost
    assert Decimal(answer.to_json()["savings_usd"]) < 0


def test_provider_errors_inside_a_tier_fall_back_then_escalate(server, make_router):
    server.always("claude-small", error(500))
    server.always("gpt-small", error(529, error_type="overloaded_error"))
    answer = cascade(make_router(), QUESTION, gate="heuristic")
    assert answer.final.model == "claude-mid"


def test_every_tier_erroring_fails_like_ask(server, make_router, mmr, config):
    for tier in config.tiers:
        for m in tier.models:
            server.always(m.model, error(500))
    with pytest.raises(AllAttemptsFailed, match=r"every model failed \(12 attempts\)"):
        cascade(make_router(), QUESTION, gate="heuristic")
    result = mmr("cascade", QUESTION)
    assert result.returncode == EXIT_PROVIDER


def test_start_and_max_tier(server, make_router):
    router = make_router()
    answer = cascade(router, "hi", start_tier="medium", gate="heuristic")
    assert answer.attempts[0].tier == "medium" and answer.decision.tier == "medium"
    server.always("claude-small", reply("I don't know."))
    server.always("gpt-small", reply("I don't know."))
    answer = cascade(router, QUESTION, max_tier="simple", gate="heuristic")
    assert answer.best_effort and {a.tier for a in answer.attempts} == {"simple"}


def test_from_classifier_starts_where_the_rules_route(server, make_router):
    answer = cascade(make_router(), "Please write code that parses CSV files into typed records",
                     from_classifier=True, gate="heuristic")
    assert answer.attempts[0].tier == "complex" and answer.decision.classifier == "rules"


@pytest.mark.parametrize("kwargs,message", [
    ({"threshold": 1.5}, "--threshold must be between 0 and 1"),
    ({"gate": "vibes"}, "--gate: unknown gate 'vibes'; valid gates: heuristic, judge, both"),
    ({"start_tier": "complex", "max_tier": "simple"}, "--max-tier simple is below the starting tier complex"),
    ({"start_tier": "huge"}, "--start-tier: unknown tier 'huge'"),
    ({"start_tier": "simple", "from_classifier": True}, "give one"),
])
def test_bad_options(server, make_router, kwargs, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cascade(make_router(), QUESTION, **kwargs)
    assert server.calls() == []


@pytest.mark.sqlite_only  # about a ledger file that does not exist yet
def test_cli_bad_threshold_is_one_line(mmr, db_path):
    result = mmr("cascade", "--threshold", "2", "hello")
    assert result.returncode == EXIT_USAGE
    assert result.stderr.decode() == "Error: --threshold must be between 0 and 1, got 2\n"
    assert not db_path.exists()


@pytest.mark.parametrize("answer,score", [
    ("", 0.0), ("   \n", 0.0), ("I'm sorry, but I can't help with that.", 0.1), ("As an AI, I cannot say.", 0.1),
    ("Explain why the sky is blue", 0.2), ("Blue.", 0.3),
    ("Sunlight scatters off air molecules; blue light scatters most, so the sky looks blue.", 1.0),
])
def test_heuristic_gate(answer, score):
    assert heuristic_gate(QUESTION, answer, "end_turn").score == score


def test_costs_report_discarded_and_judging_shares(server, make_router, db_path, mmr):
    server.script("claude-small", reply("I don't know.", input_tokens=100, output_tokens=4))
    cascade(make_router(), QUESTION, gate="heuristic")
    server.script("claude-small", reply("fine answer here", input_tokens=100, output_tokens=4), reply("0.9", input_tokens=100, output_tokens=1))
    cascade(make_router(), QUESTION, gate="judge")
    out = json.loads(mmr("costs", "--json", "--by", "routed_tier", config=False).stdout)
    total = out["total"]
    rows = ledger_rows(db_path)
    spend = sum(r["cost_nanousd"] for r in rows)
    discarded = sum(r["cost_nanousd"] for r in rows if r["status"] == "rejected")
    judging = sum(r["cost_nanousd"] for r in rows if r["role"] == "judge")
    assert total["discarded_share"] == round(discarded / spend, 4) and total["judging_share"] == round(judging / spend, 4)
    assert total["escalation_rate"] == 0.5
    assert [(r["routed_tier"], r["requests"]) for r in out["rows"]] == [("simple", 2)]


@pytest.mark.sqlite_only  # about a ledger file that does not exist yet
def test_dry_run_shows_the_plan_and_calls_nothing(server, mmr, db_path):
    result = mmr("cascade", "--dry-run", "--json", "--max-tier", "medium", "--gate", "judge", QUESTION)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["tier"] == "simple" and out["tiers"] == ["simple", "medium"] and out["gate"] == "judge"
    assert out["thresholds"] == {"simple": 0.7, "medium": 0.7}
    # Input tokens from their upper bound: 32 per request + 16 per message + the text's bytes.
    #   the question (27 bytes):                             32 + 16 + 27 = 75 tokens
    #   the judge's prompt without the answer (64 bytes) and its
    #   system text (258 bytes):                   32 + (16 + 64) + (16 + 258) = 386 tokens
    # Each answer is judged by claude-small with the answer at its tier's token limit in, 16 out.
    # In micro-dollars:
    #   simple's answer  claude-small   75 in,  64 out:   75 * 0.80 +  64 *  4.00 =  316
    #   its judge        claude-small  450 in,  16 out:  450 * 0.80 +  16 *  4.00 =  424
    #   medium's answer  claude-mid     75 in, 128 out:   75 * 3.00 + 128 * 15.00 = 2145
    #   its judge        claude-small  514 in,  16 out:  514 * 0.80 +  16 *  4.00 =  475.2
    #   total 3360.2 -> $0.0033602
    assert out["worst_case_cost_usd"] == "0.0033602"
    assert server.calls() == [] and not db_path.exists()
    text = mmr("cascade", "--dry-run", QUESTION).stdout.decode()
    assert "cascade   simple -> medium -> complex; gate both" in text and "worst" in text


@pytest.mark.parametrize("question,answer,passes", [
    ("How many legs does a spider have?", "Eight.", True),
    ("List the primary colors", "Red, yellow, blue.", True),
    ("What is the capital of France?", "Sorry, I misread at first. Paris is the capital of France.", True),
    ("Why does my build fail?", "I'm sorry to hear your code fails. The fix is to pin the compiler version in your toolchain file.", True),
    ("Explain why the sky is blue", "I\u2019m sorry, but I can\u2019t help with that.", False),
    ("Explain why the sky is blue", "Unfortunately, I cannot help with that request.", False),
    ("Explain why the sky is blue", "As a large language model, I cannot see the sky.", False),
    ("Which option is right? " + "A) one B) two C) three " * 40, "B", True),  # long multiple choice, one letter
])
def test_heuristic_gate_on_ordinary_answers(question, answer, passes):
    assert (heuristic_gate(question, answer, "end_turn").score == 1.0) is passes


@pytest.mark.parametrize("verdict,score", [("**0.9**", 0.9), ("`0.7`", 0.7), ("0.9\nThe answer is correct.", 0.9)])
def test_judge_output_with_markdown_or_a_second_line(verdict, score):
    assert parse_judge_score(verdict) == score


def test_an_empty_cut_off_judge_falls_back_to_the_heuristic_gate(server, make_router):
    server.script("claude-small", reply(), reply("", stop_reason="max_tokens", output_tokens=16))
    answer = cascade(make_router(), QUESTION, gate="judge")
    assert answer.final.tier == "simple" and answer.final.gate_reason.startswith("judge failed; heuristic gate used")


def test_a_refused_request_after_a_rejected_answer_returns_that_answer(server, make_router, db_path):
    server.script("claude-small", reply("I don't know."))
    server.script("claude-mid", error(400, message="prompt too long for this model"))
    answer = cascade(make_router(), QUESTION, gate="heuristic")
    assert answer.best_effort and answer.final.tier == "simple" and answer.text == "I don't know."
    assert [r["status"] for r in ledger_rows(db_path)] == ["best_effort", "error"]


def test_a_judge_with_a_broken_key_does_not_lose_the_answer(server, make_router, monkeypatch):
    router = make_router("cascade:\n  judge_tier: complex\n")
    server.always("claude-big", error(500))
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-oai-test-0123456789abcdef ")  # trailing space: refused before any call
    answer = cascade(router, QUESTION, gate="judge")
    assert answer.final.tier == "simple" and "heuristic gate used" in answer.final.gate_reason


def test_from_classifier_above_max_tier_starts_at_the_cap(server, make_router):
    notes = []
    router = make_router()
    router.on_note = notes.append
    answer = cascade(router, "Please debug this code for me, it crashes on start", from_classifier=True,
                     max_tier="medium", gate="heuristic")
    assert answer.final.tier == "medium" and any("starting at --max-tier medium" in n for n in notes)


@pytest.mark.sqlite_only  # about a ledger file that does not exist yet
def test_dry_run_from_the_classifier_plans_and_prices_at_most_max_tier(server, mmr, db_path):
    args = ("cascade", "--dry-run", "--from-classifier", "--max-tier", "medium", "Write code to parse a CSV")
    out = json.loads(mmr(*args, "--json").stdout)
    # The rules classifier says complex; --max-tier medium caps the plan, and the prices with it.
    # "Write code to parse a CSV" is 25 bytes: 32 + 16 + 25 = 73 input tokens at most. In micro-dollars:
    #   medium's answer  claude-mid    73 in, 128 out:   73 * 3.00 + 128 * 15.00 = 2139
    #   its judge        claude-small  384 + 128 in (question 62 + rubric 258 bytes, 16 + 16 + 32 framing;
    #                    the answer at its limit), 16 out:  512 * 0.80 + 16 * 4.00 = 473.6
    assert (out["tier"], out["model"], out["tiers"]) == ("medium", "claude-mid", ["medium"])
    assert out["max_cost_usd"] == "0.002139" and out["worst_case_cost_usd"] == "0.0026126"
    assert "the classifier chose complex, capped by --max-tier" in out["reason"]
    text = mmr(*args).stdout.decode()
    assert "tier      medium" in text and "anthropic/claude-mid" in text and "claude-big" not in text
    assert "at most $0.002139" in text and "cascade   medium;" in text
    assert server.calls() == [] and not db_path.exists()
