"""Prompts that fit each model, from the command line: config errors at load naming the key path,
``mmr ask --dry-run`` per candidate model, ``mmr explain``, ``mmr costs --by template`` (both ledger
backends) and experiments comparing two phrasings."""

from __future__ import annotations

import json

import pytest

from router_cli.errors import EXIT_CONFIG
from tests.prompts_config import CLAUDE, TERSE, write_worded
from tests.provider_server import error, reply


@pytest.fixture
def worded(tmp_path, server):
    return write_worded(tmp_path / "worded.yaml", server.url)


def _config_error(mmr, tmp_path, server, old: str, new: str, extra: str = "") -> str:
    path = write_worded(tmp_path / "bad.yaml", server.url, extra)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    result = mmr("ask", "--dry-run", "hello", "--config", str(path))
    assert result.returncode == EXIT_CONFIG, result.stderr
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0]
    return lines[0]


@pytest.mark.parametrize("old,new,where,problem", [
    ('user: "<question>\\n{prompt}\\n</question>"', 'user: "<question>{promt}</question>"',
     "templates.claude.user", "unknown placeholder {promt}"),
    ('user: "<question>\\n{prompt}\\n</question>"', 'user: "<question></question>"',
     "templates.claude", "{prompt} appears in neither system nor user: the user's prompt would be dropped"),
    ('system: "{system}\\n\\nAnswer', 'system: "{system} {\\n\\nAnswer',
     "templates.claude.system", "a single '{' (write {{ for a literal brace)"),
    ('user: "{system}\\n\\n{prompt}"', 'user: "{prompt!r}"', "templates.json-only.user", "unknown placeholder {prompt!r}"),
    ("system_template: claude", "system_template: 5", "providers.anthropic.system_template",
     "expected a non-empty string, got int 5"),
    ("system_template: claude", "system_template: cluade", "providers.anthropic.system_template",
     "unknown template 'cluade'; templates: claude, json-only"),
    ("system_template: claude", "system_template: {system: hi, extra: 1}", "providers.anthropic.system_template.extra",
     "unknown key (allowed: system, user)"),
    ("system_template: claude", "system_template: claude\n    system_prefix: x", "providers.anthropic.system_prefix",
     "cannot be combined with system_template"),
    ('system_prefix: "You are terse."', "system_prefix: [a]", "providers.openai.system_prefix", "expected a string, got a list"),
    ('system_prefix: "You are terse."', 'system_prefix: "Answer {prompt}"', "providers.openai.system_prefix",
     "a prefix or suffix is sent as written"),
    ("system_suffix: Medium tier.", "system_suffix: 3", "tiers[1].system_suffix", "expected a string, got int 3"),
    ('stop: ["</answer>"]', "stop: [1]", "tiers[0].models[0].stop[0]", "expected a non-empty string, got int 1"),
    ('stop: ["</answer>"]', "stop: {a: 1}", "tiers[0].models[0].stop", "expected a list of strings, got a mapping"),
    ("temperature: 0.3", "temperature: 3", "tiers[0].models[1].temperature", "must be a number between 0 and 2"),
    ("temperature: 0.3", "temperature: hot", "tiers[0].models[1].temperature", "expected a number, got str 'hot'"),
    ('stop: ["</answer>"]', "temperature: 0.5", "tiers[0].models[0].temperature", "the Anthropic API takes no temperature"),
])
def test_a_wording_error_is_a_config_error_naming_its_key(mmr, tmp_path, server, old, new, where, problem):
    line = _config_error(mmr, tmp_path, server, old, new)
    assert line.startswith(f"Error: {tmp_path / 'bad.yaml'}: {where}: "), line
    assert problem in line


def test_a_variants_models_are_checked_and_worded_too(mmr, tmp_path, server):
    extra = ("experiments:\n  wording:\n    variants:\n      a: {weight: 1, tiers: {complex: "
             "[{provider: plain, model: gpt-big, system_template: nope}]}}\n")
    line = _config_error(mmr, tmp_path, server, "retry:", "retry:", extra)
    assert "experiments.wording.variants.a.tiers.complex[0].system_template: unknown template 'nope'" in line


