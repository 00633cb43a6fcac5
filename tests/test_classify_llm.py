"""The llm classifier through the real SDKs: strict parsing, fallbacks, and its call in the ledger."""

from __future__ import annotations

import json

import pytest

from router_cli.classify import get_classifier
from router_cli import Router
from tests.conftest import ledger_rows
from tests.provider_server import error, reply


@pytest.mark.parametrize("said,tier", [
    ("COMPLEX", "complex"), ("simple", "simple"), (" Medium. ", "medium"),
    ("I think it is SIMPLE", "medium"), ("COMPLEX!!", "medium"), ("", "medium"),
])
def test_strict_parsing(server, config, said, tier):
    server.script("claude-small", reply(said))
    decision = get_classifier("llm", config, Router(config)).classify("What is 2+2?")
    assert decision.tier == tier and decision.classifier == "llm"
    if tier == "medium" and said.strip().lower() != "medium.":
        assert "unparseable" in decision.reason
    body = server.calls("claude-small")[0]["body"]
    assert body["max_tokens"] == 5 and "SIMPLE, MEDIUM, COMPLEX" in body["system"]
    assert body["messages"] == [{"role": "user", "content": "What is 2+2?"}]


def test_openai_classifier_runs_at_temperature_zero(server, config):
    server.script("claude-small", error(404))
    server.script("gpt-small", reply("complex"))
    assert get_classifier("llm", config, Router(config)).classify("Prove Fermat's little theorem").tier == "complex"
    assert server.calls("gpt-small")[0]["body"]["temperature"] == 0


def test_a_failed_classifier_call_routes_to_the_middle_tier(server, config):
    server.always("claude-small", error(500))
    server.always("gpt-small", error(503))
    decision = get_classifier("llm", config, Router(config)).classify("hello")
    assert decision.tier == "medium" and "classifier call failed" in decision.reason


def test_the_classifier_call_is_billed_to_the_request(server, router, db_path):
    server.script("claude-small", reply("COMPLEX", input_tokens=40, output_tokens=1))
    answer = router.ask("Prove that there are infinitely many primes", classifier="llm")
    assert answer.final.model == "claude-big" and answer.decision.classifier == "llm"
    rows = ledger_rows(db_path)
    assert [(r["role"], r["attempt"], r["model"], r["status"]) for r in rows] == [
        ("classifier", 0, "claude-small", "ok"), ("answer", 1, "claude-big", "ok")]
    assert rows[0]["cost_usd"] == "0.000036"  # 40 * 0.80 / 1e6 + 1 * 4.00 / 1e6
    assert answer.cost == sum(a.cost for a in answer.attempts) and answer.attempts[0].role == "classifier"


def test_cli_classify_and_ask_with_llm(server, mmr, db_path):
    server.script("claude-small", reply("SIMPLE"))
    out = json.loads(mmr("classify", "--classifier", "llm", "--json", "hi there", db=False).stdout)
    assert out["tier"] == "simple" and out["classifier"] == "llm"
    server.script("claude-small", reply("MEDIUM"))
    result = mmr("ask", "--classifier", "llm", "--json", "Summarise the causes of the French revolution")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["classifier"] == "llm" and out["tier"] == "medium"
    assert [a.get("role", "answer") for a in out["attempts"]] == ["classifier", "answer"]


def test_capitalised_tier_names(server, tmp_path):
    from router_cli.config import load_config
    from tests.conftest import write_config

    path = write_config(tmp_path / "caps.yaml", server.url)
    text = path.read_text().replace("baseline_tier: complex", "baseline_tier: Complex")
    for name in ("simple", "medium", "complex"):
        text = text.replace(f"- name: {name}", f"- name: {name.capitalize()}")
    path.write_text(text)
    config = load_config(path)
    assert config.tier_names == ["Simple", "Medium", "Complex"]
    server.script("claude-small", reply("COMPLEX"))
    decision = get_classifier("llm", config, Router(config)).classify("Prove Fermat's little theorem")
    assert decision.tier == "Complex" and decision.score == round(2.5 / 3, 4)


def test_a_classifier_that_calls_a_model_needs_a_caller(config):
    with pytest.raises(TypeError, match="the llm classifier calls a model: get_classifier needs a caller"):
        get_classifier("llm", config)
