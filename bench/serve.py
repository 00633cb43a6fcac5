"""Benchmark `mmr serve` against the local provider server, with the official async OpenAI SDK as the client.

Run: python bench/serve.py [--requests 1000] [--clients 50] [--streams 500] [--rounds 2] [--settle SECONDS]
       [--latency 0.5] [--jitter 0.1] [--pin] [--litellm /work/venvs/litellm/bin/litellm] [--before DIR [--before-plain]]

Goals (issue 18): added latency over calling the provider server directly with
the same SDK, p50 <= 5 ms and p99 <= 20 ms at 50 concurrent clients; 500
concurrent streaming clients with no error, every stream complete, memory
flat (RSS reported); and, when a LiteLLM proxy is given (installed in its own
venv), requests/s and p99 at 50 clients through it, side by side. The
provider server, mmr serve and LiteLLM each run in their own process; mmr serve
writes its SQLite ledger as usual. ``--before DIR`` also starts the ``mmr serve`` of
another checkout (``git worktree add DIR COMMIT``) in the same run, its rows side by side
with this one's; ``--before-plain`` runs it without httptools and uvloop (uvicorn's h11
parser and asyncio's loop), as a server without them installed does.

Every path is warmed up before its clock starts: five calls one by one, then two bursts
of as many calls as clients at once, so that connections are open (and mmr serve's
worker threads started) as in a server that has been up a while; the slowest call of the
first, cold, burst is printed beside. Each server row also gives the server's CPU per
request (user + system time of its process over the 50-client run and its warm-up,
divided by the calls): the figure that decides how long a burst queues for the CPU. ``--jitter J`` makes each provider call
take latency +- J (uniform), as real providers vary: clients that all start together
then drift apart instead of arriving in step for the whole run. ``--pin`` runs the
server under test on CPU 1 and everything else (the clients, the provider server) on
CPU 0, as a proxy deployed on cores of its own would be (needs 2 CPUs; ``taskset``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import KEYS, TEST_CONFIG  # noqa: E402

LITELLM_CONFIG = """\
model_list:
  - model_name: gpt-small
    litellm_params: {{model: openai/gpt-small, api_base: "{url}/v1", api_key: sk-bench}}
