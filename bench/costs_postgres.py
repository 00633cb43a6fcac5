"""Benchmark `mmr costs --since 7d` on a team-sized PostgreSQL ledger, beside the bare SQL a DBA would write.

Run: python bench/costs_postgres.py [--calls 10000000] [--days 90] [--runs 3] [--url URL]
Without --url it starts its own server (initdb/pg_ctl into a temporary directory, as
tests/pg_server.py does; as root, as the `postgres` user) and removes it afterwards.
The calls are generated inside the server (generate_series, one INSERT ... SELECT per
million rows, through mmr's own schema and indexes): tiers 65/25/10 %, two models per
tier, 50 users in 5 teams, 3 % failed attempts, spread evenly over --days days.

Printed, side by side: the build rate; `mmr costs --since 7d` (the whole command: start-up,
the report and the drift against the week before) and `--json`; the bare aggregate a DBA
would write for the same week (spend, calls, tokens per day) run by `psql -c` (a whole
command too); mmr's report and drift in one connected process beside that bare SQL in one
connected process; and the same week through the mmr_daily_spend view. Each is the median of --runs runs; mmr's peak RSS is its
process's maximum resident set (resource.getrusage of the child).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from router_cli.ledger import open_ledger  # noqa: E402

# One statement per chunk: everything computed from the row number n (no Python in the loop).
GENERATE = """
INSERT INTO calls (id, request_id, attempt, datetime_utc, command, tier, routed_tier, escalated, provider, model,
                   classifier, status, error_kind, input_tokens, output_tokens, usage_estimated, cost_usd,
                   cost_nanousd, baseline_cost_usd, baseline_cost_nanousd, duration_ms, stream, "user", team, role)
