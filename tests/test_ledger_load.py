"""Eight machines, one team budget, one PostgreSQL ledger: nothing lost, nothing twice, never over the limit.

Each process is a different "machine" (its own $HOME and data directory) running `mmr ask --batch`
against the provider test server. bench/ has no bigger version of this: the figures it prints
(calls/s, spend against the limit) are the test's own.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from decimal import Decimal

from router_cli.errors import EXIT_ROWS_FAILED
from tests.conftest import ROOT, ledger_rows, write_config
from tests.provider_server import reply

MACHINES = 8
CALLS = 200
# An answer costs $0.0002576 (2 input and 64 output tokens of claude-small) or, when claude-small's worst case
# no longer fits but gpt-small's does, $0.0000387 (gpt-small); the limit lets about half through.
COST = {"claude-small": Decimal("0.0002576"), "gpt-small": Decimal("0.0000387")}
LIMIT = COST["claude-small"] * 800


def test_eight_machines_share_one_budget_and_lose_nothing(server, tmp_path, pg_url):
    server.always("claude-small", reply("ok", input_tokens=2, output_tokens=64))
    server.always("gpt-small", reply("ok", input_tokens=2, output_tokens=64))
    config = write_config(tmp_path / "team.yaml", server.url,
                          extra=f"budgets:\n  - {{scope: team, team: ml, period: day, limit: '{LIMIT}', policy: block}}\n")
    procs = []
    started = time.monotonic()
    for machine in range(MACHINES):
        home = tmp_path / f"machine{machine}"
        home.mkdir()
        rows = home / "rows.jsonl"
        rows.write_text("".join(json.dumps({"id": i, "prompt": f"m{machine} q{i}"}) + "\n" for i in range(CALLS)))
        env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "data"),
               "XDG_CONFIG_HOME": str(home / "config"), "MMR_USER": f"user{machine}", "MMR_TEAM": "ml"}
        argv = [sys.executable, "-m", "router_cli", "ask", "--batch", str(rows), "--concurrency", "4",
                "--processes", "1", "--tier", "simple", "--config", str(config), "--db", pg_url]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT))
    outputs = [p.communicate(timeout=300) for p in procs]
    seconds = time.monotonic() - started
    answered, refused = [], 0
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode in (0, EXIT_ROWS_FAILED), err.decode()[-2000:]
        for line in out.decode().splitlines():
            row = json.loads(line)
            if "error" in row:
                assert row["error"]["kind"] == "budget_exceeded", row
                refused += 1
            else:
                answered.append(row["request_id"])
    assert len(answered) + refused == MACHINES * CALLS
    everything = ledger_rows(pg_url)
    assert {r["status"] for r in everything} <= {"ok", "blocked"}  # a refused request records what refused it
    stored = [r for r in everything if r["status"] == "ok"]
    per_request = collections.Counter(r["request_id"] for r in stored)
    assert sorted(per_request) == sorted(answered)  # zero rows lost, none that nobody answered
    assert set(per_request.values()) == {1}  # zero duplicates
    assert len({r["id"] for r in stored}) == len(stored)
    spent = sum(Decimal(r["cost_usd"]) for r in everything)
    assert spent == sum(COST[r["model"]] for r in stored) and spent <= LIMIT
    assert len(answered) >= 700  # the limit was reached, not refused early
    print(f"\n{MACHINES} machines x {CALLS} calls in {seconds:.1f} s ({MACHINES * CALLS / seconds:.0f} calls/s): "
          f"{len(answered)} answered, {refused} refused, ${spent} of ${LIMIT}")
