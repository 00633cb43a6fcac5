"""The SQLite ledger's bounded pool of connections: many threads, few connections, no lost or doubled
write, transactions whole, no deadlock with more threads than connections; ``mmr serve`` under
concurrent streams opens no more than the pool's connections.

Connections are counted twice: by the pool's own bookkeeping and by the process's open file
descriptors on the ledger file (each SQLite connection opens the file once).
"""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from router_cli.errors import LedgerError
from router_cli.ledger import SQLiteLedger
from router_cli.ledger.sqlite_base import SQLiteBase
from tests.conftest import ledger_rows, write_config
from tests.provider_server import reply
from tests.serve_fixture import start_serve

pytestmark = pytest.mark.timeout(120)


def open_files(pid: int | str, path: Path) -> int:
    """How many file descriptors of process ``pid`` are open on ``path`` (not its -wal or -shm)."""
    target = str(path.resolve())
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd) == target
        except OSError:
            pass  # closed meanwhile
    return count


class Watch:
    """The most descriptors open on ``path`` (and threads) in process ``pid``, sampled every few ms."""

    def __init__(self, pid: int | str, path: Path):
        self.pid, self.path = pid, path
        self.files = self.threads = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            self.files = max(self.files, open_files(self.pid, self.path))
            self.threads = max(self.threads, len(os.listdir(f"/proc/{self.pid}/task")))
            time.sleep(0.005)

    def __enter__(self) -> "Watch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(10)


def call(n: int, cost: int = 1) -> dict:
    return {"id": f"c{n:04d}", "request_id": f"r{n:04d}", "attempt": 1, "status": "ok", "cost_nanousd": cost,
            "datetime_utc": "2024-05-01T12:00:00.000Z"}


