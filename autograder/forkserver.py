"""Starting a grading process (:mod:`autograder.worker`): a fork of a server that imported everything once.

A grading task grades its student in a process of its own, so that a grader that dies fails only that student
and a time limit can kill it whole. Starting Python and importing torch, nbgrader and the course's checks costs
about 6 s of CPU a student. multiprocessing's ``forkserver`` pays it once per grading machine's process: the
server imports :mod:`autograder.preload` and each grading is a fork of it. Student code never runs in these
processes (the kernels start fresh inside the sandbox).

A forked grader starts a session of its own (it and its kernels are killed as one group), takes the environment
and working folder it is given, writes its output to a log file, and watches the server: when the server goes
(the grader or the Dask worker that started it was killed) the grading process exits, and bubblewrap's
``--die-with-parent`` takes its kernels with it.

A daemonic process may not start children with multiprocessing (a ``dask worker`` under its nanny is one,
unless dask's ``distributed.worker.daemon`` is false): there each grading is a fresh
``python -m autograder.worker`` instead, about 6 s of CPU slower.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from . import ROOT

#: The module the forkserver imports before its first fork.
PRELOAD = "autograder.preload"

_context = None
_lock = threading.Lock()


def _forkserver():
    """The forkserver context, its preload set (the server itself starts at the first fork)."""
    global _context
    with _lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload([PRELOAD])
            _context = ctx
    return _context


def forks() -> bool:
    """Whether this process starts grading processes as forks of the server (not when it is a daemon)."""
    return not multiprocessing.current_process().daemon


def _child(argv: list[str], env: dict[str, str], cwd: str, log: str) -> None:
    """In the fork: a session of its own, ``env``, ``cwd``, output to ``log``; then the worker's ``main``."""
    os.setsid()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # the server's choice of temp folder is not this grading's (TMPDIR above)
    os.chdir(cwd)
    from .worker import main

    sys.exit(main([*argv, "--parent", str(os.getppid())]))  # exit when the server goes


class Grader:
    """A running grading process: :meth:`wait` for its exit status, :meth:`kill` it and its kernels."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        """Start ``python -m autograder.worker ARGV`` (forked, or fresh in a daemonic process)."""
        self.process: multiprocessing.Process | None = None
        self.popen: subprocess.Popen | None = None
        if forks():
            self.process = _forkserver().Process(target=_child, args=(argv, env, str(ROOT), str(log)),
                                                  name="lrdiff-grader")
            self.process.start()
            self.pid = self.process.pid
        else:
            with open(log, "wb") as out:
                self.popen = subprocess.Popen(
                    [sys.executable, "-m", "autograder.worker", *argv, "--parent", str(os.getpid())], cwd=ROOT,
                    env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            self.pid = self.popen.pid

    def wait(self, timeout: float | None = None) -> int | None:
        """Its exit status (negative: the signal that killed it), or ``None`` if it still runs after ``timeout``."""
        if self.popen is not None:
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return None
        self.process.join(timeout)
        return self.process.exitcode

    def kill(self) -> None:
        """Kill its process group (the grading process and whatever it started) and reap it."""
        if self.wait(0) is not None:
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:  # not yet in its own group: the process alone
            os.kill(self.pid, signal.SIGKILL)
        self.wait()