def test_dry_run_shows_each_candidate_model_as_it_would_be_sent(mmr, worded):
    result = mmr("ask", "--dry-run", "--tier", "simple", "--system", "Be kind.", "hello", "--config", str(worded))
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert f"sends     simple anthropic/claude-small: template claude ({CLAUDE}, from providers.anthropic.system_template)" in text
    assert '            system "Be kind.\\n\\nAnswer inside <answer> tags."' in text
    assert '            user   "<question>\\nhello\\n</question>"' in text
    assert (f"          simple openai/gpt-small: system prefix/suffix ({TERSE}, from providers.openai); "
            'stop ["END", "STOP"]; temperature 0.3') in text
    # The fallback chain goes on into the tiers above, each model in its own wording.
    assert "          medium openai/gpt-mid: system prefix/suffix" in text
    assert "          complex plain/gpt-big: system prefix/suffix" in text
    data = json.loads(mmr("ask", "--dry-run", "--json", "--tier", "simple", "hello", "--config", str(worded)).stdout)
    first, second = data["candidates"][:2]
    assert first == {"tier": "simple", "provider": "anthropic", "model": "claude-small", "template": "claude",
                     "template_hash": CLAUDE, "wording": f"template claude ({CLAUDE}, from providers.anthropic.system_template)",
                     "system": "Answer inside <answer> tags.", "prompt": "<question>\nhello\n</question>",
                     "stop": ["</answer>"], "temperature": None}
    assert (second["system"], second["prompt"], second["stop"], second["temperature"]) == (
        "You are terse.", "hello", ["END", "STOP"], 0.3)
    assert len(data["candidates"]) == 6


def test_dry_run_without_any_wording_lists_no_candidates_but_json_has_them(mmr):
    text = mmr("ask", "--dry-run", "--tier", "simple", "hello").stdout.decode()
    assert "sends" not in text and "as written" not in text
    data = json.loads(mmr("ask", "--dry-run", "--json", "--tier", "simple", "hello").stdout)
    assert data["candidates"][0] == {"tier": "simple", "provider": "anthropic", "model": "claude-small",
                                     "template": None, "template_hash": None, "wording": None, "system": None,
                                     "prompt": "hello", "stop": [], "temperature": None}


def test_a_cascade_dry_run_lists_only_the_tiers_it_may_reach(mmr, worded):
    text = mmr("cascade", "--dry-run", "--start-tier", "simple", "--max-tier", "medium", "hello",
               "--config", str(worded)).stdout.decode()
    assert "simple anthropic/claude-small: template claude" in text and "medium plain/gpt-plain: template json-only" in text
    assert "gpt-big" not in text


def test_dry_run_bounds_the_cost_in_the_models_wording(mmr, worded, tmp_path, server):
    worded_max = json.loads(mmr("ask", "--dry-run", "--json", "--tier", "simple", "hello", "--config", str(worded)).stdout)
    plain_max = json.loads(mmr("ask", "--dry-run", "--json", "--tier", "simple", "hello").stdout)
    assert worded_max["max_input_tokens"] > plain_max["max_input_tokens"]
    assert worded_max["max_cost_usd"] > plain_max["max_cost_usd"]


def test_explain_shows_each_attempts_template(mmr, worded, server):
    server.always("claude-small", error(500))
    out = json.loads(mmr("ask", "--json", "--tier", "simple", "hello", "--config", str(worded)).stdout)
    assert [(a["model"], a.get("template"), a.get("template_hash")) for a in out["attempts"]] == [
        ("claude-small", "claude", CLAUDE), ("gpt-small", "inline", TERSE)]
    report = json.loads(mmr("explain", out["call_id"], "--json", "--config", str(worded)).stdout)
    first, second = report["attempts"]
    assert (first["template"], first["template_hash"]) == ("claude", CLAUDE)
    assert first["template_text"] == {"system": "{system}\n\nAnswer inside <answer> tags.",
                                      "user": "<question>\n{prompt}\n</question>"}
    assert (second["template"], second["template_hash"]) == ("inline", TERSE)
    assert second["template_text"] == {"system_prefix": "You are terse.", "system_suffix": ""}
    text = mmr("explain", out["call_id"], "--config", str(worded)).stdout.decode()
    assert f"template claude ({CLAUDE})" in text and f"template inline ({TERSE})" in text
    assert '"<question>\\n{prompt}\\n</question>"' in text
    # Under a config that no longer has the wording, the ledger still names it.
    other = mmr("explain", out["call_id"]).stdout.decode()
    assert f"template claude ({CLAUDE}): not in the current config" in other


