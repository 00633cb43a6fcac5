"""Circuit breakers: shared through the ledger, per provider/model, across processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from router_cli.policy.breakers import Breakers
from router_cli.config import BreakerConfig, load_config
from router_cli.ledger import open_ledger
from router_cli import Router
from tests.conftest import ROOT, ledger_rows, write_config
from tests.provider_server import error, reply


@pytest.fixture
def db_path(ledger_url):
    """Every test here runs on an SQLite file and on a PostgreSQL database."""
    return ledger_url

BREAKER = "breaker: {failures: 2, window: 60, cooldown: 30}\n"


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def breaker_config_path(tmp_path, server):
    return write_config(tmp_path / "breaker.yaml", server.url, extra=BREAKER)


def make(config_path, db_path, clock):
    return Router(load_config(config_path), db_path, sleep=lambda s: None, clock=clock)


def test_opens_after_failures_in_the_window_and_is_skipped_without_a_call(server, breaker_config_path, db_path):
    clock = Clock()
    server.always("claude-small", error(500))
    with make(breaker_config_path, db_path, clock) as router:
        notes: list[str] = []
        router.on_note = notes.append
        for _ in range(2):
            assert router.ask("hello").final.model == "gpt-small"
            clock.now += 1
        assert any("circuit opened" in n for n in notes)
        calls_before = len(server.calls("claude-small"))
        answer = router.ask("hello")
    assert len(server.calls("claude-small")) == calls_before == 2  # skipped: no third call
    assert answer.final.model == "gpt-small"
    assert [(a.model, a.status, a.error_kind) for a in answer.attempts] == [
        ("claude-small", "skipped", "circuit_open"), ("gpt-small", "ok", None)]
    assert "circuit open until" in answer.to_json()["policy"][0]
    last = [r for r in ledger_rows(db_path) if r["request_id"] == answer.request_id]
    assert [r["model"] for r in last] == ["gpt-small"] and "circuit open until" in last[0]["policy"]


def test_failures_outside_the_window_do_not_add_up(server, breaker_config_path, db_path):
    clock = Clock()
    server.always("claude-small", error(503))
    with make(breaker_config_path, db_path, clock) as router:
        router.ask("hello")
        clock.now += 61
        router.ask("hello")
        clock.now += 1
        router.ask("hello")  # this one is the second failure within 60 s: it opens
        clock.now += 1
        router.ask("hello")
    assert len(server.calls("claude-small")) == 3


def test_a_second_process_skips_the_open_circuit(server, breaker_config_path, db_path, mmr):
    server.always("claude-small", error(500))
    with make(breaker_config_path, db_path, Clock(__import__("time").time())) as router:
        router.ask("hello")
        router.ask("hello")
    server.reset()
    result = mmr("ask", "--verbose", "hello", env={"MMR_CONFIG": str(breaker_config_path)}, config=False)
    assert result.returncode == 0, result.stderr
    assert [c["model"] for c in server.calls()] == ["gpt-small"]
    assert "circuit open until" in result.stderr.decode()


def test_half_open_after_the_cooldown_one_probe_closes_it(server, breaker_config_path, db_path):
    clock = Clock()
    server.always("claude-small", error(500))
    with make(breaker_config_path, db_path, clock) as router:
        router.ask("hello")
        router.ask("hello")
        clock.now += 29
        router.ask("hello")
        assert len(server.calls("claude-small")) == 2  # still open
        server.always("claude-small", None)
        clock.now += 2  # cooldown over: the next call is the probe
        answer = router.ask("hello")
        assert answer.final.model == "claude-small"
        state = {(b["provider"], b["model"]): b["state"] for b in router.breakers().states()}
    assert state[("anthropic", "claude-small")] == "closed"


def test_a_failed_probe_opens_the_circuit_again(server, breaker_config_path, db_path):
    clock = Clock()
    server.always("claude-small", error(500))
    with make(breaker_config_path, db_path, clock) as router:
        router.ask("hello")
        router.ask("hello")
        clock.now += 31
        router.ask("hello")  # the probe fails
        assert len(server.calls("claude-small")) == 3
        clock.now += 29
        router.ask("hello")  # open again for a whole cooldown
        assert len(server.calls("claude-small")) == 3
        (row,) = [b for b in router.breakers().states() if b["model"] == "claude-small"]
    assert row["state"] == "open" and row["open_until"] == pytest.approx(1_000_031 + 30)


def test_the_cooldown_is_at_least_the_retry_after(server, tmp_path, db_path):
    path = write_config(tmp_path / "b.yaml", server.url, extra="breaker: {failures: 1, window: 60, cooldown: 1}\n")
    clock = Clock()
    server.script("claude-small", error(429, retry_after=4))
    with make(path, db_path, clock) as router:
        router.ask("hello")
        (row,) = router.breakers().states()
    assert row["state"] == "open" and row["open_until"] == pytest.approx(clock.now + 4)


def test_a_clock_that_moves_backwards_cannot_hold_a_circuit_open(tmp_path):
    clock = Clock(2_000_000.0)
    with open_ledger(tmp_path / "l.db") as ledger:
        board = Breakers(ledger, BreakerConfig(failures=1, window=60, cooldown=30), max_retry_after=30, clock=clock)
        assert board.failure("p", "m", "HTTP 500") == "open"
        clock.now -= 86_400  # a day back
        verdict = board.admit("p", "m", lease=10)
        assert not verdict.allowed and verdict.retry_at == pytest.approx(clock.now + 30)
        clock.now += 31
        assert board.admit("p", "m", lease=10).probe


def test_only_one_process_probes(tmp_path):
    """Eight processes reach a half-open circuit at once: exactly one gets the probe."""
    db = tmp_path / "l.db"
    with open_ledger(db) as ledger:
        board = Breakers(ledger, BreakerConfig(failures=1, window=60, cooldown=0.5), max_retry_after=1)
        board.failure("p", "m", "HTTP 500")
    script = textwrap.dedent(f"""
        import sys, time
        from router_cli.policy.breakers import Breakers
        from router_cli.config import BreakerConfig
        from router_cli.ledger import open_ledger
        start = float(sys.argv[1])
        with open_ledger({str(db)!r}) as ledger:
            board = Breakers(ledger, BreakerConfig(failures=1, window=60, cooldown=0.5), max_retry_after=1)
            time.sleep(max(0, start - time.time()))
            print(board.admit("p", "m", lease=30).probe)
    """)
    import time

    start = str(time.time() + 2.0)  # past the cooldown, after every process has started
    procs = [subprocess.Popen([sys.executable, "-c", script, start], stdout=subprocess.PIPE, cwd=ROOT) for _ in range(8)]
    results = [p.communicate(timeout=60)[0].decode().strip() for p in procs]
    assert sorted(results) == ["False"] * 7 + ["True"]


def test_concurrent_failures_are_all_counted(tmp_path):
    db = tmp_path / "l.db"
    open_ledger(db).close()
    script = textwrap.dedent(f"""
        from router_cli.policy.breakers import Breakers
        from router_cli.config import BreakerConfig
        from router_cli.ledger import open_ledger
        with open_ledger({str(db)!r}) as ledger:
            board = Breakers(ledger, BreakerConfig(failures=1000, window=600, cooldown=1))
            for _ in range(10):
                board.failure("p", "m", "HTTP 500")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT) for _ in range(8)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 8
    with open_ledger(db) as ledger:
        (row,) = Breakers(ledger, BreakerConfig()).states()
    assert len(json.loads(row["failures"])) == 80 and row["state"] == "closed"


