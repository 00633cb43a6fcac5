"""Budgets and --max-cost: exact boundaries, downgrade, block, and what the ledger records."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from router_cli.config import load_config
from router_cli.errors import EXIT_BUDGET, EXIT_PROVIDER, AllAttemptsFailed, BudgetExceeded
from router_cli import Router
from tests.conftest import raw_execute, ledger_rows, write_config
from tests.provider_server import reply


@pytest.fixture
def db_path(ledger_url):
    """Every test here runs on an SQLite file and on a PostgreSQL database."""
    return ledger_url

# "hello" has at most 53 tokens (5 bytes, 16 for its message, 32 for the request); the worst
# case is 53 input tokens plus the model's max_tokens.
WORST = {
    "simple": Decimal("0.0002984"),   # claude-small: 53 * 0.80 + 64 * 4.00 per 1M
    "medium": Decimal("0.002079"),    # claude-mid: 53 * 3 + 128 * 15
    "complex": Decimal("0.019995"),   # claude-big: 53 * 15 + 256 * 75
}
NANO = Decimal("0.000000001")


def budget_router(server, tmp_path, db_path, budgets: str) -> Router:
    path = write_config(tmp_path / "budget.yaml", server.url, extra=f"budgets:\n{budgets}")
    return Router(load_config(path), db_path, sleep=lambda s: None)


@pytest.mark.parametrize("slack, allowed", [(Decimal(0), True), (-NANO, False)])
def test_block_at_the_exact_boundary(server, tmp_path, db_path, slack, allowed):
    server.script("claude-small", reply("one", input_tokens=1000, output_tokens=100))
    first_cost = Decimal("0.0012")  # 1000 * 0.80 + 100 * 4.00 per 1M
    limit = first_cost + WORST["simple"] + slack
    with budget_router(server, tmp_path, db_path, f"  - {{scope: global, period: day, limit: '{limit}', policy: block}}\n") as router:
        assert router.ask("hi", tier="simple").cost == first_cost
        if allowed:
            assert router.ask("hello", tier="simple").final.status == "ok"
        else:
            with pytest.raises(BudgetExceeded, match="global daily budget") as info:
                router.ask("hello", tier="simple")
            assert info.value.exit_code == EXIT_BUDGET
    rows = ledger_rows(db_path)
    assert len(server.calls()) == (2 if allowed else 1)
    if not allowed:
        blocked = rows[-1]
        assert blocked["status"] == "blocked" and blocked["cost_nanousd"] == 0
        assert "global daily budget" in blocked["policy"] and blocked["attempt"] == 1


def test_downgrade_to_the_most_capable_tier_that_fits(server, tmp_path, db_path):
    limit = WORST["medium"]  # complex does not fit, medium exactly does
    with budget_router(server, tmp_path, db_path, f"  - {{scope: team, team: ml, period: month, limit: '{limit}'}}\n") as router:
        answer = router.ask("hello", tier="complex", team="ml")
        other_team = router.ask("hello", tier="complex", team="web")
    assert answer.final.tier == "medium" and answer.final.model == "claude-mid"
    assert "team ml monthly budget" in answer.policy[0] and "downgraded to medium" in answer.policy[0]
    assert other_team.final.tier == "complex"  # the budget is the ml team's alone
    rows = [r for r in ledger_rows(db_path) if r["request_id"] == answer.request_id]
    assert rows[0]["routed_tier"] == "complex" and rows[0]["escalated"] == 0
    assert "downgraded to medium" in rows[0]["policy"]


def test_downgrade_stops_at_the_floor_tier(server, tmp_path, db_path):
    limit = WORST["simple"]
    budgets = f"  - {{scope: user, period: day, limit: '{limit}', policy: downgrade, floor_tier: medium}}\n"
    with budget_router(server, tmp_path, db_path, budgets) as router:
        with pytest.raises(BudgetExceeded, match="user alice daily budget.*floor tier is medium"):
            router.ask("hello", tier="complex", user="alice")
        assert router.ask("hello", tier="complex").final.tier == "complex"  # no user: no user budget
    assert server.calls()[0]["model"] == "claude-big"


def test_each_user_has_their_own_budget(server, tmp_path, db_path):
    server.always("claude-small", reply("ok", input_tokens=125_000, output_tokens=0))  # $0.10 each: the limit
    with budget_router(server, tmp_path, db_path, "  - {scope: user, period: day, limit: 0.1, policy: block}\n") as router:
        router.ask("hi", tier="simple", user="alice")
        with pytest.raises(BudgetExceeded, match="user alice"):
            router.ask("hi", tier="simple", user="alice")
        assert router.ask("hi", tier="simple", user="bob").final.status == "ok"


def test_fallback_to_a_tier_over_budget_is_skipped(server, tmp_path, db_path):
    from tests.provider_server import error

    server.always("claude-small", error(500))
    server.always("gpt-small", error(500))
    limit = WORST["simple"] * 4  # enough for simple's models, not for medium's
    with budget_router(server, tmp_path, db_path, f"  - {{scope: global, period: day, limit: '{limit}'}}\n") as router:
        with pytest.raises(AllAttemptsFailed) as info:
            router.ask("hello", tier="simple")
    # The models that fit were tried and failed; the rest were never called.
    assert {c["model"] for c in server.calls()} == {"claude-small", "gpt-small"}
    assert "medium anthropic/claude-mid: skipped, global daily budget: up to 0.002079 USD" in str(info.value)


def test_max_cost_on_the_command_line(server, mmr, db_path):
    result = mmr("ask", "--json", "--tier", "complex", "--max-cost", str(WORST["medium"]), "hello")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["tier"] == "medium" and "--max-cost" in out["policy"][0]
    blocked = mmr("ask", "--max-cost", "0", "hello")
    assert blocked.returncode == EXIT_BUDGET
    assert blocked.stderr.decode().startswith("Error: --max-cost") and blocked.stdout == b""
    bad = mmr("ask", "--max-cost", "lots", "hello")
    assert bad.returncode == 2 and "--max-cost" in bad.stderr.decode()


def test_cascade_stops_escalating_at_the_budget(server, tmp_path, db_path):
    from router_cli import cascade

    router = Router(load_config(write_config(tmp_path / "c.yaml", server.url)), db_path)
    server.script("claude-small", reply("no"))  # fails the heuristic gate for this question
    answer = cascade(router, "Explain step by step why the sky is blue, in detail.", gate="heuristic",
                     max_cost=WORST["simple"] + Decimal("0.0001"))
    assert answer.best_effort and answer.final.tier == "simple"
    assert any("--max-cost" in p for p in answer.policy)


@pytest.mark.parametrize("entry, problem", [
    ("{scope: global, period: day, limit: -1}", "budgets[0].limit: must be an amount of 0 USD or more"),
    ("{scope: global, period: day, limit: lots}", "budgets[0].limit: not a number"),
    ("{scope: global, period: week, limit: 1}", "budgets[0].period: expected day or month"),
    ("{scope: user, team: ml, period: day, limit: 1}", "budgets[0].team: only a team budget names a team"),
    ("{scope: team, period: day, limit: 1, policy: warn}", "budgets[0].policy: expected downgrade or block"),
    ("{scope: team, period: day, limit: 1, floor_tier: tiny}", "budgets[0].floor_tier: unknown tier 'tiny'"),
])
def test_bad_budgets_name_the_key(server, tmp_path, entry, problem):
    from router_cli.errors import ConfigError

    path = write_config(tmp_path / "bad.yaml", server.url, extra=f"budgets:\n  - {entry}\n")
    with pytest.raises(ConfigError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        load_config(path)


def test_costs_shows_budget_use(server, tmp_path, db_path, mmr):
    path = write_config(tmp_path / "budget.yaml", server.url,
                        extra="budgets:\n  - {scope: user, period: month, limit: 2.5}\n  - {scope: global, period: day, limit: 10, policy: block}\n")
    server.always("claude-small", reply("ok", input_tokens=1_000_000, output_tokens=0))  # $0.80
    with Router(load_config(path), db_path) as router:
        router.ask("hi", tier="simple", user="alice")
        router.ask("hi", tier="simple", user="bob")
        router.ask("hi", tier="simple", user="bob")
    result = mmr("costs", "--by", "user", "--json", "--config", str(path))
    assert result.returncode == 0, result.stderr
    budgets = {(b["budget"], b["who"]): b for b in json.loads(result.stdout)["budgets"]}
    assert budgets[("user monthly budget", "bob")]["spent_usd"] == "1.6"
    assert budgets[("user monthly budget", "bob")]["limit_usd"] == "2.5"
    assert budgets[("user monthly budget", "alice")]["used"] == pytest.approx(0.32)
    assert budgets[("global daily budget", None)]["spent_usd"] == "2.4"
    table = mmr("costs", "--by", "user", "--config", str(path))
    assert "Budgets" in table.stdout.decode() and "64.0%" in table.stdout.decode()


def test_dry_run_shows_the_max_cost_downgrade(server, mmr):
    result = mmr("ask", "--dry-run", "--json", "--tier", "complex", "--max-cost", str(WORST["medium"]), "hello")
    out = json.loads(result.stdout)
    assert out["tier"] == "medium" and "downgraded to medium" in out["policy"]
    assert Decimal(out["max_cost_usd"]) == WORST["medium"]
    refused = mmr("ask", "--dry-run", "--max-cost", "0.0000001", "hello")
    assert refused.returncode == EXIT_BUDGET
    assert server.calls() == []


@pytest.mark.parametrize("processes", ["1", "4"], ids=["threads", "4-processes"])
def test_concurrent_requests_cannot_together_pass_a_budget(server, mmr, tmp_path, db_path, processes):
    """Sixteen batch workers (threads, or threads in 4 processes), each call 100 ms: without holds
    they would all pass the check at once."""
    # Every call costs exactly its worst case: 2 input tokens and all 64 output tokens of claude-small.
    server.always("claude-small", reply("ok", input_tokens=2, output_tokens=64, delay=0.1))
    server.always("gpt-small", reply("ok", input_tokens=2, output_tokens=64, delay=0.1))
    limit = WORST["simple"] * 5
    path = write_config(tmp_path / "b.yaml", server.url,
                        extra=f"budgets:\n  - {{scope: global, period: day, limit: '{limit}', policy: block}}\n")
    rows = "".join(json.dumps({"id": i, "prompt": "hello"}) + "\n" for i in range(24))
    result = mmr("ask", "--batch", "-", "--concurrency", "16", "--processes", processes, "--tier", "simple",
                 "--config", str(path), input=rows)
    out = [json.loads(line) for line in result.stdout.decode().splitlines()]
    answered = [r for r in out if "error" not in r]
    spent = sum(Decimal(r["cost_nanousd"]) for r in ledger_rows(db_path)) / 10**9
    assert spent <= limit
    assert len(answered) >= 5 and all(r["error"]["kind"] == "budget_exceeded" for r in out if "error" in r)
    with Router(load_config(path), db_path) as router:  # every hold was released (a claimed warning mark holds 0)
        assert router.ledger().read("SELECT count(*) FROM budget_holds WHERE nanousd > 0").fetchone()[0] == 0


def test_a_hold_counts_for_others_until_released(server, tmp_path, db_path):
    from router_cli.policy.budgets import BudgetGuard

    path = write_config(tmp_path / "b.yaml", server.url, extra=f"budgets:\n  - {{scope: team, period: day, limit: '{WORST['simple'] * 3 / 2}'}}\n")
    config = load_config(path)
    with Router(config, db_path) as router:
        ledger = router.ledger()
        first = BudgetGuard.for_request(config, ledger, user=None, team="ml", max_cost=None, request_id="r1")
        second = BudgetGuard.for_request(config, ledger, user=None, team="ml", max_cost=None, request_id="r2")
        other_team = BudgetGuard.for_request(config, ledger, user=None, team="web", max_cost=None, request_id="r3")
        assert first.hold(WORST["simple"], Decimal(0), lease=60) is None
        assert second.hold(WORST["simple"], Decimal(0), lease=60) is not None  # first's hold leaves too little
        assert other_team.hold(WORST["simple"], Decimal(0), lease=60) is None  # another team's budget
        first.release()
        assert second.hold(WORST["simple"], Decimal(0), lease=60) is None
        expired = BudgetGuard.for_request(config, ledger, user=None, team="ml", max_cost=None, request_id="r4")
        assert expired.hold(WORST["simple"], Decimal(0), lease=60) is not None
        raw_execute(db_path, "UPDATE budget_holds SET expires_at = 0 WHERE request_id = 'r2'")  # its process died
        assert expired.hold(WORST["simple"], Decimal(0), lease=60) is None


def test_each_retry_must_fit_the_budget_too(server, tmp_path, db_path, monkeypatch):
    from tests.provider_server import drop

    monkeypatch.delenv("TEST_OPENAI_KEY")  # claude-small alone in simple: it is retried
    limit = Decimal("0.00031")  # one worst case ($0.0002984) fits, a second billed try does not
    server.script("claude-small", drop(after_chunks=3), drop(after_chunks=3), reply("done"))
    with budget_router(server, tmp_path, db_path, f"  - {{scope: global, period: day, limit: '{limit}', policy: block}}\n") as router:
        # A call was made and failed; the budget then skipped the retry and every model above, as it skips
        # any fallback (test_fallback_to_a_tier_over_budget_is_skipped): the request failed at the provider
        # (exit 5), and the message lists the budget's refusals. BudgetExceeded (exit 8) is for a request
        # the budget refuses before any call.
        with pytest.raises(AllAttemptsFailed) as info:
            router.ask("hello", tier="simple", on_text=lambda text: None, on_restart=lambda message: None)
    message = str(info.value)
    assert info.value.exit_code == EXIT_PROVIDER
    assert message.startswith("every model failed (1 attempts): simple anthropic/claude-small: connection: ")
    assert ("simple anthropic/claude-small: skipped, global daily budget: up to 0.0002984 USD with 0.0002932 USD left"
            in message)
    # "hello" in, "Answer to: hello" streamed before the drop: 1 token reported in, (16 + 3) // 4 = 4 estimated
    # out: 1 * 0.80 + 4 * 4.00 = 16.8 micro-dollars; 310 - 16.8 = 293.2 left, less than the 298.4 worst case.
    assert [(r["status"], r["cost_usd"]) for r in ledger_rows(db_path)] == [("error", "0.0000168")]
    assert len(server.calls("claude-small")) == 1


def test_requests_recorded_together_say_a_passed_mark_once(server, tmp_path, db_path):
    from datetime import datetime, timezone

    from router_cli.policy import budgets
    from router_cli.policy.budgets import BudgetGuard
    from tests.ledger_factory import attempt, merge, request

    router = budget_router(server, tmp_path, db_path, "  - {scope: global, period: day, limit: 0.01, policy: block}\n")
    ledger = router.ledger()
    now = datetime.now(timezone.utc)
    guards = [BudgetGuard.for_request(router.config, ledger, user=None, team=None, max_cost=None,
                                      request_id=f"concurrent-{i}", now=now) for i in range(3)]
    # 0.004 spent before; two requests of 0.0025 each are both in the ledger before either looks (90 %):
    # each one's spend before it (0.0065) is under the 80 % mark, yet only one passed it.
    ledger.record(merge(*(request([attempt("simple", cost=c)], when=now) for c in ("0.004", "0.0025", "0.0025"))))
    warned = [guards[0].crossed(2_500_000, now)]
    getattr(budgets, "_CLAIMED", set()).clear()  # the other request runs in another process: only the ledger knows
    warned.append(guards[1].crossed(2_500_000, now))
    assert warned == [["global daily budget: 90.0% of $0.010000 used ($0.009000 spent); passed 80%"], []]
    assert guards[2].crossed(1, now) == []  # and this process does not ask the ledger again
    router.close()
