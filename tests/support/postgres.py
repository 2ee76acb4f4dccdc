"""A throwaway PostgreSQL server on loopback, for the tests and the benchmarks (Debian's ``postgresql``).

:func:`running_postgres` runs ``initdb`` into a fresh temporary folder and starts the server with ``pg_ctl``:
as the ``postgres`` user when we are root (``runuser -u postgres --``; PostgreSQL refuses to run as root), as
ourselves otherwise; listening on 127.0.0.1 only, on a free port, with trust authentication on loopback. It
creates a database for the course and yields a :class:`PostgresServer`, whose ``url`` is the SQLAlchemy URL
``postgresql+psycopg://USER@127.0.0.1:PORT/DB``. The server is always stopped (``pg_ctl stop -m immediate``)
and its folder removed, whatever happens in between.

:func:`postgres` is the same as a module-scoped pytest fixture; where the binaries are missing it skips the
module's tests, and fails them under CI (``scripts/install_system_deps.sh`` installs them).

>>> with running_postgres() as pg:  # doctest: +SKIP
...     pg.url
'postgresql+psycopg://postgres@127.0.0.1:41234/lrdiff'
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from .ci import skip_or_fail

__all__ = ["PostgresServer", "pg_bindir", "postgres", "running_postgres"]

#: The database :func:`running_postgres` creates for the course.
COURSE_DB = "lrdiff"
#: Settings for a test server: nothing survives it, so nothing needs to reach the disk.
FAST = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def pg_bindir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on PATH, or Debian's newest ``/usr/lib/postgresql/<ver>/bin``."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    found = [d for d in Path("/usr/lib/postgresql").glob("*/bin")
             if (d / "initdb").exists() and (d / "pg_ctl").exists()]
    found.sort(key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    """A running server: its superuser, port and folder; :attr:`url` points at the course's database."""

    bindir: Path
    folder: Path  # data/, the socket and the log
    user: str
    port: int = 0

    @property
    def url(self) -> str:
        return self.url_of(COURSE_DB)

    def url_of(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database ``name``; its URL."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        """A PostgreSQL program of :attr:`bindir`, as the server's owner."""
        argv = [str(self.bindir / cmd[0]), *cmd[1:]]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", self.user, "--", *argv]
        proc = subprocess.run(argv, cwd=self.folder, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{cmd[0]} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}\n{tail}")
        return proc

    def start(self, durable: bool = False) -> None:
        """``initdb`` (trust on loopback) and ``pg_ctl start`` on a free port of 127.0.0.1 (a few tries)."""
        data = self.folder / "data"
        self._run("initdb", "-D", str(data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--locale=C",
                  "--no-sync", "--no-instructions")
        settings = ["listen_addresses=127.0.0.1", f"unix_socket_directories={self.folder}"]
        settings += [] if durable else list(FAST)
        for attempt in range(3):
            self.port = _free_port()
            opts = " ".join([f"-p {self.port}", *(f"-c {s}" for s in settings)])
            proc = self._run("pg_ctl", "-D", str(data), "-l", str(self.folder / "server.log"), "-w", "-t", "60",
                             "-o", opts, "start", check=attempt == 2)
            if proc.returncode == 0:
                return

    def stop(self) -> None:
        """``pg_ctl stop -m immediate``; the postmaster is killed if that fails."""
        data = self.folder / "data"
        pidfile = data / "postmaster.pid"
        if not pidfile.exists():
            return
        proc = self._run("pg_ctl", "-D", str(data), "stop", "-m", "immediate", "-w", "-t", "30", check=False)
        if proc.returncode != 0 and pidfile.exists():
            try:
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
            except (ValueError, IndexError, ProcessLookupError, PermissionError):
                pass


@contextmanager
def running_postgres(durable: bool = False) -> Iterator[PostgresServer]:
    """A fresh server with the course's database (see the module's docstring); stopped and removed at the end.

    Args:
        durable: PostgreSQL's own settings (``fsync`` on, as in production); by default a test server skips
            writing to disk.

    Raises:
        FileNotFoundError: ``initdb`` or ``pg_ctl`` is not installed.
    """
    bindir = pg_bindir()
    if bindir is None:
        raise FileNotFoundError("initdb and pg_ctl not found (on PATH or under /usr/lib/postgresql/*/bin); "
                                "scripts/install_system_deps.sh installs Debian's postgresql")
    root = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="lrdiff-postgres-"))
    server = PostgresServer(bindir, folder, "postgres" if root else getpass.getuser())
    try:
        if root:  # the server runs as postgres: the folder is its own
            shutil.chown(folder, user="postgres", group=None)
        server.start(durable)
        server.create_database(COURSE_DB)
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for a test module (:func:`running_postgres`); skipped here, failed under
    CI, where ``initdb``/``pg_ctl`` are missing."""
    if pg_bindir() is None:
        skip_or_fail("PostgreSQL is not installed (initdb/pg_ctl): scripts/install_system_deps.sh installs it")
    with running_postgres() as server:
        yield server
