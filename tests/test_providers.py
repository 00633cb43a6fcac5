"""Both providers through the real SDKs to the local server: answers, usage, streaming, quirks, errors."""

from __future__ import annotations

from dataclasses import replace

import pytest

from router_cli.providers import ChatRequest, ProviderError, get_provider
from tests.conftest import KEYS
from tests.provider_server import count_tokens, drop, error, hang, malformed, reply


def _provider(config, name, **changes):
    spec = replace(config.providers[name], **changes)
    return get_provider(spec, KEYS[spec.api_key_env])


def _model(config, name):
    return next(m for t in config.tiers for m in t.models if m.model == name)


PROTOCOLS = [("anthropic", "claude-small", "end_turn", "max_tokens"), ("openai", "gpt-small", "stop", "length")]


@pytest.mark.parametrize("provider,model,natural_stop,cut_stop", PROTOCOLS)
@pytest.mark.parametrize("stream", [False, True])
def test_answer_usage_and_stop_reason(server, config, provider, model, natural_stop, cut_stop, stream):
    chunks = []
    p = _provider(config, provider)
    request = ChatRequest(_model(config, model), "what is the capital of France", system="be brief", max_tokens=50)
    response = p.complete(request, on_text=chunks.append if stream else None)
    assert response.text == "Answer to: what is the capital of France"
    assert response.input_tokens == count_tokens("be brief what is the capital of France")
    assert response.output_tokens == count_tokens(response.text)
    assert response.stop_reason == natural_stop
    if stream:
        assert "".join(chunks) == response.text and len(chunks) > 1
        assert response.ttft_ms is not None and 0 < response.ttft_ms <= response.duration_ms
    else:
        assert response.ttft_ms is None
    sent = server.calls(model)[0]
    assert sent["body"].get("stream", False) is stream
    # The key goes in the protocol's own header.
    header = sent["headers"].get("x-api-key") or sent["headers"].get("authorization")
    assert KEYS["TEST_ANTHROPIC_KEY" if provider == "anthropic" else "TEST_OPENAI_KEY"] in header


@pytest.mark.parametrize("provider,model,natural_stop,cut_stop", PROTOCOLS)
@pytest.mark.parametrize("stream", [False, True])
def test_truncation_reports_the_cut_stop_reason(server, config, provider, model, natural_stop, cut_stop, stream):
    server.script(model, reply("one two three four five six seven eight"))
    response = _provider(config, provider).complete(
        ChatRequest(_model(config, model), "count", max_tokens=3), on_text=(lambda t: None) if stream else None
    )
    assert response.text == "one two three"
    assert response.stop_reason == cut_stop


def test_openai_reasoning_models_get_max_completion_tokens_and_no_temperature(server, config):
    server.reasoning_models.add("gpt-big")  # the server rejects max_tokens/temperature like OpenAI does
    p = _provider(config, "openai")
    response = p.complete(ChatRequest(_model(config, "gpt-big"), "prove it", system="rigour", max_tokens=40, temperature=0.3))
    assert response.text == "Answer to: prove it"
    body = server.calls("gpt-big")[0]["body"]
    assert body["max_completion_tokens"] == 40
    assert "max_tokens" not in body and "temperature" not in body
    assert body["messages"][0] == {"role": "developer", "content": "rigour"}


def test_anthropic_gets_no_temperature(server, config):
    # The server answers 400 to sampling parameters, as Anthropic's API does since version 2026-10-21.
    response = _provider(config, "anthropic").complete(ChatRequest(_model(config, "claude-small"), "hi", temperature=0.2))
    assert response.text == "Answer to: hi"
    assert "temperature" not in server.calls("claude-small")[0]["body"]


def test_openai_regular_models_get_max_tokens_and_temperature(server, config):
    _provider(config, "openai").complete(ChatRequest(_model(config, "gpt-small"), "hi", max_tokens=7, temperature=0.25))
    body = server.calls("gpt-small")[0]["body"]
    assert body["max_tokens"] == 7 and body["temperature"] == 0.25
    assert "max_completion_tokens" not in body


FAULTS = [
    (error(429, retry_after=3), "rate_limit", True, 3.0),
    (error(500), "server", True, None),
    (error(503), "server", True, None),
    (error(529, error_type="overloaded_error"), "overloaded", True, None),
    (error(400), "bad_request", False, None),
    (error(401), "auth", False, None),
    (error(403), "permission", False, None),
    (error(404), "not_found", False, None),
    (hang(3), "timeout", True, None),
    (malformed(), "malformed", True, None),  # HTTP 200, a body that is neither JSON nor an event stream
    (drop(), "connection", True, None),
]


@pytest.mark.parametrize("provider,model,natural_stop,cut_stop", PROTOCOLS)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("step,kind,retryable,retry_after", FAULTS, ids=lambda v: getattr(v, "action", None) and f"{v.action}{v.status}")
def test_faults_map_to_the_taxonomy(server, config, provider, model, natural_stop, cut_stop, stream, step, kind, retryable, retry_after):
    server.script(model, step)
    p = _provider(config, provider, timeout=0.5)
    with pytest.raises(ProviderError) as info:
        p.complete(ChatRequest(_model(config, model), "hello", max_tokens=20), on_text=(lambda t: None) if stream else None)
    e = info.value
    assert e.kind == kind
    assert e.retryable is retryable
    assert e.retry_after == retry_after
    assert "sk-" not in str(e)


@pytest.mark.parametrize("provider,model", [("anthropic", "claude-small"), ("openai", "gpt-small")])
def test_tokens_streamed_before_a_drop_are_reported(server, config, provider, model):
    server.script(model, reply("a b c d e f"), )
    server.script(model, drop(after_chunks=3))
    p = _provider(config, provider)
    chunks = []
    p.complete(ChatRequest(_model(config, model), "x y z"), on_text=chunks.append)
    with pytest.raises(ProviderError) as info:
        p.complete(ChatRequest(_model(config, model), "x y z"), on_text=chunks.append)
    if provider == "anthropic":  # message_start carries the input tokens before any text
        assert info.value.input_tokens == 3
    assert info.value.kind == "connection"


def test_key_in_an_error_body_is_redacted(server, config):
    server.script("claude-small", error(401, message=f"invalid x-api-key {KEYS['TEST_ANTHROPIC_KEY']}"))
    with pytest.raises(ProviderError) as info:
        _provider(config, "anthropic").complete(ChatRequest(_model(config, "claude-small"), "hi"))
    assert KEYS["TEST_ANTHROPIC_KEY"] not in str(info.value)
    assert "[redacted]" in str(info.value)
