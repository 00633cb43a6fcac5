"""A real PostgreSQL server for the tests: initdb and pg_ctl into a temporary directory.

Listens only on a Unix socket in that directory. initdb refuses to run as root, so as
root (CI) the server runs as the unprivileged ``postgres`` user of Debian's package
(``runuser``), with the directory handed to it; otherwise it runs as the current user.
``MMR_REQUIRE_PG=1`` turns "no server can be started here" into a failure.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

_DEBIAN_BIN = Path("/usr/lib/postgresql")


def find_bin() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres; None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(_DEBIAN_BIN.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name), reverse=True)
    return versions[0].parent if versions else None


class PgServer:
    """One server: :meth:`start`, :meth:`create_database` (a URL), :meth:`stop`/:meth:`kill`."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="mmr-pg-"))
        self.data = self.dir / "data"
        self.socket_dir = self.dir
        self.as_user: list[str] = []
        self.superuser = os.environ.get("USER") or "mmr"
        if os.geteuid() == 0:
            import pwd

            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no 'postgres' user to run the server as") from None
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.superuser = "mmr_admin"
        self._names = itertools.count(1)

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, *argv], capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> "PgServer":
        if not (self.data / "PG_VERSION").exists():
            self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.superuser, "--auth=trust",
                      "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
            # Role mmr_pw must give its password (tests of secrets); everyone else is trusted on the socket.
            hba = self.data / "pg_hba.conf"
            hba.write_text("local all mmr_pw scram-sha-256\n" + hba.read_text())
        self._pg_ctl_start()
        return self

    def _pg_ctl_start(self) -> None:
        # fsync off makes creating databases fast and survives the server's crash (not the machine's);
        # commits stay synchronous, so a commit mmr saw survives pg_ctl stop -m immediate.
        options = (f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' -c fsync=off "
                   "-c full_page_writes=off -c max_connections=200")
        done = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "-o", options,
                         "-l", str(self.dir / "log"), "start", check=False)
        if done.returncode != 0:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()} {log[-2000:]}")

    def url(self, dbname: str = "postgres", user: str | None = None) -> str:
        """A libpq URL for ``dbname`` over the socket (no password: trust on the socket)."""
        return f"postgresql://{user or self.superuser}@/{dbname}?host={self.socket_dir}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"mmr_test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            conn.execute(sql)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: as if it crashed); the data directory stays for :meth:`start`."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
