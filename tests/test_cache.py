"""The response cache: hits, expiry, scope, --refresh/--no-cache, and what is never cached."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from router_cli.config import load_config
from router_cli import Router
from tests.conftest import raw_execute, ledger_rows, write_config
from tests.provider_server import error, reply


@pytest.fixture
def db_path(ledger_url):
    """Every test here runs on an SQLite file and on a PostgreSQL database."""
    return ledger_url


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def cache_router(server, tmp_path, db_path, scope="user", ttl="1h", clock=None) -> Router:
    path = write_config(tmp_path / "cache.yaml", server.url, extra=f"cache: {{enabled: true, ttl: {ttl}, scope: {scope}}}\n")
    return Router(load_config(path), db_path, sleep=lambda s: None, clock=clock or Clock())


def test_a_repeat_is_answered_from_the_cache_at_no_cost(server, tmp_path, db_path):
    server.script("claude-small", reply("forty-two", input_tokens=1000, output_tokens=100))
    with cache_router(server, tmp_path, db_path) as router:
        first = router.ask("What is six times seven?")
        second = router.ask("  What is six times seven?\r\n")  # same request once normalised
    assert len(server.calls()) == 1
    assert second.text == "forty-two" and second.cost == 0 and second.final.status == "cached"
    out = second.to_json()
    assert out["cached"] is True and out["cost_usd"] == "0" and "cache: answered" in out["policy"][0]
    assert Decimal(out["savings_usd"]) == Decimal(out["baseline_cost_usd"]) > 0
    rows = ledger_rows(db_path)
    assert [r["status"] for r in rows] == ["ok", "cached"]
    assert rows[1]["saved_usd"] == "0.0012" and rows[1]["saved_nanousd"] == 1_200_000 and rows[1]["cost_nanousd"] == 0
    assert first.final.call_id != second.final.call_id


def test_entries_expire(server, tmp_path, db_path):
    clock = Clock()
    with cache_router(server, tmp_path, db_path, ttl="60s", clock=clock) as router:
        router.ask("hello")
        clock.now += 59
        assert router.ask("hello").final.status == "cached"
        clock.now += 2
        assert router.ask("hello").final.status == "ok"  # expired: asked again, and cached anew
        assert router.ask("hello").final.status == "cached"
    assert len(server.calls()) == 2


def test_a_clock_that_moved_backwards_does_not_stretch_the_ttl(server, tmp_path, db_path):
    clock = Clock()
    with cache_router(server, tmp_path, db_path, ttl="60s", clock=clock) as router:
        router.ask("hello")
        clock.now -= 3600
        assert router.ask("hello").final.status == "ok"
    assert len(server.calls()) == 2


def test_user_scope_keeps_answers_private(server, tmp_path, db_path):
    with cache_router(server, tmp_path, db_path, scope="user") as router:
        router.ask("hello", user="alice")
        assert router.ask("hello", user="bob").final.status == "ok"
        assert router.ask("hello", user="alice").final.status == "cached"


def test_global_scope_shares_answers(server, tmp_path, db_path):
    with cache_router(server, tmp_path, db_path, scope="global") as router:
        router.ask("hello", user="alice")
        assert router.ask("hello", user="bob").final.status == "cached"


def test_different_parameters_do_not_share_an_entry(server, tmp_path, db_path):
    with cache_router(server, tmp_path, db_path) as router:
        router.ask("hello")
        assert router.ask("hello", system="be terse").final.status == "ok"
        assert router.ask("hello", max_tokens=10).final.status == "ok"
        assert router.ask("hello", tier="medium").final.status == "ok"
        assert router.ask("hello", temperature=0.5).final.status == "ok"
    assert len(server.calls()) == 5


def test_refresh_and_no_cache_on_the_command_line(server, tmp_path, db_path, mmr):
    path = write_config(tmp_path / "cache.yaml", server.url, extra="cache: {enabled: true}\n")
    server.script("claude-small", reply("old"), reply("new"))
    assert mmr("ask", "--config", str(path), "hello").stdout == b"old\n"
    no_cache = mmr("ask", "--config", str(path), "--no-cache", "--json", "hello")
    assert json.loads(no_cache.stdout)["cached"] is False and json.loads(no_cache.stdout)["text"] == "new"
    assert mmr("ask", "--config", str(path), "hello").stdout == b"old\n"  # --no-cache wrote nothing
    server.script("claude-small", reply("newer"))
    assert mmr("ask", "--config", str(path), "--refresh", "hello").stdout == b"newer\n"
    hit = mmr("ask", "--config", str(path), "--json", "hello")
    assert json.loads(hit.stdout)["text"] == "newer" and json.loads(hit.stdout)["cached"] is True
    both = mmr("ask", "--config", str(path), "--refresh", "--no-cache", "hello")
    assert both.returncode == 2


def test_an_answer_cut_off_at_max_tokens_is_not_cached(server, tmp_path, db_path):
    server.script("claude-small", reply("cut off", stop_reason="max_tokens"))
    with cache_router(server, tmp_path, db_path) as router:
        router.ask("hello")
        assert router.ask("hello").final.status == "ok"
    assert len(server.calls()) == 2


def test_a_failed_request_leaves_no_entry(server, tmp_path, db_path):
    from router_cli.errors import AllAttemptsFailed

    server.script("claude-small", error(400))
    with cache_router(server, tmp_path, db_path) as router:
        with pytest.raises(AllAttemptsFailed):
            router.ask("hello")
        assert router.ask("hello").final.status == "ok"
        assert router.ledger().read("SELECT count(*) FROM cache").fetchone()[0] == 1


def test_an_entry_whose_model_left_the_config_is_a_miss(server, tmp_path, db_path):
    import time

    with cache_router(server, tmp_path, db_path, clock=time.time) as router:
        router.ask("hello")
    # The same tiers, but claude-small is gone from simple.
    text = (tmp_path / "cache.yaml").read_text().replace(
        "      - {provider: anthropic, model: claude-small, price: {input: 0.80, output: 4.00}, max_tokens: 64}\n", "")
    (tmp_path / "cache2.yaml").write_text(text)
    notes: list[str] = []
    with Router(load_config(tmp_path / "cache2.yaml"), db_path, on_note=notes.append) as router:
        answer = router.ask("hello")
    assert answer.final.model == "gpt-small" and answer.final.status == "ok"
    assert any("no longer has" in n for n in notes)


def test_cache_is_off_unless_enabled(server, router):
    router.ask("hello")
    assert router.ask("hello").final.status == "ok"
    assert len(server.calls()) == 2


def test_a_cached_answer_is_served_even_when_the_budget_is_spent(server, tmp_path, db_path):
    path = write_config(tmp_path / "cb.yaml", server.url, extra=(
        "cache: {enabled: true}\nbudgets:\n  - {scope: global, period: day, limit: 0.001, policy: block}\n"))
    server.script("claude-small", reply("kept", input_tokens=1000, output_tokens=50))  # $0.001: the whole budget
    from router_cli.errors import BudgetExceeded

    with Router(load_config(path), db_path) as router:
        assert router.ask("hello").cost == Decimal("0.001")
        assert router.ask("hello").final.status == "cached"  # free: not refused
        with pytest.raises(BudgetExceeded):
            router.ask("something new")
    assert len(server.calls()) == 1


def test_experiment_variants_keep_their_own_entries(server, tmp_path):
    from router_cli.policy.cache import cache_key

    config = load_config(write_config(tmp_path / "v.yaml", server.url, extra="cache: {enabled: true}\n"))
    same = dict(tier="medium", prompt="hello", system=None, max_tokens=None, temperature=None, user="u")
    keys = {cache_key(config, **same, variant=v) for v in (None, "mid-models/control", "mid-models/gpt")}
    assert len(keys) == 3


def test_an_entry_from_a_model_outside_its_tier_is_a_miss(server, tmp_path, db_path):
    import time

    with cache_router(server, tmp_path, db_path, clock=time.time) as router:
        router.ask("hello", tier="simple")
        # The entry now claims a model of another tier: not a valid answer for simple.
        raw_execute(db_path, "UPDATE cache SET model = 'claude-big', provider = 'anthropic'")
        notes: list[str] = []
        router.on_note = notes.append
        assert router.ask("hello", tier="simple").final.status == "ok"
    assert any("simple tier no longer has" in n for n in notes)
