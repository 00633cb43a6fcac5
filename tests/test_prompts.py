"""Prompts that fit each model, on the wire: each model of a chain is sent its own wording (template,
system prefix/suffix), stop sequences and temperature, through the real SDKs, and the ledger records
the wording's name and hash. Config errors, dry runs, explain and costs: tests/test_prompts_cli.py."""

from __future__ import annotations

import json

import pytest

from router_cli import Router
from router_cli.config import load_config
from router_cli.engine.gates import JUDGE_SYSTEM
from tests.conftest import ledger_rows, write_config
from tests.prompts_config import CLAUDE, TERSE, THINK, template_hash, write_worded
from tests.provider_server import error, reply


@pytest.fixture
def worded(tmp_path, server):
    return write_worded(tmp_path / "worded.yaml", server.url)


@pytest.fixture
def make_router(worded, db_path):
    routers = []

    def make(path=None) -> Router:
        routers.append(Router(load_config(path or worded), db_path, sleep=lambda s: None))
        return routers[-1]

    yield make
    for r in routers:
        r.close()


def body(server, model: str, index: int = 0) -> dict:
    return server.calls(model)[index]["body"]


def test_anthropic_gets_its_template_in_the_system_field_and_its_stop_sequences(server, make_router, db_path):
    make_router().ask("hello", tier="simple", system="Be kind.")
    sent = body(server, "claude-small")
    assert sent["system"] == "Be kind.\n\nAnswer inside <answer> tags."
    assert sent["messages"] == [{"role": "user", "content": "<question>\nhello\n</question>"}]
    assert sent["stop_sequences"] == ["</answer>"] and "temperature" not in sent and "stop" not in sent
    (row,) = ledger_rows(db_path)
    assert (row["template"], row["template_hash"]) == ("claude", CLAUDE)
    assert (row["prompt"], row["system"]) == ("hello", "Be kind.")  # the ledger keeps what the caller asked


def test_a_failed_first_model_leaves_the_fallback_its_own_phrasing(server, make_router, db_path):
    server.always("claude-small", error(500))
    answer = make_router().ask("hello", tier="simple", system="Be kind.")
    assert answer.final.model == "gpt-small"
    assert body(server, "claude-small")["system"] == "Be kind.\n\nAnswer inside <answer> tags."
    sent = body(server, "gpt-small")
    assert sent["messages"] == [{"role": "system", "content": "You are terse.\n\nBe kind."},
                                {"role": "user", "content": "hello"}]
    assert sent["stop"] == ["END", "STOP"] and sent["temperature"] == 0.3 and "stop_sequences" not in sent
    rows = ledger_rows(db_path)
    assert [(r["model"], r["status"], r["template"], r["template_hash"]) for r in rows] == [
        ("claude-small", "error", "claude", CLAUDE), ("gpt-small", "ok", "inline", TERSE)]


def test_streamed_answers_are_worded_the_same(server, make_router):
    server.always("claude-small", error(500))
    chunks: list[str] = []
    make_router().ask("hello", tier="simple", on_text=chunks.append)
    first, second = body(server, "claude-small"), body(server, "gpt-small")
    assert first["stream"] is True and second["stream"] is True and chunks
    assert first["system"] == "Answer inside <answer> tags."  # no caller system prompt: {system} is empty
    assert first["messages"][0]["content"] == "<question>\nhello\n</question>"
    assert second["messages"][0] == {"role": "system", "content": "You are terse."}


def test_model_beats_provider_beats_tier(server, make_router, db_path):
    for model in ("claude-mid", "gpt-mid"):
        server.always(model, error(500))
    make_router().ask("hello", tier="medium", system="Be kind.")
    # claude-mid: its own inline template (not its provider's "claude").
    assert body(server, "claude-mid")["system"] == "Be kind."
    assert body(server, "claude-mid")["messages"][0]["content"] == "Q: hello"
    # gpt-mid: its provider's prefix, not the tier's suffix.
    assert body(server, "gpt-mid")["messages"][0]["content"] == "You are terse.\n\nBe kind."
    # gpt-plain: the named json-only template moves the caller's system prompt into the user turn;
    # {{ and }} are literal braces.
    assert body(server, "gpt-plain")["messages"] == [
        {"role": "system", "content": 'Reply with JSON only. {"answer": ...}'},
        {"role": "user", "content": "Be kind.\n\nhello"}]
    assert [r["template"] for r in ledger_rows(db_path)] == ["inline", "inline", "json-only"]
    assert ledger_rows(db_path)[0]["template_hash"] == template_hash(system="{system}", user="Q: {prompt}")


def test_a_model_without_wording_of_its_own_or_its_providers_takes_its_tiers(server, make_router, db_path):
    make_router().ask("hello", tier="complex", system="Be kind.")
    assert body(server, "gpt-big")["messages"][0] == {"role": "system", "content": "Be kind.\n\nThink hard."}
    make_router().ask("hello again", tier="complex")  # no system prompt: the suffix alone
    assert body(server, "gpt-big", 1)["messages"][0] == {"role": "system", "content": "Think hard."}
    assert {r["template_hash"] for r in ledger_rows(db_path)} == {THINK}


