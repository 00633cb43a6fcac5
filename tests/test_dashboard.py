"""``mmr report --html``: the dashboard page's figures, its escaping, its errors and its start-up
(the page itself in a real browser: tests/test_dashboard_browser.py)."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from router_cli.errors import EXIT_USAGE
from tests.conftest import write_config
from tests.dashboard_ledger import BASELINE, HOSTILE_TEAM, HOSTILE_USER, ML_SPEND, SAVINGS, SPEND, build

BUDGETS = "budgets:\n  - {scope: team, period: day, limit: 0.05}\n  - {scope: global, period: month, limit: 1}\n"


def window() -> list[str]:
    now = datetime.now(timezone.utc)
    return ["--since", (now - timedelta(days=2)).isoformat(timespec="seconds"),
            "--until", (now + timedelta(minutes=1)).isoformat(timespec="seconds")]


def figures(page: str) -> dict[str, str]:
    return dict(re.findall(r'data-figure="(\w+)" data-value="([^"]*)"', page))


@pytest.fixture
def ledger(db_path):
    build(db_path, datetime.now(timezone.utc) - timedelta(minutes=2))
    return db_path


@pytest.fixture
def budget_config(tmp_path, server):
    return write_config(tmp_path / "budgets.yaml", server.url, extra=BUDGETS)


def report(mmr, tmp_path, *args: str, name: str = "d.html") -> str:
    out = tmp_path / name
    result = mmr("report", "--html", str(out), *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"" and f"wrote {out}" in result.stderr.decode()
    return out.read_text(encoding="utf-8")


def test_the_page_shows_the_figures_mmr_costs_prints(mmr, ledger, tmp_path):
    span = window()
    page = report(mmr, tmp_path, *span)
    costs = json.loads(mmr("costs", "--json", *span).stdout)
    shown = figures(page)
    for key in ("spend_usd", "baseline_usd", "savings_usd", "requests", "calls", "escalation_rate", "error_rate",
                "discarded_usd", "judging_usd", "discarded_share", "judging_share", "savings_pct"):
        assert shown[key] == str(costs["total"][key]), key
    # ...which are the hand-computed ones.
    assert (shown["spend_usd"], shown["baseline_usd"], shown["savings_usd"]) == (SPEND, BASELINE, SAVINGS)
    assert (shown["requests"], shown["calls"], shown["savings_pct"]) == ("3", "6", "37.5")
    days = dict(re.findall(r'data-day="([\d-]+)" data-value="([^"]*)"', page))
    assert days == costs["daily_spend"]
    assert '<div class="v" data-figure="spend_usd" data-value="0.0375">$0.037500</div>' in page


def test_every_ledger_value_is_escaped_and_the_file_runs_no_script(mmr, ledger, tmp_path):
    page = report(mmr, tmp_path, *window())
    assert HOSTILE_USER not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert HOSTILE_TEAM not in page and HOSTILE_TEAM in html.unescape(page)
    assert "<script" not in page.lower()  # the static page has no script at all
    # Offline: nothing to fetch, and the page's policy forbids fetching anything.
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "default-src 'none'" in page


def test_a_team_sees_its_own_rows_as_costs_by_team_counts_them(mmr, ledger, tmp_path):
    span = window()
    page = report(mmr, tmp_path, *span, "--team", "ml")
    costs = json.loads(mmr("costs", "--json", "--by", "team", *span).stdout)
    ml = next(r for r in costs["rows"] if r["team"] == "ml")
    shown = figures(page)
    assert shown["spend_usd"] == ml["spend_usd"] == ML_SPEND
    assert (shown["requests"], shown["calls"]) == (str(ml["requests"]), str(ml["calls"])) == ("2", "4")
    assert html.escape(HOSTILE_USER) not in page and "evil.example" not in page


def test_budgets_misrouting_and_costliest_requests(mmr, ledger, tmp_path, budget_config):
    page = report(mmr, tmp_path, *window(), "--config", str(budget_config))
    # Team budgets per team, and the global one: spend against the limit.
    assert re.search(r'<th scope="row">team daily budget</th><td class="who">ml</td><td>[^<]*</td><td data-value="0.0335">', page)
    assert re.search(r'<th scope="row">global monthly budget</th><td class="who">everyone</td><td>[^<]*</td><td data-value="0.0375">', page)
    # The feedback matrix: simple's answer should have been medium's.
    assert "should be medium" in page and '<td class="hot">1</td>' in page
    # Costliest first, with the explain hint.
    order = re.findall(r"<code>mmr explain (R\d)</code>", page)
    assert order == ["R3", "R2", "R1"]
    assert '<td data-value="0.0325">$0.032500</td>' in page  # R3: 0.002 + 0.0005 + 0.030


def test_a_team_view_shows_only_that_teams_budgets(mmr, ledger, tmp_path, budget_config):
    page = report(mmr, tmp_path, *window(), "--team", "ml", "--config", str(budget_config))
    assert "global monthly budget" not in page and 'data-value="0.0335"' in page


def test_weeks_and_an_empty_ledger(mmr, tmp_path, db_path):
    page = report(mmr, tmp_path, "--by", "week")
    assert figures(page)["spend_usd"] == "0" and "by week" in page
    assert not db_path.exists()  # reading never creates a ledger


@pytest.mark.parametrize("args, message", [
    ([], "mmr report needs --html FILE"),
    (["--html", "out.txt"], "ending in .html"),
    (["--html", "d.html", "--by", "model"], "day or week"),
    (["--html", "d.html", "--since", "soon"], "--since: cannot read"),
])
def test_usage_errors_are_one_line(mmr, args, message):
    result = mmr("report", *args)
    assert result.returncode == EXIT_USAGE
    err = result.stderr.decode()
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_html_to_stdout(mmr, ledger):
    result = mmr("report", "--html", "-", *window())
    assert result.returncode == 0 and result.stdout.startswith(b"<!DOCTYPE html>")


def test_only_rendering_a_page_imports_jinja2(config_path, tmp_path):
    code = (
        "import sys, io, contextlib\n"
        "from router_cli.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "    assert main(['--help']) == 0\n"
        "    assert main(['report', '--help']) == 0\n"
        f"    assert main(['costs', '--config', {str(config_path)!r}, '--db', {str(tmp_path / 'x.db')!r}]) == 0\n"
        "    assert main(['report']) != 0\n"
        "print('jinja2' in sys.modules, 'markupsafe' in sys.modules)\n"
        f"main(['report', '--html', {str(tmp_path / 'x.html')!r}, '--config', {str(config_path)!r}, '--db', {str(tmp_path / 'x.db')!r}])\n"
        "print('jinja2' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split("\n")[:2] == ["False False", "True"], result.stderr


def test_both_stores_give_the_same_page_figures_as_costs(mmr, ledger_url, tmp_path, budget_config):
    build(ledger_url, datetime.now(timezone.utc) - timedelta(minutes=2))
    span = window()
    for team in (None, "ml"):
        extra = ["--team", team] if team else []
        page = report(mmr, tmp_path, "--db", str(ledger_url), "--config", str(budget_config), *span, *extra)
        shown = figures(page)
        costs = json.loads(mmr("costs", "--json", "--db", str(ledger_url), "--by", "team", *span).stdout)
        expected = next(r for r in costs["rows"] if r["team"] == team) if team else costs["total"]
        for key in ("spend_usd", "baseline_usd", "requests", "calls", "escalation_rate", "error_rate"):
            assert shown[key] == str(expected[key]), (team, key)
        assert shown["spend_usd"] == (ML_SPEND if team else SPEND)
        assert re.findall(r"<code>mmr explain (R\d)</code>", page) == (["R3", "R1"] if team else ["R3", "R2", "R1"])
        assert ("should be medium" in page) and '<td class="hot">1</td>' in page


def test_the_live_data_reads_either_store_through_the_keys(server, tmp_path, ledger_url):
    import base64
    import hashlib

    from tests.serve_fixture import start_serve

    build(ledger_url, datetime.now(timezone.utc) - timedelta(minutes=2))
    team_key, user_key = "dash-team-key-0123456789", "dash-user-key-0123456789"
    keys = (f"serve:\n  keys:\n    - {{sha256: {hashlib.sha256(team_key.encode()).hexdigest()}, team: ml}}\n"
            f"    - {{sha256: {hashlib.sha256(user_key.encode()).hexdigest()}, user: alice}}\n")
    served = start_serve(write_config(tmp_path / "live.yaml", server.url, extra=keys), ledger_url)
    try:
        def shown(key: str, query: str = "") -> dict[str, str]:
            basic = base64.b64encode(f"anyone:{key}".encode()).decode()
            status, headers, body = served.raw("GET", "/dashboard/data?since=2d" + query, headers={"authorization": f"Basic {basic}"})
            assert status == 200 and headers["content-type"] == "application/json", body
            return figures("".join(json.loads(body)["sections"].values()))

        assert shown(team_key)["spend_usd"] == ML_SPEND
        assert shown(team_key, "&team=other")["spend_usd"] == ML_SPEND  # a key's scope is never widened or swapped
        assert shown(user_key)["spend_usd"] == "0.001"  # alice's R1 only
        assert served.raw("GET", "/dashboard/data?by=month", headers={"x-api-key": team_key})[0] == 400
        assert served.raw("GET", "/dashboard/data")[0] == 401
    finally:
        served.stop()


SCOPED_BUDGETS = ("budgets:\n  - {scope: team, period: day, limit: 0.05}\n  - {scope: user, period: day, limit: 0.05}\n"
                  "  - {scope: global, period: month, limit: 1}\n")
_BUDGET_ROW = r'<th scope="row">(\w+ (?:daily|monthly) budget)</th><td class="who">([^<]*)</td>'


def test_a_scoped_key_sees_only_its_own_budgets_and_requests_whatever_the_query(server, tmp_path, ledger_url):
    """A key's own user/team decides which budgets, breakers and costly requests show; the query only narrows."""
    import hashlib

    from router_cli.ledger import open_ledger
    from tests.dashboard_ledger import _call
    from tests.serve_fixture import start_serve

    when = datetime.now(timezone.utc) - timedelta(minutes=2)
    build(ledger_url, when)
    with open_ledger(ledger_url) as store:  # team finance's carol, under a request id that bob's R3 also has
        store.record({"calls": [_call("R3", 0, when, "simple", "ok", "0.5", user="carol", team="finance")]})
        store.update_breaker("anthropic", "claude-simple", lambda _: {
            "state": "open", "failures": 3, "opened_at": when.timestamp(), "last_error": "HTTP 500"})
    keys = {"team": "dash-team-key-0123456789", "user": "dash-user-key-0123456789", "all": "dash-all-key-0123456789"}
    bound = {"team": ", team: ml", "user": ", user: alice", "all": ""}
    entries = "".join(f"    - {{sha256: {hashlib.sha256(k.encode()).hexdigest()}{bound[n]}}}\n" for n, k in keys.items())
    served = start_serve(write_config(tmp_path / "scoped.yaml", server.url, extra=SCOPED_BUDGETS + f"serve:\n  keys:\n{entries}"),
                         ledger_url)
    try:
        def seen(key: str, query: str = "") -> tuple[str, str]:
            """(the live data's sections, the page), both as a browser would get them."""
            out = []
            for path in ("/dashboard/data?since=2d", "/dashboard?since=2d"):
                status, _, body = served.raw("GET", path + query, headers={"x-api-key": keys[key]})
                assert status == 200, body
                out.append(body.decode())
            return "".join(json.loads(out[0])["sections"].values()), out[1]

        def budgets(text: str) -> set[tuple[str, str]]:
            return set(re.findall(_BUDGET_ROW, text))

        ml, alice = ("team daily budget", "ml"), ("user daily budget", "alice")
        everyone = seen("all")[0]
        assert budgets(everyone) >= {ml, alice, ("team daily budget", "finance"), ("user daily budget", "bob"),
                                     ("user daily budget", "carol"), ("global monthly budget", "everyone")}
        assert "claude-simple</th><td>open" in everyone and "carol" in everyone  # an unscoped key sees all
        assert budgets(seen("all", "&team=finance")[0]) == {("team daily budget", "finance")}
        assert budgets(seen("all", "&team=ml&user=bob")[0]) == {ml, ("user daily budget", "bob")}
        for key, query, expected, requests in [
            ("team", "", {ml}, ["R3", "R1"]),
            ("team", "&user=bob", {ml}, ["R3"]),  # narrowed to bob's calls, but never bob's own budget
            ("team", "&team=finance", {ml}, ["R3", "R1"]),
            ("user", "", {alice}, ["R1"]),
            ("user", "&team=finance", {alice}, []),  # alice has no finance calls; finance's budget stays hidden
            ("user", "&user=bob", {alice}, ["R1"]),
        ]:
            for text in seen(key, query):
                assert budgets(text) == expected, (key, query)
                assert re.findall(r"<code>mmr explain (R\d)</code>", text) == requests, (key, query)
                # No other team's user, no breaker (shared by everyone), no foreign cost summed into R3.
                assert "carol" not in text and "0.5325" not in text and "claude-simple</th><td>open" not in text
                assert "No breaker has recorded a failure." in text
        team_view = seen("team")[0]
        assert '<td data-value="0.0325">$0.032500</td>' in team_view  # R3: bob's three calls only
        assert "bob" in team_view and html.escape(HOSTILE_USER) not in team_view
    finally:
        served.stop()


