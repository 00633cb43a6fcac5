"""The PostgreSQL ledger against a real server: the same schema as SQLite's, upgrades, errors, secrets."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading

import pytest

from router_cli.errors import EXIT_LEDGER, LedgerError
from router_cli.ledger import open_ledger
from router_cli.ledger.migrations import MIGRATIONS, migration_name
from router_cli.ledger.pg_schema import PG_MIGRATIONS
from tests.conftest import ROOT

# The tables both backends hold (PostgreSQL adds mmr_migrations and mmr_write_check of its own).
TABLES = ("calls", "prompts", "responses", "embeddings", "breakers", "cache", "feedback", "budget_holds")


def test_every_sqlite_migration_has_a_postgresql_counterpart():
    assert list(PG_MIGRATIONS) == [migration_name(m) for m in MIGRATIONS]


def test_both_backends_end_with_the_same_tables_and_columns(tmp_path, pg_url):
    import psycopg

    open_ledger(tmp_path / "l.db").close()
    conn = sqlite3.connect(tmp_path / "l.db")
    sqlite_columns = {t: [row[1] for row in conn.execute(f"PRAGMA table_info({t})")] for t in TABLES}
    conn.close()
    open_ledger(pg_url).close()
    with psycopg.connect(pg_url) as pg:
        pg_columns = {t: [name for (name,) in pg.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
            (t,))] for t in TABLES}
        indexes = {name for (name,) in pg.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'calls'")}
    assert pg_columns == sqlite_columns
    assert {"idx_calls_routed", "idx_calls_spend", "idx_calls_user_spend", "idx_calls_team_spend",
            "idx_calls_batch"} <= indexes


def test_machines_upgrading_at_once_apply_each_migration_once(pg_url):
    import psycopg

    errors: list[BaseException] = []

    def open_close() -> None:
        try:
            open_ledger(pg_url).close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=open_close) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with psycopg.connect(pg_url) as pg:
        versions = [v for (v,) in pg.execute("SELECT version FROM mmr_migrations ORDER BY version")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))


def test_money_keeps_its_types(pg_url):
    with open_ledger(pg_url) as ledger:
        ledger.record([{"id": "a", "request_id": "r", "attempt": 1, "datetime_utc": "2026-01-01T00:00:00.000Z",
                        "cost_usd": "0.000000123456789", "cost_nanousd": 9_000_000_000_000_000_000 // 1000}])
        (row,) = ledger.rows()
        assert row["cost_usd"] == "0.000000123456789" and row["cost_nanousd"] == 9_000_000_000_000_000
        total = ledger.read("SELECT sum(cost_nanousd) FROM calls").fetchone()[0]
        assert total == 9_000_000_000_000_000 and isinstance(total, int)


def test_ids_and_times_sort_bytewise_as_on_sqlite(pg_url):
    with open_ledger(pg_url) as ledger:
        ledger.record([{"id": i, "request_id": i, "datetime_utc": i} for i in ("a-1", "A.2", "a_0", "Z")])
        assert [r["id"] for r in ledger.rows()] == sorted(["a-1", "A.2", "a_0", "Z"])


def test_an_unreachable_server_is_exit_7_naming_the_host_not_the_password(mmr, server, tmp_path):
    url = "postgresql://alice:hunter2secret@127.0.0.1:1/team?connect_timeout=2"
    result = mmr("ask", "--db", url, "hello")
    err = result.stderr.decode()
    assert result.returncode == EXIT_LEDGER, err
    assert len(err.strip().splitlines()) == 1 and "127.0.0.1:1" in err and "hunter2secret" not in err
    assert "no provider was called" in err
    assert server.calls() == []
    costs = mmr("costs", "--db", url)
    assert costs.returncode == EXIT_LEDGER and "hunter2secret" not in costs.stderr.decode()


def test_passwords_come_from_the_url_or_pgpassword_and_are_never_printed(pg_server, pg_url, mmr, monkeypatch):
    pg_server.execute("CREATE ROLE mmr_pw LOGIN PASSWORD 'right-one'")
    dbname = pg_url.split("/")[3].split("?")[0]
    pg_server.execute(f'GRANT ALL ON DATABASE "{dbname}" TO mmr_pw')
    pg_server.execute("GRANT ALL ON SCHEMA public TO mmr_pw", dbname=dbname)
    base = f"postgresql://mmr_pw%s@/{dbname}?host={pg_server.socket_dir}"
    with pytest.raises(LedgerError) as caught:
        open_ledger(base % ":wrong-secret")
    message = str(caught.value)
    assert "password authentication failed" in message and "wrong-secret" not in message
    assert pg_server.socket_dir.name in message  # names the host (here: the socket directory)
    open_ledger(base % ":right-one").close()
    monkeypatch.setenv("PGPASSWORD", "right-one")
    open_ledger(base % "").close()
    result = mmr("costs", "--db", base % ":wrong-secret", config=False)
    assert result.returncode == EXIT_LEDGER and "wrong-secret" not in result.stderr.decode() + result.stdout.decode()


def test_psycopg_is_imported_only_for_a_postgresql_url(tmp_path, config_path):
    code = (
        "import sys, io, contextlib\n"
        "from router_cli.cli import main\n"
        "for argv in (['costs', '--db', %r], ['classify', '--config', %r, 'hello'], ['--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print('psycopg' in sys.modules)\n" % (str(tmp_path / "l.db"), str(config_path))
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_the_documented_least_privilege_roles_are_enough(pg_server, mmr, server):
    """docs/team.md's roles: mmr owns only its schema; a reader reports but cannot ask (nothing paid)."""
    dbname = f"team_{id(pg_server) % 100000}_{__import__('os').getpid()}"
    pg_server.execute(f'CREATE DATABASE "{dbname}"')
    pg_server.execute("CREATE ROLE mmr_owner LOGIN; CREATE ROLE mmr_reader LOGIN")
    for statement in ("CREATE SCHEMA mmr AUTHORIZATION mmr_owner",
                      f'ALTER ROLE mmr_owner IN DATABASE "{dbname}" SET search_path = mmr',
                      "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
                      "GRANT USAGE ON SCHEMA mmr TO mmr_reader",
                      "ALTER DEFAULT PRIVILEGES FOR ROLE mmr_owner IN SCHEMA mmr GRANT SELECT ON TABLES TO mmr_reader",
                      f'ALTER ROLE mmr_reader IN DATABASE "{dbname}" SET search_path = mmr'):
        pg_server.execute(statement, dbname=dbname)
    owner, reader = pg_server.url(dbname, "mmr_owner"), pg_server.url(dbname, "mmr_reader")
    asked = mmr("ask", "--db", owner, "--tier", "simple", "hello")
    assert asked.returncode == 0, asked.stderr
    costs = mmr("costs", "--db", reader, "--json", config=False)
    assert costs.returncode == 0, costs.stderr
    assert __import__("json").loads(costs.stdout)["total"]["calls"] == 1
    calls_before = len(server.calls())
    refused = mmr("ask", "--db", reader, "--tier", "simple", "hello")
    assert refused.returncode == EXIT_LEDGER and "no provider was called" in refused.stderr.decode()
    assert len(server.calls()) == calls_before


