"""One grading task: what a Dask worker runs for one student (:func:`grade`), anywhere.

It gets everything as bytes (the submission, a private copy of the gradebook) with the grader's course
fingerprint; it refuses to grade when its own checkout differs, else it grades the submission in a scratch
course (a folder of links to its checkout with its own ``submitted/``, ``autograded/`` and gradebook) by a
process of its own (:mod:`autograder.worker`, a fork of a server that imported it once,
:mod:`autograder.forkserver`: nbgrader and the sandbox, killed as one group past the time limit), and returns a
plain dict. A timeout, a dead kernel or a hostile submission is a result, never an
exception: Dask retries a task only when it loses the worker that ran it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from lrdiff_helpers.reproducibility import PINNED_ENV

from . import ASSIGNMENT, ROOT
from .apps import failure_reason
from .archive import pack, unpack
from .course import FAILED, GRADED, venv_path_env
from .experiment_cache import runs_from
from .fingerprint import fingerprint
from .forkserver import Grader

#: The checkout a Dask worker grades with, when not this package's own (a course copy started by hand).
COURSE_ROOT_ENV = "LRDIFF_COURSE_ROOT"
#: What the scratch course does not take from the checkout: its own, per task.
_OWN = {"submitted", "autograded", "feedback"}
#: The grading processes running in this process's tasks (killed when the grader stops early).
_running: set[Grader] = set()
_lock = threading.Lock()
#: The experiment's training runs this process's tasks know, by course fingerprint (see :func:`_known_runs`).
_runs: dict[str, dict] = {}


def worker_env(base: dict[str, str], tmpdir: Path) -> dict[str, str]:
    """A grading process's environment: ``base`` (the venv's bin first on PATH), the reproducibility pins (one
    torch thread, AVX2 kernels), its own temp folder (the sandbox's scratch folders go there, and go with it
    when the process is killed)."""
    env = {**base, **PINNED_ENV}
    env["TMPDIR"] = str(tmpdir)
    return env


def checkout() -> Path:
    """The course checkout this worker grades with: ``$LRDIFF_COURSE_ROOT``, else this package's own."""
    return Path(os.environ.get(COURSE_ROOT_ENV) or ROOT).resolve()


def _death(code: int) -> str:
    """Why a grading process that wrote no result ended: killed by a signal, or its exit status."""
    if code < 0:
        try:
            how = signal.Signals(-code).name
        except ValueError:
            how = f"signal {-code}"
        return f"the grading process was killed ({how})"
    return f"the grading process exited with status {code}"


def _log_tail(log: Path) -> str:
    """The log's last line, as `` (line)``, or nothing."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return f" ({lines[-1][:200]})" if lines else ""


def _scratch_course(root: Path, scratch: Path, student: str, submission: bytes, gradebook: bytes) -> None:
    """``scratch``: links to ``root``'s parts, the submission in its own ``submitted/``, the gradebook copy."""
    for part in root.iterdir():
        if part.name not in _OWN and not part.name.startswith("."):
            (scratch / part.name).symlink_to(part)
    unpack(submission, scratch / "submitted" / student / ASSIGNMENT)
    (scratch / "gradebook.db").write_bytes(gradebook)


def kill_all() -> None:
    """Kill every grading process this process's tasks started (the grader was interrupted)."""
    with _lock:
        graders = list(_running)
    for grader in graders:
        grader.kill()


def _run_worker(scratch: Path, student: str, time_limit: float, experiments: Path) -> str:
    """Grade ``student`` of the scratch course by a process of its own: GRADED or "failed to grade: ..."."""
    tmpdir, result, log = scratch / "tmp", scratch / "result.json", scratch / "worker.log"
    tmpdir.mkdir(mode=0o711)
    os.chmod(tmpdir, 0o711)  # searchable by others: a sandbox run by root drops to another uid
    argv = ["--root", str(scratch), "--student", student, "--gradebook", f"sqlite:///{scratch / 'gradebook.db'}",
            "--result", str(result), "--experiments", str(experiments)]
    grader = Grader(argv, worker_env(venv_path_env(), tmpdir), log)
    with _lock:
        _running.add(grader)
    try:
        code = grader.wait(timeout=time_limit)
        if code is None:
            return f"{FAILED}: grading took longer than {time_limit:g} s"
    finally:
        grader.kill()
        with _lock:
            _running.discard(grader)
    try:
        out = json.loads(result.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return f"{FAILED}: {_death(code)}{_log_tail(log)}"
    return GRADED if out.get("success") else f"{FAILED}: {failure_reason(out)}"


def _known_runs(course_fingerprint: str, runs: bytes) -> dict:
    """The experiment's training runs known in this process for this course, with ``runs`` (JSON) added.

    The grader's copy in a task is as of the task's submission; a run that an earlier task on this worker
    trained since is known here, so that a worker trains each pair once even before the grader hears of it."""
    with _lock:
        known = _runs.setdefault(course_fingerprint, {})
        known.update(runs_from(runs))
        return dict(known)


def grade(student: str, submission: bytes, gradebook: bytes, expected: str, time_limit: float,
          root: str | None = None, experiments: bytes = b"{}") -> dict:
    """Grade one submission; what the grader needs back, as a plain dict.

    Args:
        submission: ``submitted/<student>/lrdiff/`` packed (:func:`autograder.archive.pack`).
        gradebook: a private SQLite copy of the course's gradebook, as bytes.
        expected: the grader's course fingerprint; a checkout with another one grades nothing.
        time_limit: seconds the grading process may run before it is killed.
        root: the checkout to grade with (default :func:`checkout`).
        experiments: the experiment's training runs the grader knows (:mod:`autograder.experiment_cache`).

    Returns:
        ``status`` (GRADED or "failed to grade: <reason>"), ``seconds``, ``autograded`` (the graded notebooks,
        packed) and ``gradebook`` (the private gradebook's bytes), the last two only when graded; ``experiments``:
        the training runs known after this task (the grader's, and any this task trained).
    """
    start = time.perf_counter()
    home = Path(root).resolve() if root else checkout()
    mine = fingerprint(home)
    if mine != expected:
        return {"status": f"{FAILED}: this worker's course differs from the grader's (fingerprint {mine[:12]}, "
                          f"expected {expected[:12]}): update its checkout", "seconds": time.perf_counter() - start}
    scratch = Path(tempfile.mkdtemp(prefix=f"lrdiff-task-{student}-"))
    os.chmod(scratch, 0o711)  # the grading process's temp folder in it must be reachable; not listable
    try:
        _scratch_course(home, scratch, student, submission, gradebook)
        runs = scratch / "experiments.json"
        runs.write_text(json.dumps(_known_runs(mine, experiments)))
        status = _run_worker(scratch, student, time_limit, runs)
        out = {"status": status, "seconds": time.perf_counter() - start, "experiments": runs.read_bytes()}
        _known_runs(mine, out["experiments"])
        if status == GRADED:
            out["autograded"] = pack(scratch / "autograded" / student / ASSIGNMENT)
            out["gradebook"] = (scratch / "gradebook.db").read_bytes()
        return out
    finally:
        from .sandbox import force_rmtree  # also removes folders student code made unreadable

        force_rmtree(scratch)
        shutil.rmtree(scratch, ignore_errors=True)