@pytest.mark.parametrize("ledger", ["sqlite", "postgres"])
def test_costs_by_template(mmr, worded, server, ledger, tmp_path, request):
    db = str(tmp_path / "ledger.db") if ledger == "sqlite" else request.getfixturevalue("pg_url")
    server.script("claude-small", reply("a", input_tokens=1000, output_tokens=100), error(500))
    server.script("gpt-small", reply("b", input_tokens=1000, output_tokens=100))
    for prompt in ("hello", "hello again"):
        result = mmr("ask", "--tier", "simple", prompt, "--config", str(worded), "--db", db)
        assert result.returncode == 0, result.stderr
    data = json.loads(mmr("costs", "--by", "template,template_hash", "--json", "--db", db, config=False).stdout)
    rows = {(r["template"], r["template_hash"]): (r["calls"], r["spend_usd"]) for r in data["rows"]}
    # claude-small: 1,000 in at $0.80/M + 100 out at $4/M = $0.0012, then a failed call billed nothing;
    # gpt-small: 1,000 in at $0.15/M + 100 out at $0.60/M = $0.00021.
    assert rows == {("claude", CLAUDE): (2, "0.0012"), ("inline", TERSE): (1, "0.00021")}
    table = mmr("costs", "--by", "template", "--db", db, config=False, env={"COLUMNS": "200"}).stdout.decode()
    assert "claude" in table and "inline" in table


def test_an_experiment_compares_two_phrasings(mmr, worded, server, tmp_path, db_path):
    path = write_worded(tmp_path / "exp.yaml", server.url, """\
experiments:
  phrasing:
    variants:
      control: {weight: 1}
      xml: {weight: 1, tiers: {complex: [{provider: plain, model: gpt-big, price: {input: 1.25, output: 10.00}, system_template: claude}]}}
""")
    seen = {}
    for i in range(40):
        out = json.loads(mmr("ask", "--json", "--tier", "complex", "--user", f"u{i}", "hi", "--config", str(path)).stdout)
        seen.setdefault(out["variant"], out["call_id"])
        if len(seen) == 2:
            break
    assert set(seen) == {"phrasing/control", "phrasing/xml"}
    data = json.loads(mmr("costs", "--by", "variant,template", "--json", config=False).stdout)
    assert {(r["variant"], r["template"]) for r in data["rows"]} == {("phrasing/control", "inline"),
                                                                      ("phrasing/xml", "claude")}
    sent = {c["body"]["messages"][-1]["content"] for c in server.calls("gpt-big")}
    assert "<question>\nhi\n</question>" in sent and "hi" in sent


def test_the_docs_example_loads_and_its_dry_run_lines_are_what_mmr_prints():
    import re
    from pathlib import Path

    from router_cli.config.load import parse_config

    text = (Path(__file__).resolve().parent.parent / "docs" / "prompts.md").read_text()
    config = parse_config(re.findall(r"```yaml\n(.*?)```", text, re.S)[0], "docs/prompts.md")
    claude, gpt, nano = config.tier("simple").models
    assert claude.phrasing.render("Be kind.", "hello") == ("Be kind.\n\nAnswer inside <answer> tags.",
                                                           "<question>\nhello\n</question>")
    assert f"claude-haiku-4-5: {claude.phrasing.describe()}" in text
    assert f"gpt-4.1-mini: {gpt.phrasing.describe()}; stop [\"END\"]; temperature 0.2" in text
    assert nano.phrasing.render(None, "hi") == (None, "Q: hi")
    assert config.templates["no-system"].render("Be kind.", "hi") == (None, "Be kind.\n\nhi")