litellm_settings: {{num_retries: 0, drop_params: true}}
general_settings: {{disable_spend_logs: true, master_key: {key}}}
"""


def start(argv: list[str], pattern: str, env: dict | None = None, stream: str = "stdout",
          cwd: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start a process and wait for the URL it prints (matching ``pattern``)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, cwd=cwd)
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    for line in pipe:
        found = re.search(pattern, line)
        if found:
            return proc, found.group(1)
    raise SystemExit(f"{argv[0]} did not start: {proc.stderr.read() if stream == 'stdout' else ''}")


# Runs ``python -m router_cli ARGS`` as if httptools and uvloop were not installed.
PLAIN = ("import runpy, sys; sys.modules['httptools'] = sys.modules['uvloop'] = None; "
         "sys.argv[0] = 'mmr'; runpy.run_module('router_cli', run_name='__main__')")


PIN: list[str] = []  # ["taskset", "-c", "1"] with --pin: the server under test on a CPU of its own


def start_serve(tmp: Path, config: Path, root: Path = ROOT, plain: bool = False) -> tuple[subprocess.Popen, str]:
    """``mmr serve`` of the checkout ``root`` on a free port, no auth, with its own SQLite ledger."""
    argv = [*PIN, sys.executable, *(["-c", PLAIN] if plain else ["-m", "router_cli"]), "serve", "--port", "0", "--no-auth",
            "--config", str(config), "--db", str(tmp / f"ledger-{root.name}-{plain}.db")]
    return start(argv, r"listening on (http://\S+) ", env={**KEYS, "PYTHONPATH": str(root)}, stream="stderr",
                 cwd=root)


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of ``pid`` in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def load(base_url: str, model: str, requests: int, clients: int,
               key: str = KEYS["TEST_OPENAI_KEY"]) -> tuple[list[float], float, int, float]:
    """``requests`` calls from ``clients`` concurrent tasks after a warm-up: (latencies in s, wall s, errors,
    the slowest call of the warm-up's first burst in s)."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0)
    latencies: list[float] = []
    errors = 0
    queue = iter(range(requests))

    async def one_client() -> None:
        nonlocal errors
        for i in queue:
            started = time.perf_counter()
            try:
                await client.chat.completions.create(model=model, max_tokens=64,
                                                     messages=[{"role": "user", "content": f"question number {i}"}])
                latencies.append(time.perf_counter() - started)
            except openai.OpenAIError:
                errors += 1

    cold = await warm_up(client, model, clients)
    wall = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    wall = time.perf_counter() - wall
    await client.close()
    return latencies, wall, errors, cold


async def warm_up(client, model: str, clients: int) -> float:
    """Five calls one by one, then two bursts of ``clients`` calls at once, unmeasured: every path opens its
    connections (and mmr serve starts its worker threads) before the clock starts, as a server that has been
    up a while has. Returns the slowest call of the first burst (s): what a cold burst costs."""
    async def call() -> float:
        started = time.perf_counter()
        await client.chat.completions.create(model=model, max_tokens=64, messages=[{"role": "user", "content": "warm"}])
        return time.perf_counter() - started

    for _ in range(5):
        await call()
    first = await asyncio.gather(*(call() for _ in range(clients)))
    await asyncio.gather(*(call() for _ in range(clients)))
    return max(first)


async def streams(base_url: str, count: int) -> tuple[int, int, float]:
    """``count`` streams at once: (complete, errors, wall s)."""
    import httpx2
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0,
                                http_client=openai.DefaultAsyncHttpxClient(
                                    limits=httpx2.Limits(max_connections=count + 10), timeout=120))
    expected = "Answer to: stream " + " ".join(["word"] * 20)
    complete = errors = 0

    async def one(i: int) -> None:
        nonlocal complete, errors
        try:
            text = []
            stream = await client.chat.completions.create(
                model="gpt-small", stream=True, messages=[{"role": "user", "content": "stream " + " ".join(["word"] * 20)}])
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text.append(chunk.choices[0].delta.content)
            complete += "".join(text) == expected
        except openai.OpenAIError:
            errors += 1

    wall = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    await client.close()
    return complete, errors, time.perf_counter() - wall


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rows_for(rows: list, name: str, base_url: str, args, direct: tuple | None = None, pid: int | None = None,
             key: str = KEYS["TEST_OPENAI_KEY"]) -> tuple:
    """One client, then ``args.clients`` clients, against ``base_url``: their rows appended to ``rows``
    (each with its baseline's latencies, ``direct``'s, and the CPU ms per request of process ``pid``,
    the server); returns the latencies of both, for a baseline."""
    one, wall, errors, _ = asyncio.run(load(base_url + "/v1", "gpt-small", args.requests // 5, 1, key))
    rows.append((f"{name}, 1 client", one, wall, errors, direct[0] if direct else None, None, None))
    before = cpu_seconds(pid) if pid else 0.0
    many, wall, errors, cold = asyncio.run(load(base_url + "/v1", "gpt-small", args.requests, args.clients, key))
    cpu = (cpu_seconds(pid) - before) * 1000 / (args.requests + 2 * args.clients + 5) if pid else None
    rows.append((f"{name}, {args.clients} clients", many, wall, errors, direct[1] if direct else None, cpu, cold))
    return one, many


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the provider server adds to each call")
    parser.add_argument("--jitter", type=float, default=0.0, help="each provider call takes latency +- this (uniform)")
    parser.add_argument("--pin", action="store_true", help="the server under test on CPU 1, all else on CPU 0")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of --streams concurrent streams (RSS after each)")
    parser.add_argument("--settle", type=float, default=0,
                        help="after the stream rounds, seconds idle before RSS is read once more")
    parser.add_argument("--litellm", help="the litellm executable of a venv with litellm[proxy] installed")
    parser.add_argument("--before", help="another checkout of mmr whose mmr serve runs side by side (before/after)")
    parser.add_argument("--before-plain", action="store_true", help="run --before without httptools and uvloop")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mmr-bench-serve-"))
    if args.pin:
        os.sched_setaffinity(0, {0})  # this process and the provider server it starts
        PIN[:] = ["taskset", "-c", "1"]
    provider, url = start([sys.executable, "-m", "tests.provider_server", "--port", "0", "--latency", str(args.latency),
                           "--jitter", str(args.jitter), "--no-record"], r"listening on (http://\S+) ")
    procs = [provider]
    try:
        config = tmp / "tiers.yaml"
        config.write_text(TEST_CONFIG.format(url=url, timeout=60))
        serve, mmr = start_serve(tmp, config)
        procs.append(serve)
        servers = [("mmr serve", mmr, serve.pid)]
        if args.before:
            before, old = start_serve(tmp, config, Path(args.before).resolve(), args.before_plain)
            procs.append(before)
            servers.insert(0, ("mmr serve before", old, before.pid))
        if args.requests:
            latency_table(url, servers, procs, args)
        if args.streams:
            stream_rounds(args, [(name, base) for name, base, _ in servers], {name: pid for name, _, pid in servers})
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def latency_table(url: str, servers: list, procs: list, args) -> None:
    """Direct, then each mmr serve, then LiteLLM's proxy when given: one client and ``args.clients``."""
    rows: list = []
    direct = rows_for(rows, "direct", url, args)
    for name, base, pid in servers:
        rows_for(rows, name, base, args, direct, pid)
    if args.litellm:
        master = "sk-" + secrets.token_hex(24)  # LiteLLM refuses to start without a master key
        config = Path(tempfile.mkdtemp(prefix="mmr-bench-litellm-")) / "litellm.yaml"
        config.write_text(LITELLM_CONFIG.format(url=url, key=master))
        port = free_port()
        litellm = subprocess.Popen([*PIN, args.litellm, "--config", str(config), "--port", str(port),
                                    "--num_workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(litellm)
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", 300)
        rows_for(rows, "LiteLLM proxy", f"http://127.0.0.1:{port}", args, direct, litellm.pid, master)
    jitter = f" +- {args.jitter * 1000:.0f}" if args.jitter else ""
    print(f"{args.requests} requests ({args.requests // 5} from 1 client), {args.clients} concurrent clients, provider latency "
          f"{args.latency * 1000:.0f}{jitter} ms, async openai SDK"
          + (", server under test on CPU 1, clients and provider on CPU 0" if args.pin else ""))
    print(f"| {'path':<30} | req/s | p50 ms | p99 ms | added p50 | added p99 | server CPU ms/req | errors "
          f"| cold burst, slowest ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, lat, wall, errors, base, cpu, cold in rows:
        added = (f"{pct(lat, 50) - pct(base, 50):9.1f} | {pct(lat, 99) - pct(base, 99):9.1f}" if base
                 else f"{'':9} | {'':9}")
        shown = f"{cpu:17.2f}" if cpu is not None else f"{'':17}"
        print(f"| {name:<30} | {len(lat) / wall:5.0f} | {pct(lat, 50):6.1f} | {pct(lat, 99):6.1f} | {added} | {shown} "
              f"| {errors} | {cold * 1000 if cold else float('nan'):6.0f} |")


def stream_rounds(args, servers: list, pids: dict) -> None:
    """``args.rounds`` rounds of ``args.streams`` concurrent streams through each mmr serve (taking turns
    within a round, so that both meet the same load on a shared machine); RSS and threads after each."""
    print(f"\n{args.streams} concurrent streams, {args.rounds} rounds; "
          + "; ".join(f"{name} idle: RSS {rss_mb(pids[name])[0]:.0f} MB, {threads(pids[name])} threads"
                      for name, _ in servers))
    print("| server | round | complete | errors | wall s | RSS MB | peak RSS MB | threads |")
    print("|---|---|---|---|---|---|---|---|")
    for round_ in range(1, args.rounds + 1):
        for name, base in servers:
            complete, errors, wall = asyncio.run(streams(base + "/v1", args.streams))
            now, peak = rss_mb(pids[name])
            print(f"| {name} | {round_} | {complete} | {errors} | {wall:.1f} | {now:.0f} | {peak:.0f} | "
                  f"{threads(pids[name])} |", flush=True)
    if args.settle:
        time.sleep(args.settle)
        for name, _ in servers:
            now, peak = rss_mb(pids[name])
            print(f"| {name} | {args.settle:g} s idle | | | | {now:.0f} | {peak:.0f} | {threads(pids[name])} |")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer in {seconds:.0f} s")


if __name__ == "__main__":
    main()
