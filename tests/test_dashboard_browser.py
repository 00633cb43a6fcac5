"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright): the file
``mmr report --html`` writes, and ``GET /dashboard`` of a real ``mmr serve`` on port 0.

Skipped when Playwright or the browser is missing, unless MMR_REQUIRE_BROWSER=1 (set by .ci/run):
then they fail. Screenshots (1280x800, light and dark) go to $MMR_ARTIFACTS, else a temporary
directory; the path is printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from router_cli.pricing import format_usd
from tests.conftest import write_config
from tests.dashboard_ledger import HOSTILE_TEAM, HOSTILE_USER, ML_SPEND, SPEND, add_request, build
from tests.serve_fixture import start_serve

pytestmark = pytest.mark.timeout(180)

TEAM_KEY, ADMIN_KEY = "dash-team-key-0123456789", "dash-admin-key-0123456789"
CONFIG = f"""
budgets:
  - {{scope: team, period: day, limit: 0.05}}
  - {{scope: global, period: month, limit: 1}}
serve:
  keys:
    - {{sha256: {hashlib.sha256(TEAM_KEY.encode()).hexdigest()}, user: ana, team: ml}}
    - {{sha256: {hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}}}
"""
# Series per chart: spend = 3 answering tiers + the baseline; routed = 1 (all routed to simple);
# models = 3; escalation = 1; latency = p50 and p95; budgets = 1 (share used).
SERIES = {"spend": 4, "routed": 1, "models": 3, "escalation": 1, "latency": 2, "budgets": 1}


def _missing(what: str) -> None:
    if os.environ.get("MMR_REQUIRE_BROWSER") == "1":
        pytest.fail(f"MMR_REQUIRE_BROWSER=1 but {what}")
    pytest.skip(what)


def _chromium() -> str | None:
    """$MMR_CHROMIUM, else chromium on PATH."""
    named = os.environ.get("MMR_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed (pip install -e '.[dashboard-test]')")
    path = _chromium()
    if path is None:
        _missing("no chromium ($MMR_CHROMIUM or on PATH; apt-get install chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=path)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    where = Path(os.environ["MMR_ARTIFACTS"]) if os.environ.get("MMR_ARTIFACTS") else tmp_path_factory.mktemp("dashboard")
    where.mkdir(parents=True, exist_ok=True)
    print(f"dashboard screenshots: {where}")
    return where


class Watched:
    """A page with every console error, uncaught exception and dialog it raises."""

    def __init__(self, context):
        self.page = context.new_page()
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def figure(self, name: str) -> tuple[str, str]:
        cell = self.page.locator(f'[data-figure="{name}"]')
        return cell.get_attribute("data-value"), cell.inner_text()


def _window() -> list[str]:
    now = datetime.now(timezone.utc)
    return ["--since", (now - timedelta(days=2)).isoformat(timespec="seconds"),
            "--until", (now + timedelta(minutes=1)).isoformat(timespec="seconds")]


def _check_charts(page) -> None:
    for chart, series in SERIES.items():
        svg = page.locator(f'svg[data-chart="{chart}"]')
        assert svg.count() == 1, chart
        assert svg.locator("g.series").count() == series == int(svg.get_attribute("data-series")), chart
        box = svg.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 20, chart  # drawn, not collapsed
        assert svg.locator("rect").count() >= 1 and svg.locator("rect > title").count() == svg.locator("rect").count()


@pytest.fixture
def page_file(mmr, tmp_path, server, db_path):
    build(db_path, datetime.now(timezone.utc) - timedelta(minutes=2))
    config = write_config(tmp_path / "dash.yaml", server.url, extra=CONFIG)
    span = _window()
    out = tmp_path / "dashboard.html"
    result = mmr("report", "--html", str(out), "--config", str(config), *span)
    assert result.returncode == 0, result.stderr
    costs = json.loads(mmr("costs", "--json", "--config", str(config), *span).stdout)
    return out, costs


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_file_opens_offline_with_every_chart_and_the_costs_figures(browser, page_file, artifacts, scheme):
    out, costs = page_file
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme=scheme, offline=True)
    watched = Watched(context)
    page = watched.page
    page.goto(out.as_uri())
    _check_charts(page)
    total = costs["total"]
    for name in ("spend_usd", "baseline_usd", "savings_usd", "discarded_usd", "judging_usd"):
        assert watched.figure(name) == (total[name], format_usd(Decimal(total[name]))), name
    assert watched.figure("requests") == (str(total["requests"]), f"{total['requests']:,}")
    assert watched.figure("savings_pct") == ("37.5", "37.5%") and total["spend_usd"] == SPEND
    for day, spend in costs["daily_spend"].items():
        assert page.locator(f'td[data-day="{day}"]').get_attribute("data-value") == spend
    # Hovering a bar shows its figures (the SVG title the browser shows as a tooltip).
    bar = page.locator('svg[data-chart="spend"] g[data-series="complex"] rect').first
    bar.hover()
    assert bar.locator("title").text_content().endswith("· complex: $0.030000")
    # Hostile names are text: shown as typed, nothing run.
    assert HOSTILE_USER in page.locator("table.costliest td.who").all_text_contents()
    assert page.get_by_text(HOSTILE_TEAM, exact=True).count() >= 2  # in the costliest requests and the budgets
    assert page.evaluate("document.scripts.length") == 0
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == {"light": "rgb(255, 255, 255)", "dark": "rgb(20, 23, 28)"}[scheme]
    page.screenshot(path=str(artifacts / f"dashboard-file-{scheme}.png"))
    assert watched.problems == [] and watched.dialogs == []
    context.close()


