"""Shell-command quality gates: ``mmr cascade --check CMD`` through the real CLI, SDKs and local provider server;
verdicts in --json and the ledger, ``mmr costs --by gate``, errors and timeouts, per-tier config checks, --batch."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time

import pytest

from tests.conftest import ledger_rows, write_config
from tests.provider_server import reply

PYTHON = shlex.quote(sys.executable)


def cascade(mmr, *args, config=None, input=None):
    extra = ("--config", str(config)) if config else ()
    return mmr("cascade", "--gate", "heuristic", "--json", *extra, *args, input=input)


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
@pytest.mark.parametrize("on_error", ["fail", "heuristic"])
def test_jq_check_and_unparseable_json(server, mmr, tmp_path, on_error):
    """jq -e exits 1 for null or false, but 4 (jq 1.6) or 5 (jq 1.7) for input it cannot parse: by the
    exit-code contract a gate error, so with on_judge_error: fail invalid JSON escalates, and with the
    default (heuristic) the other gates decide and a note says the check erred."""
    config = write_config(tmp_path / "t.yaml", server.url, extra=f"cascade:\n  on_judge_error: {on_error}\n")
    server.script("claude-small", reply("null"))
    server.script("claude-mid", reply("not json at all, my friend"))
    server.script("claude-big", reply('{"name": "Ana", "id": 7}'))
    result = cascade(mmr, "--check", "jq -e .", "--verbose", "Reply with the JSON for a user named Ana", config=config)
    assert result.returncode == 0, result.stderr.decode()
    out = json.loads(result.stdout)
    assert out["attempts"][0]["checks"][0]["verdict"] == "fail"  # null: jq -e exits 1
    assert out["attempts"][1]["checks"][0]["verdict"] == "error" and out["attempts"][1]["checks"][0]["detail"].startswith("exit ")
    if on_error == "fail":
        assert out["text"] == '{"name": "Ana", "id": 7}' and out["tier"] == "complex"
    else:
        assert out["text"] == "not json at all, my friend"
        assert "the check 'jq -e .' erred (exit " in result.stderr.decode() and "the other gates decide" in result.stderr.decode()


def test_python_compile_check_fails_then_passes(server, mmr, db_path):
    server.script("claude-small", reply("def broken(:\n    return 1"))
    server.script("claude-mid", reply("def one():\n    \"\"\"The number one.\"\"\"\n    return 1\n"))
    command = f"{PYTHON} -m py_compile /dev/stdin"
    result = cascade(mmr, "--check", command, "Write a Python function that returns one")
    assert result.returncode == 0, result.stderr.decode()
    out = json.loads(result.stdout)
    assert out["tier"] == "medium" and out["text"].startswith("def one():")
    rejected, accepted = out["attempts"]
    assert rejected["status"] == "rejected" and rejected["quality"]["score"] == 0.0
    assert rejected["quality"]["reason"].startswith(f"check failed: {command} (exit 1: SyntaxError: ")
    assert [c["verdict"] for c in rejected["checks"]] == ["fail"] and [c["verdict"] for c in accepted["checks"]] == ["pass"]
    assert accepted["checks"][0]["gate"] == command and accepted["checks"][0]["ms"] > 0
    rows = ledger_rows(db_path)
    assert [json.loads(r["checks_json"])[0]["verdict"] for r in rows] == ["fail", "pass"]
    assert [r["status"] for r in rows] == ["rejected", "ok"]


def test_grep_check_and_costs_by_gate(server, mmr, db_path):
    server.script("claude-small", reply("Here is the query: SELECT 1"), reply("SELECT name FROM users"))
    server.script("claude-mid", reply("SELECT id FROM users"))
    for prompt in ("a query please", "another query please"):
        result = cascade(mmr, "--check", 'grep -q "^SELECT"', prompt)
        assert result.returncode == 0, result.stderr.decode()
    answers = [json.loads(r["checks_json"])[0]["verdict"] == "pass" for r in ledger_rows(db_path)]
    assert answers == [False, True, True]
    report = json.loads(mmr("costs", "--by", "gate", "--json", config=False).stdout)
    assert [{k: g[k] for k in ("gate", "checks", "pass", "fail", "error", "pass_rate")} for g in report["gates"]] == [
        {"gate": 'grep -q "^SELECT"', "checks": 3, "pass": 2, "fail": 1, "error": 0, "pass_rate": 0.6667}]
    table = mmr("costs", "--by", "gate", config=False)
    assert table.returncode == 0 and "66.7%" in table.stdout.decode()
    mixed = mmr("costs", "--by", "gate,tier", config=False)
    assert mixed.returncode == 2 and "--by gate stands alone" in mixed.stderr.decode()


@pytest.mark.parametrize("on_error, tier", [("heuristic", "simple"), ("fail", "complex")])
def test_a_check_error_is_handled_like_a_judge_error(server, mmr, tmp_path, on_error, tier):
    config = write_config(tmp_path / "t.yaml", server.url, extra=f"cascade:\n  on_judge_error: {on_error}\n")
    result = cascade(mmr, "--check", "exit 3", "Explain why the sky is blue", config=config)
    assert result.returncode == 0, result.stderr.decode()
    out = json.loads(result.stdout)
    assert out["tier"] == tier and out["best_effort"] is (on_error == "fail")  # with fail, no tier passes
    assert out["attempts"][0]["checks"] == [{"gate": "exit 3", "verdict": "error", "ms": out["attempts"][0]["checks"][0]["ms"],
                                             "detail": "exit 3"}]


def test_a_check_that_hangs_is_killed_at_its_timeout(server, mmr, tmp_path):
    config = write_config(tmp_path / "t.yaml", server.url, extra="cascade:\n  on_judge_error: fail\n")
    start = time.monotonic()
    result = cascade(mmr, "--check", "sleep 30", "--check-timeout", "0.5", "Explain why the sky is blue", config=config)
    assert time.monotonic() - start < 20  # two tiers time out at 0.5 s each, then the top tier's answer is checked too
    out = json.loads(result.stdout)
    details = [c["detail"] for a in out["attempts"] for c in a.get("checks", [])]
    assert details and all(d == "timed out after 0.5 s" for d in details)


def test_checks_per_tier_from_the_config(server, mmr, tmp_path):
    config = write_config(tmp_path / "t.yaml", server.url,
                          extra="cascade:\n  checks:\n    simple: grep -q certain\n    medium: [grep -q sure, grep -q very]\n")
    server.script("claude-small", reply("maybe so"))
    server.script("claude-mid", reply("I am very sure of it"))
    result = cascade(mmr, "Explain why the sky is blue", config=config)
    out = json.loads(result.stdout)
    assert out["tier"] == "medium"
    assert [[c["gate"] for c in a["checks"]] for a in out["attempts"]] == [["grep -q certain"], ["grep -q sure", "grep -q very"]]


def test_checks_run_concurrently_within_the_batch_bound(server, mmr, tmp_path):
    log = tmp_path / "intervals"
    check = f"s=$(date +%s.%N); sleep 0.6; echo \"$s $(date +%s.%N)\" >> {shlex.quote(str(log))}"
    rows = "".join(json.dumps({"id": i, "prompt": f"Explain item {i} in a sentence or two"}) + "\n" for i in range(6))
    result = mmr("cascade", "--gate", "heuristic", "--batch", "-", "--concurrency", "3", "--check", check, input=rows)
    assert result.returncode == 0, result.stderr.decode()
    intervals = [tuple(map(float, line.split())) for line in log.read_text().splitlines()]
    assert len(intervals) == 6
    peak = max(sum(a <= t < b for a, b in intervals) for t, _ in intervals)
    assert 2 <= peak <= 3  # they overlap, but never more than --concurrency at once


def test_bad_check_options(mmr, server, tmp_path):
    assert mmr("cascade", "--check", " ", "hi").returncode == 2
    result = mmr("cascade", "--check", "true", "--check-timeout", "0", "hi")
    assert result.returncode == 2 and "--check-timeout must be above 0" in result.stderr.decode()
    config = write_config(tmp_path / "t.yaml", server.url, extra="cascade:\n  checks:\n    huge: [true]\n")
    result = mmr("cascade", "--config", str(config), "hi")
    assert result.returncode == 3 and "cascade.checks.huge: unknown key" in result.stderr.decode()


def test_a_check_does_not_see_the_api_keys(server, mmr, tmp_path):
    seen = tmp_path / "env"
    result = cascade(mmr, "--check", f"env > {shlex.quote(str(seen))}", "Explain why the sky is blue")
    assert result.returncode == 0, result.stderr.decode()
    names = {line.partition("=")[0] for line in seen.read_text().splitlines()}
    assert "PATH" in names and not names & {"TEST_ANTHROPIC_KEY", "TEST_OPENAI_KEY", "ANTHROPIC_API_KEY", "OPENAI_API_KEY"}
