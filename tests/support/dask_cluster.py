"""A real Dask cluster on 127.0.0.1 for the tests: ``dask scheduler`` and ``dask worker`` processes, started
and stopped here (no mock), each worker with its own temporary folder (where its tasks' scratch folders,
``lrdiff-task-*``, are made) and its own log (in ``folder``).

>>> with dask_cluster(tmp_path, env, workers=2) as cluster:  # doctest: +SKIP
...     cluster.add_worker("nobwrap", PATH=".venv/bin")       # one more, with another environment
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from autograder import ROOT

__all__ = ["DaskCluster", "dask_cluster"]


class DaskCluster:
    """The processes of one cluster: ``address`` (the scheduler's), ``workers`` (name -> ``dask worker``)."""

    def __init__(self, folder: Path, env: dict[str, str], dashboard: bool = False) -> None:
        self.folder, self.env, self.dashboard = Path(folder), env, dashboard
        self.procs: list[subprocess.Popen] = []
        self.workers: dict[str, subprocess.Popen] = {}
        self.address = ""
        # the workers' temporary folders: reachable by the sandbox's other uid (not under pytest's 0700 tmp)
        self.tmp = Path(tempfile.mkdtemp(prefix="lrdiff-dask-"))
        os.chmod(self.tmp, 0o755)

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        with open(self.folder / f"{name}.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start_scheduler(self, seconds: float = 60) -> str:
        file = self.folder / "scheduler.json"
        board = ["--dashboard-address", "127.0.0.1:0"] if self.dashboard else ["--no-dashboard"]
        proc = self._start("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                         *board, "--scheduler-file", str(file)], self.env)
        deadline = time.monotonic() + seconds
        while not self.address:
            assert proc.poll() is None, f"dask scheduler exited with status {proc.returncode}, expected it running"
            assert time.monotonic() < deadline, f"expected {file.name} within {seconds} s, found none"
            try:
                self.address = json.loads(file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.2)
        return self.address

    def tmpdir(self, name: str) -> Path:
        """The worker ``name``'s temporary folder (its ``TMPDIR``)."""
        return self.tmp / name

    def add_worker(self, name: str, **env: str) -> subprocess.Popen:
        """Start worker ``name`` (one process, one thread), its environment updated with ``env``."""
        self.tmpdir(name).mkdir(mode=0o755)
        proc = self._start(name, ["distributed.cli.dask_worker", self.address, "--nworkers", "1", "--nthreads", "1",
                                  "--no-dashboard", "--host", "127.0.0.1", "--name", name],
                           {**self.env, "TMPDIR": str(self.tmpdir(name)), **env})
        self.workers[name] = proc
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        from autograder.sandbox import force_rmtree  # also removes folders student code made unreadable

        force_rmtree(self.tmp)


@contextmanager
def dask_cluster(folder: Path, env: dict[str, str], workers: int = 2, dashboard: bool = False
                 ) -> Iterator[DaskCluster]:
    """A scheduler on 127.0.0.1 (with a dashboard or not) and ``workers`` workers ``w0``, ``w1``, ... in the
    environment ``env``, all stopped on leaving."""
    cluster = DaskCluster(folder, env, dashboard)
    try:
        cluster.start_scheduler()
        for i in range(workers):
            cluster.add_worker(f"w{i}")
        yield cluster
    finally:
        cluster.stop()
