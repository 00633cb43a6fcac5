"""mmr ask --batch / mmr cascade --batch: through the real CLI and SDKs to the local provider server."""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from router_cli.batch.rows import IdSet, answered_ids, parse_line, read_rows
from router_cli.errors import EXIT_INTERRUPTED, EXIT_ROWS_FAILED
from router_cli.render.progress import batch_status
from tests.conftest import ledger_rows
from tests.provider_server import error, reply, reply_text

TIERS = ["simple", "medium", "complex"]


def jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def out_rows(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


PROCESSES = pytest.mark.parametrize("processes", ["1", "2"], ids=["threads", "2-processes"])


@PROCESSES
def test_rows_come_out_in_input_order_while_they_finish_out_of_order(server, mmr, db_path, processes):
    prompts = [f"question {i}" for i in range(12)]
    for i, prompt in enumerate(prompts):
        server.script_prompt(prompt, reply(delay=(12 - i) * 0.03))  # later rows answer sooner
    result = mmr("ask", "--batch", "-", "--concurrency", "6", "--processes", processes, "--tier", "simple",
                 input=jsonl(*[{"id": f"r{i}", "prompt": p} for i, p in enumerate(prompts)]))
    assert result.returncode == 0, result.stderr
    rows = out_rows(result)
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(12)]
    assert [r["text"] for r in rows] == [reply_text(p) for p in prompts]
    # call ids are given when an answer is recorded: their order is the order of completion
    finished = sorted(range(12), key=lambda i: rows[i]["call_id"])
    assert finished != list(range(12))
    assert result.stderr == b""  # quiet off a terminal


def test_each_output_row_is_the_ask_json_object_with_the_id(server, mmr):
    single = mmr("ask", "--json", "--tier", "medium", "hello there")
    batch = mmr("ask", "--batch", "-", "--tier", "medium", input=jsonl({"id": 7, "prompt": "hello there"}))
    (row,) = out_rows(batch)
    expected = json.loads(single.stdout)
    assert list(row) == ["id", *expected]
    assert row["id"] == 7
    volatile = {"call_id", "request_id", "latency_ms"}
    assert {k: v for k, v in row.items() if k not in volatile | {"id"}} == {k: v for k, v in expected.items() if k not in volatile}


def test_row_fields_override_the_options_and_reach_the_ledger(server, mmr, db_path):
    result = mmr("ask", "--batch", "-", "--tier", "simple", "--team", "core", "--max-tokens", "50",
                 input=jsonl({"id": "a", "prompt": "one two three four five six", "tier": "complex", "max_tokens": 3,
                              "system": "be terse", "user": "ann"},
                             {"id": "b", "prompt": "plain"}))
    assert result.returncode == 0, result.stderr
    a, b = out_rows(result)
    assert (a["tier"], a["output_tokens"], a["stop_reason"]) == ("complex", 3, "max_tokens")
    assert b["tier"] == "simple"
    first = next(c for c in server.calls() if c["prompt"].startswith("one"))
    assert first["body"]["system"] == "be terse" and first["body"]["max_tokens"] == 3
    rows = {r["request_id"]: r for r in ledger_rows(db_path)}
    assert (rows[a["request_id"]]["user"], rows[a["request_id"]]["team"]) == ("ann", "core")
    assert rows[b["request_id"]]["user"] is None


def test_a_failed_row_is_an_error_row_and_the_batch_goes_on(server, mmr, db_path):
    server.script_prompt("refused", error(400, message="bad request here"))
    server.script_prompt("down", *[error(500)] * 4)  # complex: claude-big once, then gpt-big with 2 retries
    result = mmr("ask", "--batch", "-", "--tier", "complex",
                 input=jsonl({"id": 1, "prompt": "fine"}, {"id": 2, "prompt": "refused"},
                             {"id": 3, "prompt": "down"}, {"id": 4, "prompt": "also fine"}))
    assert result.returncode == EXIT_ROWS_FAILED
    ok1, refused, down, ok2 = out_rows(result)
    assert ok1["text"] == reply_text("fine") and ok2["text"] == reply_text("also fine")
    assert refused["error"]["kind"] == "all_attempts_failed" and refused["error"]["exit_code"] == 6
    assert "bad request here" in refused["error"]["message"] and refused["error"]["line"] == 2
    assert down["error"]["exit_code"] == 5
    assert [a["status"] for a in down["attempts"]] == ["error"] * 4
    assert down["cost_usd"] == "0"
    assert "2 failed" in result.stderr.decode()
    # every attempt, failed ones included, is in the ledger
    assert len(ledger_rows(db_path)) == len(server.calls()) == 1 + 1 + 4 + 1


