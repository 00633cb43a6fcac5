"""`mmr feedback`: stored in the ledger, the latest counts, clear errors; and `mmr explain`."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from router_cli import cascade
from router_cli.config import load_config
from router_cli.reports.costs import cost_report
from router_cli.errors import EXIT_USAGE, UsageError
from router_cli.reports.feedback import record
from router_cli.ledger import open_ledger
from router_cli import Router
from tests.conftest import ledger_rows, write_config
from tests.ledger_factory import NOW, attempt, merge, request
from tests.provider_server import error, reply


@pytest.fixture
def db_path(ledger_url):
    """Every test here runs on an SQLite file and on a PostgreSQL database."""
    return ledger_url

TIERS = ["simple", "medium", "complex"]


def _asked(mmr, *args) -> dict:
    result = mmr("ask", "What is a monad?", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_feedback_is_stored_and_the_latest_counts(server, mmr, db_path):
    answer = _asked(mmr, "--tier", "simple")
    first = mmr("feedback", answer["call_id"], "good", "--note", "fine")
    assert first.returncode == 0 and first.stdout == b"", first.stderr
    assert b"recorded: good for call" in first.stderr
    second = mmr("feedback", answer["call_id"], "bad", "--should-be", "complex", "--json", "--user", "alice")
    entry = json.loads(second.stdout)
    assert (entry["verdict"], entry["should_be"], entry["needs_higher"], entry["user"], entry["tier"]) == ("bad", "complex", 1, "alice", "simple")
    with open_ledger(db_path) as ledger:
        stored = ledger.read("SELECT verdict, note FROM feedback ORDER BY id").fetchall()
        report = cost_report(ledger, NOW - timedelta(days=1), by=["tier"])
    assert stored == [("good", "fine"), ("bad", None)]
    assert (report.total.rated, report.total.good, report.total.misrouting_rate, report.total.needs_higher_share) == (1, 0, 1.0, 1.0)
    # and back again: the latest verdict is the one that counts
    mmr("feedback", answer["call_id"], "good")
    with open_ledger(db_path) as ledger:
        assert cost_report(ledger, NOW - timedelta(days=1)).total.feedback_score == 1.0


def test_a_request_id_stands_for_its_answer(server, mmr, db_path):
    server.script("claude-small", error(500), error(500), error(500))
    answer = _asked(mmr, "--tier", "simple")
    entry = json.loads(mmr("feedback", answer["request_id"], "bad", "--json").stdout)
    assert entry["call_id"] == answer["call_id"] and entry["tier"] == "simple" and entry["needs_higher"] is None
    assert answer["model"] == "gpt-small"


def test_misrouting_rate_by_tier(db_path):
    with open_ledger(db_path) as ledger:
        parts = [request([attempt("simple")]) for _ in range(4)] + [request([attempt("complex")]) for _ in range(2)]
        ledger.record(merge(*parts))
        ids = [p["calls"][0]["id"] for p in parts]
        record(ledger, ids[0], "bad", should_be="medium", tiers=TIERS)
        record(ledger, ids[1], "bad", tiers=TIERS)  # bad, but no tier named
        record(ledger, ids[2], "good", tiers=TIERS)
        record(ledger, ids[4], "bad", should_be="simple", tiers=TIERS)  # over-routed: a cheaper tier would do
        report = cost_report(ledger, NOW - timedelta(days=1), by=["tier"])
    rows = {r.key["tier"]: r for r in report.rows}
    assert (rows["simple"].rated, rows["simple"].misrouting_rate, rows["simple"].needs_higher_share) == (3, 2 / 3, 0.5)
    assert (rows["complex"].rated, rows["complex"].misrouting_rate, rows["complex"].needs_higher_share) == (1, 1.0, 0.0)


def test_feedback_outside_the_window_is_not_counted(db_path):
    with open_ledger(db_path) as ledger:
        old = request([attempt("simple")], when=NOW - timedelta(days=10))
        ledger.record(old)
        record(ledger, old["calls"][0]["id"], "bad", tiers=TIERS)
        assert cost_report(ledger, NOW - timedelta(days=1)).total.rated == 0
        assert cost_report(ledger, NOW - timedelta(days=11)).total.rated == 1


@pytest.mark.parametrize("args, message", [
    (["nope", "bad"], "Error: unknown call id 'nope': no call or request with that id in"),
    (["{call}", "meh"], "Error: the verdict must be good or bad, got 'meh'"),
    (["{call}", "bad", "--should-be", "huge"], "Error: --should-be: unknown tier 'huge'; valid tiers: simple, medium, complex"),
    (["{call}", "bad", "--note", " "], "Error: --note is empty"),
])
def test_bad_feedback_is_one_line(server, mmr, args, message, db_path):
    answer = _asked(mmr)
    result = mmr("feedback", *[a.format(call=answer["call_id"]) for a in args])
    assert result.returncode == EXIT_USAGE
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    with open_ledger(db_path) as ledger:
        assert ledger.read("SELECT count(*) FROM feedback").fetchone()[0] == 0


@pytest.mark.sqlite_only  # about a ledger file that does not exist yet
def test_no_ledger_is_a_clear_error(mmr, db_path):
    result = mmr("feedback", "X", "good")
    assert result.returncode == EXIT_USAGE and b"no ledger at" in result.stderr
    assert not db_path.exists()


def test_feedback_on_a_call_whose_prompt_was_not_stored(server, tmp_path, mmr):
    config = write_config(tmp_path / "hash.yaml", server.url, extra="ledger: {store: hash}\n")
    answer = json.loads(mmr("ask", "What is a monad?", "--json", "--config", str(config)).stdout)
    refused = mmr("feedback", answer["call_id"], "bad")
    assert refused.returncode == EXIT_USAGE
    assert b"its prompt was not stored in full (ledger.store: hash)" in refused.stderr and b"--allow-unstored" in refused.stderr
    kept = mmr("feedback", answer["call_id"], "bad", "--allow-unstored")
    assert kept.returncode == 0, kept.stderr


def test_judge_calls_and_failed_attempts_cannot_be_rated(server, tmp_path, db_path):
    config = load_config(write_config(tmp_path / "t.yaml", server.url))
    server.script("claude-small", error(500), error(500), error(500), reply("Because of Rayleigh scattering of sunlight."))
    server.script("gpt-small", reply("0.9"))
    with Router(config, db_path, sleep=lambda s: None) as router:
        cascade(router, "Explain why the sky is blue", gate="judge")
    rows = ledger_rows(db_path)
    failed = next(r for r in rows if r["status"] == "error")
    judge = next(r for r in rows if r["role"] == "judge")
    with open_ledger(db_path) as ledger:
        with pytest.raises(UsageError, match="is a failed attempt \\(error\\), not an answer"):
            record(ledger, failed["id"], "bad")
        with pytest.raises(UsageError, match="is a judge call, not an answer"):
            record(ledger, judge["id"], "bad")


# ------------------------------------------------------------------ explain


def test_explain_a_cascade(server, mmr, db_path, config):
    server.script("claude-small", reply("I don't know."))
    answer = json.loads(mmr("cascade", "Explain why the sky is blue", "--gate", "heuristic", "--json", "--user", "bob").stdout)
    mmr("feedback", answer["call_id"], "good", "--note", "spot on")
    report = json.loads(mmr("explain", answer["call_id"], "--json").stdout)
    routing = report["routing"]
    assert report["request_id"] == answer["request_id"] and report["user"] == "bob" and report["command"] == "cascade"
    assert (routing["classifier"], routing["routed_tier"], routing["variant"]) == ("cascade", "simple", None)
    assert routing["thresholds"] == {"gate": {"simple": 0.7, "medium": 0.7, "complex": 0.7}}
    assert routing["config_hash"] == config.config_hash and routing["config_is_current"] is True
    assert routing["policy"] is None
    assert [(a["tier"], a["status"], a["quality"]) for a in report["attempts"]] == [("simple", "rejected", 0.1), ("medium", "ok", 1.0)]
    assert report["attempts"][0]["gate_reason"] == "a refusal or 'I don't know'"
    assert report["answered_by"]["call_id"] == answer["call_id"] and report["escalated"] is True
    assert report["cost_usd"] == answer["cost_usd"]
    assert [(f["verdict"], f["note"], f["latest"]) for f in report["feedback"]] == [("good", "spot on", True)]
    text = mmr("explain", answer["request_id"]).stdout.decode()
    assert "routed     simple by cascade" in text and "gate thresholds: simple 0.7, medium 0.7, complex 0.7" in text
    assert "(the current config)" in text and "variant    none (no experiment)" in text
    assert "rejected" in text and "gate 0.10 a refusal or 'I don't know'" in text
    assert "answered   medium anthropic/claude-mid (escalated from simple)" in text
    assert "feedback" in text and "good: 'spot on'" in text


def test_explain_shows_errors_variant_and_a_changed_config(server, mmr, tmp_path, db_path):
    server.script("claude-mid", error(503), error(503), error(503))
    answer = json.loads(mmr("ask", "hello", "--tier", "medium", "--json").stdout)
    other = write_config(tmp_path / "other.yaml", server.url, extra="experiments:\n  e:\n    variants: {a: {weight: 1}}\n")
    report = json.loads(mmr("explain", answer["call_id"], "--json", "--config", str(other)).stdout)
    assert report["routing"]["config_is_current"] is False
    assert [a["status"] for a in report["attempts"]] == ["error", "ok"]  # gpt-mid takes over at once
    assert "503" in report["attempts"][0]["error"]
    assert report["routing"]["classifier"] == "override" and report["routing"]["reason"] == "--tier given"
    # a request made under an experiment
    varied = json.loads(mmr("ask", "hello", "--json", "--config", str(other)).stdout)
    assert json.loads(mmr("explain", varied["call_id"], "--json").stdout)["routing"]["variant"] == "e/a"


def test_explain_shows_budget_and_breaker_decisions(server, mmr, tmp_path):
    config = write_config(tmp_path / "p.yaml", server.url, extra="breaker: {failures: 1}\n")
    server.always("claude-mid", error(500))
    mmr("ask", "hello", "--tier", "medium", "--config", str(config))  # opens claude-mid's circuit
    answer = json.loads(mmr("ask", "--json", "--tier", "complex", "--max-cost", "0.0021", "hello",
                            "--config", str(config)).stdout)
    report = json.loads(mmr("explain", answer["call_id"], "--json", "--config", str(config)).stdout)
    policy = report["routing"]["policy"]
    assert "--max-cost" in policy and "downgraded to medium" in policy
    assert "skipped medium anthropic/claude-mid: circuit open until" in policy
    text = mmr("explain", answer["call_id"], "--config", str(config)).stdout.decode()
    assert "policy" in text and "downgraded to medium" in text


def test_explain_unknown_id(server, mmr):
    _asked(mmr)
    result = mmr("explain", "01NOPE")
    assert result.returncode == EXIT_USAGE and result.stderr.decode().count("\n") == 1
    assert b"unknown call id '01NOPE'" in result.stderr


@pytest.mark.parametrize("utc", [True, False])
def test_feedback_lands_in_the_day_and_week_of_its_call(db_path, utc):
    days = [NOW - timedelta(days=2), NOW - timedelta(days=2, minutes=1), NOW]
    with open_ledger(db_path) as ledger:
        parts = [request([attempt("simple")], when=when) for when in days]
        ledger.record(merge(*parts))
        for part, verdict in zip(parts, ["good", "bad", "bad"]):
            record(ledger, part["calls"][0]["id"], verdict, tiers=TIERS)
        report = cost_report(ledger, NOW - timedelta(days=3), NOW + timedelta(seconds=1), by=["day", "tier"], utc=utc)
        weekly = cost_report(ledger, NOW - timedelta(days=3), NOW + timedelta(seconds=1), by=["week"], utc=utc)
    local = (lambda d: d.date()) if utc else (lambda d: d.astimezone().date())
    rated = {r.key["day"]: (r.rated, r.good, r.calls) for r in report.rows}
    expected: dict = {}
    for when, good in zip(days, [1, 0, 0]):
        day = local(when).isoformat()
        r, g, c = expected.get(day, (0, 0, 0))
        expected[day] = (r + 1, g + good, c + 1)
    assert rated == expected
    assert sum(r.rated for r in weekly.rows) == 3 and weekly.total.good == 1


def test_explain_a_request_where_nothing_answered(db_path):
    from router_cli.reports.explain import explain

    with open_ledger(db_path) as ledger:
        ledger.record(request([attempt("simple", "error"), attempt("medium", "error")], request_id="RFAIL", command="ask"))
        report = explain(ledger, "RFAIL")
        assert report["answered_by"] is None and [a["status"] for a in report["attempts"]] == ["error", "error"]
        with pytest.raises(UsageError, match="is a failed attempt \\(error\\), not an answer"):
            record(ledger, "RFAIL", "bad")