def test_health_shows_state_error_rate_and_retry_time(server, breaker_config_path, db_path, mmr):
    server.always("claude-small", error(500))
    with make(breaker_config_path, db_path, Clock(__import__("time").time())) as router:
        router.ask("hello")
        router.ask("hello")
    result = mmr("health", "--json", env={"MMR_CONFIG": str(breaker_config_path)}, config=False)
    assert result.returncode == 0, result.stderr
    models = {m["model"]: m for m in json.loads(result.stdout)["models"]}
    assert set(models) == {"claude-small", "gpt-small", "claude-mid", "gpt-mid", "claude-big", "gpt-big"}
    small = models["claude-small"]
    assert small["state"] == "open" and small["calls"] == 2 and small["error_rate"] == 1.0 and small["retry_at"]
    assert models["gpt-small"]["state"] == "closed" and models["gpt-small"]["error_rate"] == 0.0
    assert models["gpt-small"]["latency_p50_ms"] is not None
    table = mmr("health", env={"MMR_CONFIG": str(breaker_config_path)}, config=False)
    assert table.returncode == 0 and "anthropic/claude-small" in table.stdout.decode() and "open" in table.stdout.decode()


def test_disabled_breakers_never_skip(server, tmp_path, db_path):
    path = write_config(tmp_path / "b.yaml", server.url, extra="breaker: {enabled: false, failures: 1}\n")
    server.always("claude-small", error(500))
    with make(path, db_path, Clock()) as router:
        for _ in range(3):
            router.ask("hello")
    assert len(server.calls("claude-small")) == 3


def test_ok_replies_keep_a_closed_breaker_unwritten(server, breaker_config_path, db_path):
    server.script("claude-small", reply("fine"))
    with make(breaker_config_path, db_path, Clock()) as router:
        router.ask("hello")
        assert router.breakers().states() == []


def test_a_model_that_answers_on_a_retry_closes_the_circuit_its_failures_opened(server, breaker_config_path, db_path, monkeypatch):
    monkeypatch.delenv("TEST_OPENAI_KEY")  # claude-small is simple's only model, so it is retried
    server.script("claude-small", error(500), error(500), reply("fine"))
    with make(breaker_config_path, db_path, Clock()) as router:
        assert router.ask("hello").final.model == "claude-small"
        (row,) = router.breakers().states()
    assert row["state"] == "closed"


def test_no_hand_over_to_a_tier_mate_whose_circuit_is_open(server, breaker_config_path, db_path):
    clock = Clock()
    with make(breaker_config_path, db_path, clock) as router:
        for _ in range(2):
            router.breakers().failure("openai", "gpt-small", "HTTP 500")
        server.script("claude-small", error(500))
        answer = router.ask("hello")
    # claude-small is retried instead of escalating to medium past an open gpt-small.
    assert answer.final.model == "claude-small" and answer.final.tier == "simple"
    assert [c["model"] for c in server.calls()] == ["claude-small", "claude-small"]
