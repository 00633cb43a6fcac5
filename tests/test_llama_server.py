"""Our openai provider against a real OpenAI-compatible server we did not write:
``python -m llama_cpp.server`` serving SmolLM2 on 127.0.0.1."""

from __future__ import annotations

import pytest

from router_cli.config import load_config
from router_cli.providers import ChatRequest, ProviderError, get_provider
from router_cli import Router
from tests.conftest import ledger_rows
from tests.local_model import LlamaServer, need, need_server

CONFIG = """\
version: 1
providers:
  llama:
    type: openai
    base_url: {llama_url}
    api_key_env: null
    timeout: 60
  local:
    type: local
  fake:
    type: openai
    base_url: {fake_url}/v1
    api_key_env: TEST_OPENAI_KEY
    timeout: 5
tiers:
  - name: simple
    models:
      - {{provider: llama, model: smollm2, price: {{input: 0, output: 0}}, max_tokens: 48}}
  - name: medium
    models:
      - {{provider: fake, model: gpt-mid, price: {{input: 2.50, output: 10.00}}, max_tokens: 48}}
  - name: scratch
    models:
      - {{provider: local, model: smollm2-135m, max_tokens: 48}}
retry: {{max_retries: 1, backoff_base: 0.001, backoff_max: 0.01}}
"""


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    need(*need_server)
    server = LlamaServer(tmp_path_factory.mktemp("llama") / "server.log").start()
    yield server
    server.stop()


@pytest.fixture
def own_llama_server(tmp_path):
    """A server for one test, which that test may kill."""
    need(*need_server)
    server = LlamaServer(tmp_path / "server.log").start()
    yield server
    server.stop()


def _config(tmp_path, llama, fake_url):
    path = tmp_path / "tiers.llama.yaml"
    path.write_text(CONFIG.format(llama_url=llama.url, fake_url=fake_url))
    return load_config(path)


def _ask(config, prompt, provider="llama", on_text=None, **request):
    model = next(m for t in config.tiers for m in t.models if m.provider == provider)
    return get_provider(config.providers[provider], None).complete(ChatRequest(model, prompt, **request), on_text=on_text)


def test_plain_answer_with_exact_usage(tmp_path, llama_server, server):
    config = _config(tmp_path, llama_server, server.url)
    messages = {"system": "You are terse.", "max_tokens": 24}
    response = _ask(config, "What is the capital of France?", **messages)
    assert response.text.strip()
    assert response.stop_reason in ("stop", "length") and not response.usage_estimated
    assert 0 < response.output_tokens <= 24
    # The same model in process renders the same chat template: the same prompt tokens.
    in_process = _ask(config, "What is the capital of France?", provider="local", **messages)
    assert response.input_tokens == in_process.input_tokens


def test_the_token_limit_cuts_with_length(tmp_path, llama_server, server):
    config = _config(tmp_path, llama_server, server.url)
    response = _ask(config, "Write a long story about a dragon who learns to cook.", max_tokens=5)
    assert response.stop_reason == "length" and response.output_tokens == 5


def test_streaming(tmp_path, llama_server, server):
    config = _config(tmp_path, llama_server, server.url)
    chunks: list[str] = []
    response = _ask(config, "Write a long story about a dragon who learns to cook.", max_tokens=16, on_text=chunks.append)
    assert len(chunks) > 1 and "".join(chunks) == response.text
    assert response.stop_reason == "length"
    assert response.ttft_ms is not None and 0 < response.ttft_ms <= response.duration_ms
    # llama_cpp.server sends no usage in a stream (it ignores stream_options), so the
    # tokens are estimated from the text, and the ledger says so.
    assert response.usage_estimated and response.input_tokens > 0 and response.output_tokens > 0


def test_a_prompt_longer_than_the_servers_context_falls_back_to_the_next_tier(tmp_path, llama_server, server, db_path):
    config = _config(tmp_path, llama_server, server.url)
    prompt = "The river rose again in spring. " * 500
    with pytest.raises(ProviderError) as info:
        _ask(config, prompt, max_tokens=8)
    # A 400 with code context_length_exceeded (as OpenAI sends it): too long for this
    # model, not a request every model would refuse.
    assert info.value.status == 400 and info.value.kind == "too_long" and not info.value.retryable
    assert "maximum context length is 2048 tokens" in str(info.value)
    with Router(config, db_path, sleep=lambda s: None) as router:
        answer = router.ask(prompt, tier="simple")
    assert [(a.provider, a.status, a.error_kind) for a in answer.attempts] == [("llama", "error", "too_long"), ("fake", "ok", None)]


def test_router_through_the_server_then_falls_back_when_it_is_stopped(tmp_path, own_llama_server, server, db_path):
    config = _config(tmp_path, own_llama_server, server.url)
    notes: list[str] = []
    with Router(config, db_path, on_note=notes.append, sleep=lambda s: None) as router:
        first = router.ask("hello there", tier="simple")
        assert (first.final.provider, first.final.status) == ("llama", "ok") and first.text.strip()
        own_llama_server.stop()
        second = router.ask("hello again", tier="simple")
    assert (second.final.provider, second.text) == ("fake", "Answer to: hello again")
    failed = [a for a in second.attempts if a.provider == "llama"]
    assert [a.error_kind for a in failed] == ["connection", "connection"]  # one retry, then the next tier
    rows = ledger_rows(db_path)
    assert [(r["provider"], r["status"]) for r in rows] == [
        ("llama", "ok"), ("llama", "error"), ("llama", "error"), ("fake", "ok")]
    assert rows[0]["input_tokens"] > 0 and not rows[0]["usage_estimated"]


def test_stream_falls_back_when_the_server_dies_mid_answer(tmp_path, own_llama_server, server, db_path):
    config = _config(tmp_path, own_llama_server, server.url)
    received: list[str] = []
    restarts: list[str] = []

    def on_text(piece: str) -> None:
        if not received:
            own_llama_server.stop()  # killed while it is still generating
        received.append(piece)

    with Router(config, db_path, sleep=lambda s: None) as router:
        answer = router.ask("Write a long story about a dragon who learns to cook.", tier="simple", max_tokens=200,
                            on_text=on_text, on_restart=restarts.append)
    assert answer.final.provider == "fake"
    assert "".join(received).endswith("Answer to: Write a long story about a dragon who learns to cook.")
    assert len(restarts) == 1 and "broke off" in restarts[0]
    broken = answer.attempts[0]
    assert (broken.provider, broken.status, broken.error_kind) == ("llama", "error", "connection")
    # What was streamed before the drop is recorded (estimated: the server sends no usage in streams).
    assert broken.output_tokens > 0 and broken.usage_estimated