def test_the_requests_stop_sequences_come_first_and_its_temperature_wins(server, make_router):
    server.always("claude-small", error(500))
    make_router().ask("hello", tier="simple", stop=("X", "END"), temperature=1.0)
    sent = body(server, "gpt-small")
    assert sent["stop"] == ["X", "END", "STOP"] and sent["temperature"] == 1.0
    assert body(server, "claude-small")["stop_sequences"] == ["X", "END", "</answer>"]


def test_a_model_without_wording_is_sent_the_request_as_written(server, config, db_path):
    with Router(config, db_path) as router:
        router.ask("hello", tier="simple", system="Be kind.")
    sent = body(server, "claude-small")
    assert sent["system"] == "Be kind." and sent["messages"] == [{"role": "user", "content": "hello"}]
    assert "stop_sequences" not in sent
    (row,) = ledger_rows(db_path)
    assert (row["template"], row["template_hash"]) == (None, None)


def test_cascade_words_its_answers_but_not_the_judge(server, make_router, db_path):
    from router_cli.engine.cascade import cascade

    server.script("claude-small", reply("<answer>4</answer>"), reply("0.9"))  # the answer, then the judge's score
    cascade(make_router(), "What is 2+2? Explain step by step.", tier="simple", gate="judge")
    answer_call, judge_call = server.calls("claude-small")
    assert answer_call["body"]["system"] == "Answer inside <answer> tags."
    assert judge_call["body"]["system"] == JUDGE_SYSTEM and "stop_sequences" not in judge_call["body"]
    assert [(r["role"], r["template"]) for r in ledger_rows(db_path)] == [("answer", "claude"), ("judge", None)]


def test_a_budget_counts_the_wording(server, worded, tmp_path):
    """The worst case a budget holds is counted in each model's own wording."""
    from router_cli.engine.admission import worst_case

    claude = load_config(worded).tier("simple").models[0]
    bare = load_config(write_config(tmp_path / "t.yaml", server.url)).tier("simple").models[0]
    assert (claude.price, bare.price) == (bare.price, claude.price)  # the same model, worded or not
    assert worst_case(claude, "hello", "Be kind.", 64) > worst_case(bare, "hello", "Be kind.", 64)


@pytest.mark.parametrize("processes", [[], ["--processes", "2"]])
def test_a_batch_words_every_row_for_its_model(server, worded, db_path, mmr, tmp_path, processes):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": str(i), "prompt": f"row {i}"}) + "\n" for i in range(4)))
    result = mmr("ask", "--batch", str(rows), "--tier", "simple", "--config", str(worded), *processes)
    assert result.returncode == 0, result.stderr
    sent = sorted(c["body"]["messages"][0]["content"] for c in server.calls("claude-small"))
    assert sent == [f"<question>\nrow {i}\n</question>" for i in range(4)]
    assert {r["template"] for r in ledger_rows(db_path)} == {"claude"}


def test_serve_words_the_call_for_the_model_it_routes_to(server, worded, db_path):
    from tests.serve_fixture import start_serve

    served = start_serve(worded, db_path, "--no-auth")
    try:
        served.openai().chat.completions.create(
            model="simple", messages=[{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hello"}])
    finally:
        served.stop()
    sent = body(server, "claude-small")
    assert sent["system"] == "Be kind.\n\nAnswer inside <answer> tags."
    assert sent["messages"][-1] == {"role": "user", "content": "<question>\nhello\n</question>"}


def test_an_edited_wording_is_not_answered_from_the_cache_of_the_old_one(server, tmp_path, db_path):
    path = write_worded(tmp_path / "cached.yaml", server.url, "cache: {enabled: true, ttl: 1h}\n")
    with Router(load_config(path), db_path) as router:
        assert router.ask("hello", tier="simple").final.status == "ok"
        assert router.ask("hello", tier="simple").final.status == "cached"  # the same wording: a hit
    path.write_text(path.read_text().replace("Answer inside <answer> tags.", "Answer in <a> tags."))
    with Router(load_config(path), db_path) as router:
        assert router.ask("hello", tier="simple").final.status == "ok"  # another wording asks again
    assert [c["body"]["system"] for c in server.calls("claude-small")] == [
        "Answer inside <answer> tags.", "Answer in <a> tags."]


def test_an_edited_fallback_wording_is_not_answered_from_the_cache_of_the_old_one(server, tmp_path, db_path):
    """The cached answer came from medium (simple failed): medium's wording is in the key too."""
    path = write_worded(tmp_path / "cached.yaml", server.url, "cache: {enabled: true, ttl: 1h}\n")
    for model in ("claude-small", "gpt-small"):
        server.always(model, error(500))
    with Router(load_config(path), db_path) as router:
        assert router.ask("hello", tier="simple").final.model == "claude-mid"
        assert router.ask("hello", tier="simple").final.status == "cached"
    path.write_text(path.read_text().replace('user: "Q: {prompt}"', 'user: "Question: {prompt}"'))
    with Router(load_config(path), db_path) as router:
        again = router.ask("hello", tier="simple").final
    assert (again.status, again.model) == ("ok", "claude-mid")  # the fallback's new wording asks again
    assert [c["body"]["messages"][-1]["content"] for c in server.calls("claude-mid")] == ["Q: hello", "Question: hello"]
