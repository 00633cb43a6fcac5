"""A team's PostgreSQL ledger from the command line: push a local ledger, keep paid calls through an outage."""

from __future__ import annotations

import json
import time

from router_cli.errors import EXIT_LEDGER
from router_cli.ledger import open_ledger
from tests.conftest import ledger_rows
from tests.provider_server import reply

KEYS = ("id", "request_id", "user", "team", "cost_usd", "cost_nanousd", "datetime_utc", "status", "model")


def _calls(db) -> list[tuple]:
    return sorted(tuple(r[k] for k in KEYS) for r in ledger_rows(db))


def test_push_merges_a_local_ledger_once_keeping_ids_users_teams_and_costs(mmr, server, tmp_path, pg_url):
    local = tmp_path / "mine.db"
    assert mmr("ask", "--db", str(local), "--tier", "simple", "hello", env={"MMR_USER": "ann", "MMR_TEAM": "ml"}).returncode == 0
    assert mmr("ask", "--db", str(local), "--tier", "complex", "more", env={"MMR_USER": "bo"}).returncode == 0
    feedback_target = ledger_rows(local)[0]["id"]
    assert mmr("feedback", "--db", str(local), feedback_target, "bad").returncode == 0
    first = mmr("ledger", "push", str(local), "--db", pg_url, config=False)
    assert first.returncode == 0, first.stderr
    assert "added 2 of 2 calls" in first.stderr.decode()
    again = mmr("ledger", "push", str(local), "--db", pg_url, config=False)
    assert again.returncode == 0 and "added 0 of 2 calls" in again.stderr.decode()
    assert _calls(pg_url) == _calls(local)
    assert {(r["user"], r["team"]) for r in ledger_rows(pg_url)} == {("ann", "ml"), ("bo", None)}
    with open_ledger(pg_url) as ledger:
        assert ledger.read("SELECT count(*) FROM feedback").fetchone()[0] == 1


def test_push_needs_a_postgresql_ledger(mmr, tmp_path):
    open_ledger(tmp_path / "x.db").close()
    result = mmr("ledger", "push", str(tmp_path / "x.db"), config=False)
    assert result.returncode == 2 and "PostgreSQL" in result.stderr.decode()


def test_calls_paid_while_the_server_was_down_land_exactly_once_after_sync(mmr, server, tmp_path):
    """The server dies mid-batch (immediately, like a crash), comes back; the outbox fills the gap."""
    from tests.pg_server import PgServer, find_bin

    pg = PgServer(find_bin()).start()
    try:
        url = pg.create_database()
        server.always("claude-small", reply("ok", input_tokens=3, output_tokens=5, delay=0.3))
        rows = "".join(json.dumps({"id": i, "prompt": f"q{i}"}) + "\n" for i in range(12))
        import subprocess
        import sys

        from tests.conftest import ROOT

        (tmp_path / "rows.jsonl").write_text(rows)
        argv = [sys.executable, "-m", "router_cli", "ask", "--batch", str(tmp_path / "rows.jsonl"), "--concurrency", "3",
                "--tier", "simple",
                "--db", url, "--config", str(tmp_path / "tiers.test.yaml")]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        deadline = time.time() + 30
        while len(server.calls()) < 4 and time.time() < deadline:
            time.sleep(0.05)
        pg.stop("immediate")  # calls in flight are paid for; their rows cannot reach the server
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == EXIT_LEDGER, err.decode()
        assert "mmr ledger sync" in err.decode() and "password" not in err.decode()
        pg.start()
        synced = mmr("ledger", "sync", "--db", url, config=False)
        assert synced.returncode == 0, synced.stderr
        assert "sent" in synced.stderr.decode()
        paid = len(server.calls("claude-small"))
        stored = ledger_rows(url)
        assert len(stored) == paid and len({r["id"] for r in stored}) == paid, err.decode() + out.decode()
        answered = {json.loads(line)["request_id"] for line in out.decode().splitlines() if "error" not in json.loads(line)}
        assert answered <= {r["request_id"] for r in stored}
        again = mmr("ledger", "sync", "--db", url, config=False)
        assert again.returncode == 0 and len(ledger_rows(url)) == paid
    finally:
        pg.remove()


