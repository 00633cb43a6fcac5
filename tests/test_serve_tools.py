"""``mmr serve`` passes tools, tool results and images through to a model of the client's own protocol.

The official SDKs -> the real server (port 0) -> the test provider server, which answers with a
tool call when scripted (``tool_call``) and says which images and tool results it saw. Costs
are hand-computed from the test prices (per million tokens) and the server's tokenizer
(whitespace words): claude-small 0.80/4.00, gpt-small 0.15/0.60.
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from tests.conftest import ledger_rows, write_config
from tests.provider_server import tool_call
from tests.serve_fixture import start_serve

pytestmark = pytest.mark.timeout(120)

OPENAI_TOOLS = [{"type": "function", "function": {
    "name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
ANTHROPIC_TOOLS = [{"name": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture
def served(server, tmp_path, db_path):
    running = start_serve(write_config(tmp_path / "serve.yaml", server.url), db_path, "--no-auth")
    yield running
    running.stop()


def test_openai_tools_round_trip_through_an_openai_model(served, server, db_path):
    server.script("gpt-small", tool_call("weather", {"city": "Paris"}))
    asked = [{"role": "user", "content": "weather in Paris?"}]
    raw = served.openai().chat.completions.with_raw_response.create(model="auto", messages=asked, tools=OPENAI_TOOLS,
                                                                    tool_choice="auto")
    choice = raw.parse().choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == ("call_1", "weather", {"city": "Paris"})
    # auto would start at claude-small: with tools, only the OpenAI models of the chain are tried
    assert raw.headers["x-mmr-model"] == "openai/gpt-small" and server.calls("claude-small") == []
    # 3 * 0.15e-6 + 2 * 0.60e-6 ('weather in Paris?'; the arguments '{"city": "Paris"}')
    assert raw.headers["x-mmr-cost-usd"] == "0.00000165"
    sent = server.calls("gpt-small")[0]["body"]
    assert sent["tools"] == OPENAI_TOOLS and sent["tool_choice"] == "auto" and sent["messages"] == asked

    history = asked + [choice.message.model_dump(exclude_none=True),
                       {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    answer = served.openai().chat.completions.create(model="auto", messages=history, tools=OPENAI_TOOLS)
    assert answer.choices[0].message.content == "Answer to: weather in Paris? [tool result: sunny]"
    assert answer.choices[0].finish_reason == "stop"
    back = server.calls("gpt-small")[1]["body"]["messages"]
    assert back[1]["tool_calls"][0]["function"] == {"name": "weather", "arguments": '{"city": "Paris"}'}
    assert back[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}

    first, second = ledger_rows(db_path)
    assert (first["model"], first["stop_reason"], first["cost_usd"]) == ("gpt-small", "tool_calls", "0.00000165")
    assert first["policy"] == "tools or images: only openai models (3 of 6 in the chain)"
    assert first["response"] == '\n[tool call weather: {"city": "Paris"}]'  # no words, one call
    assert second["prompt"] == ('user: weather in Paris?\n\nassistant: [tool call weather: {"city": "Paris"}]\n\n'
                                "user: [tool result: sunny]")
    assert second["command"] == "serve" and second["policy"].startswith("tools or images: only openai models")


def test_anthropic_tools_round_trip_through_an_anthropic_model(served, server, db_path):
    server.script("claude-mid", tool_call("weather", {"city": "Rome"}, "Let me check."))
    asked = [{"role": "user", "content": "weather in Rome?"}]
    message = served.anthropic().messages.create(model="medium", max_tokens=50, system="be brief",
                                                 messages=asked, tools=ANTHROPIC_TOOLS)
    assert message.stop_reason == "tool_use"
    text, use = message.content
    assert text.text == "Let me check." and (use.type, use.id, use.name, use.input) == (
        "tool_use", "call_1", "weather", {"city": "Rome"})
    assert server.calls("gpt-mid") == []
    sent = server.calls("claude-mid")[0]["body"]
    assert sent["tools"] == ANTHROPIC_TOOLS and sent["system"] == "be brief" and sent["messages"] == asked

    history = asked + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]},
                       {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1",
                                                     "content": "rainy"}]}]
    answer = served.anthropic().messages.create(model="medium", max_tokens=50, messages=history, tools=ANTHROPIC_TOOLS)
    assert answer.content[0].text == "Answer to: weather in Rome? [tool result: rainy]"
    back = server.calls("claude-mid")[1]["body"]["messages"]
    assert back[1]["content"][1] == {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Rome"}}
    assert back[2]["content"][0]["type"] == "tool_result"
    rows = ledger_rows(db_path)
    # 5 * 3.00e-6 + 5 * 15.00e-6 ("be brief weather in Rome?"; 'Let me check. {"city": "Rome"}')
    assert [(r["model"], r["stop_reason"]) for r in rows] == [("claude-mid", "tool_use"), ("claude-mid", "end_turn")]
    assert rows[0]["cost_usd"] == "0.00009"
    assert rows[0]["response"] == 'Let me check.\n[tool call weather: {"city": "Rome"}]'


def test_streamed_tool_calls_are_what_the_sdks_accumulate(served, server):
    server.script("gpt-small", tool_call("weather", {"city": "Oslo"}, "Looking it up."))
    with served.openai().chat.completions.stream(model="auto", tools=OPENAI_TOOLS,
                                                 messages=[{"role": "user", "content": "weather in Oslo?"}]) as stream:
        kinds = [event.type for event in stream]
        completion = stream.get_final_completion()
    message = completion.choices[0].message
    assert message.content == "Looking it up." and completion.choices[0].finish_reason == "tool_calls"
    (call,) = message.tool_calls
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == ("call_1", "weather", {"city": "Oslo"})
    assert "tool_calls.function.arguments.done" in kinds

    server.script("claude-small", tool_call("weather", {"city": "Lima"}))
    with served.anthropic().messages.stream(model="auto", max_tokens=50, tools=ANTHROPIC_TOOLS,
                                            messages=[{"role": "user", "content": "weather in Lima?"}]) as stream:
        final = stream.get_final_message()
    (use,) = final.content  # no text: no empty text block
    assert (use.type, use.name, use.input, final.stop_reason) == ("tool_use", "weather", {"city": "Lima"}, "tool_use")

    server.script("claude-small", tool_call("weather", {"city": "Lima"}, "Hm."))
    status, _, body = served.raw("POST", "/v1/messages", {
        "model": "auto", "max_tokens": 50, "stream": True, "tools": ANTHROPIC_TOOLS,
        "messages": [{"role": "user", "content": "weather in Lima?"}]})
    events = [json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")]
    assert [(e["type"], e.get("index")) for e in events] == [
        ("message_start", None), ("content_block_start", 0), ("content_block_delta", 0), ("content_block_stop", 0),
        ("content_block_start", 1), ("content_block_delta", 1), ("content_block_stop", 1), ("message_delta", None),
        ("message_stop", None)]
    assert events[4]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "weather", "input": {}}
    assert events[5]["delta"] == {"type": "input_json_delta", "partial_json": '{"city": "Lima"}'}


def test_images_reach_the_model_of_the_clients_protocol(served, server, db_path):
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}
    completion = served.openai().chat.completions.create(model="simple", messages=[
        {"role": "user", "content": [{"type": "text", "text": "what is this"}, image]}])
    assert completion.choices[0].message.content == "Answer to: what is this [1 images]"
    (call,) = server.calls("gpt-small")
    assert call["body"]["messages"][0]["content"][1] == image
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
    with served.anthropic().messages.stream(model="auto", max_tokens=50, messages=[
            {"role": "user", "content": [block, {"type": "text", "text": "and this"}]}]) as stream:
        assert "".join(stream.text_stream) == "Answer to: and this [1 images]"
    (call,) = server.calls("claude-small")
    assert call["body"]["messages"][0]["content"][0] == block
    rows = ledger_rows(db_path)
    assert [r["prompt"] for r in rows] == ["what is this[image]", "[image]and this"]
    assert [r["model"] for r in rows] == ["gpt-small", "claude-small"]


def test_only_models_of_the_other_protocol_is_a_clear_400(server, tmp_path, db_path):
    only_anthropic = write_config(tmp_path / "a.yaml", server.url).read_text()
    only_anthropic = "\n".join(line for line in only_anthropic.splitlines() if "provider: openai" not in line)
    (tmp_path / "a.yaml").write_text(only_anthropic)
    running = start_serve(tmp_path / "a.yaml", db_path, "--no-auth")
    try:
        with pytest.raises(openai.BadRequestError) as e:
            running.openai().chat.completions.create(model="auto", tools=OPENAI_TOOLS,
                                                     messages=[{"role": "user", "content": "x"}])
        assert e.value.body["type"] == "invalid_request_error"
        assert e.value.body["message"] == (
            "this request carries tools, which pass only to a model of the client's own protocol (openai), and no "
            "configured model speaks it: configure a model of a provider of type openai to pass them through")
        running.openai().chat.completions.create(model="auto", messages=[{"role": "user", "content": "plain"}])
    finally:
        running.stop()
    assert [r["model"] for r in ledger_rows(db_path)] == ["claude-small"]  # text alone still crosses over


def test_a_model_or_cascade_that_cannot_take_them_is_a_400(served, server):
    with pytest.raises(anthropic.BadRequestError) as e:
        served.anthropic().messages.create(model="gpt-small", max_tokens=9, tools=ANTHROPIC_TOOLS,
                                           messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["message"].endswith(
        "gpt-small is not one: ask for auto, a tier, or one of claude-small, claude-mid, claude-big")
    with pytest.raises(openai.BadRequestError) as e:
        served.openai().chat.completions.create(model="cascade", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}])
    assert "cascade judges text answers only" in e.value.body["message"]
    assert server.calls() == []


def test_a_tier_with_no_model_of_the_clients_protocol_above_it_is_a_400(server, tmp_path, db_path):
    config = write_config(tmp_path / "c.yaml", server.url).read_text()
    config = "\n".join(line for line in config.splitlines() if "gpt-mid" not in line and "gpt-big" not in line)
    (tmp_path / "c.yaml").write_text(config)
    running = start_serve(tmp_path / "c.yaml", db_path, "--no-auth")
    try:
        with pytest.raises(openai.BadRequestError) as e:
            running.openai().chat.completions.create(model="medium", tools=OPENAI_TOOLS,
                                                     messages=[{"role": "user", "content": "x"}])
        assert e.value.body["message"] == ("this request carries tools or images in the openai form, and no model of "
                                           "tier medium or above speaks openai: ask for a lower tier, or add a model of type openai to one of them")
        assert running.openai().chat.completions.create(model="simple", tools=OPENAI_TOOLS, messages=[
            {"role": "user", "content": "x"}]).choices[0].message.content == "Answer to: x"
    finally:
        running.stop()
    assert server.calls("claude-mid") == [] and [r["model"] for r in ledger_rows(db_path)] == ["gpt-small"]


def test_a_request_with_tools_is_sent_as_the_client_wrote_it_not_worded(server, tmp_path, db_path):
    from tests.prompts_config import write_worded

    # openai's provider adds "You are terse." and gpt-small its own stop and temperature to a worded request
    running = start_serve(write_worded(tmp_path / "worded.yaml", server.url), db_path, "--no-auth")
    try:
        asked = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "weather in Oslo?"}]
        served_openai = running.openai()
        served_openai.chat.completions.create(model="gpt-small", messages=asked, tools=OPENAI_TOOLS)
        plain = served_openai.chat.completions.create(model="gpt-small", messages=asked)
    finally:
        running.stop()
    with_tools, worded = server.calls("gpt-small")[0]["body"], server.calls("gpt-small")[1]["body"]
    assert with_tools["messages"] == asked and "stop" not in with_tools and "temperature" not in with_tools
    assert worded["messages"][0] == {"role": "system", "content": "You are terse.\n\nBe kind."}  # the control
    assert plain.choices[0].message.content
    rows = ledger_rows(db_path)
    assert [(r["template"], r["template_hash"] is None) for r in rows] == [(None, True), ("inline", False)]


# A tool whose schema is long: its JSON is 6,086 bytes of the request, counted with the 1,000 tokens
# of tool framing (engine/admission.py).
BIG_TOOLS = [{"name": "lookup", "description": "x" * 6000, "input_schema": {"type": "object"}}]


def test_max_cost_counts_the_tools_schemas(served, server, db_path):
    """Text alone ('hi', 10 output tokens on claude-small) is at most 50 * 0.80e-6 + 10 * 4.00e-6 = 0.00008;
    with the tools (6,086 + 1,000 tokens more) it is 7,136 * 0.80e-6 + 0.00004 = 0.0057488."""
    asked = {"model": "simple", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], "tools": BIG_TOOLS}
    with pytest.raises(anthropic.APIStatusError) as e:
        served.anthropic().messages.create(**asked, extra_headers={"x-mmr-max-cost": "0.001"})
    assert e.value.status_code == 402 and e.value.body["type"] == "error"
    assert e.value.body["error"]["message"].startswith(
        "--max-cost of $0.001000 has $0.001000 left; this request could cost up to $0.005749 on simple")
    assert server.calls() == []
    answer = served.anthropic().messages.create(**asked, extra_headers={"x-mmr-max-cost": "0.006"})
    assert answer.content[0].text == "Answer to: hi" and len(server.calls("claude-small")) == 1


def test_max_cost_counts_each_image_at_its_documented_bound(served, server):
    """'[image]hi' is at most 57 tokens of text (0.0000856 with 10 output tokens); the image adds
    Anthropic's 1,600: 1,657 * 0.80e-6 + 10 * 4.00e-6 = 0.0013656."""
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
    asked = {"model": "simple", "max_tokens": 10,
             "messages": [{"role": "user", "content": [block, {"type": "text", "text": "hi"}]}]}
    with pytest.raises(anthropic.APIStatusError) as e:
        served.anthropic().messages.create(**asked, extra_headers={"x-mmr-max-cost": "0.001"})
    assert e.value.status_code == 402 and "could cost up to $0.001366 on simple" in e.value.body["error"]["message"]
    assert server.calls() == []
    assert served.anthropic().messages.create(**asked, extra_headers={"x-mmr-max-cost": "0.0014"}).content


