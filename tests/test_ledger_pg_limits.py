"""The PostgreSQL ledger's edges: no driver, errors that are not outages, a bounded pool of connections,
lock waits, read-only reports, honest push counts, and the commands that find ledger.url in the config."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import pytest

from router_cli.errors import EXIT_LEDGER, LedgerError
from router_cli.ledger import open_ledger, outbox
from tests.conftest import ROOT, ledger_rows, write_config


def _call(n: int, **extra) -> dict:
    return {"id": f"c{n}", "request_id": f"r{n}", "attempt": 1, "datetime_utc": "2026-01-01T00:00:00.000Z",
            "cost_nanousd": n, **extra}


def test_without_psycopg_a_postgresql_url_says_how_to_install_it(tmp_path):
    fake = tmp_path / "nodriver"
    fake.mkdir()
    (fake / "psycopg.py").write_text("raise ImportError('No module named psycopg')\n")
    env = {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{ROOT}"}
    result = subprocess.run([sys.executable, "-m", "router_cli", "ledger", "sync", "--db",
                             "postgresql://ann:s3cret@/team?host=/nonexistent"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert result.returncode == EXIT_LEDGER, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "pip install -e '.[postgres]'" in result.stderr
    assert "internal error" not in result.stderr and "s3cret" not in result.stderr


def _hold_table_lock(url: str, table: str, seconds: float) -> threading.Event:
    """Another machine holding ``table`` locked for ``seconds``; the event is set once it holds it."""
    import psycopg

    holding = threading.Event()

    def hold() -> None:
        conn = psycopg.connect(url)  # a transaction: the lock is held until it ends
        try:
            conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            holding.set()
            time.sleep(seconds)
        finally:
            conn.close()

    threading.Thread(target=hold, daemon=True).start()
    assert holding.wait(30)
    return holding


def test_a_query_the_server_cancels_is_a_ledger_error_not_an_outage(mmr, server, pg_url):
    """A cancelled statement (statement_timeout) reached the server: no "cannot reach", nothing kept locally."""
    url = pg_url + "&options=-c%20statement_timeout%3D300"
    open_ledger(url).close()
    _hold_table_lock(pg_url, "calls", 5)
    result = mmr("ask", "--db", url, "--tier", "simple", "hello")
    err = result.stderr.decode()
    assert result.returncode == EXIT_LEDGER, err
    assert "statement timeout" in err and "cannot reach" not in err and "ledger sync" not in err
    assert not outbox.waiting(url)


def test_busy_timeout_is_how_long_a_write_waits_for_another_writers_lock(pg_url):
    open_ledger(pg_url).close()
    _hold_table_lock(pg_url, "calls", 6)
    started = time.monotonic()
    with open_ledger(pg_url, busy_timeout=0.3) as ledger:
        with pytest.raises(LedgerError) as caught:
            ledger.record([_call(1)])
    assert time.monotonic() - started < 5
    assert "locked by another process for more than 0.3 s" in str(caught.value)
    assert not getattr(caught.value, "unreachable", False) and not outbox.waiting(pg_url)


def test_a_process_opens_at_most_pool_size_connections_however_many_threads_ask(pg_url):
    import psycopg

    from router_cli.ledger.pg_base import PostgresBase

    threads_n = PostgresBase.pool_size * 4
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            while not done.is_set():
                seen.append(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                         "AND pid != pg_backend_pid()").fetchone()[0])
                time.sleep(0.02)

    errors: list[BaseException] = []
    with open_ledger(pg_url) as ledger:
        def work(n: int) -> None:
            try:
                ledger.read("SELECT pg_sleep(0.2)").fetchone()
                ledger.record([_call(n)])
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        watcher = threading.Thread(target=watch)
        watcher.start()
        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(60)
        done.set()
        watcher.join(10)
        assert errors == [] and len(ledger.rows()) == threads_n
    assert 2 <= max(seen) <= PostgresBase.pool_size, seen


def test_push_counts_the_rows_it_inserted_not_what_other_writers_added(mmr, tmp_path, pg_url, pg_server):
    local = tmp_path / "mine.db"
    with open_ledger(local) as ledger:
        ledger.record([_call(1)])
    open_ledger(pg_url).close()
    dbname = pg_url.split("/")[3].split("?")[0]
    # Another writer: every call inserted brings one more of its own.
    pg_server.execute("CREATE FUNCTION other_writer() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                      "INSERT INTO calls (id, request_id) VALUES ('other-' || NEW.id, NEW.request_id); RETURN NEW; "
                      "END $$; CREATE TRIGGER other_writer AFTER INSERT ON calls FOR EACH ROW "
                      "WHEN (NEW.id NOT LIKE 'other-%') EXECUTE FUNCTION other_writer()", dbname=dbname)
    pushed = mmr("ledger", "push", str(local), "--db", pg_url, config=False)
    assert pushed.returncode == 0, pushed.stderr
    assert "added 1 of 1 calls" in pushed.stderr.decode()
    again = mmr("ledger", "push", str(local), "--db", pg_url, config=False)
    assert "added 0 of 1 calls" in again.stderr.decode()
    assert len(ledger_rows(pg_url)) == 2


def test_reports_read_without_writing_or_sending_the_outbox(mmr, pg_url, pg_server):
    open_ledger(pg_url).close()
    outbox.save(pg_url, {"calls": [_call(1)]})
    costs = mmr("costs", "--db", pg_url, "--json", config=False)
    assert costs.returncode == 0, costs.stderr
    assert json.loads(costs.stdout)["total"]["calls"] == 0 and "sent" not in costs.stderr.decode()
    import psycopg

    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 0
    assert outbox.waiting(pg_url)
    fresh = pg_server.create_database()  # a database mmr never set up is set up, as before
    empty = mmr("costs", "--db", fresh, "--json", config=False)
    assert empty.returncode == 0 and json.loads(empty.stdout)["total"]["calls"] == 0, empty.stderr


def test_serve_records_to_ledger_url_of_its_config(server, tmp_path, pg_url):
    config = write_config(tmp_path / "team.yaml", server.url, extra=f"ledger: {{url: '{pg_url}'}}\n")
    env = {k: v for k, v in os.environ.items() if k != "MMR_DB"}
    proc = subprocess.Popen([sys.executable, "-m", "router_cli", "serve", "--port", "0", "--no-auth",
                             "--config", str(config)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env=env, cwd=ROOT)
    try:
        found = re.search(r"http://[\d.]+:\d+", proc.stderr.readline())
        assert found, proc.stderr.read() if proc.wait(30) is not None else ""
        import urllib.request

        body = json.dumps({"model": "simple", "messages": [{"role": "user", "content": "hello"}]}).encode()
        request = urllib.request.Request(found.group(0) + "/v1/chat/completions", data=body, method="POST",
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
    finally:
        proc.terminate()
        proc.wait(30)
    assert [r["command"] for r in ledger_rows(pg_url)] == ["serve"]
    assert not (tmp_path / "data" / "mmr" / "ledger.db").exists()


def test_ledger_sync_and_push_find_ledger_url_in_the_config(mmr, server, tmp_path, pg_url):
    config = write_config(tmp_path / "team.yaml", server.url, extra=f"ledger: {{url: '{pg_url}'}}\n")
    local = tmp_path / "mine.db"
    with open_ledger(local) as ledger:
        ledger.record([_call(1)])
    pushed = mmr("ledger", "push", str(local), "--config", str(config), db=False)
    assert pushed.returncode == 0 and "added 1 of 1 calls" in pushed.stderr.decode(), pushed.stderr
    synced = mmr("ledger", "sync", "--config", str(config), db=False)
    assert synced.returncode == 0 and "nothing to send" in synced.stderr.decode(), synced.stderr
    assert [r["id"] for r in ledger_rows(pg_url)] == ["c1"]


def test_prompt_cache_use_leaves_out_response_cache_hits(ledger_url):
    from router_cli.ledger.queries import cache_use

    with open_ledger(ledger_url) as ledger:
        ledger.record([_call(1, provider="anthropic", status="ok", input_tokens=100, cache_read_tokens=40),
                       _call(2, provider="anthropic", status="cached", input_tokens=100, cache_read_tokens=40)])
        rows = cache_use(ledger, datetime(2025, 1, 1, tzinfo=timezone.utc), datetime(2027, 1, 1, tzinfo=timezone.utc))
    assert [tuple(r) for r in rows] == [("anthropic", 100, 40, 0, 0)]
