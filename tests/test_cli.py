"""The real ``mmr`` command in a subprocess: stdin, stdout/stderr discipline, --json, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from router_cli.errors import EXIT_AUTH, EXIT_CONFIG, EXIT_LEDGER, EXIT_PROVIDER, EXIT_USAGE
from tests.conftest import KEYS, ledger_rows
from router_cli.ledger import open_ledger
from tests.provider_server import drop, error, hang, reply

JSON_KEYS = {
    "text", "call_id", "request_id", "tier", "provider", "model", "classifier", "score", "input_tokens",
    "output_tokens", "cost_usd", "baseline_cost_usd", "latency_ms", "cached", "attempts",
}


def test_stdin_prompt_answer_on_stdout_only(server, mmr, db_path):
    result = mmr("ask", input="hello from a pipe\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "Answer to: hello from a pipe\n"
    assert result.stderr == b""  # not a terminal and no --verbose: no notes
    assert server.calls()[0]["body"]["messages"][0]["content"] == "hello from a pipe\n"
    assert [r["status"] for r in ledger_rows(db_path)] == ["ok"]


def test_dash_reads_stdin_and_argument_wins_otherwise(server, mmr):
    assert mmr("ask", "-", input="from stdin").stdout.decode() == "Answer to: from stdin\n"
    assert mmr("ask", "from argv", input="ignored").stdout.decode() == "Answer to: from argv\n"


def test_json_object_has_the_contract_keys(server, mmr, db_path):
    server.script("claude-small", error(500))
    result = mmr("ask", "--json", "hello")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert JSON_KEYS <= set(out)
    assert out["model"] == "gpt-small" and out["tier"] == "simple" and out["cached"] is False
    assert [a["status"] for a in out["attempts"]] == ["error", "ok"]
    assert set(out["attempts"][0]) == {"tier", "provider", "model", "status", "error", "cost_usd"}
    assert isinstance(out["cost_usd"], str) and isinstance(out["baseline_cost_usd"], str)
    rows = ledger_rows(db_path)
    assert out["call_id"] == rows[-1]["id"] and out["request_id"] == rows[-1]["request_id"]


def test_verbose_routing_note_goes_to_stderr(server, mmr):
    result = mmr("ask", "--verbose", "--system", "terse", "hello")
    assert result.stdout.decode() == "Answer to: hello\n"
    note = result.stderr.decode()
    assert "simple · anthropic/claude-small · 2→3 tokens" in note and "premium" in note


def test_streaming_to_a_pipe_when_asked(server, mmr):
    result = mmr("ask", "--stream", "hello")
    assert result.stdout.decode() == "Answer to: hello\n"
    assert server.calls()[0]["body"]["stream"] is True


def test_dry_run_calls_nothing_and_writes_nothing(server, mmr, db_path):
    result = mmr("ask", "--dry-run", "--json", "Please analyze this contract")
    out = json.loads(result.stdout)
    assert out["tier"] == "complex" and out["model"] == "claude-big" and out["max_output_tokens"] == 256
    assert out["max_cost_usd"] == "0.02034"  # at most 28 + 48 framing tokens at $15/M + 256 at $75/M
    assert server.calls() == [] and not db_path.exists()


@pytest.mark.parametrize(
    "args,stdin,code,message",
    [
        (["ask", ""], None, EXIT_USAGE, "the prompt is empty"),
        (["ask"], b"   \n", EXIT_USAGE, "the prompt is empty"),
        (["ask"], b"\x89PNG\r\n\x1a\n\x00\x00", EXIT_USAGE, "binary"),
        (["ask"], b"\xff\xfe bad", EXIT_USAGE, "not UTF-8"),
        (["ask", "--max-tokens", "0", "hi"], None, EXIT_USAGE, "--max-tokens must be at least 1"),
        (["ask", "--tier", "huge", "hi"], None, EXIT_USAGE, "unknown tier 'huge'; valid tiers: simple, medium, complex"),
        (["ask", "--classifier", "magic", "hi"], None, EXIT_USAGE, "valid classifiers: blend, embedding, knn, llm, ml, rules"),
        (["ask", "--no-such-flag", "hi"], None, EXIT_USAGE, "No such option"),
        (["ask", "--config", "missing.yaml", "hi"], None, EXIT_CONFIG, "missing.yaml: file not found"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(server, mmr, db_path, args, stdin, code, message):
    result = mmr(*args, input=stdin)
    err = result.stderr.decode()
    assert result.returncode == code, err
    assert err.startswith("Error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert result.stdout == b""
    assert server.calls() == [] and not db_path.exists()


def test_malformed_yaml_names_file_and_line(server, mmr, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers:\n  - name: simple\n    models: [\n")
    result = mmr("ask", "--config", str(bad), "hi")
    assert result.returncode == EXIT_CONFIG
    assert result.stderr.decode().startswith(f"Error: {bad}: line ")


def test_missing_key_names_the_variable(server, mmr):
    env = {name: "" for name in KEYS}
    result = mmr("ask", "hello", env=env)
    assert result.returncode == EXIT_AUTH
    assert "set TEST_ANTHROPIC_KEY or TEST_OPENAI_KEY" in result.stderr.decode()


def test_every_provider_failing(server, mmr, config, db_path):
    for tier in config.tiers:
        for m in tier.models:
            server.always(m.model, error(500))
    result = mmr("ask", "hello")
    err = result.stderr.decode()
    assert result.returncode == EXIT_PROVIDER
    assert err.startswith("Error: every model failed (12 attempts)") and err.count("\n") == 1
    assert len(ledger_rows(db_path)) == 12


def test_keys_never_reach_stderr_or_the_ledger(server, mmr, db_path):
    server.script("claude-small", error(401, message=f"bad key {KEYS['TEST_ANTHROPIC_KEY']}"))
    result = mmr("ask", "--verbose", "hello")
    assert result.returncode == EXIT_AUTH
    dump = result.stderr + result.stdout + db_path.read_bytes()
    for key in KEYS.values():
        assert key.encode() not in dump


def test_a_ledger_that_is_not_sqlite_fails_before_anything_is_paid(server, mmr, db_path):
    db_path.write_bytes(b"this is not a database" * 100)
    result = mmr("ask", "hello")
    assert result.returncode == EXIT_LEDGER
    assert "not an SQLite database" in result.stderr.decode()
    assert server.calls() == []


@pytest.mark.parametrize("extra", ["", "cache: {enabled: true}\nbreaker: {failures: 1}\n"])
def test_a_ledger_locked_after_the_call_keeps_the_answer(server, mmr, db_path, config_path, extra):
    import sqlite3
    import threading
    import time

    from tests.conftest import write_config

    config = write_config(config_path, server.url, extra="ledger:\n  busy_timeout: 0.3\n" + extra)
    open_ledger(db_path).close()  # create it, in WAL mode: readers still get in while a writer holds it
    server.script("claude-small", reply(delay=1.0))
    holder = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)

    def lock_once_called() -> None:  # the ledger was writable when mmr checked it, before the call
        deadline = time.monotonic() + 30
        while not server.calls() and time.monotonic() < deadline:
            time.sleep(0.01)
        holder.execute("BEGIN IMMEDIATE")

    locker = threading.Thread(target=lock_once_called)
    locker.start()
    try:
        result = mmr("ask", "--config", str(config), "hello")
    finally:
        locker.join()
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
    assert result.stdout.decode() == "Answer to: hello\n"  # the paid-for answer is printed
    assert result.returncode == EXIT_LEDGER
    assert "locked by another process" in result.stderr.decode()
    assert len(server.calls()) == 1


def test_stdout_closed_while_streaming_stops_at_once(server, mmr, db_path, config_path):
    server.script("claude-small", reply(" ".join(["word"] * 20000)))
    # 20,000 words (100 KB) cannot fit in the pipe: the writer must meet the closed end. (Without
    # --max-tokens the server stops at the model's 64 tokens, which the pipe holds whole: a race.)
    proc = subprocess.Popen(
        [sys.executable, "-m", "router_cli", "ask", "--stream", "--max-tokens", "30000", "--config", str(config_path),
         "--db", str(db_path), "hello"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout.read(10) == b"word word "
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert b"Error" not in err
    assert len(server.calls()) == 1  # no retries, no fallback: the output failed, not the model
    row = ledger_rows(db_path)[0]
    # What was streamed before the pipe closed was billed: counted, and flagged as an estimate.
    assert row["error_kind"] == "output" and row["cost_nanousd"] > 0 and row["usage_estimated"] == 1


def test_a_broken_stream_restarts_visibly(server, mmr):
    server.script("claude-small", drop(after_chunks=2))
    server.script("gpt-small", drop(after_chunks=2), drop(after_chunks=2))
    result = mmr("ask", "--stream", "hello")
    assert result.returncode == 0
    # claude-small hands over to gpt-small at once; gpt-small, simple's last model, is retried.
    assert result.stdout.decode() == "Answer to:\n" * 3 + "Answer to: hello\n"
    err = result.stderr.decode()
    assert err.count("answers again from the start") == 3  # said even without --verbose
    assert "gpt-small answers again" in err


def test_interrupt_keeps_the_attempts_already_billed(server, mmr, db_path, config_path):
    import signal
    import time

    server.script("claude-small", error(500))
    server.script("gpt-small", hang(30))  # its tier-mate takes over, and hangs
    proc = subprocess.Popen(
        [sys.executable, "-m", "router_cli", "ask", "--config", str(config_path), "--db", str(db_path), "hello"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while len(server.calls()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err.decode().strip() == "Error: interrupted"
    # The call in flight when Ctrl-C came is kept too (nothing was streamed, so no tokens are assumed).
    assert [(r["model"], r["status"], r["http_status"], r["error_kind"]) for r in ledger_rows(db_path)] == [
        ("claude-small", "error", 500, "server"), ("gpt-small", "error", None, "interrupted")]


def test_a_key_with_a_newline_is_refused_and_never_echoed(server, mmr, db_path):
    secret = "SECRETabcdef123456"
    result = mmr("ask", "hello", env={"TEST_ANTHROPIC_KEY": secret + "\n"})
    assert result.returncode == EXIT_AUTH
    assert "TEST_ANTHROPIC_KEY contains spaces or control characters" in result.stderr.decode()
    assert secret.encode() not in result.stderr + result.stdout
    assert server.calls() == []


def test_a_prompt_argument_that_is_not_utf8(server, mmr):
    result = subprocess.run(
        [sys.executable, "-m", "router_cli", "ask", "--dry-run", b"caf\xe9"], capture_output=True, timeout=60,
    )
    assert result.returncode == EXIT_USAGE
    assert result.stderr.decode().strip() == "Error: the prompt is not valid UTF-8 text"


def test_help_and_dry_run_do_not_import_the_sdks(config_path):
    code = (
        "import sys, io, contextlib\n"
        "from router_cli.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    assert main(['--help']) == 0\n"
        f"    assert main(['ask', '--dry-run', '--config', {str(config_path)!r}, 'hello']) == 0\n"
        f"    assert main(['classify', 'hello']) == 0\n"
        f"    assert main(['classify', '--classifier', 'ml', 'hello']) == 0\n"
        f"    assert main(['costs', '--config', {str(config_path)!r}, '--db', {str(config_path.parent / 'fast.db')!r}]) == 0\n"
        f"    assert main(['serve', '--help']) == 0\n"
        f"    assert main(['report', '--help']) == 0\n"
        "heavy = ('anthropic', 'openai', 'sklearn', 'llama_cpp', 'sqlite_utils', 'numpy', 'tokenizers', 'safetensors',"
        " 'genai_prices', 'starlette', 'uvicorn', 'psycopg', 'jinja2')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_classify_prints_the_tier(mmr):
    assert mmr("classify", "Debug this stack trace", db=False).stdout.decode() == "complex\n"
    out = json.loads(mmr("classify", "--json", "hi there", db=False).stdout)
    assert set(out) == {"tier", "score", "classifier", "reason", "latency_ms"} and out["tier"] == "simple"


def test_concurrent_processes_write_every_row(server, config_path, db_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "router_cli", "ask", "--config", str(config_path), "--db", str(db_path), f"prompt {i}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for i in range(8)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outputs]
    rows = ledger_rows(db_path)
    assert sorted(r["prompt"] for r in rows) == sorted(f"prompt {i}" for i in range(8))
    assert len({r["id"] for r in rows}) == 8


BAD_REQUEST_OPTIONS = [
    (["--temperature", "3"], "--temperature must be between 0 and 2, got 3.0"),
    (["--max-tokens", "0"], "--max-tokens must be at least 1, got 0"),
    (["--max-cost", "lots"], "--max-cost: expected an amount in USD such as 0.05, got 'lots'"),
    (["--max-cost", "-1"], "--max-cost must be an amount of 0 USD or more, got '-1'"),
]
CASCADE_ONLY = [
    (["--threshold", "2"], "--threshold must be between 0 and 1, got 2"),
    (["--gate", "vibes"], "--gate: unknown gate 'vibes'; valid gates: heuristic, judge, both"),
    (["--start-tier", "simple", "--from-classifier"], "--start-tier and --from-classifier both choose where to start; give one"),
]
ASK_ONLY = [(["--no-cache", "--refresh"], "--no-cache and --refresh contradict each other: give one")]


@pytest.mark.parametrize("batch", [False, True], ids=["one-prompt", "batch"])
@pytest.mark.parametrize("command,args,message",
                         [("ask", a, m) for a, m in BAD_REQUEST_OPTIONS + ASK_ONLY]
                         + [("cascade", a, m) for a, m in BAD_REQUEST_OPTIONS + CASCADE_ONLY])
def test_request_options_fail_alike_in_ask_cascade_and_batch(capsys, config_path, db_path, command, args, message, batch):
    from router_cli.cli import main

    where = ["--batch", "-"] if batch else ["hello"]
    code = main([command, *args, *where, "--config", str(config_path), "--db", str(db_path)])
    out, err = capsys.readouterr()
    assert (code, out, err) == (EXIT_USAGE, "", f"Error: {message}\n")
    assert not db_path.exists()


@pytest.mark.parametrize("command", [["ask", "--dry-run"], ["cascade", "--dry-run", "--from-classifier"]])
def test_a_dry_run_refuses_a_classifier_that_calls_a_model(server, mmr, command):
    result = mmr(*command, "--classifier", "llm", "hello")
    assert result.returncode == EXIT_USAGE
    assert result.stderr.decode().strip() == (
        "Error: --dry-run calls nothing, but the llm classifier calls a model; give --tier, or --classifier rules or ml")
    assert server.calls() == []
