"""The grading processes: one ``python -m autograder.worker`` per student, ``jobs`` at a time, each killed
past its time limit; the outcome of each read from its result file (or from how it died).

A hand-made pool (a job per student, a polling loop); kept small so that a library can take its place.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lrdiff_helpers.reproducibility import PINNED_ENV

from . import ROOT
from .apps import failure_reason
from .course import FAILED, GRADED

#: How long the loop waits between two looks at the running workers (seconds).
POLL_SECONDS = 0.1


def worker_env(base: dict[str, str], tmpdir: Path) -> dict[str, str]:
    """A grading worker's environment: ``base`` (the venv's bin first on PATH), the reproducibility pins (one
    torch thread, AVX2 kernels), its own temp folder (the sandbox's scratch folders go there, and go with it
    when the worker is killed)."""
    env = {**base, **PINNED_ENV}
    env["TMPDIR"] = str(tmpdir)
    return env


def _death(code: int) -> str:
    """Why a worker that wrote no result ended: killed by a signal, or its exit status."""
    if code < 0:
        try:
            how = signal.Signals(-code).name
        except ValueError:
            how = f"signal {-code}"
        return f"the grading process was killed ({how})"
    return f"the grading process exited with status {code}"


@dataclass
class Job:
    """One student being graded by a worker process."""

    student: str
    notes: list[str]
    folder: Path  # this job's private scratch folder: gradebook copy, result, worker log
    gradebook_url: str
    proc: subprocess.Popen | None = None
    start: float = 0.0
    timed_out: bool = False

    @property
    def result_file(self) -> Path:
        return self.folder / "result.json"

    @property
    def log_file(self) -> Path:
        return self.folder / "worker.log"

    @property
    def tmpdir(self) -> Path:
        """The worker's TMPDIR (searchable by others: a sandbox run by root drops to another uid)."""
        return self.folder.with_name(self.folder.name + "-tmp")

    def launch(self, root: Path, env: dict[str, str]) -> None:
        """Start the worker for the course at ``root``; ``env`` is the environment it builds on."""
        self.tmpdir.mkdir(mode=0o711)
        os.chmod(self.tmpdir, 0o711)  # whatever the umask
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autograder.worker", "--root", str(root), "--student", self.student,
                 "--gradebook", self.gradebook_url, "--result", str(self.result_file),
                 "--parent", str(os.getpid())],
                cwd=ROOT,  # imports this very autograder package (the course graded may be a copy elsewhere)
                env=worker_env(env, self.tmpdir), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed as one
            )
        self.start = time.perf_counter()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def outcome(self, time_limit: float) -> str | None:
        """GRADED, "failed to grade: <reason>", or ``None`` for a worker that is still at it."""
        assert self.proc is not None
        code = self.proc.poll()
        if code is None:
            if time.perf_counter() - self.start <= time_limit:
                return None
            self.timed_out = True
            self.kill()
            return f"{FAILED}: grading took longer than {time_limit:g} s"
        try:
            out = json.loads(self.result_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            out = None
        if out is not None:
            return GRADED if out.get("success") else f"{FAILED}: {failure_reason(out)}"
        return f"{FAILED}: {_death(code)}{self.log_tail()}"

    def log_tail(self) -> str:
        """The worker log's last line, as `` (line)``, or nothing."""
        try:
            lines = [ln.strip() for ln in self.log_file.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return f" ({lines[-1][:200]})" if lines else ""


def run_jobs(pending: list[Job], jobs: int, time_limit: float, start: Callable[[Job], None],
             done: Callable[[Job, str], None]) -> None:
    """Run ``pending`` (in order), ``jobs`` at a time: ``start(job)`` launches one, ``done(job, outcome)`` is
    called as each ends. A job still running when this returns early (Ctrl-C, an error) is killed."""
    queue = list(reversed(pending))
    running: list[Job] = []
    try:
        while queue or running:
            while queue and len(running) < jobs:
                job = queue.pop()
                start(job)
                running.append(job)
            finished = [(job, state) for job in running if (state := job.outcome(time_limit)) is not None]
            if not finished:
                time.sleep(POLL_SECONDS)
                continue
            for job, state in finished:
                running.remove(job)
                done(job, state)
    finally:
        for job in running:  # interrupted (Ctrl-C): no orphan grading a student
            job.kill()
