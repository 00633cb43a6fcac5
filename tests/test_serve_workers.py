"""``mmr serve``'s worker threads (server/workers.py): a thread per task in flight up to the limit,
idle ones end, nothing submitted is lost, shutdown waits for the work."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from router_cli.server.workers import Workers

pytestmark = pytest.mark.timeout(60)


def wait_for(condition, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_every_task_in_flight_gets_a_thread_of_its_own():
    """300 tasks that each wait for all the others: they finish only if all 300 run at once."""
    pool = Workers(limit=1000, idle=5)
    together = threading.Barrier(300)
    futures = [pool.submit(together.wait, 30) for _ in range(300)]
    assert sorted(f.result(40) for f in futures) == list(range(300))
    assert pool.threads == 300
    pool.shutdown()


def test_idle_threads_end_and_new_work_starts_them_again():
    pool = Workers(limit=100, idle=0.2)
    together = threading.Barrier(50)
    for f in [pool.submit(together.wait, 10) for _ in range(50)]:
        f.result(20)
    assert pool._started == 50  # (not pool.threads: on a busy machine some may already have ended)
    assert wait_for(lambda: pool.threads == 0), pool.threads
    assert pool.submit(lambda: threading.current_thread().name).result(5).startswith("mmr-serve-")
    assert pool.threads == 1
    pool.shutdown()
    assert pool.threads == 0


def test_threads_in_use_are_reused_before_new_ones_start():
    pool = Workers(limit=100, idle=5)
    for i in range(200):  # one at a time: one thread does them all
        assert pool.submit(lambda n: n * 2, i).result(5) == i * 2
    assert pool.threads == 1
    pool.shutdown()


def test_over_the_limit_tasks_wait_for_a_thread_and_none_is_lost():
    pool = Workers(limit=4, idle=5)
    running, most = 0, 0
    lock = threading.Lock()

    def task(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return n

    futures = [pool.submit(task, n) for n in range(40)]
    assert [f.result(20) for f in futures] == list(range(40))
    assert most == 4 and pool.threads == 4
    pool.shutdown()


def test_work_queued_at_the_limit_leaves_no_phantom_free_thread_behind():
    """An item queued at the limit is taken by the next thread to free up, which must not also count
    itself free: else, once idle threads end, a later item waits for a thread that does not exist."""
    pool = Workers(limit=1, idle=0.2)
    release = threading.Event()
    first = pool.submit(release.wait, 10)
    queued = pool.submit(lambda: "queued")  # at the limit: waits for the one thread
    release.set()
    assert first.result(5) and queued.result(5) == "queued"
    assert wait_for(lambda: pool.threads == 0), pool.threads
    assert pool.submit(lambda: "after idle").result(5) == "after idle"
    pool.shutdown()


def test_shutdown_can_cancel_what_has_not_started():
    pool = Workers(limit=1, idle=5)
    release = threading.Event()
    running = pool.submit(release.wait, 10)
    waiting = [pool.submit(lambda: "never") for _ in range(3)]
    stopper = threading.Thread(target=pool.shutdown, kwargs={"cancel_futures": True})
    stopper.start()
    assert wait_for(lambda: all(f.cancelled() for f in waiting))
    release.set()
    stopper.join(10)
    assert running.result(5) is True and pool.threads == 0


def test_an_exception_reaches_the_future_and_the_thread_goes_on():
    pool = Workers(limit=2, idle=5)
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(5)
    assert pool.submit(lambda: "still here").result(5) == "still here"
    pool.shutdown()


def test_shutdown_finishes_the_work_submitted_before_it():
    pool = Workers(limit=3, idle=5)
    done: list[int] = []
    for n in range(9):
        pool.submit(lambda n=n: (time.sleep(0.05), done.append(n)))
    pool.shutdown(wait=True)
    assert sorted(done) == list(range(9)) and pool.threads == 0
    with pytest.raises(RuntimeError):
        pool.submit(print)


def test_the_event_loop_runs_blocking_calls_in_it():
    pool = Workers(limit=8, idle=5)

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        return await asyncio.gather(*(loop.run_in_executor(pool, lambda: threading.current_thread().name)
                                      for _ in range(5)))

    assert all(name.startswith("mmr-serve-") for name in asyncio.run(main()))
    pool.shutdown()
