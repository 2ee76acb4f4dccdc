"""Grading processes (:mod:`autograder.forkserver`): forks of one server that imported torch and nbgrader once,
or a fresh Python where multiprocessing may not fork (a daemonic process, such as a ``dask worker`` under its
nanny). Each runs ``autograder.worker`` with the environment it is given, its output in its log, in a session of
its own. Grading itself through these processes is tested in test_autograder_parallel.py (scores, a SIGKILL, the
time limit)."""

from __future__ import annotations

import multiprocessing
import os

import psutil
import pytest

from autograder.forkserver import PRELOAD, Grader, forks

USAGE = "usage: python -m autograder.worker"


def _env(tmp_path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmp_path), "LRDIFF_TEST_MARK": "given"}


def test_a_grader_is_a_fork_of_a_server_that_imported_torch(tmp_path):
    """Is a grading process a fork of one server (the same parent for two of them) that has torch loaded, and
    does its output go to its log?"""
    assert forks()
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    graders = [Grader(["--help"], _env(tmp_path), log) for log in logs]
    parents = []
    for g in graders:
        try:
            parents.append(psutil.Process(g.pid).ppid())
        except psutil.NoSuchProcess:  # already done: its parent was the server, checked below by its maps
            pass
        assert g.wait(120) == 0
    for log in logs:
        assert USAGE in log.read_text()
    server = psutil.Process(os.getpid()).children()
    servers = [p for p in server if "forkserver" in " ".join(p.cmdline())]
    assert len(servers) == 1, f"expected one forkserver child of this process; found {[p.cmdline() for p in server]}"
    assert set(parents) <= {servers[0].pid}
    assert any("libtorch" in m.path for m in servers[0].memory_maps()), f"{PRELOAD} did not load torch in the server"


def _in_a_daemon(tmp: str, queue) -> None:
    from pathlib import Path

    g = Grader(["--help"], {**os.environ, "TMPDIR": tmp}, Path(tmp) / "d.log")
    queue.put((forks(), g.popen is not None, g.wait(120)))


def test_a_daemonic_process_starts_a_fresh_python(tmp_path):
    """In a daemonic process (multiprocessing may not start children there), is the grading process a fresh
    ``python -m autograder.worker`` instead, with its output in its log?"""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_in_a_daemon, args=(str(tmp_path), queue), daemon=True)
    proc.start()
    try:
        assert queue.get(timeout=180) == (False, True, 0)
    finally:
        proc.join(30)
    assert USAGE in (tmp_path / "d.log").read_text()

