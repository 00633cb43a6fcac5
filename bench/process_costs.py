"""Benchmark what a Python process pays around the calls: CPU per call, exit teardown, garbage collection.

Run: python bench/process_costs.py [--calls 300] [--rounds 7]
Each figure is printed next to its floor, measured side by side:
1. CPU per call: `Router.ask` in process against the local provider server (in
   its own process, no added latency), as `time.process_time()` per call; the
   floor is the bare anthropic SDK making the same calls. One process can make
   at most 1 / (CPU per call) calls a second, under one GIL.
2. Exit teardown: a process that imports both SDKs and exits normally, against
   the same process leaving with `os._exit` (as mmr does once its output is
   flushed); rounds alternate. The floor is `python -c pass`.
3. Garbage collection: a full `gc.collect()` with both SDKs imported, before
   and after `gc.freeze()` (as mmr does after importing them); the floor is a
   full collection in a bare interpreter.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CPU_PER_CALL = """
import os, sys, time
sys.path.insert(0, {root!r})
url, n, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.environ.update(TEST_ANTHROPIC_KEY="sk-bench", TEST_OPENAI_KEY="sk-bench")
if how == "mmr":
    import tempfile
    from router_cli import Router
    from router_cli.config import parse_config
    from tests.conftest import TEST_CONFIG
    router = Router(parse_config(TEST_CONFIG.format(url=url, timeout=10), "bench"), tempfile.mkdtemp() + "/l.db")
    call = lambda i: router.ask(f"What is the capital of country number {{i}}?", tier="simple")
else:
    import anthropic
    client = anthropic.Anthropic(api_key="sk-bench", base_url=url, max_retries=0)
    call = lambda i: client.messages.create(model="claude-small", max_tokens=64,
                                            messages=[{{"role": "user", "content": f"What is the capital of country number {{i}}?"}}])
for i in range(20):  # warm: imports, connections, the ledger
    call(i)
start = time.process_time()
for i in range(n):
    call(i)
print((time.process_time() - start) / n * 1000)
"""
GC = """
import gc, statistics, sys, time
if sys.argv[1] != "bare":
    import anthropic, openai
def full():
    times = []
    for _ in range(5):
        start = time.perf_counter()
        gc.collect()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000
before = full()
gc.freeze()
print(before, full())
"""


def server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.provider_server", "--port", "0", "--latency", "0", "--no-record"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = re.search(r"http://\S+", proc.stdout.readline())
    assert url, "the provider server did not start"
    return proc, url.group(0)


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return (time.perf_counter() - start) * 1000


def output(argv: list[str]) -> list[float]:
    return [float(x) for x in subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT).stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    py = sys.executable
    proc, url = server()
    try:
        code = CPU_PER_CALL.format(root=str(ROOT))
        mmr_cpu, bare_cpu = [], []
        for _ in range(max(1, args.rounds // 2)):
            mmr_cpu += output([py, "-c", code, url, str(args.calls), "mmr"])
            bare_cpu += output([py, "-c", code, url, str(args.calls), "bare"])
    finally:
        proc.terminate()
        proc.wait()
    normal, quick, nothing = [], [], []
    for _ in range(args.rounds):
        normal.append(wall([py, "-c", "import anthropic, openai"]))
        quick.append(wall([py, "-c", "import anthropic, openai, os; os._exit(0)"]))
        nothing.append(wall([py, "-c", "pass"]))
    loaded = [output([py, "-c", GC, "sdks"]) for _ in range(3)]
    bare_gc = [output([py, "-c", GC, "bare"]) for _ in range(3)]

    cpu, floor = statistics.median(mmr_cpu), statistics.median(bare_cpu)
    rows = [
        ("CPU per call, Router.ask (ms)", f"{cpu:.2f}", f"{floor:.2f} (bare SDK)",
         f"runs {', '.join(f'{x:.2f}' for x in mmr_cpu)}"),
        ("  at most, calls per second per process", f"{1000 / cpu:.0f}", f"{1000 / floor:.0f}", ""),
        ("process importing both SDKs, normal exit (ms)", f"{statistics.median(normal):.0f}",
         f"{statistics.median(nothing):.0f} (python -c pass)", ""),
        ("  the same, leaving with os._exit (ms)", f"{statistics.median(quick):.0f}", "",
         f"teardown {statistics.median(a - b for a, b in zip(normal, quick)):.0f} ms (median of the pairs)"),
        ("full gc.collect() with both SDKs imported (ms)", f"{statistics.median(x[0] for x in loaded):.1f}",
         f"{statistics.median(x[0] for x in bare_gc):.1f} (bare interpreter)", ""),
        ("  the same after gc.freeze() (ms)", f"{statistics.median(x[1] for x in loaded):.1f}", "", ""),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"{'measure':<{widths[0]}}  {'value':>{widths[1]}}  {'floor':<{widths[2]}}  note")
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    print(f"\n{args.calls} calls per CPU run after 20 warm-up calls, {max(1, args.rounds // 2)} runs each, alternating; "
          f"{args.rounds} rounds of the exit timings, alternating; python {sys.version.split()[0]}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