def test_ledger_url_in_the_config_is_the_ledger_when_no_db_is_given(mmr, server, tmp_path, pg_url):
    from tests.conftest import write_config

    config = write_config(tmp_path / "team.yaml", server.url, extra=f"ledger: {{url: '{pg_url}'}}\n")
    asked = mmr("ask", "--config", str(config), "--tier", "simple", "hello", db=False)
    assert asked.returncode == 0, asked.stderr
    assert len(ledger_rows(pg_url)) == 1 and not (tmp_path / "data" / "mmr" / "ledger.db").exists()
    costs = mmr("costs", "--config", str(config), "--json", db=False)
    assert costs.returncode == 0 and json.loads(costs.stdout)["total"]["calls"] == 1


def test_ledger_url_must_be_a_postgresql_url_and_is_shown_without_its_password(mmr, server, tmp_path):
    from router_cli.errors import EXIT_CONFIG
    from tests.conftest import write_config

    config = write_config(tmp_path / "bad.yaml", server.url, extra="ledger: {url: 'mysql://me:pw123@h/db'}\n")
    result = mmr("ask", "--config", str(config), "hello", db=False)
    err = result.stderr.decode()
    assert result.returncode == EXIT_CONFIG and "ledger.url" in err and "pw123" not in err


def test_a_sync_keeps_a_row_another_process_adds_to_the_outbox_meanwhile(pg_url, monkeypatch):
    from router_cli.ledger import outbox

    def call(n: int) -> dict:
        return {"calls": [{"id": f"c{n}", "request_id": f"r{n}", "attempt": 1, "datetime_utc": "2026-01-01T00:00:00.000Z",
                           "cost_nanousd": n}]}

    outbox.save(pg_url, call(1))
    real_push = outbox.push

    def push_then_another_process_saves(source, target):
        pushed = real_push(source, target)
        outbox.save(pg_url, call(2))  # after c1 was read and sent, before the outbox forgets c1
        return pushed

    monkeypatch.setattr(outbox, "push", push_then_another_process_saves)
    with open_ledger(pg_url) as ledger:  # opening sends the outbox
        assert [r["id"] for r in ledger.rows()] == ["c1"]
    monkeypatch.setattr(outbox, "push", real_push)
    with open_ledger(pg_url) as ledger:
        assert [r["id"] for r in ledger.rows()] == ["c1", "c2"]
    assert not outbox.waiting(pg_url)


def _machine(tmp_path, name: str, user: str) -> dict:
    home = tmp_path / name
    return {"HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config"),
            "MMR_USER": user}


def test_two_machines_share_breakers_and_the_global_cache(mmr, server, tmp_path, pg_url):
    from tests.conftest import write_config
    from tests.provider_server import error

    config = write_config(tmp_path / "team.yaml", server.url,
                          extra="breaker: {failures: 2, window: 60, cooldown: 30}\ncache: {enabled: true, scope: global}\n")
    laptop, runner = _machine(tmp_path, "laptop", "ann"), _machine(tmp_path, "ci", "bo")
    server.always("claude-small", error(500))
    for prompt in ("one", "two"):  # two failures on the laptop open claude-small's circuit
        assert mmr("ask", "--config", str(config), "--db", pg_url, "--tier", "simple", prompt, env=laptop).returncode == 0
    failed = len(server.calls("claude-small"))
    other = mmr("ask", "--config", str(config), "--db", pg_url, "--tier", "simple", "--json", "three", env=runner)
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["model"] == "gpt-small" and len(server.calls("claude-small")) == failed
    asked = len(server.calls())
    again = mmr("ask", "--config", str(config), "--db", pg_url, "--tier", "simple", "--json", "one", env=runner)
    assert json.loads(again.stdout)["cached"] is True and len(server.calls()) == asked  # the laptop's answer
