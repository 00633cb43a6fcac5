"""Options as a user types them: --temperature, --utc, --since/--until, --user/--team, --by, the short
aliases, and a single ask at a real terminal (a pty)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from router_cli.errors import EXIT_USAGE
from router_cli.ledger import open_ledger
from tests.conftest import ledger_rows, require_ml
from tests.ledger_factory import attempt, merge, request
from tests.provider_server import error

ANTHROPIC_IGNORES = "anthropic/claude-small: the Anthropic API takes no temperature; ignored"


# ------------------------------------------------------------------ --temperature


@pytest.mark.parametrize("command", ["ask", "cascade"])
@pytest.mark.parametrize("value", ["2.5", "-0.1", "nan", "inf"])
def test_temperature_out_of_range_is_a_usage_error(server, mmr, db_path, command, value):
    result = mmr(command, "--temperature", value, "hello")
    assert result.returncode == EXIT_USAGE
    assert result.stderr.decode() == f"Error: --temperature must be between 0 and 2, got {float(value)}\n"
    assert server.calls() == [] and not db_path.exists()


def test_temperature_reaches_openai_and_anthropic_says_it_ignores_it(server, mmr, db_path):
    told = mmr("ask", "--temperature", "0.3", "--tier", "simple", "--verbose", "hello")
    assert told.returncode == 0, told.stderr
    assert ANTHROPIC_IGNORES in told.stderr.decode()
    assert "temperature" not in server.calls("claude-small")[0]["body"]  # Anthropic's API refuses it
    server.reset()
    server.always("claude-small", error(500))  # now gpt-small answers, and takes it
    result = mmr("ask", "--temperature", "2", "--tier", "simple", "hello")
    assert result.returncode == 0, result.stderr
    assert server.calls("gpt-small")[0]["body"]["temperature"] == 2
    assert [r["model"] for r in ledger_rows(db_path)][-1] == "gpt-small"


def test_no_note_about_temperature_when_none_is_given(server, mmr):
    result = mmr("ask", "--tier", "simple", "--verbose", "hello")
    assert result.returncode == 0 and "temperature" not in result.stderr.decode()


# ------------------------------------------------------------------ reports: --utc, --since, --until, --by


def _record(db_path, *parts) -> None:
    with open_ledger(db_path) as ledger:
        ledger.record(merge(*parts))


def test_costs_utc_reads_dates_in_utc_and_otherwise_in_the_local_zone(mmr, db_path):
    # 02:00 UTC on 10 November is still 9 November in New York (UTC-5).
    _record(db_path, request([attempt("simple", cost="0.001")], when=datetime(2026, 11, 10, 2, 0, tzinfo=timezone.utc)))
    args = ("costs", "--since", "2026-11-10", "--until", "2026-11-11", "--by", "day", "--json")
    env = {"TZ": "America/New_York"}
    utc = json.loads(mmr(*args, "--utc", env=env, config=False).stdout)
    assert (utc["since"], utc["until"]) == ("2026-11-10T00:00:00.000Z", "2026-11-11T00:00:00.000Z")
    assert [(r["day"], r["spend_usd"]) for r in utc["rows"]] == [("2026-11-10", "0.001")]
    local = json.loads(mmr(*args, env=env, config=False).stdout)
    assert (local["since"], local["until"]) == ("2026-11-10T05:00:00.000Z", "2026-11-11T05:00:00.000Z")
    assert local["rows"] == [] and local["total"]["calls"] == 0
    nine = json.loads(mmr("costs", "--since", "2026-11-09", "--until", "2026-11-10", "--by", "day", "--json",
                          env=env, config=False).stdout)
    assert [(r["day"], r["spend_usd"]) for r in nine["rows"]] == [("2026-11-09", "0.001")]  # its local day


def test_health_since_sets_the_window_for_error_rates(mmr, db_path):
    two_hours_ago = datetime.now(timezone.utc) - timedelta(hours=2)
    _record(db_path, request([attempt("simple", "error", cost="0", model="claude-small"),
                              attempt("simple", cost="0.001", model="gpt-small", provider="openai")], when=two_hours_ago))

    def seen(since: str) -> dict:
        result = mmr("health", "--since", since, "--json")
        assert result.returncode == 0, result.stderr
        return {m["model"]: (m["calls"], m["errors"]) for m in json.loads(result.stdout)["models"]
                if m["model"] in ("claude-small", "gpt-small")}

    assert seen("1h") == {"claude-small": (0, 0), "gpt-small": (0, 0)}
    assert seen("3h") == {"claude-small": (1, 1), "gpt-small": (1, 0)}
    assert mmr("health", "--since", "soon").stderr.decode().startswith("Error: --since: cannot read 'soon'")


def _two_cascades(db_path) -> None:
    now = datetime.now(timezone.utc)
    _record(db_path,
            request([attempt("simple", "rejected", quality=0.1), attempt("medium", quality=1.0)], prompt="old one",
                    when=now - timedelta(days=5)),
            request([attempt("simple", quality=1.0)], prompt="new one", when=now - timedelta(hours=1)))


def test_labels_until_ends_the_window(mmr, db_path):
    _two_cascades(db_path)
    both = [json.loads(line)["prompt"] for line in mmr("labels", "--since", "10d").stdout.decode().splitlines()]
    assert sorted(both) == ["new one", "old one"]
    result = mmr("labels", "--since", "10d", "--until", "2d")
    assert [json.loads(line)["prompt"] for line in result.stdout.decode().splitlines()] == ["old one"]
    assert "1 labelled rows from 1 requests" in result.stderr.decode()


def test_eval_replay_until_ends_the_window(mmr, db_path, server):
    _two_cascades(db_path)
    assert json.loads(mmr("eval", "--replay", "--since", "10d", "--json").stdout)["requests"] == 2
    only_old = json.loads(mmr("eval", "--replay", "--since", "10d", "--until", "2d", "--json").stdout)
    assert only_old["requests"] == 1 and only_old["as_routed"]["tier_mix"] == {"simple": 1, "medium": 0, "complex": 0}
    assert server.calls() == []


def test_train_from_ledger_until_ends_the_window(mmr, db_path, tmp_path):
    require_ml()
    _two_cascades(db_path)
    result = mmr("train", "--from-ledger", "--since", "10d", "--until", "2d", "-o", str(tmp_path / "m.json"))
    assert result.returncode == EXIT_USAGE
    err = result.stderr.decode()
    assert "1 labelled rows from 1 requests" in err and err.endswith("Error: too few rows to train on (1); give at least 20\n")


def _mixed_traffic(db_path) -> None:
    _record(db_path,
            request([attempt("simple", cost="0.001", model="claude-small")], command="ask"),
            request([attempt("simple", "rejected", quality=0.1, cost="0.0005", model="gpt-small", provider="openai"),
                     attempt("simple", role="judge", cost="0.0001", model="claude-small"),
                     attempt("medium", quality=1.0, cost="0.002", model="claude-mid")], command="cascade"),
            request([attempt("simple", "error", cost="0", model="claude-small"),
                     attempt("simple", cost="0.0003", model="gpt-small", provider="openai")], command="ask"))


@pytest.mark.parametrize("key, expected", [
    # (group, calls, spend): the six calls above, $0.0039 in all, grouped five ways.
    ("model", {"claude-small": (3, "0.0011"), "gpt-small": (2, "0.0008"), "claude-mid": (1, "0.002")}),
    ("provider", {"anthropic": (4, "0.0031"), "openai": (2, "0.0008")}),
    ("command", {"ask": (3, "0.0013"), "cascade": (3, "0.0026")}),
    ("status", {"ok": (4, "0.0034"), "rejected": (1, "0.0005"), "error": (1, "0")}),
    ("role", {"answer": (5, "0.0038"), "judge": (1, "0.0001")}),
])
def test_costs_by_each_key(mmr, db_path, key, expected):
    _mixed_traffic(db_path)
    result = mmr("costs", "--by", key, "--json", config=False)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert {r[key]: (r["calls"], r["spend_usd"]) for r in out["rows"]} == expected
    assert out["total"]["spend_usd"] == "0.0039" and sum(Decimal(s) for _, s in expected.values()) == Decimal("0.0039")
    table = mmr("costs", "--by", key, config=False, env={"COLUMNS": "250"}).stdout.decode()
    assert all(name in table for name in expected)


# ------------------------------------------------------------------ who is asking


def test_user_and_team_on_a_single_ask_reach_every_ledger_row(server, mmr, db_path):
    server.script("claude-small", error(500))  # two rows for this request
    assert mmr("ask", "--user", "ana", "--team", "ml", "hello").returncode == 0
    assert mmr("ask", "hello", env={"MMR_USER": "bo", "MMR_TEAM": "web"}).returncode == 0
    assert mmr("ask", "--user", "cy", "hello", env={"MMR_USER": "bo", "MMR_TEAM": "web"}).returncode == 0  # the flag wins
    assert mmr("ask", "hello").returncode == 0
    rows = ledger_rows(db_path)
    assert [(r["model"], r["user"], r["team"]) for r in rows] == [
        ("claude-small", "ana", "ml"), ("gpt-small", "ana", "ml"), ("claude-small", "bo", "web"),
        ("claude-small", "cy", "web"), ("claude-small", None, None)]
    by_user = json.loads(mmr("costs", "--by", "user", "--json", config=False).stdout)
    assert {r["user"]: r["requests"] for r in by_user["rows"]} == {"ana": 1, "bo": 1, "cy": 1, None: 1}


# ------------------------------------------------------------------ short aliases


def test_short_aliases_do_what_the_long_options_do(server, mmr, config_path, db_path, tmp_path):
    result = mmr("ask", "-t", "medium", "-s", "be terse", "-v", "-c", str(config_path), "hello")
    assert result.returncode == 0, result.stderr
    body = server.calls("claude-mid")[0]["body"]
    assert body["system"] == "be terse" and "medium · anthropic/claude-mid" in result.stderr.decode()
    batch = mmr("ask", "--batch", "-", "-j", "2", "-t", "simple", input='{"prompt": "a"}\n{"prompt": "b"}\n')
    assert batch.returncode == 0, batch.stderr
    assert [json.loads(line)["text"] for line in batch.stdout.decode().splitlines()] == ["Answer to: a", "Answer to: b"]
    _two_cascades(db_path)
    out = tmp_path / "labels.jsonl"
    assert mmr("labels", "--since", "10d", "-o", str(out)).returncode == 0
    assert len(out.read_text().splitlines()) == 2


# ------------------------------------------------------------------ a single ask at a terminal


def _read_all(fds: list[int], proc: subprocess.Popen, timeout: float = 60) -> list[bytes]:
    """Everything written to the pty masters ``fds`` until the child ends and they run dry."""
    got = {fd: b"" for fd in fds}
    open_fds = list(fds)
    while open_fds:
        ready, _, _ = select.select(open_fds, [], [], timeout)
        if not ready:
            proc.kill()
            raise AssertionError(f"no output for {timeout} s: {got}")
        for fd in ready:
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: the child closed its end
                data = b""
            if data:
                got[fd] += data
            else:
                open_fds.remove(fd)
    proc.wait(timeout=timeout)
    return [got[fd] for fd in fds]


def test_a_single_ask_at_a_terminal_streams_and_notes_the_route(server, config_path, db_path):
    out_master, out_slave = pty.openpty()
    err_master, err_slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "router_cli", "ask", "--config", str(config_path), "--db", str(db_path),
                             "hello"], stdin=subprocess.DEVNULL, stdout=out_slave, stderr=err_slave, env={**os.environ, "NO_COLOR": "1"})
    os.close(out_slave)
    os.close(err_slave)
    try:
        out, err = _read_all([out_master, err_master], proc)
    finally:
        os.close(out_master)
        os.close(err_master)
    assert proc.returncode == 0, err
    assert out.decode().replace("\r\n", "\n").strip() == "Answer to: hello"
    assert server.calls()[0]["body"]["stream"] is True  # streamed: stdout is a terminal
    assert "simple · anthropic/claude-small" in err.decode()  # the routing note: stderr is a terminal
    assert "Answer to" not in err.decode()
    assert ledger_rows(db_path)[0]["stream"] == 1


def test_a_single_ask_into_a_pipe_neither_streams_nor_notes(server, mmr):
    result = mmr("ask", "hello")
    assert result.stdout.decode() == "Answer to: hello\n" and result.stderr == b""
    assert server.calls()[0]["body"].get("stream", False) is False