def test_the_live_page_refreshes_in_place_and_a_team_key_sees_its_team(browser, server, tmp_path, db_path, artifacts):
    build(db_path, datetime.now(timezone.utc) - timedelta(minutes=2))
    config = write_config(tmp_path / "live.yaml", server.url, extra=CONFIG)
    served = start_serve(config, db_path)
    try:
        status, headers, _ = served.raw("GET", "/dashboard")
        assert status == 401 and headers["www-authenticate"].startswith("Basic")
        assert served.raw("GET", "/dashboard/data", headers={"authorization": "Bearer wrong-key"})[0] == 401

        # A browser answers the Basic challenge with the key as the password.
        team = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="dark",
                                   http_credentials={"username": "ana", "password": TEAM_KEY})
        watched = Watched(team)
        page = watched.page
        assert page.goto(served.url + "/dashboard?since=2d&every=1").status == 200
        _check_charts(page)
        assert watched.figure("spend_usd")[0] == ML_SPEND
        assert page.get_by_text(HOSTILE_USER).count() == 0 and "evil.example" not in page.content()
        assert "global monthly budget" not in page.content()
        page.evaluate("window.stayed = true")
        add_request(db_path, "R4", "0.01")
        from playwright.sync_api import expect

        # The page's policy forbids eval, so the wait polls from here.
        expect(page.locator('[data-figure="spend_usd"]')).to_have_attribute("data-value", "0.0435", timeout=20000)
        assert page.evaluate("window.stayed") is True  # the sections changed, the page was not reloaded
        _check_charts(page)
        page.screenshot(path=str(artifacts / "dashboard-live-dark.png"))
        assert watched.problems == [] and watched.dialogs == []
        team.close()

        everyone = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="light",
                                       extra_http_headers={"authorization": f"Bearer {ADMIN_KEY}"})
        watched = Watched(everyone)
        page = watched.page
        assert page.goto(served.url + "/dashboard?since=2d&every=1").status == 200
        assert watched.figure("spend_usd")[0] == "0.0475"  # everyone's: 0.0375 + R4
        assert page.evaluate("document.scripts.length") == 1  # only the refresher
        add_request(db_path, "R5", "0.001", user=HOSTILE_USER, team=HOSTILE_TEAM)
        expect(page.locator('[data-figure="spend_usd"]')).to_have_attribute("data-value", "0.0485", timeout=20000)
        # Swapped in by the script, the hostile names are still text.
        assert HOSTILE_USER in page.locator("table.costliest td.who").all_text_contents()
        assert page.evaluate("document.scripts.length") == 1
        page.screenshot(path=str(artifacts / "dashboard-live-light.png"))
        assert watched.problems == [] and watched.dialogs == []
        everyone.close()
    finally:
        served.stop()
