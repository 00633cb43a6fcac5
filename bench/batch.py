"""Benchmark `mmr ask --batch` against the local provider server with 50 ms per call.

Run: python bench/batch.py [--rows 1000] [--large 100000] [--concurrency 16] [--sample 20]
Targets (issue 8): 1,000 prompts at concurrency 16 in under 5 s wall (the ideal,
1,000 / 16 x 50 ms, is about 3.1 s); peak memory flat from 1,000 to 100,000 rows.
The batch runs twice: with the tiers' first models on the Anthropic wire (the
anthropic SDK, about a second to import) and on the OpenAI-compatible wire (the
openai SDK, as for Ollama, vLLM or llama.cpp). Next to each: the same calls
made with the bare SDK from 16 threads (import included), the floor for any
Python client. Also: a CPU-bound batch (concurrency 64) in one process and in
worker processes, a shell loop of single `mmr ask` calls on a sample, and peak
memory. The server runs in its own process, so it does not share the GIL with mmr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from router_cli.batch.pool import auto_processes  # noqa: E402
from tests.conftest import TEST_CONFIG  # noqa: E402

LATENCY = 0.05
BARE_SDK = {  # the same calls, no mmr: import the SDK, then 16 threads call it
    "anthropic": "import anthropic; c = anthropic.Anthropic(api_key='sk-bench', base_url=URL, max_retries=0)\n"
                 "def call(p): c.messages.create(model='claude-small', max_tokens=64, messages=[{'role': 'user', 'content': p}])",
    "openai": "import openai; c = openai.OpenAI(api_key='sk-bench', base_url=URL + '/v1', max_retries=0)\n"
              "def call(p): c.chat.completions.create(model='gpt-small', max_tokens=64, messages=[{'role': 'user', 'content': p}])",
}
BARE_RUN = """
import sys, threading
URL, N, C = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
{setup}
rows = iter(range(N)); lock = threading.Lock()
def work():
    while True:
        with lock:
            i = next(rows, None)
        if i is None:
            return
        call(f"What is the capital of country number {{i}}?")
threads = [threading.Thread(target=work) for _ in range(C)]
[t.start() for t in threads]; [t.join() for t in threads]
"""


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.provider_server", "--port", "0", "--latency", str(LATENCY),
                             "--no-record"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = re.search(r"http://\S+", proc.stdout.readline())
    assert url, "the provider server did not start"
    return proc, url.group(0)


def openai_first(config: str) -> str:
    """The config with each tier's OpenAI model first (each tier lists an Anthropic model, then an OpenAI one)."""
    lines = config.splitlines(keepends=True)
    for i in range(len(lines) - 1):
        if "provider: anthropic" in lines[i] and "provider: openai" in lines[i + 1]:
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
    return "".join(lines)


def write_rows(path: Path, n: int) -> None:
    with open(path, "w") as f:
        for i in range(n):
            # Short prompts the rules send to the simple tier, varied like real ones.
            f.write(json.dumps({"id": f"q{i}", "prompt": f"What is the capital of country number {i}?"}) + "\n")


def run_batch(env: dict, rows: Path, concurrency: int, db: Path, *extra: str) -> dict:
    """One `mmr ask --batch` process: its wall time, its peak RSS and its own summary line."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "router_cli", "ask", "--batch", str(rows), "--concurrency",
                             str(concurrency), "--db", str(db), "-v", *extra],
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


def bare_sdk(sdk: str, url: str, rows: int, concurrency: int) -> float:
    """Wall seconds of a Python process that imports ``sdk`` and makes the same calls from threads."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", BARE_RUN.format(setup=BARE_SDK[sdk]), url, str(rows), str(concurrency)],
                   check=True)
    return time.perf_counter() - start


def ratio(runs: list, floors: list) -> float:
    """The median of run i / floor i over the alternated pairs."""
    return statistics.median((a["wall"] if isinstance(a, dict) else a) / (b["wall"] if isinstance(b, dict) else b)
                             for a, b in zip(runs, floors))