@PROCESSES
def test_every_attempt_is_in_the_ledger_under_concurrency(server, mmr, db_path, processes):
    for i in range(0, 60, 7):
        server.script_prompt(f"p{i}", error(500), error(529))  # two retries, then an answer
    result = mmr("ask", "--batch", "-", "--concurrency", "12", "--processes", processes, "--tier", "simple",
                 input=jsonl(*[{"prompt": f"p{i}"} for i in range(60)]))
    assert result.returncode == 0, result.stderr
    rows = out_rows(result)
    assert [r["id"] for r in rows] == list(range(1, 61))  # no id: the line number
    recorded = ledger_rows(db_path)
    assert len(recorded) == len(server.calls()) == 60 + 2 * 9
    assert {r["request_id"] for r in recorded} == {r["request_id"] for r in rows}
    spend = sum((Decimal(r["cost_usd"]) for r in recorded), Decimal(0))
    assert spend == sum((Decimal(r["cost_usd"]) for r in rows), Decimal(0))


ONE_MODEL_PER_TIER = """\
version: 1
baseline_tier: complex
providers:
  anthropic: {{type: anthropic, api_key_env: TEST_ANTHROPIC_KEY, base_url: "{url}", timeout: 5}}
tiers:
  - name: simple
    models: [{{provider: anthropic, model: claude-small, price: {{input: 0.80, output: 4.00}}, max_tokens: 64}}]
  - name: complex
    models: [{{provider: anthropic, model: claude-big, price: {{input: 15.00, output: 75.00}}, max_tokens: 256}}]
retry: {{max_retries: 2, backoff_base: 0.001, backoff_max: 0.01, max_retry_after: 5}}
"""


@PROCESSES
def test_a_retry_after_pauses_the_provider_for_every_worker(server, mmr, tmp_path, processes):
    config = tmp_path / "one-model.yaml"
    config.write_text(ONE_MODEL_PER_TIER.format(url=server.url))
    server.script("claude-small", error(429, retry_after=1))
    server.always("claude-small", reply(delay=0.3))
    result = mmr("ask", "--batch", "-", "--concurrency", "4", "--processes", processes, "--tier", "simple",
                 "--config", str(config),
                 input=jsonl(*[{"prompt": f"row {i}"} for i in range(8)]))
    assert result.returncode == 0, result.stderr
    assert all(r["model"] == "claude-small" for r in out_rows(result))
    arrivals = sorted(c["time"] for c in server.calls("claude-small"))
    assert len(arrivals) == 9  # 8 rows and one retry
    # Only the first wave went out before the 429; every later call waited out the
    # retry-after, though three workers were free again 0.3 s in.
    early = [t for t in arrivals if t - arrivals[0] < 0.9]
    assert len(early) <= 4


def test_while_a_provider_is_paused_its_tier_mate_answers(server, mmr):
    server.script("claude-small", error(429, retry_after=1))
    server.always("claude-small", reply(delay=0.3))
    result = mmr("ask", "--batch", "-", "--concurrency", "4", "--tier", "simple",
                 input=jsonl(*[{"prompt": f"row {i}"} for i in range(8)]))
    assert result.returncode == 0, result.stderr
    rows = out_rows(result)
    paused = [r for r in rows if r["attempts"][0]["status"] == "skipped"]
    assert paused and all(r["model"] == "gpt-small" and "retry-after" in r["attempts"][0]["error"] for r in paused)
    arrivals = sorted(c["time"] for c in server.calls("claude-small"))
    early = [t for t in arrivals if t - arrivals[0] < 0.9]
    assert len(early) <= 4  # nobody called claude-small during its pause


