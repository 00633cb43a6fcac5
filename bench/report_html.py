"""Benchmark `mmr report --html` (the routing dashboard) against `mmr costs` on the same ledger.

Run: python bench/report_html.py [--calls 1000000] [--db PATH] [--runs 5]
Uses the ledger of bench/costs_report.py (generated once, then reused: 30 days, tiers
65/25/10 %, 3 % failed attempts, 1 % of answers rated). Times, alternating A B A B as whole
processes: `mmr costs --since 30d --by day` and `mmr report --html FILE --since 30d`, then
prints each median and minimum, the ratio (median of the pairs' ratios) and the page's size.
Targets (issue 20): the report within 2x of costs, the file under 2 MB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from costs_report import generate, timed  # noqa: E402

from router_cli.ledger import open_ledger  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "mmr-bench-1m-v6.db")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    have = -1
    if args.db.exists():
        with open_ledger(args.db) as ledger:
            have = ledger.read("SELECT count(*) FROM calls").fetchone()[0]
    if have != args.calls:
        args.db.unlink(missing_ok=True)
        start = time.perf_counter()
        generate(args.db, args.calls)
        print(f"generated {args.calls:,} calls in {time.perf_counter() - start:.1f} s -> {args.db}")
    page = Path(tempfile.gettempdir()) / f"mmr-bench-report-{os.getpid()}.html"
    env = {**os.environ, "MMR_DB": str(args.db)}
    mmr = [sys.executable, "-m", "router_cli"]
    costs_argv = mmr + ["costs", "--since", "30d", "--by", "day"]
    report_argv = mmr + ["report", "--html", str(page), "--since", "30d"]
    costs, report = [], []
    for _ in range(args.runs):
        costs += timed(costs_argv, 1, env)
        report += timed(report_argv, 1, env)
    size = page.stat().st_size
    page.unlink()
    ratio = statistics.median(r / c for r, c in zip(report, costs))
    print(f"{'command':<44} {'median':>8} {'min':>8}")
    print(f"{'mmr costs --since 30d --by day':<44} {statistics.median(costs):>7.3f}s {min(costs):>7.3f}s")
    print(f"{'mmr report --html FILE --since 30d':<44} {statistics.median(report):>7.3f}s {min(report):>7.3f}s")
    print(f"\nratio report/costs {ratio:.2f} (target <= 2: {'yes' if ratio <= 2 else 'NO'}); "
          f"page {size / 1024:.0f} KiB (target < 2 MB: {'yes' if size < 2_000_000 else 'NO'})")
    print(f"{args.calls:,} calls over 30 days; runs={args.runs}, alternating; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