def run_threads(count: int, work) -> list[BaseException]:
    """``work(i)`` in ``count`` threads started together; the errors they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def one(i: int) -> None:
        try:
            start.wait(30)
            work(i)
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    return errors


if not os.path.isdir("/proc/self/fd"):
    pytest.skip("counts open files through /proc", allow_module_level=True)


def test_fifty_threads_share_four_connections_and_every_write_lands_exactly_once(tmp_path):
    path = tmp_path / "l.db"
    store = SQLiteLedger(path, pool_size=4)

    def work(t: int) -> None:
        for i in range(20):
            n = t * 20 + i
            store.record([call(n)])
            assert store.read("SELECT count(*) FROM calls WHERE id = ?", [f"c{n:04d}"]).fetchone()[0] == 1
            store.update_breaker("p", "m", lambda row: {**(row or {"state": "closed", "failures": "[]"}),
                                                        "updated_at": float(n)})
            store.cache_get(f"k{n}")

    with Watch(os.getpid(), path) as watch:
        errors = run_threads(50, work)
    assert errors == []
    assert sorted(r["id"] for r in store.rows()) == [f"c{n:04d}" for n in range(1000)]
    assert store.spent_nanousd("global", None, "0") == 1000
    assert 2 <= store.pool.peak <= 4 and 2 <= watch.files <= 4, (store.pool.peak, watch.files)
    # Every pooled connection has every setting, not only the first one opened.
    for conn in store.pool.connections:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    assert open_files(os.getpid(), path) == 0


@pytest.mark.parametrize("size", [1, 3])
def test_a_budget_hold_stays_one_transaction_with_more_threads_than_connections(tmp_path, size):
    """Each hold reads what the others hold inside its write transaction, then holds 10 if the
    total stays within 100: exactly ten of thirty threads may hold. With one connection the
    read inside the transaction must run on the transaction's own connection (else it would
    wait for a second one, here 5 s and a LedgerError, or read outside the transaction)."""

    class Impatient(SQLiteLedger):
        pool_wait = 5.0

    store = Impatient(tmp_path / "l.db", pool_size=size)
    held: list[str] = []

    def work(i: int) -> None:
        rid = f"r{i:02d}"

        def decide():
            others = store.held_nanousd("global", None, rid, time.time())
            time.sleep(0.002)  # another thread would slip in here if the check and the write were apart
            return None if others + 10 > 100 else (10, time.time() + 600)

        if store.hold_budget(rid, None, None, decide):
            held.append(rid)

    assert run_threads(30, work) == []
    assert len(held) == 10
    assert store.held_nanousd("global", None, "nobody", time.time()) == 100
    assert store.pool.peak <= size
    store.close()


def test_a_cursor_gives_its_connection_back_when_read_dropped_or_closed(tmp_path):
    store = SQLiteLedger(tmp_path / "l.db", pool_size=1)
    store.record([call(n) for n in range(3)])

    def another_thread_writes(n: int) -> float:
        """Seconds another thread waited for the one connection to write a row."""
        started = time.monotonic()
        errors = run_threads(1, lambda _: store.record([call(n)]))
        assert errors == []
        return time.monotonic() - started

    assert store.read("SELECT 1").fetchone() == (1,)  # a one-shot read: dropped at once
    assert another_thread_writes(10) < 5
    assert len(store.read("SELECT * FROM calls").fetchall()) == 4
    assert [r[0] for r in store.read("SELECT id FROM calls ORDER BY id")] == ["c0000", "c0001", "c0002", "c0010"]
    assert another_thread_writes(11) < 5

    rows = store.read("SELECT id FROM calls ORDER BY id")
    reading = iter(rows)
    assert next(reading) == ("c0000",)  # half read: this thread still holds the connection
    timer = threading.Timer(0.5, rows.close)
    timer.start()
    assert another_thread_writes(12) >= 0.4  # it waited for the close
    timer.join()
    with pytest.raises(sqlite3.ProgrammingError):  # closed: it never reads from a connection given back
        next(reading)
    batches = store.read("SELECT id FROM calls ORDER BY id")
    assert len(batches.fetchmany(4)) == 4 and len(batches.fetchmany(4)) == 2 and batches.fetchmany(4) == []
    assert another_thread_writes(13) < 5  # read to the end: given back, though still referenced
    with store.read("SELECT count(*) FROM calls") as rows:
        assert rows.fetchone() == (7,)
    store.close()


def test_a_thread_reading_writes_on_its_own_connection_while_others_wait(tmp_path):
    """A thread iterating a cursor that writes for each row takes no second connection: with one
    connection and other threads queued for it, nothing deadlocks."""
    store = SQLiteLedger(tmp_path / "l.db", pool_size=1)
    store.record([call(n) for n in range(5)])

    def work(t: int) -> None:
        if t == 0:
            for (rid,) in store.read("SELECT request_id FROM calls WHERE id < 'c0005' ORDER BY id"):
                store.record({"budget_holds": [{"request_id": "h" + rid, "nanousd": 1, "expires_at": 1e12}]})
        else:
            store.record([call(100 + t)])

    assert run_threads(8, work) == []
    assert store.held_nanousd("global", None, "x", 0) == 5 and len(store.rows()) == 12
    store.close()


def test_a_cursor_collected_inside_the_pools_own_lock_does_not_deadlock(tmp_path):
    """The cyclic garbage collector may finalise a half-read cursor while this very thread holds the
    pool's lock (any allocation there can trigger it): giving its connection back must not take that
    lock again."""
    store = SQLiteLedger(tmp_path / "l.db", pool_size=2)
    gc.disable()  # the cycle is collected where the test says, not earlier
    try:
        def half_read_in_a_cycle() -> None:
            rows = store.read("SELECT 1 UNION SELECT 2")
            assert rows.fetchone() == (1,)
            box: list = [rows]
            box.append(box)

        half_read_in_a_cycle()

        def collect_under_the_lock() -> None:
            with store.pool._guard:
                gc.collect()

        collector = threading.Thread(target=collect_under_the_lock, daemon=True)
        collector.start()
        collector.join(10)
        assert not collector.is_alive(), "deadlocked"
    finally:
        gc.enable()
    store.record([call(1)])  # its connection came back
    assert len(store.rows()) == 1 and store.pool.peak <= 2
    store.close()


def test_a_cursor_dropped_while_another_thread_waits_frees_the_connection_at_once(tmp_path):
    class Impatient(SQLiteLedger):
        pool_wait = 10.0

    store = Impatient(tmp_path / "l.db", pool_size=1)
    rows = store.read("SELECT 1 UNION SELECT 2")
    assert rows.fetchone() == (1,)  # half read: holds the one connection
    waited: list[float] = []

    def write(_: int) -> None:
        started = time.monotonic()
        store.record([call(1)])
        waited.append(time.monotonic() - started)

    writer = threading.Thread(target=lambda: waited.append(-1.0) if run_threads(1, write) else None)
    writer.start()
    time.sleep(0.3)  # the writer is waiting for the connection now
    del rows
    writer.join(15)
    assert len(waited) == 1 and 0.2 < waited[0] < 5, waited  # not the whole pool_wait
    store.close()


def test_waiting_too_long_for_a_connection_is_a_ledger_error(tmp_path):
    class Impatient(SQLiteLedger):
        pool_wait = 0.2

    store = Impatient(tmp_path / "l.db", pool_size=1)
    rows = store.read("SELECT 1")  # holds the one connection
    errors = run_threads(1, lambda _: store.record([call(1)]))
    assert [type(e) for e in errors] == [LedgerError]
    assert "all 1 ledger connections of this process stayed busy for 0.2 s" in str(errors[0])
    rows.close()
    store.record([call(1)])
    assert len(store.rows()) == 1
    store.close()


def test_mmr_serve_with_sixty_streams_in_flight_opens_at_most_the_pool_of_connections(server, tmp_path):
    """Sixty concurrent streams (each over two seconds long, so that a busy machine still has them all
    in flight together) run in sixty worker threads of
    ``mmr serve``; the ledger file is open at most ``pool_size`` times in the server, and
    every stream is complete and recorded once."""
    import openai

    db = tmp_path / "ledger.db"
    server.always("gpt-small", reply("one two three four five six", chunk_delay=0.4))
    served = start_serve(write_config(tmp_path / "serve.yaml", server.url), db, "--no-auth")
    texts: dict[int, str] = {}
    try:
        def stream(i: int) -> None:
            client = openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0, timeout=60)
            chunks = client.chat.completions.create(model="gpt-small", stream=True,
                                                    messages=[{"role": "user", "content": f"q{i}"}])
            texts[i] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        with Watch(served.proc.pid, db) as watch:
            errors = run_threads(60, stream)
        assert errors == []
    finally:
        served.stop()
    assert texts == {i: "one two three four five six" for i in range(60)}
    assert watch.threads >= 50, watch.threads  # the streams were in flight together, in threads of their own
    assert 1 <= watch.files <= SQLiteBase.pool_size, watch.files
    rows = [r for r in ledger_rows(db) if r["role"] == "answer"]
    assert len(rows) == 60 and len({r["request_id"] for r in rows}) == 60