def test_cache_and_budgets_apply_to_every_row(server, mmr, tmp_path, db_path):
    from tests.conftest import write_config

    config = write_config(tmp_path / "policy.yaml", server.url, extra=(
        "cache: {enabled: true, ttl: 1h, scope: global}\n"
        "budgets:\n  - {scope: user, period: day, limit: 0.000001, policy: block}\n"))
    result = mmr("ask", "--batch", "-", "--concurrency", "1", "--tier", "simple", "--config", str(config),
                 input=jsonl({"id": "a", "prompt": "same question"}, {"id": "b", "prompt": "same question"},
                             {"id": "c", "prompt": "another", "user": "broke"}))
    assert result.returncode == EXIT_ROWS_FAILED
    first, repeat, blocked = out_rows(result)
    assert first["cached"] is False and repeat["cached"] is True and repeat["cost_usd"] == "0"
    assert blocked["error"]["kind"] == "budget_exceeded" and blocked["error"]["exit_code"] == 8
    assert [c["prompt"] for c in server.calls()] == ["same question"]
    assert [r["status"] for r in ledger_rows(db_path)] == ["ok", "cached", "blocked"]


def test_resume_skips_the_ids_already_answered(server, mmr, tmp_path):
    previous = tmp_path / "out.jsonl"
    previous.write_text(jsonl({"id": "a", "text": "done before"}, {"id": "b", "error": {"kind": "all_attempts_failed"}},
                              {"id": 4, "text": "done before"}) + '{"id": "c", "te')  # a line cut short by a kill
    result = mmr("ask", "--batch", "-", "--resume", str(previous), "--tier", "simple",
                 input=jsonl({"id": "a", "prompt": "pa"}, {"id": "b", "prompt": "pb"}, {"id": "c", "prompt": "pc"},
                             {"prompt": "the fourth line"}, {"id": "4", "prompt": "a string id"}))
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in out_rows(result)] == ["b", "c", "4"]
    assert sorted(c["prompt"] for c in server.calls()) == ["a string id", "pb", "pc"]
    assert "1 line(s)" in result.stderr.decode()


def test_resume_names_a_missing_file(mmr, tmp_path):
    result = mmr("ask", "--batch", "-", "--resume", str(tmp_path / "nope.jsonl"), input=jsonl({"prompt": "x"}))
    assert result.returncode == 2
    assert b"--resume: cannot read" in result.stderr and b"Traceback" not in result.stderr


def test_a_malformed_line_is_an_error_row_naming_its_line(server, mmr):
    result = mmr("ask", "--batch", "-", "--tier", "simple",
                 input=jsonl({"id": "x", "prompt": "first"}, "", "{not json", '"a string"',
                             {"id": "y", "prompt": ""}, {"id": "z", "prompt": "ok", "tier": "huge"},
                             {"id": "w", "prompt": "ok", "max_tokens": 0}, {"id": [1], "prompt": "ok"},
                             {"prompt": "last"}))
    assert result.returncode == EXIT_ROWS_FAILED
    rows = out_rows(result)
    assert [r.get("id") for r in rows] == ["x", None, None, "y", "z", "w", None, 9]
    errors = [r["error"] for r in rows if "error" in r]
    assert [e["line"] for e in errors] == [3, 4, 5, 6, 7, 8]
    assert errors[0]["message"].startswith("line 3: not JSON")
    assert "expected a JSON object" in errors[1]["message"]
    assert "prompt: missing or empty" in errors[2]["message"]
    assert "unknown tier 'huge'" in errors[3]["message"]
    assert "max_tokens" in errors[4]["message"] and "id must be" in errors[5]["message"]
    assert {e["kind"] for e in errors} == {"input"}
    assert sorted(c["prompt"] for c in server.calls()) == ["first", "last"]


@pytest.mark.parametrize("from_file", [False, True])
def test_strict_stops_at_a_bad_line_before_any_call(server, mmr, tmp_path, from_file):
    rows = jsonl({"prompt": "one"}, {"prompt": "two"}, "{broken", {"prompt": "four"})
    source = "-"
    if from_file:
        source = str(tmp_path / "in.jsonl")
        (tmp_path / "in.jsonl").write_text(rows)
    result = mmr("ask", "--batch", source, "--strict", input=rows if not from_file else "")
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert f"{'stdin' if not from_file else source}:3: not JSON" in stderr and "nothing was sent" in stderr
    assert result.stdout == b"" and server.calls() == []


