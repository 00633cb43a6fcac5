"""``kill -9`` of a batch, then ``--resume``: no row paid twice, every id written once.

Through real processes: the real CLI, its worker processes, the real SDKs and the
local provider server, and a real SIGKILL.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ledger_rows, write_config
from tests.provider_server import reply


@pytest.fixture
def db_path(ledger_url):
    """Every test here runs on an SQLite file and on a PostgreSQL database."""
    return ledger_url

ROWS = 60
SLOW = "p0"  # the first row: held back, so the rows after it are answered and recorded but not yet written


def jsonl(*rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def prompts_file(tmp_path: Path, rows: int = ROWS) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text(jsonl(*[{"prompt": f"p{i}"} for i in range(rows)]))
    return path


def output_rows(path: Path) -> list[dict]:
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass  # a line cut short by the kill; --resume ignores it too
    return rows


def batch_argv(config_path: Path, db_path: Path, source: str, processes: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "router_cli", "ask", "--batch", source, "--tier", "simple", "--concurrency", "8",
            "--processes", processes, "--config", str(config_path), "--db", str(db_path), *extra]


def wait_for(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def answered_in_ledger(db_path: Path) -> set[str]:
    """The prompts the ledger holds an answer to."""
    return {r["prompt"] for r in ledger_rows(db_path) if r["status"] == "ok"}


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="finding worker processes needs Linux's /proc")
@pytest.mark.parametrize("processes", ["1", "2"], ids=["one-process", "2-processes"])
def test_kill_9_then_resume_pays_no_recorded_row_twice_and_writes_every_id_once(server, config_path, db_path, tmp_path,
                                                                                 processes):
    server.always("claude-small", reply(delay=0.1))
    server.script_prompt(SLOW, reply(delay=1.5))  # within the 2 s timeout
    source = prompts_file(tmp_path)
    out = tmp_path / "out.jsonl"
    with open(out, "wb") as stdout:
        proc = subprocess.Popen(batch_argv(config_path, db_path, str(source), processes), stdout=stdout,
                                stderr=subprocess.DEVNULL)
    if processes == "2":
        wait_for(lambda: len(children(proc.pid)) >= 2)
    workers = children(proc.pid)
    # The rows behind the slow first one are answered and recorded, but held back to keep the output in order.
    wait_for(lambda: sum(r["status"] == "ok" for r in ledger_rows(db_path)) >= 20)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if processes == "2":
        for pid in workers:  # they finish the calls they had and record them
            wait_for(lambda: not running(pid))
    before = output_rows(out)
    recorded = answered_in_ledger(db_path)
    asked_before = collections.Counter(c["prompt"] for c in server.calls())
    lost = set(asked_before) - set(recorded)  # in flight in the killed process: asked, never recorded
    assert len(before) < 20 <= len(recorded)  # the ledger holds answers the output does not

    resumed = subprocess.run(batch_argv(config_path, db_path, str(source), processes, "--resume", str(out)),
                             capture_output=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    with open(out, "ab") as f:
        f.write(resumed.stdout)

    rows = output_rows(out)
    ids = collections.Counter(r["id"] for r in rows if "text" in r)
    assert sorted(ids) == list(range(1, ROWS + 1)) and set(ids.values()) == {1}  # every id exactly once
    assert all(r["text"] == f"Answer to: p{r['id'] - 1}" for r in rows if "text" in r)
    asked_again = collections.Counter(c["prompt"] for c in server.calls()) - asked_before
    assert set(asked_again.values()) == {1}
    # the resume asked the rows never asked, and of those asked before, only the calls in flight at the
    # instant of the kill: nothing the ledger recorded was paid for twice
    assert set(asked_again) == {f"p{i}" for i in range(ROWS)} - set(asked_before) | lost
    if processes == "2":
        assert lost == set()  # killing mmr lost nothing: its workers recorded every call they made
    else:
        assert len(lost) <= 8
    recovered = len(recorded) - len([r for r in before if "text" in r])
    assert f"{recovered} row(s) written from the ledger".encode() in resumed.stderr


def test_a_row_written_from_the_ledger_is_the_row_the_first_run_wrote(server, mmr, tmp_path):
    source = prompts_file(tmp_path, 6)
    first = mmr("ask", "--batch", str(source), "--tier", "simple")
    assert first.returncode == 0, first.stderr
    rows = [json.loads(line) for line in first.stdout.decode().splitlines()]
    out = tmp_path / "out.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]) + json.dumps(rows[2])[:30])  # killed mid-line
    calls = len(server.calls())

    again = mmr("ask", "--batch", str(source), "--tier", "simple", "--resume", str(out))
    assert again.returncode == 0, again.stderr
    assert len(server.calls()) == calls  # nothing asked again
    recovered = [json.loads(line) for line in again.stdout.decode().splitlines()]
    assert [r["id"] for r in recovered] == [3, 4, 5, 6]
    for mine, theirs in zip(recovered, rows[2:]):
        assert list(mine) == list(theirs)  # the same keys, in the same order
        # the ledger times the calls, not what mmr did around them (the first row waited for the SDK's import)
        assert 0 < mine.pop("wall_ms") <= theirs.pop("wall_ms") + 1
        assert mine == theirs  # latency_ms included: the answering call's, as the ledger has it
    assert b"4 row(s) written from the ledger" in again.stderr


def test_a_cascade_row_from_the_ledger_keeps_its_gate_verdicts_and_judge_calls(server, mmr, tmp_path):
    source = prompts_file(tmp_path, 3)
    first = mmr("cascade", "--batch", str(source), "--gate", "heuristic")
    assert first.returncode == 0, first.stderr
    rows = [json.loads(line) for line in first.stdout.decode().splitlines()]
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps(rows[0]) + "\n")
    again = mmr("cascade", "--batch", str(source), "--gate", "heuristic", "--resume", str(out))
    assert again.returncode == 0, again.stderr
    recovered = [json.loads(line) for line in again.stdout.decode().splitlines()]
    for mine, theirs in zip(recovered, rows[1:], strict=True):
        mine.pop("wall_ms"), theirs.pop("wall_ms")
        assert mine == theirs and "quality" in mine


def test_the_ledger_answers_only_the_same_command_on_the_same_input(server, mmr, tmp_path):
    source = prompts_file(tmp_path, 2)
    assert mmr("ask", "--batch", str(source), "--tier", "simple").returncode == 0
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    # other options: another batch, whose rows were never answered
    other = mmr("ask", "--batch", str(source), "--tier", "medium", "--resume", str(empty))
    assert other.returncode == 0 and len(server.calls()) == 4
    source.write_text(jsonl({"prompt": "p0"}, {"prompt": "changed"}))  # other input: another batch
    changed = mmr("ask", "--batch", str(source), "--tier", "simple", "--resume", str(empty))
    assert changed.returncode == 0 and len(server.calls()) == 6


def test_stdin_resumes_from_the_ledger_under_a_batch_id_and_checks_each_prompt(server, mmr, tmp_path, db_path):
    rows = jsonl({"id": "a", "prompt": "pa"}, {"id": "b", "prompt": "pb"})
    first = mmr("ask", "--batch", "-", "--tier", "simple", "--batch-id", "nightly-1", input=rows)
    assert first.returncode == 0, first.stderr
    assert {(r["batch_id"], r["batch_row"]) for r in ledger_rows(db_path)} == {("nightly-1", "s:a"), ("nightly-1", "s:b")}
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    changed = jsonl({"id": "a", "prompt": "pa"}, {"id": "b", "prompt": "pb, edited"})
    again = mmr("ask", "--batch", "-", "--tier", "simple", "--batch-id", "nightly-1", "--resume", str(empty),
                input=changed)
    assert again.returncode == 0, again.stderr
    assert sorted(c["prompt"] for c in server.calls()) == ["pa", "pb", "pb, edited"]  # an edited row is asked, not recovered
    assert [json.loads(line)["text"] for line in again.stdout.decode().splitlines()] == [
        "Answer to: pa", "Answer to: pb, edited"]


def test_stdin_without_a_batch_id_resumes_from_the_output_only_and_says_how_to_do_better(server, config_path, db_path,
                                                                                         mmr, tmp_path):
    server.always("claude-small", reply(delay=0.2))
    proc = subprocess.Popen(batch_argv(config_path, db_path, "-", "1"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(jsonl(*[{"prompt": f"p{i}"} for i in range(40)]).encode())
    proc.stdin.close()
    proc.stdin = None  # so that communicate() does not flush it
    proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    (batch_id,) = {r["batch_id"] for r in ledger_rows(db_path)}
    assert batch_id.startswith("run-") and f"--resume OUTFILE --batch-id {batch_id}".encode() in stderr


def test_a_ledger_that_keeps_no_answers_says_so_and_asks_again(server, tmp_path, db_path):
    config = write_config(tmp_path / "hash.yaml", server.url, extra="ledger:\n  store: hash\n")
    source = prompts_file(tmp_path, 3)
    argv = [sys.executable, "-m", "router_cli", "ask", "--batch", str(source), "--tier", "simple", "--config", str(config),
            "--db", str(db_path)]
    assert subprocess.run(argv, capture_output=True, timeout=60).returncode == 0
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    again = subprocess.run([*argv, "--resume", str(empty)], capture_output=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert len(server.calls()) == 6 and len(again.stdout.splitlines()) == 3
    assert b"3 answered row(s) of this batch are in the ledger but not in" in again.stderr
    assert b"ledger.store is 'hash'" in again.stderr and b"asked again" in again.stderr


def test_a_bad_batch_id_is_a_usage_error(mmr, tmp_path):
    source = prompts_file(tmp_path, 1)
    result = mmr("ask", "--batch", str(source), "--batch-id", "bad\nid")
    assert result.returncode == 2 and b"--batch-id must be" in result.stderr and b"Traceback" not in result.stderr


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="finding worker processes needs Linux's /proc")
def test_a_resume_right_after_a_kill_waits_for_the_killed_runs_workers_to_record(server, config_path, db_path, tmp_path):
    server.always("claude-small", reply(delay=0.1))
    slow = 1.5
    if not isinstance(db_path, os.PathLike):
        # On PostgreSQL each write is a round trip and the resume connects first: keep the slow row in flight
        # longer than that (and within the provider timeout).
        config_path, slow = write_config(tmp_path / "slow.yaml", server.url, timeout=8.0), 5.0
    server.script_prompt(SLOW, reply(delay=slow))
    source = prompts_file(tmp_path)
    out = tmp_path / "out.jsonl"
    with open(out, "wb") as stdout:
        proc = subprocess.Popen(batch_argv(config_path, db_path, str(source), "2"), stdout=stdout,
                                stderr=subprocess.DEVNULL)
    # Fewer on PostgreSQL: each request's writes are round trips, and the slow row must still be in flight.
    recorded = 20 if isinstance(db_path, os.PathLike) else 5
    wait_for(lambda: sum(r["status"] == "ok" for r in ledger_rows(db_path)) >= recorded)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # at once: the first row is still in flight at a worker of the killed run
    resumed = subprocess.run(batch_argv(config_path, db_path, str(source), "2", "--resume", str(out)),
                             capture_output=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    with open(out, "ab") as f:
        f.write(resumed.stdout)
    ids = collections.Counter(r["id"] for r in output_rows(out) if "text" in r)
    assert sorted(ids) == list(range(1, ROWS + 1)) and set(ids.values()) == {1}
    asked = collections.Counter(c["prompt"] for c in server.calls())
    assert asked == {f"p{i}": 1 for i in range(ROWS)}  # no row paid for twice
    assert b"waiting for another run of this batch" in resumed.stderr
