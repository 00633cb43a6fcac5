"""Cold start, measured side by side in one run: `mmr --help`, `mmr classify` (rules,
default config) and `mmr costs` (empty ledger) against their floors.

Floors: `python -c pass`; `python -c 'import typer'` (no Typer CLI starts faster);
and a one-command Typer app run with one string argument, which is what any Typer
command costs to parse its arguments (Typer 0.29 builds a pydantic TypeAdapter per
parameter when a command runs, about 60 ms that `import typer` alone does not pay).

Every command runs once per round, rounds interleaved, so machine load hits all alike.
`--compare DIR` adds the same mmr commands from another checkout (e.g. a `git worktree`
of an older commit) as a second column.

Run: python bench/startup.py [--rounds 30] [--compare ../before]
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
TYPER_FLOOR = """
import typer
app = typer.Typer()
@app.command()
def classify(prompt: str) -> None:
    print("simple")
app()
"""


def commands(tree: Path, home: str) -> dict[str, tuple[list[str], dict]]:
    env = {**os.environ, "PYTHONPATH": str(tree), "HOME": home, "XDG_CONFIG_HOME": home, "XDG_DATA_HOME": home,
           "MMR_DB": os.path.join(home, "ledger.db"), "NO_COLOR": "1"}
    for name in ("MMR_CONFIG", "PYTHONDONTWRITEBYTECODE"):  # users run from compiled bytecode
        env.pop(name, None)
    py = [sys.executable, "-m", "router_cli"]
    return {
        "mmr --help": (py + ["--help"], env),
        "mmr classify hello": (py + ["classify", "hello"], env),
        "mmr costs (empty ledger)": (py + ["costs", "--since", "7d"], env),
    }


def run_once(argv: list[str], env: dict, cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--compare", type=Path, help="another checkout whose mmr to time beside this one")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="mmr-startup-")
    plain = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    floors = {
        "python -c pass": ([sys.executable, "-c", "pass"], plain),
        "python -c 'import typer'": ([sys.executable, "-c", "import typer"], plain),
        "one-command Typer app": ([sys.executable, "-c", TYPER_FLOOR, "hello"], plain),
    }
    trees = {"": ROOT} if args.compare is None else {"": ROOT, " [compare]": args.compare.resolve()}
    jobs = dict(floors)
    for suffix, tree in trees.items():
        for name, job in commands(tree, home).items():
            jobs[name + suffix] = job
    for argv, env in jobs.values():  # warm the page cache and write any missing bytecode
        run_once(argv, env, home)
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(args.rounds):
        for name, (argv, env) in jobs.items():
            times[name].append(run_once(argv, env, home))
    median = {name: statistics.median(values) for name, values in times.items()}
    typer_s, floor_s = median["python -c 'import typer'"], median["one-command Typer app"]
    print(f"{'command':<36} {'median s':>9} {'min s':>7} {'max s':>7} {'÷ import typer':>15} {'÷ Typer app':>12}")
    for name, values in times.items():
        print(f"{name:<36} {median[name]:>9.3f} {min(values):>7.3f} {max(values):>7.3f} "
              f"{median[name] / typer_s:>15.2f} {median[name] / floor_s:>12.2f}")
    print(f"({args.rounds} interleaved rounds, bytecode compiled)")


if __name__ == "__main__":
    main()