def test_strict_runs_a_clean_input_from_stdin(server, mmr):
    result = mmr("ask", "--batch", "-", "--strict", "--tier", "simple", input=jsonl({"prompt": "one"}, {"prompt": "two"}))
    assert result.returncode == 0, result.stderr
    assert [r["text"] for r in out_rows(result)] == [reply_text("one"), reply_text("two")]


def test_duplicate_ids_are_reported_and_not_answered_twice(server, mmr):
    result = mmr("ask", "--batch", "-", "--tier", "simple",
                 input=jsonl({"id": "a", "prompt": "first a"}, {"id": 7, "prompt": "int seven"},
                             {"id": "7", "prompt": "string seven"}, {"id": "a", "prompt": "second a"}))
    assert result.returncode == EXIT_ROWS_FAILED
    rows = out_rows(result)
    assert [r["id"] for r in rows] == ["a", 7, "7", "a"]
    assert rows[3]["error"]["kind"] == "duplicate_id" and rows[3]["error"]["line"] == 4
    assert sorted(c["prompt"] for c in server.calls()) == ["first a", "int seven", "string seven"]
    strict = mmr("ask", "--batch", "-", "--strict", input=jsonl({"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}))
    assert strict.returncode == 2 and b"stdin:2: id \"a\" repeats" in strict.stderr


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_input_exits_0_with_nothing_written(server, mmr, db_path, text):
    result = mmr("ask", "--batch", "-", input=text)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert server.calls() == []


def test_bad_options_fail_before_any_call(server, mmr, tmp_path):
    rows = jsonl({"prompt": "x"})
    for args, message in [
        (["--batch", "-", "a prompt"], b"give no PROMPT argument"),
        (["--batch", "-", "--stream"], b"--stream does not combine with --batch"),
        (["--batch", "-", "--dry-run"], b"--dry-run does not combine with --batch"),
        (["--batch", "-", "--concurrency", "0"], b"--concurrency must be between 1 and 256"),
        (["--batch", "-", "--concurrency", "2", "--processes", "3"], b"--processes must be between 1 and --concurrency"),
        (["--batch", "-", "--processes", "0"], b"--processes must be between 1"),
        (["--batch", "-", "--tier", "huge"], b"unknown tier 'huge'"),
        (["--batch", "-", "--classifier", "nope"], b"unknown classifier 'nope'"),
        (["--batch", str(tmp_path / "missing.jsonl")], b"--batch: cannot read"),
    ]:
        result = mmr("ask", *args, input=rows)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and b"Traceback" not in result.stderr
    assert server.calls() == []


def test_a_ledger_that_cannot_be_opened_stops_the_batch_before_any_call(server, mmr, tmp_path):
    (tmp_path / "not-a-dir").write_text("")
    result = mmr("ask", "--batch", "-", "--db", str(tmp_path / "not-a-dir" / "ledger.db"), input=jsonl({"prompt": "x"}))
    assert result.returncode == 7 and result.stdout == b""
    assert server.calls() == []


@pytest.mark.parametrize("concurrency, processes", [("1", "1"), ("2", "2")], ids=["threads", "2-processes"])
def test_a_missing_key_stops_the_batch(server, mmr, concurrency, processes):
    result = mmr("ask", "--batch", "-", "--concurrency", concurrency, "--processes", processes,
                 env={"TEST_ANTHROPIC_KEY": "", "TEST_OPENAI_KEY": ""},
                 input=jsonl(*[{"prompt": f"p{i}"} for i in range(5)]))
    assert result.returncode == 4
    rows = out_rows(result)
    # the rows already started when the first failed (one per worker) fail alike; no others start
    assert 1 <= len(rows) <= int(concurrency) and all(r["error"]["kind"] == "missing_key" for r in rows)
    assert b"TEST_ANTHROPIC_KEY" in result.stderr and b"--resume" in result.stderr
    assert server.calls() == []


@PROCESSES
def test_cascade_batch(server, mmr, db_path, processes):
    server.script_prompt("hard one", reply(""), reply("A full and proper answer to the hard one."))
    result = mmr("cascade", "--batch", "-", "--gate", "heuristic", "--processes", processes,
                 input=jsonl({"id": "e", "prompt": "easy one"}, {"id": "h", "prompt": "hard one"},
                             {"id": "m", "prompt": "start high", "tier": "medium"}))
    assert result.returncode == 0, result.stderr
    easy, hard, medium = out_rows(result)
    assert easy["tier"] == "simple" and hard["tier"] == "medium" and medium["tier"] == "medium"
    assert [a["status"] for a in hard["attempts"]] == ["rejected", "ok"]
    assert {r["command"] for r in ledger_rows(db_path)} == {"cascade"}


def test_a_closed_stdout_ends_the_batch_quietly(server, config_path, db_path):
    server.always("claude-small", reply(delay=0.05))
    proc = subprocess.Popen([sys.executable, "-m", "router_cli", "ask", "--batch", "-", "--tier", "simple",
                             "--concurrency", "2", "--config", str(config_path), "--db", str(db_path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(jsonl(*[{"prompt": f"p{i}"} for i in range(100)]).encode())
    proc.stdin.close()
    assert json.loads(proc.stdout.readline())["id"] == 1
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    stderr = proc.stderr.read()
    assert b"Traceback" not in stderr and b"Error" not in stderr
    # what was billed before it stopped is recorded
    assert len(ledger_rows(db_path)) == len(server.calls()) < 100


def _start_batch(config_path, db_path, rows: int, concurrency: int, processes: str = "1") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "router_cli", "ask", "--batch", "-", "--tier", "simple",
                             "--concurrency", str(concurrency), "--processes", processes, "--config", str(config_path),
                             "--db", str(db_path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(jsonl(*[{"prompt": f"p{i}"} for i in range(rows)]).encode())
    proc.stdin.close()
    proc.stdin = None  # so that communicate() does not flush it
    return proc


def _finish(proc: subprocess.Popen) -> tuple[bytes, bytes]:
    # Not communicate(): it reads the pipe itself, past lines that readline() has buffered.
    assert proc.stdout is not None and proc.stderr is not None
    rest = proc.stdout.read()
    stderr = proc.stderr.read()
    proc.wait(timeout=60)
    return rest, stderr


@PROCESSES
def test_ctrl_c_finishes_the_calls_in_flight_and_writes_every_finished_row(server, config_path, db_path, processes):
    server.always("claude-small", reply(delay=0.2))
    proc = _start_batch(config_path, db_path, 200, 4, processes)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # the batch is under way
    proc.send_signal(signal.SIGINT)
    rest, stderr = _finish(proc)
    assert proc.returncode == EXIT_INTERRUPTED
    rows = [json.loads(line) for line in (first + rest).decode().splitlines()]
    assert [r["id"] for r in rows] == list(range(1, len(rows) + 1))  # whole rows, in order, none missing
    assert 1 <= len(rows) < 200 and all("text" in r for r in rows)
    # the calls in flight were finished, written and recorded, and nothing else was started
    assert len(ledger_rows(db_path)) == len(server.calls()) == len(rows)
    assert b"Error: interrupted" in stderr and b"--resume" in stderr and b"Traceback" not in stderr


@PROCESSES
def test_a_second_ctrl_c_stops_at_once(server, config_path, db_path, processes):
    server.always("claude-small", reply(delay=30))
    proc = _start_batch(config_path, db_path, 10, 2, processes)
    deadline = time.monotonic() + 30
    while len(server.calls()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, stderr = proc.communicate(timeout=20)  # well before the 30 s answers
    assert proc.returncode == EXIT_INTERRUPTED and out == b""
    assert b"2 abandoned in flight" in stderr and b"Traceback" not in stderr


def test_resume_after_an_interrupt_completes_the_batch(server, config_path, db_path, mmr, tmp_path):
    server.always("claude-small", reply(delay=0.1))
    proc = _start_batch(config_path, db_path, 40, 4)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    rest, _ = _finish(proc)
    out = tmp_path / "out.jsonl"
    out.write_bytes(first + rest)
    server.always("claude-small", None)
    again = mmr("ask", "--batch", "-", "--tier", "simple", "--resume", str(out),
                input=jsonl(*[{"prompt": f"p{i}"} for i in range(40)]))
    assert again.returncode == 0, again.stderr
    ids = [json.loads(line)["id"] for line in (first + rest + again.stdout).decode().splitlines()]
    assert sorted(ids) == list(range(1, 41))


def _workers_of(proc: subprocess.Popen, count: int) -> list[int]:
    """The pids of ``proc``'s worker processes, once ``count`` of them are running."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            children = [int(pid) for pid in f.read().split()]
        if len(children) >= count:
            return children
        time.sleep(0.05)
    raise AssertionError("the worker processes did not start")


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="finding worker processes needs Linux's /proc")
def test_a_worker_that_dies_stops_the_batch_and_its_rows_become_error_rows(server, config_path, db_path):
    server.always("claude-small", reply(delay=0.5))
    proc = _start_batch(config_path, db_path, 40, 4, "2")
    assert proc.stdout is not None
    workers = _workers_of(proc, 2)
    deadline = time.monotonic() + 30
    while len(server.calls()) < 4 and time.monotonic() < deadline:  # both workers are answering
        time.sleep(0.02)
    os.kill(workers[0], signal.SIGKILL)
    out, stderr = _finish(proc)
    assert proc.returncode == 1
    assert b"a batch worker process stopped unexpectedly" in stderr and b"--resume" in stderr
    assert b"Traceback" not in stderr
    rows = [json.loads(line) for line in out.decode().splitlines()]
    assert [r["id"] for r in rows] == list(range(1, len(rows) + 1))
    lost = [r for r in rows if "error" in r]
    assert lost and all(r["error"]["kind"] == "internal" and "see the ledger" in r["error"]["message"] for r in lost)
    assert len(rows) < 40  # the batch stopped
    # the other worker finished what it had and recorded it
    answered = [r for r in rows if "text" in r]
    assert {r["call_id"] for r in answered} <= {r["id"] for r in ledger_rows(db_path)}


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="finding worker processes needs Linux's /proc")
def test_workers_finish_and_record_their_calls_when_mmr_is_killed(server, config_path, db_path):
    server.always("claude-small", reply(delay=0.5))
    proc = _start_batch(config_path, db_path, 40, 4, "2")
    workers = _workers_of(proc, 2)
    deadline = time.monotonic() + 30
    while len(server.calls()) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    _finish(proc)
    for pid in workers:  # each sees its input end, finishes its calls and exits
        deadline = time.monotonic() + 30
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(pid)
    assert len(ledger_rows(db_path)) == len(server.calls()) >= 4


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphaned worker is reaped by init, not by us)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_retry_after_reaches_the_other_worker_processes(server, mmr, tmp_path):
    config = tmp_path / "one-model.yaml"
    config.write_text(ONE_MODEL_PER_TIER.format(url=server.url))
    server.always("claude-small", reply(delay=0.3))
    server.script_prompt("row 6", error(429, retry_after=2))  # by then both workers are calling
    result = mmr("ask", "--batch", "-", "--concurrency", "4", "--processes", "2", "--tier", "simple", "--verbose",
                 "--config", str(config), input=jsonl(*[{"prompt": f"row {i}"} for i in range(16)]))
    assert result.returncode == 0, result.stderr
    assert len(server.calls("claude-small")) == 17
    # The waits the workers recorded, not the clock. Each of the 2 x 2 threads waits at most once for one
    # pause, and row 6's own retry is not counted here: the worker that was told can show at most one
    # wait (its other thread). Two or more means the other process held off too.
    waits = [float(w) for w in re.findall(r"anthropic asked to hold off \(retry-after\): waiting ([0-9.]+) s",
                                          result.stderr.decode())]
    assert len(waits) >= 2, result.stderr
    assert all(0 < w <= 2 for w in waits)


def test_a_user_module_in_the_working_directory_is_not_imported_by_workers(server, config_path, db_path, tmp_path):
    (tmp_path / "queue.py").write_text("open('imported', 'w').close()\nraise SystemExit(3)\n")
    mmr_script = Path(sys.executable).parent / "mmr"  # as users run it: `python -m` would put the directory first
    result = subprocess.run([str(mmr_script), "ask", "--batch", "-", "--concurrency", "2", "--processes", "2",
                             "--tier", "simple", "--config", str(config_path), "--db", str(db_path)],
                            input=jsonl({"prompt": "a"}, {"prompt": "b"}).encode(), capture_output=True, cwd=tmp_path,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "imported").exists()


def test_a_config_read_from_a_pipe_reaches_the_workers(server, config_path, db_path):
    script = (f'"{sys.executable}" -m router_cli ask --batch - --concurrency 2 --processes 2 --tier simple '
              f'--config <(cat "{config_path}") --db "{db_path}"')
    result = subprocess.run(["bash", "-c", script], input=jsonl({"prompt": "a"}, {"prompt": "b"}).encode(),
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert [r["text"] for r in out_rows(result)] == [reply_text("a"), reply_text("b")]


def test_ctrl_c_ends_a_batch_whose_stdin_stays_open(server, config_path, db_path):
    proc = subprocess.Popen([sys.executable, "-m", "router_cli", "ask", "--batch", "-", "--tier", "simple",
                             "--config", str(config_path), "--db", str(db_path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(jsonl({"prompt": "first"}).encode())
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["text"] == reply_text("first")  # stdin is still open
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == EXIT_INTERRUPTED
    proc.stdin.close()


def test_a_worker_speaking_nonsense_ends_the_batch_instead_of_hanging_it(tmp_path):
    import threading

    from router_cli.batch.engine import run_batch
    from router_cli.batch.pool import WorkerPool

    fake = "import sys; sys.stdin.readline(); print('1'); print('loading...'); sys.stdout.flush(); sys.stdin.read()"
    pool = WorkerPool({}, 2, 2, command=[sys.executable, "-c", fake])
    written: list[dict] = []
    done: list = []
    lines = [json.dumps({"prompt": f"p{i}"}).encode() for i in range(3)]
    runner = threading.Thread(target=lambda: done.append(run_batch(lines, None, written.append, tiers=TIERS,
                                                                   concurrency=2, pool=pool)))
    runner.start()
    runner.join(timeout=30)
    assert done, "the batch hung"
    summary = done[0]
    assert summary.fatal is not None and "stopped unexpectedly" in summary.fatal.message
    assert written == [] and summary.not_started == 3  # no worker ever said it was ready: nothing was called


def test_worker_notes_reach_stderr_with_verbose(server, mmr):
    server.script("claude-small", error(500))
    result = mmr("ask", "--batch", "-", "--concurrency", "2", "--processes", "2", "--tier", "simple", "-v",
                 input=jsonl(*[{"prompt": f"p{i}"} for i in range(4)]))
    assert result.returncode == 0, result.stderr
    assert b"claude-small failed" in result.stderr and b"4 answered" in result.stderr


# ------------------------------------------------------------------ the parts


def test_processes_by_default_one_per_16_concurrent_rows_from_32_up_to_the_cpus_and_4():
    from router_cli.batch.pool import auto_processes, shares

    assert auto_processes(8, cpus=8) == 1 and auto_processes(31, cpus=8) == 1 and auto_processes(32, cpus=8) == 2
    assert auto_processes(64, cpus=8) == 4 and auto_processes(64, cpus=2) == 2 and auto_processes(64, cpus=1) == 1
    assert auto_processes(256, cpus=64) == 4
    assert shares(5, 2) == [3, 2] and shares(16, 2) == [8, 8] and sum(shares(7, 3)) == 7


def test_errors_cross_the_pipe_with_their_class_and_exit_code():
    from router_cli.batch.calls import Outcome
    from router_cli.batch.wire import (
        decode_error,
        decode_outcome,
        encode_error,
        encode_outcome,
    )
    from router_cli.errors import (
        AllAttemptsFailed,
        LedgerError,
        MissingKeyError,
        MmrError,
    )

    for sent in (LedgerError("disk full"), MissingKeyError("set TEST_KEY"), AllAttemptsFailed("no", exit_code=6)):
        back = decode_error(json.loads(json.dumps(encode_error(sent))))
        assert type(back) is type(sent) and back.message == sent.message and back.exit_code == sent.exit_code
    assert type(decode_error({"type": "SystemExit", "message": "x", "exit_code": 3})) is MmrError  # only our classes
    outcome = Outcome({"id": 1, "text": "é"}, True, Decimal("0.000001234"), LedgerError("locked"))
    back = decode_outcome(json.loads(json.dumps(encode_outcome(outcome))))
    assert (back.row, back.ok, back.cost) == (outcome.row, True, Decimal("0.000001234"))
    assert isinstance(back.fatal, LedgerError)


def test_id_set_holds_many_ids_exactly():
    ids = IdSet()
    assert all(ids.add(f"s:{i}") for i in range(20_000))
    assert len(ids) == 20_000
    assert not ids.add("s:123") and "s:19999" in ids and "s:20000" not in ids and "i:5" not in ids


def test_answered_ids_skip_error_rows_and_torn_lines():
    lines = [b'{"id": "a", "text": "x"}\n', b'{"id": 2, "text": "x"}\n', b'{"id": "b", "error": {}}\n',
             b'\n', b'{"id": true, "text": "x"}\n', b'{"id": "c", "te']
    ids, unreadable = answered_ids(lines)
    assert ("s:a" in ids, "i:2" in ids, "s:b" in ids, "s:c" in ids, unreadable) == (True, True, False, False, 1)


def test_parse_line_checks_each_field():
    row = parse_line(4, b'\xef\xbb\xbf{"prompt": "p"}', TIERS)
    assert row.__class__.__name__ == "Problem"  # a byte-order mark only on line 1
    first = parse_line(1, b'\xef\xbb\xbf{"prompt": "p", "tier": "medium", "max_tokens": 5}', TIERS)
    assert (first.id, first.tier, first.max_tokens) == (1, "medium", 5)
    assert "not UTF-8" in parse_line(2, b'{"prompt": "\xff"}', TIERS).message
    assert "lone surrogate" in parse_line(2, b'{"prompt": "\\ud800"}', TIERS).message
    assert "max_tokens" in parse_line(2, b'{"prompt": "p", "max_tokens": true}', TIERS).message
    assert "system must be a string" in parse_line(2, b'{"prompt": "p", "system": 3}', TIERS).message
    assert [getattr(r, "kind", "row") for r in read_rows([b'{"prompt": "a"}', b'{"prompt": "b", "id": 1}'], TIERS)] == \
        ["row", "duplicate_id"]  # a missing id is the line number, so it can clash


def test_batch_status_line():
    assert batch_status(250, 1000, 2, Decimal("0.0123"), 2.0) == "250/1,000 · 125 rows/s · $0.012300 · 2 errors · ETA 6 s"
    assert batch_status(10, None, 1, Decimal(0), 1.0) == "10 rows · 10 rows/s · $0 · 1 error"
    assert batch_status(0, 100, 0, Decimal(0), 0.0).endswith("0 errors")
    assert "ETA 10 min" in batch_status(100, 60_100, 0, Decimal(0), 1.0)


def test_batch_does_not_import_the_sdks_before_a_call():
    code = "import router_cli.batch, sys; print(any(m in sys.modules for m in ('anthropic', 'openai')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, check=True)
    assert out.stdout.strip() == "False"


@PROCESSES
def test_progress_bar_on_a_terminal(server, config_path, db_path, processes):
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "router_cli", "ask", "--batch", "-", "--tier", "simple",
                             "--processes", processes, "--config", str(config_path), "--db", str(db_path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    out, _ = proc.communicate(jsonl(*[{"prompt": f"p{i}"} for i in range(3)]).encode(), timeout=60)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert len(out.splitlines()) == 3 and all(json.loads(line)["text"] for line in out.splitlines())  # stdout: rows only
    assert "3 rows" in terminal and "rows/s" in terminal and "0 errors" in terminal  # stdin: no total, no ETA
    assert "3 answered" in terminal  # the summary line
    assert "\x1b[3" not in terminal  # NO_COLOR: no colour codes


@PROCESSES
def test_a_cascade_batch_from_the_classifier_asks_it_once_per_row(server, mmr, db_path, processes):
    # Checking the options at the start must not call an llm classifier: that call would be paid and unrecorded.
    server.always("claude-small", reply("simple"))
    result = mmr("cascade", "--batch", "-", "--gate", "heuristic", "--from-classifier", "--classifier", "llm",
                 "--processes", processes, input=jsonl({"id": 1, "prompt": "one"}, {"id": 2, "prompt": "two"}))
    assert result.returncode == 0, result.stderr
    asked = [c for c in server.calls() if "Classify the complexity" in str(c["body"].get("system"))]
    assert len(asked) == 2
    assert sum(1 for r in ledger_rows(db_path) if r["role"] == "classifier") == 2
