"""``mmr serve`` end to end: the official SDKs -> the real server (port 0) -> the test provider server.

Costs are hand-computed from the test prices (per million tokens) and the test server's
tokenizer (whitespace words): claude-small 0.80/4.00, gpt-small 0.15/0.60, the baseline
claude-big 15/75.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import anthropic
import openai
import pytest

from tests.conftest import ledger_rows, write_config
from tests.provider_server import drop, error, reply
from tests.serve_fixture import start_serve

pytestmark = pytest.mark.timeout(120)

KEY = "mmr-client-key-0123456789"
HASHED = "mmr-other-client-key-9876543210"
AUTH = f"""
serve:
  max_body_bytes: 4000
  keys:
    - {{env: TEST_MMR_CLIENT_KEY, user: ana, team: ml}}
    - {{sha256: {hashlib.sha256(HASHED.encode()).hexdigest()}, user: bo}}
"""


@pytest.fixture
def served(server, tmp_path, db_path):
    config = write_config(tmp_path / "serve.yaml", server.url, extra="serve:\n  max_body_bytes: 4000\n")
    running = start_serve(config, db_path, "--no-auth")
    yield running
    running.stop()


@pytest.fixture
def authed(server, tmp_path, db_path):
    config = write_config(tmp_path / "auth.yaml", server.url, extra=AUTH)
    running = start_serve(config, db_path, env={"TEST_MMR_CLIENT_KEY": KEY})
    yield running
    running.stop()


def answers(db_path) -> list[dict]:
    return [r for r in ledger_rows(db_path) if r["role"] == "answer"]


# ---------------------------------------------------------------- both shapes, with their bill


def test_openai_sdk_auto_answer_carries_its_bill(served, db_path):
    raw = served.openai().chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hello there"}])
    completion = raw.parse()
    assert completion.choices[0].message.content == "Answer to: hello there"
    assert completion.choices[0].finish_reason == "stop"  # Anthropic's end_turn, in OpenAI's words
    assert completion.model == "claude-small"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (2, 4)
    headers = raw.headers
    # 2 * 0.80e-6 + 4 * 4.00e-6; baseline 2 * 15e-6 + 4 * 75e-6
    assert headers["x-mmr-cost-usd"] == "0.0000176" and headers["x-mmr-baseline-usd"] == "0.00033"
    assert headers["x-mmr-tier"] == "simple" and headers["x-mmr-model"] == "anthropic/claude-small"
    (row,) = ledger_rows(db_path)
    assert row["command"] == "serve" and row["request_id"] == headers["x-mmr-request-id"]
    assert row["cost_usd"] == "0.0000176" and row["stream"] == 0 and row["prompt"] == "hello there"


def test_anthropic_sdk_answer_from_an_openai_model(served, server, db_path):
    raw = served.anthropic().messages.with_raw_response.create(
        model="gpt-small", max_tokens=50, system="be brief", messages=[{"role": "user", "content": "hello"}])
    message = raw.parse()
    assert message.content[0].text == "Answer to: hello" and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (3, 3)  # "be brief hello"
    assert raw.headers["x-mmr-model"] == "openai/gpt-small"
    assert raw.headers["x-mmr-cost-usd"] == "0.00000225"  # 3 * 0.15e-6 + 3 * 0.60e-6
    (call,) = server.calls("gpt-small")
    assert call["body"]["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    assert call["body"]["max_tokens"] == 50
    (row,) = ledger_rows(db_path)
    assert row["command"] == "serve" and row["model"] == "gpt-small" and row["reason"] == "model gpt-small asked for"


def test_streams_in_both_shapes_across_protocols(served, db_path):
    chunks = list(served.openai().chat.completions.create(
        model="claude-small", messages=[{"role": "user", "content": "stream me"}], stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Answer to: stream me"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (2, 4)
    with served.anthropic().messages.stream(model="gpt-small", max_tokens=2,
                                            messages=[{"role": "user", "content": "cut me short"}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "Answer to:" and final.stop_reason == "max_tokens"  # OpenAI's length
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 2)
    rows = ledger_rows(db_path)
    assert [(r["model"], r["stream"], r["command"]) for r in rows] == [("claude-small", 1, "serve"),
                                                                        ("gpt-small", 1, "serve")]


def test_a_stream_ends_with_its_bill_in_an_sse_comment(served):
    status, headers, body = served.raw("POST", "/v1/messages", {
        "model": "simple", "max_tokens": 20, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [line.split(": ", 1)[1] for line in body.decode().splitlines() if line.startswith("event: ")]
    assert events == ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                      "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    (comment,) = [line for line in body.decode().splitlines() if line.startswith(": ")]
    bill = dict(part.split("=", 1) for part in comment[2:].split())
    # 1 * 0.80e-6 + 3 * 4.00e-6 ("Answer to: hi")
    assert bill["x-mmr-tier"] == "simple" and bill["x-mmr-cost-usd"] == "0.0000128"
    assert bill["x-mmr-model"] == "anthropic/claude-small" and bill["x-mmr-baseline-usd"] == "0.00024"
    status, _, body = served.raw("POST", "/v1/chat/completions", {
        "model": "simple", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    lines = [line for line in body.decode().splitlines() if line]
    assert lines[-1] == "data: [DONE]" and lines[-2].startswith(": x-mmr-request-id=")


# ---------------------------------------------------------------- what the model field means


def test_each_model_meaning(served, db_path):
    client = served.openai()

    def ask(model: str, prompt: str = "hello"):
        raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": prompt}])
        return raw.headers["x-mmr-tier"], raw.headers["x-mmr-model"]

    assert ask("mmr", "Debug this stack trace") == ("complex", "anthropic/claude-big")  # classified like mmr ask
    assert ask("medium") == ("medium", "anthropic/claude-mid")  # a tier
    assert ask("gpt-mid") == ("medium", "openai/gpt-mid")  # a model, first
    assert ask("openai/gpt-small") == ("simple", "openai/gpt-small")
    ask("cascade")
    rows = answers(db_path)
    assert {r["command"] for r in rows} == {"serve"} and len({r["request_id"] for r in rows}) == 5
    assert [r["classifier"] for r in rows][:2] == ["rules", "override"]
    cascaded = [r for r in rows if r["request_id"] == rows[-1]["request_id"]]
    assert cascaded[0]["tier"] == "simple" and cascaded[0]["classifier"] == "cascade"  # like mmr cascade


def test_unknown_model_is_404_in_each_shape(served):
    with pytest.raises(openai.NotFoundError) as e:
        served.openai().chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["code"] == "model_not_found" and "gpt-9" in e.value.body["message"]
    with pytest.raises(anthropic.NotFoundError) as e:
        served.anthropic().messages.create(model="gpt-9", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "not_found_error"


def test_models_and_healthz(served):
    ids = [m.id for m in served.openai().models.list()]
    assert ids[:6] == ["auto", "mmr", "cascade", "simple", "medium", "complex"] and "gpt-big" in ids
    assert served.raw("GET", "/healthz")[0::2] == (200, b"ok\n")


# ---------------------------------------------------------------- conversations across protocols


def test_a_conversation_translated_to_anthropic(served, server):
    completion = served.openai().chat.completions.create(model="claude-small", max_tokens=30, temperature=0.2,
                                                         stop=["END"], messages=[
        {"role": "system", "content": "be terse"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply one"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
    ])
    assert completion.choices[0].message.content == "Answer to: first second"
    (call,) = server.calls("claude-small")
    body = call["body"]
    assert body["system"] == "be terse" and body["max_tokens"] == 30 and body["stop_sequences"] == ["END"]
    assert body["messages"] == [{"role": "user", "content": "first"}, {"role": "assistant", "content": "reply one"},
                                {"role": "user", "content": "second"}]
    assert "temperature" not in body  # the Anthropic API takes none


def test_a_conversation_translated_to_openai(served, server, db_path):
    served.anthropic().messages.create(model="gpt-small", max_tokens=30, extra_body={"temperature": 0.5},
                                       stop_sequences=["STOP"],
                                       system=[{"type": "text", "text": "be terse"}], messages=[
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": [{"type": "text", "text": "reply one"}]},
        {"role": "user", "content": "second"},
    ])
    (call,) = server.calls("gpt-small")
    body = call["body"]
    assert body["messages"] == [{"role": "system", "content": "be terse"}, {"role": "user", "content": "first"},
                                {"role": "assistant", "content": "reply one"}, {"role": "user", "content": "second"}]
    assert (body["max_tokens"], body["temperature"], body["stop"]) == (30, 0.5, ["STOP"])
    (row,) = ledger_rows(db_path)
    assert row["prompt"] == "user: first\n\nassistant: reply one\n\nuser: second"


# ---------------------------------------------------------------- faults, limits, sessions


def test_an_upstream_fault_falls_back(served, server, db_path):
    server.script("claude-small", error(500))
    raw = served.openai().chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hello"}])
    assert raw.headers["x-mmr-model"] == "openai/gpt-small"
    assert [(r["model"], r["status"], r["command"]) for r in ledger_rows(db_path)] == [
        ("claude-small", "error", "serve"), ("gpt-small", "ok", "serve")]


def test_a_stream_that_breaks_after_text_ends_with_an_error_event(served, server, db_path):
    server.script("claude-small", drop(after_chunks=2))
    stream = served.openai().chat.completions.create(model="claude-small", stream=True,
                                                     messages=[{"role": "user", "content": "break it"}])
    seen = []
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == "Answer to:"  # what went out before the break is not repeated by another model
    assert "broke off" in str(e.value)
    assert server.calls("gpt-small") == []
    assert [(r["model"], r["status"], r["error_kind"]) for r in ledger_rows(db_path)] == [
        ("claude-small", "error", "connection")]


def test_every_model_failing_is_a_502_recorded(served, server, db_path):
    for model in ("claude-small", "gpt-small", "claude-mid", "gpt-mid", "claude-big", "gpt-big"):
        server.always(model, error(400, message="bad thing"))
    with pytest.raises(anthropic.BadRequestError) as e:
        served.anthropic().messages.create(model="simple", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert "bad thing" in e.value.body["error"]["message"]
    assert [(r["model"], r["status"]) for r in ledger_rows(db_path)] == [("claude-small", "error")]
    for model in ("claude-small", "gpt-small", "claude-mid", "gpt-mid", "claude-big", "gpt-big"):
        server.always(model, error(503))
    with pytest.raises(openai.InternalServerError) as e:
        served.openai().chat.completions.create(model="gpt-small", messages=[{"role": "user", "content": "y"}],
                                                extra_headers={"x-mmr-max-cost": "0.01"})
    assert e.value.status_code == 502 and "every model failed" in e.value.body["message"]


def test_a_body_over_the_limit_is_413(served, server):
    status, _, body = served.raw("POST", "/v1/messages", b"{" + b" " * 5000 + b"}")
    assert status == 413 and json.loads(body)["error"]["type"] == "request_too_large"
    with pytest.raises(openai.APIStatusError) as e:
        served.openai().chat.completions.create(model="auto", messages=[{"role": "user", "content": "x " * 3000}])
    assert e.value.status_code == 413 and "serve.max_body_bytes" in e.value.body["message"]
    assert server.calls() == []


def test_a_bad_max_cost_header_is_400(served):
    with pytest.raises(openai.BadRequestError) as e:
        served.openai().chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}],
                                                extra_headers={"x-mmr-max-cost": "lots"})
    assert e.value.body["message"].startswith("x-mmr-max-cost:")


def test_a_session_stays_on_its_model_until_it_fails(served, server):
    client = served.openai()

    def ask(prompt: str, session: str | None) -> str:
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": prompt}],
            extra_headers={"x-mmr-session": session} if session else None)
        return raw.headers["x-mmr-model"]

    assert ask("hello", "s1") == "anthropic/claude-small"
    assert ask("Debug this stack trace", None) == "anthropic/claude-big"
    assert ask("Debug this stack trace", "s1") == "anthropic/claude-small"  # the session's model
    server.always("claude-small", error(500))
    assert ask("Debug this stack trace", "s1") == "openai/gpt-small"  # failed: its fallback takes over
    server.always("claude-small", None)
    assert ask("hello", "s1") == "openai/gpt-small"  # and keeps the session


# ---------------------------------------------------------------- who is asking


def test_keys_decide_who_asks(authed, db_path):
    with pytest.raises(openai.AuthenticationError) as e:
        authed.openai("wrong").chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "invalid_request_error"
    status, _, body = authed.raw("POST", "/v1/chat/completions", {"model": "auto", "messages": []})  # no key at all
    assert status == 401 and "API key" in json.loads(body)["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError) as e:
        authed.anthropic("wrong").messages.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "authentication_error"
    authed.openai(KEY).chat.completions.create(model="auto", messages=[{"role": "user", "content": "one"}],
                                              user="mallory")
    authed.anthropic(HASHED).messages.create(model="auto", max_tokens=9, messages=[{"role": "user", "content": "two"}])
    assert [(r["user"], r["team"]) for r in ledger_rows(db_path)] == [("ana", "ml"), ("bo", None)]
    assert KEY not in "".join(authed.lines)


def test_no_auth_only_on_loopback_and_keys_required_otherwise(config_path, db_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "router_cli", "serve", "--port", "0", "--config", str(config_path),
                               "--db", str(db_path), *args], capture_output=True, text=True, timeout=60)

    result = run("--host", "0.0.0.0", "--no-auth")
    assert result.returncode == 2
    assert result.stderr == "Error: --no-auth is allowed only on a loopback address (127.0.0.1, ::1), not 0.0.0.0\n"
    result = run()
    assert result.returncode == 2 and "serve.keys: no client keys configured" in result.stderr
    assert result.stderr.count("\n") == 1


# ---------------------------------------------------------------- operations


def test_a_client_gone_mid_stream_stops_the_upstream_call_and_its_bill_is_kept(served, server, db_path):
    words = " ".join(f"w{i}" for i in range(200))
    server.script("claude-small", reply(words, chunk_delay=0.05))  # 10 s in full
    stream = served.openai().chat.completions.create(model="claude-small", stream=True,
                                                     messages=[{"role": "user", "content": "long one"}])
    seen = [next(stream) for _ in range(4)]
    stream.close()
    closed = time.monotonic()
    assert len(seen) == 4
    for _ in range(100):
        rows = ledger_rows(db_path)
        if rows:
            break
        time.sleep(0.05)
    (row,) = rows
    assert time.monotonic() - closed < 3  # long before the provider's 10 s stream would have ended
    assert row["status"] == "error" and row["error_kind"] == "output" and row["command"] == "serve"
    assert row["input_tokens"] == 2 and row["output_tokens"] >= 1 and row["usage_estimated"] == 1
    assert row["cost_usd"] != "0"


def test_metrics_count_requests_spend_and_savings(served):
    served.openai().chat.completions.create(model="auto", messages=[{"role": "user", "content": "hello there"}])
    with pytest.raises(openai.NotFoundError):
        served.openai().chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    status, headers, body = served.raw("GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'mmr_requests_total{api="openai",tier="simple",model="anthropic/claude-small",status="ok"} 1' in text
    assert 'mmr_errors_total{api="openai",status="404"} 1' in text
    assert 'mmr_spend_usd_total{tier="simple",model="anthropic/claude-small"} 0.0000176' in text
    assert 'mmr_savings_usd_total{tier="simple",model="anthropic/claude-small"} 0.0003124' in text  # 0.00033 - 0.0000176
    assert 'mmr_request_duration_seconds_count{api="openai"} 2' in text
    assert "# TYPE mmr_breaker_state gauge" in text


def test_sigterm_finishes_and_records_the_requests_in_flight(served, server, db_path):
    server.script("claude-small", reply("slow answer", delay=1.5))
    server.script("gpt-small", reply("slow stream of words here", chunk_delay=0.3))
    results: dict = {}

    def plain() -> None:
        results["plain"] = served.openai().chat.completions.create(
            model="claude-small", messages=[{"role": "user", "content": "a"}]).choices[0].message.content

    def streamed() -> None:
        with served.anthropic().messages.stream(model="gpt-small", max_tokens=50,
                                                messages=[{"role": "user", "content": "b"}]) as stream:
            results["stream"] = "".join(stream.text_stream)

    threads = [threading.Thread(target=plain), threading.Thread(target=streamed)]
    for t in threads:
        t.start()
    time.sleep(0.7)
    served.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert served.proc.wait(30) == 0
    assert results == {"plain": "slow answer", "stream": "slow stream of words here"}
    assert sorted((r["model"], r["status"]) for r in ledger_rows(db_path)) == [("claude-small", "ok"), ("gpt-small", "ok")]


# ---------------------------------------------------------------- policies apply as on the command line


def test_budgets_and_the_cache_apply(server, tmp_path, db_path):
    extra = ("budgets:\n  - {scope: user, user: tight, period: day, limit: 0.000001, policy: block}\n"
             "cache:\n  enabled: true\n")
    running = start_serve(write_config(tmp_path / "policy.yaml", server.url, extra=extra), db_path, "--no-auth")
    try:
        client = running.openai()
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model="auto", user="tight", messages=[{"role": "user", "content": "hi"}])
        assert e.value.status_code == 402 and e.value.body["type"] == "insufficient_quota"
        with pytest.raises(anthropic.APIStatusError) as e:
            running.anthropic().messages.create(model="auto", max_tokens=9, metadata={"user_id": "tight"},
                                                messages=[{"role": "user", "content": "hi"}])
        assert e.value.status_code == 402 and e.value.body["error"]["type"] == "billing_error"
        first = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": "again"}])
        second = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": "again"}])
        assert first.headers["x-mmr-cost-usd"] == "0.0000128"  # 1 * 0.80e-6 + 3 * 4.00e-6
        assert second.headers["x-mmr-cost-usd"] == "0" and second.parse().choices[0].message.content == "Answer to: again"
    finally:
        running.stop()
    rows = ledger_rows(db_path)
    assert [(r["status"], r["user"], r["command"]) for r in rows] == [
        ("blocked", "tight", "serve"), ("blocked", "tight", "serve"), ("ok", None, "serve"), ("cached", None, "serve")]
    assert len(server.calls()) == 1


def test_a_bad_serve_section_is_one_config_error(server, tmp_path, db_path):
    config = write_config(tmp_path / "bad.yaml", server.url, extra="serve:\n  keys:\n    - {sha256: abc, user: x}\n")
    result = subprocess.run([sys.executable, "-m", "router_cli", "serve", "--port", "0", "--config", str(config),
                             "--db", str(db_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert result.stderr == f"Error: {config}: serve.keys[0].sha256: expected 64 hex digits (sha256 of the key)\n"
    config = write_config(tmp_path / "unset.yaml", server.url, extra="serve:\n  keys:\n    - {env: MMR_NOT_SET_HERE}\n")
    result = subprocess.run([sys.executable, "-m", "router_cli", "serve", "--port", "0", "--config", str(config),
                             "--db", str(db_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert result.stderr == f"Error: {config}: serve.keys[0].env: the variable MMR_NOT_SET_HERE is not set\n"


def test_openai_user_names_the_session_when_configured(server, tmp_path, db_path):
    config = write_config(tmp_path / "sessions.yaml", server.url, extra="serve:\n  session_from_user: true\n")
    running = start_serve(config, db_path, "--no-auth")
    try:
        client = running.openai()

        def ask(prompt: str, user: str) -> str:
            raw = client.chat.completions.with_raw_response.create(
                model="auto", user=user, messages=[{"role": "user", "content": prompt}])
            return raw.headers["x-mmr-model"]

        assert ask("hello", "u1") == "anthropic/claude-small"
        assert ask("Debug this stack trace", "u1") == "anthropic/claude-small"
        assert ask("Debug this stack trace", "u2") == "anthropic/claude-big"
    finally:
        running.stop()


def test_a_server_reuses_a_fresh_proof_of_a_writable_ledger(config, db_path):
    from router_cli import Router

    now = [1000.0]
    router = Router(config, db_path, clock=lambda: now[0])
    proofs = []
    store = router.ledger()
    real = store.check_writable
    store.check_writable = lambda: proofs.append(now[0]) or real()
    router.check_ledger()
    router.check_ledger()
    assert len(proofs) == 2  # the CLI's way: every request proves it
    router.ledger_proof_ttl = 1.0
    router.check_ledger()
    now[0] += 0.5
    router.check_ledger()
    now[0] += 1.0
    router.check_ledger()
    assert proofs == [1000.0, 1000.0, 1001.5]  # the proof at 1000.0 served until 1001.0
    router.close()


def test_responses_do_not_wait_for_a_delayed_ack(served):
    # With Nagle's algorithm on, headers and body (two writes) wait out the client's 40 ms delayed ACK.
    import http.client

    host, port = served.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    took = []
    for _ in range(40):  # past the first few, which Linux acknowledges at once (quick-ack mode)
        started = time.perf_counter()
        connection.request("GET", "/healthz")
        assert connection.getresponse().read() == b"ok\n"
        took.append(time.perf_counter() - started)
    connection.close()
    assert sorted(took[10:])[15] < 0.02  # the median; 40 ms and more with Nagle on


# ---------------------------------------------------------------- usage in the client's protocol


def test_usage_is_translated_between_the_protocols_streams_included(served, server):
    claude = reply("cached answer", input_tokens=10, output_tokens=5, cache_read=1000, cache_write=200)
    server.script("claude-small", claude, claude)
    gpt = reply("reasoned answer", input_tokens=1200, output_tokens=50, cache_read=1024, reasoning=20)
    server.script("gpt-small", gpt, gpt, gpt)
    raw = served.openai().chat.completions.with_raw_response.create(
        model="claude-small", messages=[{"role": "user", "content": "a"}])
    usage = raw.parse().usage
    # Anthropic's input 10 + cache read 1000 + cache write 200 = OpenAI's prompt_tokens
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1210, 5, 1215)
    assert usage.prompt_tokens_details.cached_tokens == 1000
    assert raw.headers["x-mmr-cost-usd"] == "0.000988"  # 1210 * 0.80e-6 + 5 * 4.00e-6
    chunks = list(served.openai().chat.completions.create(
        model="claude-small", messages=[{"role": "user", "content": "a"}], stream=True,
        stream_options={"include_usage": True}))
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.prompt_tokens_details.cached_tokens) == (1210, 1000)
    message = served.anthropic().messages.create(model="gpt-small", max_tokens=50,
                                                 messages=[{"role": "user", "content": "b"}])
    # OpenAI's prompt 1200 holds its 1024 cached: 176 uncached input
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens,
            message.usage.cache_creation_input_tokens, message.usage.output_tokens) == (176, 1024, 0, 50)
    with served.anthropic().messages.stream(model="gpt-small", max_tokens=50,
                                            messages=[{"role": "user", "content": "b"}]) as stream:
        final = stream.get_final_message()
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.output_tokens) == (176, 1024, 50)
    same = served.openai().chat.completions.create(model="gpt-small", messages=[{"role": "user", "content": "b"}]).usage
    assert (same.prompt_tokens, same.prompt_tokens_details.cached_tokens) == (1200, 1024)
    assert same.completion_tokens_details.reasoning_tokens == 20


def test_a_model_asked_for_by_id_is_never_answered_from_another_models_cache(server, tmp_path, db_path):
    running = start_serve(write_config(tmp_path / "cache.yaml", server.url, extra="cache:\n  enabled: true\n"),
                          db_path, "--no-auth")
    try:
        client = running.openai()
        heads = [client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "same words"}]).headers
            for model in ("claude-small", "gpt-small", "gpt-small")]
    finally:
        running.stop()
    assert [h["x-mmr-model"] for h in heads] == ["anthropic/claude-small", "openai/gpt-small", "openai/gpt-small"]
    # 2 * 0.80e-6 + 4 * 4.00e-6; 2 * 0.15e-6 + 4 * 0.60e-6 ("Answer to: same words"); then its own cached answer
    assert [h["x-mmr-cost-usd"] for h in heads] == ["0.0000176", "0.0000027", "0"]
    assert [(r["model"], r["status"]) for r in ledger_rows(db_path)] == [
        ("claude-small", "ok"), ("gpt-small", "ok"), ("gpt-small", "cached")]


def test_metrics_need_a_client_key_when_keys_are_configured(authed):
    status, _, body = authed.raw("GET", "/metrics")
    assert status == 401 and "API key" in json.loads(body)["error"]["message"]
    status, _, body = authed.raw("GET", "/metrics", headers={"authorization": f"Bearer {KEY}"})
    assert status == 200 and b"mmr_in_flight_requests" in body
    assert authed.raw("GET", "/healthz")[0] == 200  # a load balancer's probe needs no key


def test_a_ledger_failure_tells_the_client_nothing_of_the_ledger(server, tmp_path, pg_server, pg_url):
    running = start_serve(write_config(tmp_path / "serve.yaml", server.url), pg_url, "--no-auth")
    name = pg_url.split("@/", 1)[1].split("?", 1)[0]
    try:
        running.openai().chat.completions.create(model="auto", messages=[{"role": "user", "content": "first"}])
        # The database goes away for this server: no new connections, its own cut.
        pg_server.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        pg_server.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        time.sleep(1.1)  # past the server's one-second proof of a writable ledger
        with pytest.raises(openai.APIStatusError) as e:
            running.openai().chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(anthropic.APIStatusError) as f:
            with running.anthropic().messages.stream(model="auto", max_tokens=9,
                                                     messages=[{"role": "user", "content": "hi"}]) as stream:
                list(stream.text_stream)
    finally:
        running.stop()
        pg_server.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    generic = "the ledger could not be used; the request was not answered (details in the server's log)"
    assert e.value.status_code == 500 and e.value.body["message"] == generic
    assert f.value.body["error"]["message"] == generic
    told = [line for line in running.lines if str(pg_server.socket_dir) in line]
    assert len(told) >= 2, running.lines  # the operator sees where
    assert len(server.calls()) == 1  # only the first request was paid for


def test_the_readme_sdk_scripts_run_unmodified_but_their_base_url(server, tmp_path, db_path):
    # Issue 18's "done when": the README's OpenAI and Anthropic SDK scripts, as written, answered by mmr serve.
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## `mmr serve`"):]
    scripts = re.findall(r"```python\n(.*?)```", section[:section.index("\n## ", 5)], re.S)
    assert len(scripts) == 2 and "from openai import" in scripts[0] and "from anthropic import" in scripts[1]
    extra = "serve:\n  keys:\n    - {env: TEST_README_KEY, user: readme}\n"
    running = start_serve(write_config(tmp_path / "readme.yaml", server.url, extra=extra), db_path,
                          env={"TEST_README_KEY": "my-mmr-client-key"})
    try:
        for script in scripts:
            run = subprocess.run([sys.executable, "-c", script.replace("http://127.0.0.1:8080", running.url)],
                                 capture_output=True, text=True, timeout=60)
            assert (run.returncode, run.stdout, run.stderr) == (0, "Answer to: What is a monad?\n", "")
    finally:
        running.stop()
    assert [(r["command"], r["user"], r["status"]) for r in ledger_rows(db_path)] == [("serve", "readme", "ok")] * 2