def test_a_streamed_tool_call_cut_at_max_tokens_is_kept_not_retried(served, server, db_path):
    """A tool_use block whose JSON stops mid-way (the output limit) ends the answer with stop reason
    max_tokens and the input as far as it came, as the SDK's own partial parse makes it: one call, billed once."""
    server.script("claude-mid", tool_call("weather", {"city": "Rome", "unit": "c"}, cut=True))  # '{"city": ' '"Rome", "' [cut]
    with served.anthropic().messages.stream(model="medium", max_tokens=50, tools=ANTHROPIC_TOOLS,
                                            messages=[{"role": "user", "content": "weather in Rome?"}]) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "max_tokens"
    (use,) = message.content
    assert (use.type, use.name, use.input) == ("tool_use", "weather", {"city": "Rome"})
    assert len(server.calls("claude-mid")) == 1 and server.calls("claude-big") == []
    (row,) = ledger_rows(db_path)
    assert (row["status"], row["stop_reason"], row["response"]) == ("ok", "max_tokens", '\n[tool call weather: {"city": "Rome"}]')


def test_a_streamed_openai_tool_call_cut_at_length_keeps_its_arguments_as_sent(served, server, db_path):
    server.script("gpt-small", tool_call("weather", {"city": "Paris", "unit": "c"}, cut=True))  # '{"city": "' 'Paris", "u' [cut]
    chunks = list(served.openai().chat.completions.create(model="simple", stream=True, tools=OPENAI_TOOLS,
                                                         messages=[{"role": "user", "content": "weather?"}]))
    assert chunks[-1].choices[0].finish_reason == "length"
    arguments = "".join(c.choices[0].delta.tool_calls[0].function.arguments or "" for c in chunks
                        if c.choices and c.choices[0].delta.tool_calls)
    assert arguments == '{"city": "Paris", "u' and len(server.calls("gpt-small")) == 1
    assert [r["stop_reason"] for r in ledger_rows(db_path)] == ["length"]