def test_escalation_gates_and_latency_per_model(mmr, ledger, tmp_path):
    page = report(mmr, tmp_path, *window())
    # All three requests were routed to simple; R2 and R3 were answered higher.
    assert '<th scope="row">simple</th><td>3</td><td>2</td><td>66.7%</td>' in page
    # The cascade (R3): simple's answer failed the gate, complex's passed; ask answers are not gated.
    assert '<th scope="row">simple</th><td>1</td><td>1</td><td>0.0%</td>' in page
    assert '<th scope="row">complex</th><td>1</td><td>0</td><td>100.0%</td>' in page
    assert '<th scope="row">medium</th><td>1</td><td>0</td>' not in page
    # Per model: calls, errors, error rate, p50, p95 (bucket middles: 900 ms sits in [900, 905)).
    assert '<th scope="row">claude-complex</th><td>1</td><td>0</td><td>0.0%</td><td>902 ms</td><td>902 ms</td>' in page
    assert '<th scope="row">claude-simple</th><td>3</td><td>1</td><td>33.3%</td>' in page


def test_the_drift_flags_of_mmr_costs_are_on_the_page(mmr, db_path, tmp_path):
    from router_cli.ledger import open_ledger
    from tests.dashboard_ledger import _call

    now = datetime.now(timezone.utc)
    calls = []
    for i in range(25):  # the day before: all simple; today: all complex (each window has >= 20 requests)
        calls.append({**_call(f"P{i}", 1, now - timedelta(hours=30), "simple", "ok", "0.001", user="u", team="t"), "routed_tier": "simple"})
        calls.append({**_call(f"N{i}", 1, now - timedelta(hours=2), "complex", "ok", "0.01", user="u", team="t"), "routed_tier": "complex"})
    with open_ledger(db_path) as ledger:
        ledger.record({"calls": calls})
    span = ["--since", (now - timedelta(hours=24)).isoformat(timespec="seconds"), "--until", now.isoformat(timespec="seconds")]
    flags = json.loads(mmr("costs", "--json", *span).stdout)["drift"]["flags"]
    assert sorted(flags) == ["tier complex: 0% -> 100% of requests (+100 points)", "tier simple: 100% -> 0% of requests (-100 points)"]
    page = report(mmr, tmp_path, *span)
    assert re.findall(r'<li class="flag">([^<]*)</li>', page) == [html.escape(f) for f in flags]
