"""Nothing is paid for that the ledger could not record; ledger files stay private; reports change nothing.

The read-only and full-disk conditions are real, not simulated: tests run as root,
which ignores file modes, so a read-only file or directory is made with ``chattr +i``
(which binds root too), a read-only filesystem is a tmpfs remounted read-only, and a
full disk is a small tmpfs filled up. As another user, ``chmod`` makes the read-only
file and directory; the tmpfs tests need root (they skip otherwise).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from router_cli.errors import LedgerError
from tests.conftest import ledger_rows

QUESTION = "What is a monad"


@contextlib.contextmanager
def unwritable(path: Path):
    """``path`` (a file or a directory) cannot be written by this process, whoever it runs as."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o500 if path.is_dir() else 0o400)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    try:
        made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    except FileNotFoundError:
        _skip("chattr (e2fsprogs) is not installed")
    if made.returncode != 0:
        _skip(f"chattr +i is not supported here: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _skip(reason: str) -> None:
    """Skip, naming what is missing; with MMR_REQUIRE_FS=1 (set by .ci/run, which runs as root) fail instead."""
    if os.environ.get("MMR_REQUIRE_FS") == "1":
        pytest.fail(f"MMR_REQUIRE_FS=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MiB tmpfs mounted for this test."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if os.geteuid() != 0:
        _skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        _skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(mount: Path, leave: int) -> None:
    """Fill the filesystem at ``mount`` until ``leave`` bytes are free."""
    fs = os.statvfs(mount)
    size = fs.f_bavail * fs.f_frsize - leave
    fd = os.open(mount / "filler", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)
    fs = os.statvfs(mount)
    assert fs.f_bavail * fs.f_frsize == leave


def one_error_line(result, exit_code: int, *names: str) -> str:
    err = result.stderr.decode()
    assert result.returncode == exit_code, err
    assert err.count("\n") == 1 and err.startswith("Error: ") and "Traceback" not in err, err
    for name in names:
        assert name in err, err
    return err


def sidecars(db: Path) -> list[str]:
    return sorted(p.name for p in db.parent.iterdir() if p.name.startswith(db.name + "-"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recorded_ledger(mmr, server, db: Path) -> dict:
    """A ledger holding one answered request, closed (no -wal/-shm); its ``--json`` answer."""
    answer = mmr("ask", "--no-stream", "--json", "--tier", "simple", "--db", str(db), "first question")
    assert answer.returncode == 0, answer.stderr.decode()
    assert sidecars(db) == []
    server.reset()
    return json.loads(answer.stdout)


# ---------------------------------------------------------------- item 1: checked before the first call


def test_a_read_only_ledger_stops_ask_before_the_provider_is_called(mmr, server, db_path):
    recorded_ledger(mmr, server, db_path)
    with unwritable(db_path):
        result = mmr("ask", "--no-stream", "--tier", "simple", QUESTION)
        assert sidecars(db_path) == []  # SQLite was not left to open it read-only beside our back
    one_error_line(result, 7, str(db_path), "no provider was called")
    assert result.stdout == b""
    assert server.calls() == []
    assert len(ledger_rows(db_path)) == 1


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_read_only_ledger_stops_a_batch_before_any_row_is_sent(mmr, server, db_path, processes):
    recorded_ledger(mmr, server, db_path)
    rows = "".join(json.dumps({"id": i, "prompt": f"{QUESTION} {i}"}) + "\n" for i in range(3))
    with unwritable(db_path):
        result = mmr("ask", "--batch", "-", "--tier", "simple", "--concurrency", "2", "--processes", processes,
                     input=rows)
    err = result.stderr.decode()
    assert result.returncode == 7 and str(db_path) in err and "Traceback" not in err, err
    assert result.stdout == b""
    assert server.calls() == []


def test_a_read_only_directory_stops_ask_before_the_provider_is_called(mmr, server, tmp_path):
    db = tmp_path / "ledgers" / "ledger.db"
    recorded_ledger(mmr, server, db)
    with unwritable(db.parent):
        result = mmr("ask", "--no-stream", "--tier", "simple", "--db", str(db), QUESTION)
    one_error_line(result, 7, str(db))
    assert server.calls() == []


def test_a_full_disk_stops_ask_before_the_provider_is_called(mmr, server, small_fs):
    db = small_fs / "ledger.db"
    recorded_ledger(mmr, server, db)
    fill(small_fs, 40 * 1024)  # less than a request's rows need (~50 KB of WAL, plus a 32 KB -shm)
    result = mmr("ask", "--no-stream", "--tier", "simple", "--db", str(db), QUESTION)
    one_error_line(result, 7, str(db), "full", "no provider was called")
    assert server.calls() == []


def test_a_full_disk_stops_a_batch_before_any_row_is_sent(mmr, server, small_fs):
    db = small_fs / "ledger.db"
    recorded_ledger(mmr, server, db)
    fill(small_fs, 40 * 1024)
    rows = "".join(json.dumps({"prompt": f"{QUESTION} {i}"}) + "\n" for i in range(3))
    result = mmr("ask", "--batch", "-", "--tier", "simple", "--db", str(db), input=rows)
    err = result.stderr.decode()
    assert result.returncode == 7 and str(db) in err and "full" in err, err
    assert server.calls() == []


def test_a_disk_that_fills_under_a_running_router_stops_its_next_request(config, server, small_fs):
    from router_cli import Router

    db = small_fs / "ledger.db"
    with Router(config, db) as router:
        assert router.ask(QUESTION, tier="simple").ledger_error is None
        server.reset()
        fill(small_fs, 40 * 1024)
        with pytest.raises(LedgerError, match="full.*no provider was called"):
            router.ask(QUESTION, tier="simple")
    assert server.calls() == []


def test_a_ledger_locked_past_the_busy_timeout_stops_ask_before_the_call(mmr, server, db_path, config_path):
    from tests.conftest import write_config

    recorded_ledger(mmr, server, db_path)
    config = write_config(config_path, server.url, extra="ledger:\n  busy_timeout: 0.3\n")
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = mmr("ask", "--no-stream", "--tier", "simple", "--config", str(config), QUESTION)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    one_error_line(result, 7, str(db_path), "locked by another process", "no provider was called")
    assert result.stdout == b"" and server.calls() == []


def test_check_writable_takes_the_write_lock(db_path):
    from router_cli.ledger import open_ledger

    with open_ledger(db_path, busy_timeout=0.2) as ledger:
        ledger.check_writable()
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(LedgerError, match="locked by another process"):
                ledger.check_writable()
        finally:
            other.execute("ROLLBACK")
            other.close()
        ledger.check_writable()
    with open_ledger(db_path, readonly=True) as ledger:
        with pytest.raises(LedgerError, match="read-only"):
            ledger.check_writable()


def test_check_writable_changes_nothing(db_path, mmr, server):
    recorded_ledger(mmr, server, db_path)
    from router_cli.ledger import SCHEMA_VERSION, open_ledger

    before = ledger_rows(db_path)
    with open_ledger(db_path) as ledger:
        for _ in range(3):
            ledger.check_writable()
        assert ledger.read("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert ledger_rows(db_path) == before


# ---------------------------------------------------------------- item 9: files and modes


def test_an_empty_file_given_as_db_becomes_a_private_ledger(mmr, server, tmp_path):
    db = tmp_path / "touched.db"
    db.touch(mode=0o644)
    db.chmod(0o644)
    result = mmr("ask", "--no-stream", "--tier", "simple", "--db", str(db), QUESTION)
    assert result.returncode == 0, result.stderr.decode()
    assert db.stat().st_mode & 0o777 == 0o600
    assert len(ledger_rows(db)) == 1


def test_an_existing_ledger_keeps_the_mode_its_owner_gave_it(mmr, server, db_path):
    recorded_ledger(mmr, server, db_path)
    db_path.chmod(0o640)  # shared with a group on purpose: mmr tightens only files it initialises
    assert mmr("ask", "--no-stream", "--tier", "simple", QUESTION).returncode == 0
    assert db_path.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("free_kib", [0, 8, 40])
def test_a_new_ledger_on_a_full_disk_leaves_no_file_behind(mmr, server, small_fs, free_kib):
    fill(small_fs, free_kib * 1024)
    db = small_fs / "new.db"
    result = mmr("ask", "--no-stream", "--tier", "simple", "--db", str(db), QUESTION)
    one_error_line(result, 7, str(db))
    assert sorted(p.name for p in small_fs.iterdir()) == ["filler"]
    assert server.calls() == []


REPORTS = [["costs"], ["health"], ["labels"], ["eval", "--replay", "--classifier", "rules"]]


def run_reports(mmr, db: Path, answer: dict) -> None:
    for report in [*REPORTS, ["explain", answer["request_id"]]]:
        result = mmr(*report, "--db", str(db))
        assert result.returncode == 0, (report, result.stderr.decode())
    assert "first question" in mmr("explain", answer["call_id"], "--json", "--db", str(db)).stdout.decode()


def test_reports_read_a_read_only_ledger_file_and_leave_nothing_behind(mmr, server, db_path):
    answer = recorded_ledger(mmr, server, db_path)
    before = digest(db_path)
    with unwritable(db_path):
        run_reports(mmr, db_path, answer)
        assert sidecars(db_path) == []
    assert digest(db_path) == before


def test_reports_read_a_ledger_in_a_read_only_directory(mmr, server, tmp_path):
    db = tmp_path / "ledgers" / "ledger.db"
    answer = recorded_ledger(mmr, server, db)
    before = digest(db)
    with unwritable(db.parent):
        run_reports(mmr, db, answer)
    assert sidecars(db) == [] and digest(db) == before


def test_reports_read_a_ledger_on_a_read_only_filesystem(mmr, server, small_fs):
    db = small_fs / "ledger.db"
    answer = recorded_ledger(mmr, server, db)
    before = digest(db)
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        run_reports(mmr, db, answer)
        result = mmr("ask", "--no-stream", "--tier", "simple", "--db", str(db), QUESTION)
        one_error_line(result, 7, str(db))
        assert server.calls() == []
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    assert sidecars(db) == [] and digest(db) == before


def test_reports_leave_a_0400_ledger_as_it_was(mmr, server, db_path):
    answer = recorded_ledger(mmr, server, db_path)
    db_path.chmod(0o400)
    before = digest(db_path), db_path.stat().st_mtime_ns
    run_reports(mmr, db_path, answer)
    assert sidecars(db_path) == []
    assert (digest(db_path), db_path.stat().st_mtime_ns) == before


def test_a_report_beside_a_live_writer_reads_through_its_wal(mmr, server, db_path):
    answer = recorded_ledger(mmr, server, db_path)
    writer = sqlite3.connect(db_path, isolation_level=None)  # keeps the -wal and -shm alive, like a running mmr
    try:
        writer.execute("UPDATE calls SET user = 'late-edit'")  # committed into the WAL only
        db_path.chmod(0o400)
        result = mmr("costs", "--by", "user", "--json", "--db", str(db_path))
        assert result.returncode == 0, result.stderr.decode()
        assert "late-edit" in result.stdout.decode()
    finally:
        writer.close()
    assert answer["request_id"]