def shell_loop(env: dict, prompts: Path, db: Path, url: str | None = None) -> float:
    """Seconds for a bash loop of single `mmr ask` calls over the lines of ``prompts`` (with ``url``: of a bare
    anthropic SDK script making the same call, the floor)."""
    if url is None:
        command = f'"{sys.executable}" -m router_cli ask --json --db "{db}" "$p"'
    else:
        code = BARE_SDK["anthropic"].replace("URL", repr(url)) + "\nimport sys; call(sys.argv[1])"
        command = f'"{sys.executable}" -c "$BARE" "$p"'
        env = {**env, "BARE": code}
    script = f'while IFS= read -r p; do {command} > /dev/null || exit 1; done < "{prompts}"'
    start = time.perf_counter()
    subprocess.run(["bash", "-c", script], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100_000, help="rows of the memory run (0: skip it)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sample", type=int, default=20, help="prompts for the shell loop")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each batch (the median is shown)")
    parser.add_argument("--cpu-bound", type=int, default=5000, help="rows of the concurrency-64 runs (0: skip them)")
    parser.add_argument("--workers", type=int, default=2, help="also run the Anthropic batch with this many worker "
                        "processes, alternating with the others (0: skip)")
    args = parser.parse_args()

    server, url = start_server()
    tmp = Path(tempfile.mkdtemp(prefix="mmr-bench-batch-"))
    configs = {"anthropic": TEST_CONFIG.format(url=url, timeout=10)}
    configs["openai"] = openai_first(configs["anthropic"])
    envs = {}
    for sdk, text in configs.items():
        (tmp / f"{sdk}.yaml").write_text(text)
        envs[sdk] = {**os.environ, "TEST_ANTHROPIC_KEY": "sk-bench", "TEST_OPENAI_KEY": "sk-bench",
                     "MMR_CONFIG": str(tmp / f"{sdk}.yaml")}
    results: dict = {}
    try:
        rows = tmp / "rows.jsonl"
        write_rows(rows, args.rows)
        for sdk, env in envs.items():
            ledger = tmp / f"{sdk}.db"
            fresh = run_batch(env, rows, args.concurrency, ledger)  # creates the ledger; warms the bytecode caches
            bare_sdk(sdk, url, args.rows, args.concurrency)  # the bare script's first run, untimed, likewise
            runs, bare, workers = [], [], []
            for _ in range(args.runs):  # A B (C) A B (C): drift in the machine's load hits every side alike
                runs.append(run_batch(env, rows, args.concurrency, ledger))
                bare.append(bare_sdk(sdk, url, args.rows, args.concurrency))
                if args.workers and sdk == "anthropic":
                    workers.append(run_batch(env, rows, args.concurrency, ledger, "--processes", str(args.workers)))
            results[sdk] = {"fresh": fresh, "runs": runs, "bare": bare, "workers": workers}
        env = envs["anthropic"]
        cpu = None
        if args.cpu_bound:
            many = tmp / "many.jsonl"
            write_rows(many, args.cpu_bound)
            cpu = {p: run_batch(env, many, 64, tmp / "cpu.db", *(["--processes", "1"] if p == 1 else []))
                   for p in (1, "auto")}

        prompts = tmp / "sample.txt"
        prompts.write_text("".join(f"What is the capital of country number {i}?\n" for i in range(args.sample)))
        per_prompt = shell_loop(env, prompts, tmp / "loop.db") / args.sample
        bare_per_prompt = shell_loop(env, prompts, tmp / "loop.db", url) / args.sample

        large = None
        if args.large:
            big = tmp / "large.jsonl"
            write_rows(big, args.large)
            print(f"memory run: {args.large:,} rows at concurrency {args.concurrency} "
                  f"(about {args.large / args.concurrency * LATENCY / 60:.0f} min at best)...", file=sys.stderr, flush=True)
            # the ledger of the runs above: a new one would also load sqlite-utils (and numpy) to create it
            large = run_batch(env, big, args.concurrency, tmp / "anthropic.db")
    finally:
        server.terminate()
        server.wait()

    ideal = args.rows / args.concurrency * LATENCY
    lines = [("measure", "value", "target", "ok")]
    for sdk, r in results.items():
        wall = statistics.median(x["wall"] for x in r["runs"])
        batch = statistics.median(x["batch"] for x in r["runs"])
        bare = statistics.median(r["bare"])
        lines += [
            (f"{sdk} wire: {args.rows:,} prompts, concurrency {args.concurrency}, process wall", f"{wall:.2f} s", "5 s",
             "yes" if wall < 5 else "NO"),
            ("  answering, first row read to last written", f"{batch:.2f} s", f"ideal {ideal:.2f} s", ""),
            ("  the same with a fresh ledger (created by this run)", f"{r['fresh']['wall']:.2f} s", "", ""),
            (f"  bare {sdk} SDK, same calls from {args.concurrency} threads, import included", f"{bare:.2f} s",
             f"mmr adds {wall - bare:+.2f} s", ""),
            ("  median of the pairs' ratios, mmr / bare SDK", f"{ratio(r['runs'], r['bare']):.2f}", "", ""),
        ]
        if r["workers"]:
            lines += [(f"  the same batch in --processes {args.workers} worker processes",
                       f"{statistics.median(x['wall'] for x in r['workers']):.2f} s",
                       f"x{ratio(r['workers'], [x['wall'] for x in r['runs']]):.2f} of one process", "")]
    one = results["anthropic"]["runs"][0]
    lines += [(f"peak RSS, {args.rows:,} rows", f"{one['peak_mb']:.0f} MB", "", "")]
    if large is not None:
        growth = large["peak_mb"] / one["peak_mb"] - 1
        lines += [
            (f"peak RSS, {args.large:,} rows", f"{large['peak_mb']:.0f} MB", "flat (< +15%)", "yes" if growth < 0.15 else "NO"),
            (f"  {args.large:,} rows took", f"{large['batch']:.0f} s", f"ideal {args.large / args.concurrency * LATENCY:.0f} s", ""),
        ]
    if cpu is not None:
        lines += [(f"CPU-bound: {args.cpu_bound:,} rows at concurrency 64, one process",
                   f"{args.cpu_bound / cpu[1]['batch']:,.0f} rows/s", f"ideal {64 / LATENCY:,.0f}", ""),
                  (f"  default here: {auto_processes(64)} worker processes",
                   f"{args.cpu_bound / cpu['auto']['batch']:,.0f} rows/s", "", "")]
    lines += [(f"shell loop of mmr ask, per prompt ({args.sample} prompts)", f"{per_prompt:.2f} s", "", ""),
              ("  shell loop of a bare anthropic SDK script, per prompt", f"{bare_per_prompt:.2f} s", "", ""),
              (f"shell loop, extrapolated to {args.rows:,}", f"{per_prompt * args.rows:,.0f} s",
               f"{per_prompt * args.rows / statistics.median(x['wall'] for x in results['anthropic']['runs']):,.0f}x slower", "")]
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    for line in lines:
        print(f"{line[0]:<{widths[0]}}  {line[1]:>{widths[1]}}  {line[2]:>{widths[2]}}  {line[3]}")
    walls = "; ".join(f"{sdk} " + ", ".join(f"{x['wall']:.2f}" for x in r["runs"]) for sdk, r in results.items())
    print(f"\nserver latency {LATENCY * 1000:.0f} ms per call, in its own process; {args.runs} runs per batch on an "
          f"existing ledger (walls: {walls} s; medians shown); python {sys.version.split()[0]}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