SELECT lpad(n::text, 12, '0'), 'r' || lpad(n::text, 12, '0'), CASE WHEN n %% 33 = 0 THEN 2 ELSE 1 END,
       to_char((%(start)s::timestamptz + (n * %(step)s) * interval '1 second') AT TIME ZONE 'UTC',
               'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       'ask', t.tier, t.tier, 0, m.provider, m.model, 'rules',
       CASE WHEN n %% 33 = 1 THEN 'error' ELSE 'ok' END, CASE WHEN n %% 33 = 1 THEN 'server' END,
       400 + n %% 700, 200 + n %% 900, 0, NULL,
       ((400 + n %% 700) * m.input_price + (200 + n %% 900) * m.output_price), NULL,
       ((400 + n %% 700) * 5000 + (200 + n %% 900) * 25000), 300 + (n %% 5000), 0,
       'user' || lpad((n %% 50)::text, 2, '0'), 'team' || (n %% 5), 'answer'
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
CROSS JOIN LATERAL (SELECT CASE WHEN n %% 20 < 13 THEN 'simple' WHEN n %% 20 < 18 THEN 'medium' ELSE 'complex' END
                    AS tier) AS t
CROSS JOIN LATERAL (SELECT * FROM (VALUES
    ('simple', 0, 'anthropic', 'claude-haiku-4-5', 1000, 5000), ('simple', 1, 'openai', 'gpt-5-mini', 250, 2000),
    ('medium', 0, 'anthropic', 'claude-sonnet-4-5', 3000, 15000), ('medium', 1, 'openai', 'gpt-4.1', 2000, 8000),
    ('complex', 0, 'anthropic', 'claude-opus-4-5', 5000, 25000), ('complex', 1, 'openai', 'gpt-5', 1250, 10000))
    AS v(tier, pick, provider, model, input_price, output_price)
    WHERE v.tier = t.tier AND v.pick = n %% 2) AS m
"""
# What a DBA would write for "spend this week, per day".
BARE = """
SELECT substr(datetime_utc, 1, 10) AS day, count(*), sum(cost_nanousd), sum(baseline_cost_nanousd),
       sum(input_tokens), sum(output_tokens)
FROM calls WHERE datetime_utc >= %s GROUP BY 1 ORDER BY 1
"""
VIEW = "SELECT day, sum(calls), sum(spend_usd) FROM mmr_daily_spend WHERE day >= %s::date GROUP BY 1 ORDER BY 1"


def build(url: str, calls: int, days: int) -> float:
    """Fill ``calls`` with ``calls`` rows over the last ``days`` days; rows per second."""
    import psycopg

    open_ledger(url).close()  # mmr's schema, its indexes and views
    start = datetime.now(timezone.utc) - timedelta(days=days)
    step = days * 86400 / calls
    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
        if have == calls:
            print(f"reusing {calls:,} calls")
            return 0.0
        conn.execute("TRUNCATE calls")
        chunk = 1_000_000
        for first in range(1, calls + 1, chunk):
            last = min(first + chunk - 1, calls)
            conn.execute(GENERATE, {"start": start, "step": step, "first": first, "last": last})
            rate = last / (time.perf_counter() - began)
            print(f"  {last:>12,} calls  {rate:>10,.0f} calls/s", flush=True)
        conn.execute("VACUUM ANALYZE calls")
    return calls / (time.perf_counter() - began)


def time_mmr(url: str, args: list[str], runs: int) -> tuple[float, float]:
    """Median seconds of ``mmr costs ARGS`` and the largest peak RSS (MiB) of its runs."""
    times, peaks = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "router_cli", "costs", "--db", url, *args], check=True,
                       stdout=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        times.append(time.perf_counter() - began)
        peaks.append(max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024)
    return statistics.median(times), max(peaks)


def time_report(url: str, runs: int) -> float:
    """Median seconds of what `mmr costs --since 7d` does once connected: the report and its drift."""
    from router_cli.reports.costs import cost_report
    from router_cli.reports.drift import drift
    from router_cli.reports.when import parse_when

    times = []
    with open_ledger(url) as ledger:
        for _ in range(runs):
            began = time.perf_counter()
            report = cost_report(ledger, parse_when("7d"), None, [])
            drift(ledger, report.since, report.until, 20, current=report.total)
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def time_psql(server, url: str, sql: str, runs: int) -> float | None:
    """Median seconds of the bare SQL as a command (psql -c), start-up included, as mmr's is."""
    if server is None:
        return None
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run([str(server.bindir / "psql"), "-X", "-q", "-d", url, "-c", sql], check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def time_sql(url: str, sql: str, param: str, runs: int) -> float:
    import psycopg

    times = []
    with psycopg.connect(url) as conn:
        for _ in range(runs):
            began = time.perf_counter()
            conn.execute(sql, (param,)).fetchall()
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--url", help="an existing database (default: start a server of its own)")
    args = parser.parse_args()
    server = None
    url = args.url
    if url is None:
        from tests.pg_server import PgServer, find_bin

        server = PgServer(find_bin()).start()
        url = server.create_database()
    try:
        print(f"building {args.calls:,} calls over {args.days} days in {url.split('?')[0]}")
        rate = build(url, args.calls, args.days)
        since = (datetime.now(timezone.utc) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        mmr_s, mmr_rss = time_mmr(url, ["--since", "7d"], args.runs)
        json_s, json_rss = time_mmr(url, ["--since", "7d", "--json"], args.runs)
        report_s = time_report(url, args.runs)
        bare_s = time_sql(url, BARE, since, args.runs)
        psql_s = time_psql(server, url, BARE.replace("%s", f"'{since}'"), args.runs)
        view_s = time_sql(url, VIEW, since[:10], args.runs)
        print(f"\n{args.calls:,} calls over {args.days} days" + (f", built at {rate:,.0f} calls/s" if rate else ""))
        print(f"{'what':<44} {'seconds':>8} {'peak RSS':>10}")
        print(f"{'mmr costs --since 7d (whole command)':<44} {mmr_s:>8.3f} {mmr_rss:>8.0f} MiB")
        print(f"{'mmr costs --since 7d --json':<44} {json_s:>8.3f} {json_rss:>8.0f} MiB")
        if psql_s is not None:
            print(f"{'psql -c the bare SQL (whole command)':<44} {psql_s:>8.3f}")
        print(f"{'mmr report + drift, connected (no start-up)':<44} {report_s:>8.3f}")
        print(f"{'bare SQL: per-day sums of the week':<44} {bare_s:>8.3f}")
        print(f"{'the mmr_daily_spend view, the same week':<44} {view_s:>8.3f}")
        print(f"connected, mmr / bare SQL: {report_s / bare_s:.2f}x" +
              ("" if psql_s is None else f"; whole commands, mmr / psql: {mmr_s / psql_s:.2f}x"))
    finally:
        if server is not None:
            server.remove()


if __name__ == "__main__":
    main()
