"""`mmr costs`: exact sums, window edges, grouping, percentiles, JSON/CSV shapes, bad input."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from router_cli.reports.costs import cost_report, parse_by
from router_cli.reports.when import parse_when
from router_cli.errors import EXIT_USAGE, LedgerError, UsageError
from router_cli.ledger import open_ledger
from router_cli.pricing import decimal_str, to_nanousd


@pytest.fixture
def db_path(ledger_url):
    """Every test here runs on an SQLite file and on a PostgreSQL database."""
    return ledger_url

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def _row(n, when, *, tier="simple", model="m-small", provider="anthropic", status="ok", cost="0", baseline="0",
         request=None, attempt=1, user=None, team=None, duration=100.0, tokens=(10, 20)):
    return {
        "id": f"{n:08d}", "request_id": request or f"r{n}", "attempt": attempt, "command": "ask",
        "datetime_utc": when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "tier": tier, "model": model, "provider": provider, "status": status, "user": user, "team": team,
        "input_tokens": tokens[0], "output_tokens": tokens[1],
        "cost_usd": cost, "cost_nanousd": to_nanousd(Decimal(cost)),
        "baseline_cost_usd": baseline, "baseline_cost_nanousd": to_nanousd(Decimal(baseline)),
        "duration_ms": duration,
    }


@pytest.fixture
def ledger(db_path):
    with open_ledger(db_path) as ledger:
        yield ledger


def test_sums_are_exact_to_the_nano_dollar(ledger):
    # 0.1 + 0.2 style amounts that floats get wrong, many times over.
    rows = [_row(i, NOW - timedelta(hours=1), cost="0.0000001", baseline="0.0000003", request=f"r{i // 2}", attempt=i % 2 + 1) for i in range(3000)]
    ledger.record(rows)
    total = cost_report(ledger, NOW - timedelta(days=1), NOW).total
    assert total.spend == Decimal("0.0003") and total.baseline == Decimal("0.0009")
    assert total.savings == Decimal("0.0006") and total.calls == 3000 and total.requests == 1500
    assert decimal_str(total.spend) == "0.0003"


def test_window_includes_since_and_excludes_until(ledger):
    since, until = NOW - timedelta(days=1), NOW
    ledger.record([
        _row(1, since - timedelta(milliseconds=1), cost="1"),
        _row(2, since, cost="2"),
        _row(3, until - timedelta(milliseconds=1), cost="4"),
        _row(4, until, cost="8"),
    ])
    assert cost_report(ledger, since, until).total.spend == Decimal(6)


def test_grouping_failures_count_as_spend_and_savings_can_be_negative(ledger):
    t = NOW - timedelta(hours=2)
    ledger.record([
        _row(1, t, tier="simple", status="error", cost="0.001", request="a"),  # billed tokens of a dropped stream
        _row(2, t, tier="medium", cost="0.002", baseline="0.010", request="a", attempt=2),
        _row(3, t, tier="complex", model="m-big", cost="0.010", baseline="0.010", request="b"),
    ])
    report = cost_report(ledger, NOW - timedelta(days=1), NOW, ["tier"])
    by_tier = {r.key["tier"]: r for r in report.rows}
    assert by_tier["simple"].savings == Decimal("-0.001") and by_tier["simple"].error_rate == 1.0
    assert by_tier["medium"].savings == Decimal("0.008")
    assert by_tier["complex"].savings == 0
    assert report.total.spend == Decimal("0.013") and report.total.savings == Decimal("0.007")
    assert report.total.requests == 2
    assert [r.key["tier"] for r in report.rows] == ["complex", "medium", "simple"]  # by spend, largest first


def test_several_keys_and_user_team(ledger):
    t = NOW - timedelta(hours=1)
    ledger.record([
        _row(1, t, user="ada", team="r&d", cost="1"), _row(2, t, user="ada", team="r&d", cost="2"),
        _row(3, t, user="bob", team="ops", cost="4"), _row(4, t, user=None, cost="8"),
    ])
    report = cost_report(ledger, NOW - timedelta(days=1), NOW, ["team", "user"])
    assert {(r.key["team"], r.key["user"]): r.spend for r in report.rows} == {
        ("r&d", "ada"): Decimal(3), ("ops", "bob"): Decimal(4), (None, None): Decimal(8),
    }


def test_day_groups_follow_the_zone(ledger, monkeypatch):
    ledger.record([_row(1, datetime(2026, 11, 24, 23, 30, tzinfo=timezone.utc), cost="1")])
    since = NOW - timedelta(days=3)
    assert [r.key["day"] for r in cost_report(ledger, since, NOW, ["day"], utc=True).rows] == ["2026-11-24"]
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    import time

    time.tzset()
    try:
        assert [r.key["day"] for r in cost_report(ledger, since, NOW, ["day"]).rows] == ["2026-11-25"]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_latency_percentiles_are_nearest_rank_over_answered_calls(ledger):
    t = NOW - timedelta(hours=1)
    ledger.record([_row(i, t, duration=float(i)) for i in range(1, 101)] + [_row(500, t, status="error", duration=99999.0)])
    total = cost_report(ledger, NOW - timedelta(days=1), NOW).total
    assert (total.latency_p50_ms, total.latency_p95_ms) == (50.5, 95.5)  # 1 ms buckets, middle reported


def test_latency_percentiles_stay_within_a_few_percent_at_any_scale(ledger):
    t = NOW - timedelta(hours=1)
    durations = [37.0 * 1.1**i for i in range(80)]  # 37 ms .. 75 s
    ledger.record([_row(i, t, duration=d) for i, d in enumerate(durations)])
    total = cost_report(ledger, NOW - timedelta(days=1), NOW).total
    exact_p50, exact_p95 = sorted(durations)[39], sorted(durations)[75]
    assert abs(total.latency_p50_ms - exact_p50) / exact_p50 <= 0.025
    assert abs(total.latency_p95_ms - exact_p95) / exact_p95 <= 0.025


@pytest.mark.parametrize("text,expected", [
    ("7d", NOW - timedelta(days=7)), ("24h", NOW - timedelta(hours=24)), ("30m", NOW - timedelta(minutes=30)),
    ("2w", NOW - timedelta(weeks=2)), ("2026-11-01", datetime(2026, 11, 1, tzinfo=timezone.utc)),
    ("2026-11-01T09:30", datetime(2026, 11, 1, 9, 30, tzinfo=timezone.utc)),
    ("2026-11-01T09:30:00+02:00", datetime(2026, 11, 1, 7, 30, tzinfo=timezone.utc)),
])
def test_parse_when(text, expected):
    assert parse_when(text, now=NOW, utc=True) == expected


def test_parse_errors_list_what_is_accepted():
    with pytest.raises(UsageError, match="7d, 24h, 30m"):
        parse_when("last tuesday")
    with pytest.raises(UsageError, match="valid keys: tier, routed_tier, model"):
        parse_by("tier,colour")
    with pytest.raises(UsageError, match="is not after --since"):
        cost_report(None, NOW, NOW - timedelta(days=1))


def _seed(db_path):
    now = datetime.now(timezone.utc)
    with open_ledger(db_path) as ledger:
        ledger.record([
            _row(1, now - timedelta(hours=1), tier="simple", cost="0.000012", baseline="0.000300"),
            _row(2, now - timedelta(hours=2), tier="complex", model="m-big", cost="0.000300", baseline="0.000300"),
        ])


def test_cli_json_and_csv_shapes(mmr, db_path):
    _seed(db_path)
    out = json.loads(mmr("costs", "--json", "--by", "tier", config=False).stdout)
    assert set(out) >= {"rows", "total", "since", "until", "by", "baseline"}
    assert out["total"]["spend_usd"] == "0.000312" and out["total"]["savings_usd"] == "0.000288"
    assert {r["tier"] for r in out["rows"]} == {"simple", "complex"}
    rows = list(csv.DictReader(io.StringIO(mmr("costs", "--csv", "--by", "tier", config=False).stdout.decode())))
    assert [r["tier"] for r in rows] == ["complex", "simple"]  # rows of one kind: no TOTAL row
    assert sum(Decimal(r["spend_usd"]) for r in rows) == Decimal("0.000312")
    (whole,) = csv.DictReader(io.StringIO(mmr("costs", "--csv", config=False).stdout.decode()))
    assert whole["spend_usd"] == "0.000312" and whole["calls"] == "2"


def test_cli_table_and_footer(mmr, db_path):
    _seed(db_path)
    result = mmr("costs", "--by", "tier", config=False)
    text = result.stdout.decode()
    assert result.returncode == 0
    assert "TOTAL" in text and "$0.000312" in text and "Baseline: the premium tier" in text


@pytest.mark.sqlite_only  # a PostgreSQL ledger is never "not there yet"
def test_cli_empty_ledger_and_empty_window(mmr, db_path):
    result = mmr("costs", config=False)
    assert result.returncode == 0 and "nothing has been recorded" in result.stderr.decode()
    assert "no calls in this window" in result.stdout.decode()
    out = json.loads(mmr("costs", "--json", config=False).stdout)
    assert out["rows"] == [] and out["total"]["calls"] == 0 and out["total"]["spend_usd"] == "0"
    lines = mmr("costs", "--csv", "--by", "tier", config=False).stdout.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tier,calls,requests")
    _seed(db_path)
    result = mmr("costs", "--since", "2020-01-01", "--until", "2020-02-01", config=False)
    assert result.returncode == 0 and "no calls in this window" in result.stdout.decode()


def test_read_only_ledger_reports_but_never_writes(db_path):
    _seed(db_path)
    with open_ledger(db_path, readonly=True) as ledger:
        total = cost_report(ledger, NOW - timedelta(days=30), datetime.now(timezone.utc)).total
        assert total.calls == 2
        with pytest.raises(LedgerError, match="readonly|read-only"):
            ledger.record([_row(9, NOW)])


@pytest.mark.parametrize("args,message", [
    (["--since", "yesterday"], "--since: cannot read 'yesterday'"),
    (["--since", "1d", "--until", "2d"], "is not after --since"),
    (["--by", "colour"], "valid keys"),
    (["--since", "999999999d"], "cannot read"),
    (["--since", "0001-01-01"], "cannot read"),
])
def test_cli_bad_input(mmr, db_path, args, message):
    _seed(db_path)
    result = mmr("costs", *args, config=False)
    assert result.returncode == EXIT_USAGE
    assert message in result.stderr.decode() and result.stderr.decode().count("\n") == 1


def _requests(start_n, when, tiers, escalated_every=0, errors_every=0):
    rows = []
    for i, tier in enumerate(tiers):
        n = start_n + i
        row = _row(n, when, tier=tier, request=f"q{n}", status="error" if errors_every and i % errors_every == 0 else "ok")
        row["routed_tier"] = tier
        row["escalated"] = int(bool(escalated_every) and i % escalated_every == 0)
        rows.append(row)
    return rows


def test_drift_flags_a_shift_in_the_tier_mix_and_a_jump_in_escalations(ledger):
    from router_cli.reports.drift import drift

    since, until = NOW - timedelta(days=7), NOW
    before = _requests(0, since - timedelta(days=3), ["simple"] * 80 + ["complex"] * 20)
    after = _requests(1000, until - timedelta(days=1), ["simple"] * 55 + ["complex"] * 45, escalated_every=5)
    ledger.record(before + after)
    d = drift(ledger, since, until, threshold_points=10)
    assert d.previous_requests == 100 and d.current_requests == 100
    assert d.tier_mix == {"simple": (0.8, 0.55), "complex": (0.2, 0.45)}
    assert d.rates["escalation_rate"] == (0.0, 0.2)
    assert d.flags == [
        "tier simple: 80% -> 55% of requests (-25 points)",
        "tier complex: 20% -> 45% of requests (+25 points)",
        "escalation rate: 0.0% -> 20.0%",
    ]
    # 25-point shifts are under a 30-point threshold; the escalation rise (20 points >= 15) still counts.
    assert drift(ledger, since, until, threshold_points=30).flags == ["escalation rate: 0.0% -> 20.0%"]


def test_no_drift_flags_on_a_stable_mix_or_too_few_requests(ledger):
    from router_cli.reports.drift import drift

    since, until = NOW - timedelta(days=7), NOW
    ledger.record(_requests(0, since - timedelta(days=1), ["simple"] * 70 + ["medium"] * 30)
                  + _requests(1000, until - timedelta(days=1), ["simple"] * 66 + ["medium"] * 34))
    assert drift(ledger, since, until).flags == []
    assert drift(ledger, since, until, threshold_points=3).flags == ["tier simple: 70% -> 66% of requests (-4 points)",
                                                                      "tier medium: 30% -> 34% of requests (+4 points)"]
    ledger.record(_requests(5000, NOW - timedelta(days=40), ["complex"] * 5))
    assert drift(ledger, NOW - timedelta(days=38), NOW - timedelta(days=30)).flags == []  # 5 requests: too few


def test_escalation_and_cache_rates_per_group(ledger):
    t = NOW - timedelta(hours=1)
    rows = _requests(0, t, ["simple"] * 10, escalated_every=2)
    rows[0]["status"] = "cached"
    ledger.record(rows)
    total = cost_report(ledger, NOW - timedelta(days=1), NOW).total
    assert total.escalation_rate == 0.5 and total.cache_hit_rate == 0.1


def test_daily_spend_covers_every_day_of_the_window(ledger):
    ledger.record([_row(1, datetime(2026, 11, 23, 10, tzinfo=timezone.utc), cost="1.5"),
                   _row(2, datetime(2026, 11, 25, 10, tzinfo=timezone.utc), cost="0.25")])
    report = cost_report(ledger, datetime(2026, 11, 22, tzinfo=timezone.utc), NOW, utc=True)
    assert report.daily_spend == {"2026-11-22": 0, "2026-11-23": Decimal("1.5"), "2026-11-24": 0, "2026-11-25": Decimal("0.25")}


def test_weeks_are_iso_weeks(ledger):
    ledger.record([_row(1, datetime(2026, 11, 25, 10, tzinfo=timezone.utc), cost="1"),
                   _row(2, datetime(2026, 1, 1, 10, tzinfo=timezone.utc), cost="1")])
    report = cost_report(ledger, datetime(2025, 12, 1, tzinfo=timezone.utc), NOW, ["week"], utc=True)
    assert [r.key["week"] for r in report.rows] == ["2026-W01", "2026-W48"]


def test_cli_drift_section_chart_and_svg_plot(mmr, db_path, tmp_path):
    _seed(db_path)
    plot = tmp_path / "spend.svg"
    result = mmr("costs", "--since", "3d", "--plot", str(plot), config=False)
    text = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert "Daily spend" in text and "█" in text and "Drift against the previous window" in text
    svg = plot.read_text()
    assert svg.startswith("<svg") and svg.count("<rect") == 4  # one bar per day touched by a 3-day window
    out = json.loads(mmr("costs", "--json", config=False).stdout)
    assert set(out["drift"]) >= {"tier_mix", "rates", "flags", "previous_requests", "current_requests"}
    assert sum(Decimal(v) for v in out["daily_spend"].values()) == Decimal(out["total"]["spend_usd"])


@pytest.mark.parametrize("args,message", [
    (["--plot", "chart.png"], "--plot writes SVG"),
    (["--drift-points", "0"], "--drift-points must be above 0"),
])
def test_cli_bad_report_options(mmr, db_path, args, message):
    _seed(db_path)
    result = mmr("costs", *args, config=False)
    assert result.returncode == EXIT_USAGE and message in result.stderr.decode()


@pytest.mark.sqlite_only
def test_cli_not_a_database(mmr, db_path):
    db_path.write_bytes(b"not sqlite" * 500)
    result = mmr("costs", config=False)
    assert result.returncode == 7 and "not an SQLite database" in result.stderr.decode()


def test_drift_from_the_report_total_matches_a_fresh_count(ledger):
    from router_cli.reports.drift import drift

    since, until = NOW - timedelta(days=7), NOW
    ledger.record(_requests(0, since - timedelta(days=2), ["simple"] * 30 + ["medium"] * 10, errors_every=7)
                  + _requests(100, until - timedelta(hours=5), ["simple"] * 20 + ["complex"] * 25, escalated_every=3, errors_every=4))
    total = cost_report(ledger, since, until).total
    assert drift(ledger, since, until, current=total) == drift(ledger, since, until)


def test_days_where_dst_skips_midnight(ledger, monkeypatch):
    import time

    from router_cli.reports.when import days as _days

    monkeypatch.setenv("TZ", "America/Santiago")  # clocks go from 00:00 to 01:00 on 2026-09-06
    time.tzset()
    try:
        since = datetime(2026, 9, 4, 12, tzinfo=timezone.utc)
        until = datetime(2026, 9, 8, 12, tzinfo=timezone.utc)
        days = [d.isoformat() for _, _, d in _days(since, until, utc=False)]
        assert days == ["2026-09-04", "2026-09-05", "2026-09-06", "2026-09-07", "2026-09-08"]
        ledger.record([_row(1, datetime(2026, 9, 6, 12, tzinfo=timezone.utc), cost="1")])
        assert cost_report(ledger, since, until, ["day"]).total.spend == 1
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_windows_reaching_far_back_or_into_the_future(ledger):
    ledger.record([_row(1, datetime.now(timezone.utc) - timedelta(days=2), cost="2")])
    report = cost_report(ledger, datetime(1000, 1, 1, tzinfo=timezone.utc), datetime(9999, 12, 31, tzinfo=timezone.utc), utc=True)
    assert report.total.spend == 2 and report.until <= datetime.now(timezone.utc)
    assert len(report.daily_spend) <= 2  # only the days that hold calls, not 3,000 years of zeros


def test_cli_empty_and_filled_reports_have_the_same_shape(mmr, db_path):
    empty = json.loads(mmr("costs", "--json", config=False).stdout)
    _seed(db_path)
    filled = json.loads(mmr("costs", "--json", config=False).stdout)
    assert set(empty) == set(filled) and set(empty["drift"]) == set(filled["drift"])
    assert set(empty["total"]) == set(filled["total"]) and len(empty["daily_spend"]) == len(filled["daily_spend"])
