"""Benchmark what circuit breakers and the response cache save.

Run: python bench/resilience.py [--timeout 2] [--latency 0.05] [--requests 20]

Against the local provider server (fixed latency per call):
1. A hung provider: claude-small accepts requests and never answers, so each
   request waits the provider timeout before its tier-mate answers. With the
   breaker open, the hung model is skipped without a call. Mean wall time per
   request, in process (Router.ask) and through the CLI (`mmr ask`).
2. The response cache: a miss (a real call) against a hit, in process and
   through the CLI.

Every case is warmed the same way: one untimed request with its own config and
ledger first (it imports the SDKs in process, creates the ledger, and for the
open-circuit case opens the circuit). Next to each figure, its floor: what the
server's latency and the provider timeout alone cost, and for `mmr ask` a bare
Python process that imports the SDKs that case imports (both when the hung
model is called, openai's when its circuit is open, anthropic's for a cache
miss, none for a hit), run in turn with each `mmr ask`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from router_cli.config import load_config  # noqa: E402
from router_cli import Router  # noqa: E402
from tests.conftest import TEST_CONFIG  # noqa: E402
from tests.provider_server import ProviderServer, hang  # noqa: E402


def timed(action, n: int) -> float:
    times = []
    for i in range(n):
        start = time.perf_counter()
        action(i)
        times.append(time.perf_counter() - start)
    return statistics.mean(times) * 1000


def paired(action, floor, n: int) -> tuple[float, float]:
    """Mean ms of ``action(i)`` and of ``floor()``, run in turn (A B A B) so load drift hits both alike."""
    a, b = [], []
    for i in range(n):
        a.append(timed(lambda _: action(i), 1))
        b.append(timed(lambda _: floor(), 1))
    return statistics.mean(a), statistics.mean(b)


def cli(config: Path, db: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "router_cli", "ask", "--config", str(config), "--db", str(db), *args],
                   check=True, capture_output=True, cwd=ROOT)


def bare(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=2.0, help="provider timeout (s): how long a hung call waits")
    parser.add_argument("--latency", type=float, default=0.05, help="server latency per call (s)")
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    os.environ.update({"TEST_ANTHROPIC_KEY": "sk-bench", "TEST_OPENAI_KEY": "sk-bench"})
    server = ProviderServer(latency=args.latency).start()
    work = Path(tempfile.mkdtemp(prefix="mmr-resilience-"))
    rows: list[tuple[str, float, float, float, float]] = []
    try:
        # 1. Hung provider: breaker never opens (failures: 10000) vs opened after the first timeout.
        server.always("claude-small", hang(args.timeout + 5))
        closed = work / "closed.yaml"
        closed.write_text(TEST_CONFIG.format(url=server.url, timeout=args.timeout) + "breaker: {enabled: false}\n")
        opened = work / "open.yaml"
        opened.write_text(TEST_CONFIG.format(url=server.url, timeout=args.timeout) + "breaker: {failures: 1, cooldown: 1h}\n")
        n_slow = max(3, args.requests // 4)
        with Router(load_config(closed), work / "a.db") as router:
            router.ask("warm up", tier="simple")
            wait_ms = timed(lambda i: router.ask(f"hello {i}", tier="simple"), n_slow)
        with Router(load_config(opened), work / "b.db") as router:
            router.ask("open the circuit", tier="simple")  # the warm-up, which also opens it
            skip_ms = timed(lambda i: router.ask(f"hello {i}", tier="simple"), args.requests)
        # The floors import what each case's mmr ask imports: both SDKs when the hung anthropic model is called
        # before openai's answers, openai's alone when the open circuit skips it, anthropic's for a cache miss.
        both, openai_only = (lambda: bare("import anthropic, openai")), (lambda: bare("import openai"))
        cli(closed, work / "c.db", "--tier", "simple", "warm up")
        wait_cli, wait_floor = paired(lambda i: cli(closed, work / "c.db", "--tier", "simple", f"hello {i}"), both, n_slow)
        cli(opened, work / "d.db", "--tier", "simple", "open the circuit")
        skip_cli, skip_floor = paired(lambda i: cli(opened, work / "d.db", "--tier", "simple", f"hello {i}"),
                                      openai_only, args.requests)
        latency_ms, timeout_ms = args.latency * 1000, args.timeout * 1000
        rows.append(("hung model: wait for the timeout", wait_ms, wait_cli, timeout_ms + latency_ms,
                     wait_floor + timeout_ms + latency_ms))
        rows.append(("hung model: circuit open, skipped", skip_ms, skip_cli, latency_ms, skip_floor + latency_ms))
        server.always("claude-small", None)

        # 2. Cache: a miss makes the call; a hit reads the ledger database.
        cached = work / "cache.yaml"
        cached.write_text(TEST_CONFIG.format(url=server.url, timeout=args.timeout) + "cache: {enabled: true}\n")
        with Router(load_config(cached), work / "e.db") as router:
            router.ask("warm up")
            miss_ms = timed(lambda i: router.ask(f"question {i}"), args.requests)
            hit_ms = timed(lambda i: router.ask(f"question {i}"), args.requests)
        cli(cached, work / "f.db", "warm up")
        miss_cli, miss_floor = paired(lambda i: cli(cached, work / "f.db", f"question {i}"),
                                      lambda: bare("import anthropic"), args.requests // 2)
        hit_cli, hit_floor = paired(lambda i: cli(cached, work / "f.db", f"question {i}"), lambda: bare("pass"),
                                    args.requests // 2)
        rows.append((f"cache miss (server latency {latency_ms:.0f} ms)", miss_ms, miss_cli, latency_ms,
                     miss_floor + latency_ms))
        rows.append(("cache hit", hit_ms, hit_cli, 0.0, hit_floor))
    finally:
        server.stop()
    print(f"{'case':<38} {'in process':>11} {'floor':>9} {'mmr ask':>10} {'floor':>9}")
    for name, in_process, through_cli, floor, cli_floor in rows:
        print(f"{name:<38} {in_process:>8.1f} ms {floor:>6.0f} ms {through_cli:>7.0f} ms {cli_floor:>6.0f} ms")
    print(f"\nmeans per request; {args.requests} requests ({max(3, args.requests // 4)} for a hung model), each case "
          f"warmed by one untimed request; floors: the server's latency ({args.latency * 1000:.0f} ms) and the "
          f"provider timeout ({args.timeout:g} s), plus for mmr ask a bare python importing the SDKs that case "
          f"imports (none for a hit), run in turn with each mmr ask; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"time saved per request by skipping the open circuit: {rows[0][1] - rows[1][1]:.0f} ms in process, "
          f"{rows[0][2] - rows[1][2]:.0f} ms through mmr ask")

if __name__ == "__main__":
    main()