def test_the_daily_rollup_and_views_match_the_calls(pg_url):
    import psycopg

    rows = [
        {"id": "c1", "request_id": "r1", "attempt": 1, "datetime_utc": "2026-03-01T23:59:59.999Z", "user": "ann",
         "team": "ml", "provider": "anthropic", "model": "m1", "input_tokens": 10, "output_tokens": 5,
         "cost_nanousd": 1_000_000_001, "baseline_cost_nanousd": 3, "status": "error"},
        {"id": "c2", "request_id": "r1", "attempt": 2, "datetime_utc": "2026-03-02T00:00:00.000Z", "user": "ann",
         "team": "ml", "provider": "anthropic", "model": "m1", "input_tokens": 1, "output_tokens": 2,
         "cost_nanousd": 7, "baseline_cost_nanousd": 0, "status": "ok"},
        {"id": "c3", "request_id": "r2", "attempt": 1, "datetime_utc": "2026-03-02T10:00:00.000Z", "user": None,
         "team": None, "provider": "openai", "model": "m2", "input_tokens": 3, "output_tokens": 4,
         "cost_nanousd": 20, "baseline_cost_nanousd": 40, "status": "ok"},
    ]
    with open_ledger(pg_url) as ledger:
        ledger.record(rows[:1])
        ledger.record(rows[1:])
        ledger.record([{**rows[2], "id": "c4"}])  # a second statement adds to the same group
    with psycopg.connect(pg_url) as pg:
        daily = pg.execute('SELECT day::text, "user", team, model, calls, requests, input_tokens, spend_usd::text, '
                           "baseline_usd::text FROM mmr_daily_spend ORDER BY 1, 4").fetchall()
        requests = pg.execute("SELECT request_id, calls, cost_usd::text, answered_tier FROM mmr_requests "
                              "ORDER BY 1").fetchall()
    assert daily == [
        ("2026-03-01", "ann", "ml", "m1", 1, 1, 10, "1.000000001", "0.000000003"),
        ("2026-03-02", "ann", "ml", "m1", 1, 0, 1, "0.000000007", "0.000000000"),
        ("2026-03-02", None, None, "m2", 2, 2, 6, "0.000000040", "0.000000080"),
    ]
    assert [r[:3] for r in requests] == [("r1", 2, "1.000000008"), ("r2", 2, "0.000000040")]
