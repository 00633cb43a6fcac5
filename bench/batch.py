"""Benchmark `mmr ask --batch` against the local provider server with 50 ms per call.

Run: python bench/batch.py [--rows 1000] [--large 100000] [--concurrency 16] [--sample 20]
Targets (issue 8): 1,000 prompts at concurrency 16 in under 5 s wall (the ideal,
1,000 / 16 x 50 ms, is about 3.1 s); peak memory flat from 1,000 to 100,000 rows.
Also times a shell loop of single `mmr ask` calls on a sample, for comparison.
The server runs in its own process, so it does not share the GIL with mmr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import TEST_CONFIG  # noqa: E402

LATENCY = 0.05


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.provider_server", "--port", "0", "--latency", str(LATENCY),
                             "--no-record"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = re.search(r"http://\S+", proc.stdout.readline())
    assert url, "the provider server did not start"
    return proc, url.group(0)


def write_rows(path: Path, n: int) -> None:
    with open(path, "w") as f:
        for i in range(n):
            # Short prompts the rules send to the simple tier, varied like real ones.
            f.write(json.dumps({"id": f"q{i}", "prompt": f"What is the capital of country number {i}?"}) + "\n")


def run_batch(env: dict, rows: Path, concurrency: int, db: Path) -> dict:
    """One `mmr ask --batch` process: its wall time, its peak RSS and its own summary line."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "router_cli", "ask", "--batch", str(rows), "--concurrency",
                             str(concurrency), "--db", str(db), "-v"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"mmr ask --batch exited {proc.returncode}: {stderr[-500:]}")
    summary = re.search(r"([\d,]+) rows in ([\d.]+) s", stderr)
    assert summary, stderr
    return {"wall": wall, "batch": float(summary.group(2)), "rows": int(summary.group(1).replace(",", "")),
            "peak_mb": usage.ru_maxrss / 1024}


def shell_loop(env: dict, prompts: Path, db: Path) -> float:
    """Seconds for a bash loop of single `mmr ask` calls over the lines of ``prompts``."""
    script = f'while IFS= read -r p; do "{sys.executable}" -m router_cli ask --json --db "{db}" "$p" > /dev/null || exit 1; done < "{prompts}"'
    start = time.perf_counter()
    subprocess.run(["bash", "-c", script], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100_000, help="rows of the memory run (0: skip it)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sample", type=int, default=20, help="prompts for the shell loop")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of the main batch (the median is shown)")
    args = parser.parse_args()

    server, url = start_server()
    tmp = Path(tempfile.mkdtemp(prefix="mmr-bench-batch-"))
    config = tmp / "tiers.yaml"
    config.write_text(TEST_CONFIG.format(url=url, timeout=10))
    env = {**os.environ, "TEST_ANTHROPIC_KEY": "sk-bench", "TEST_OPENAI_KEY": "sk-bench", "MMR_CONFIG": str(config)}
    try:
        rows = tmp / "rows.jsonl"
        write_rows(rows, args.rows)
        run_batch(env, rows, args.concurrency, tmp / "warm.db")  # warm the bytecode caches
        runs = sorted((run_batch(env, rows, args.concurrency, tmp / f"run{i}.db") for i in range(args.runs)),
                      key=lambda r: r["wall"])
        main_run = runs[len(runs) // 2]

        prompts = tmp / "sample.txt"
        prompts.write_text("".join(f"What is the capital of country number {i}?\n" for i in range(args.sample)))
        loop = shell_loop(env, prompts, tmp / "loop.db")
        per_prompt = loop / args.sample

        large = None
        if args.large:
            big = tmp / "large.jsonl"
            write_rows(big, args.large)
            print(f"memory run: {args.large:,} rows at concurrency {args.concurrency} "
                  f"(about {args.large / args.concurrency * LATENCY / 60:.0f} min at best)...", file=sys.stderr, flush=True)
            large = run_batch(env, big, args.concurrency, tmp / "large.db")
    finally:
        server.terminate()
        server.wait()

    ideal = args.rows / args.concurrency * LATENCY
    lines = [
        ("measure", "value", "target", "ok"),
        (f"batch of {args.rows:,}, concurrency {args.concurrency}: process wall", f"{main_run['wall']:.2f} s", "5 s",
         "yes" if main_run["wall"] < 5 else "NO"),
        ("  answering (first row to last row written)", f"{main_run['batch']:.2f} s", f"ideal {ideal:.2f} s", ""),
        ("  throughput", f"{args.rows / main_run['batch']:,.0f} rows/s", "", ""),
        (f"shell loop of mmr ask, per prompt ({args.sample} prompts)", f"{per_prompt:.2f} s", "", ""),
        (f"shell loop, extrapolated to {args.rows:,}", f"{per_prompt * args.rows:,.0f} s",
         f"{per_prompt * args.rows / main_run['wall']:,.0f}x slower", ""),
        (f"peak RSS, {args.rows:,} rows", f"{main_run['peak_mb']:.0f} MB", "", ""),
    ]
    if large is not None:
        growth = large["peak_mb"] / main_run["peak_mb"] - 1
        lines += [
            (f"peak RSS, {args.large:,} rows", f"{large['peak_mb']:.0f} MB", "flat (< +15%)", "yes" if growth < 0.15 else "NO"),
            (f"  {args.large:,} rows took", f"{large['batch']:.0f} s", f"ideal {args.large / args.concurrency * LATENCY:.0f} s", ""),
        ]
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    for line in lines:
        print(f"{line[0]:<{widths[0]}}  {line[1]:>{widths[1]}}  {line[2]:>{widths[2]}}  {line[3]}")
    walls = ", ".join(f"{r['wall']:.2f}" for r in runs)
    print(f"\nserver latency {LATENCY * 1000:.0f} ms per call, in its own process; {args.runs} runs of the batch "
          f"(walls {walls} s; median shown); python {sys.version.split()[0]}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
