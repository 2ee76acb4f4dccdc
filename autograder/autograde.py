"""The autograde step: checks before grading (the machine, the sandbox, each submitted folder), one worker per
student (:mod:`autograder.pool`), each against a private copy of the SQLite gradebook, merged into the course's
gradebook by this process alone (:mod:`autograder.gradebook`), and the status file."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from lrdiff_helpers.reproducibility import pin_status

from . import ASSIGNMENT, NOTEBOOKS
from .apps import release
from .collect import COLLECT_FILE, link_text, renamed, renamed_reason, walk_no_links
from .course import FAILED, GRADED, Course, InputError, Result
from .gradebook import assignment_registered, merge_grades, private_copy
from .pool import Job, run_jobs

#: A student whose grading takes longer than this (seconds, all notebooks together) is failed and its grading
#: process killed. The sandbox bounds each kernel too (``SandboxedKernelManager.wall_seconds``).
DEFAULT_TIME_LIMIT = 3600.0
#: Set to 1 to grade on a machine that cannot apply the reproducibility pins (not x86-64 with AVX2).
UNPINNED_OPT_OUT_ENV = "LRDIFF_GRADE_UNPINNED"
#: Why ``autograde`` does nothing when no submission was collected.
NOTHING_TO_GRADE = f"nothing to grade: submitted/ has no <student>/{ASSIGNMENT}/ folder (run collect first)"


def require_reproducible() -> None:
    """Stop before grading anything on a machine that cannot compute the course's reference numbers."""
    status = pin_status()
    if not status.reproducible and os.environ.get(UNPINNED_OPT_OUT_ENV) != "1":
        raise InputError(
            f"this machine cannot grade with the course's pinned arithmetic: {status.reason}.\n"
            "The experiment's verdicts are exact only on x86-64 CPUs with AVX2 or newer, with the pins of "
            f"lrdiff_helpers/reproducibility.py (./course grade applies them). Set {UNPINNED_OPT_OUT_ENV}=1 to grade "
            "anyway: an answer near a threshold may then get another verdict than on a pinned machine."
        )


def require_sandbox() -> None:
    """Stop before grading anything when the bubblewrap sandbox cannot run and nobody opted out of it."""
    from .sandbox import OPT_OUT_ENV, opted_out, sandbox_available

    if opted_out():
        return  # the kernel manager logs the opt-out loudly at every kernel start
    ok, why = sandbox_available()
    if not ok:
        raise InputError(
            f"cannot confine the grading kernels: {why}\n"
            "Install bubblewrap (scripts/install_system_deps.sh), or, on a machine that cannot run it, set "
            f"{OPT_OUT_ENV}=1 to grade unconfined: student code then runs with your privileges."
        )


def notebook_problem(path: Path) -> str | None:
    """Why nbgrader cannot read this notebook, or ``None``."""
    import nbformat

    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        return f"{path.name} is not UTF-8 text ({err.reason})"
    try:
        json.loads(raw)
    except json.JSONDecodeError as err:
        return f"{path.name} is not valid notebook JSON ({err.msg} at line {err.lineno}, column {err.colno})"
    try:
        nb = nbformat.reads(raw, as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # nbformat raises several kinds  # noqa: BLE001
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"{path.name} is not a valid notebook ({first})"
    return None


def _link_problems(home: Path, folder: Path, present: set[str]) -> list[str]:
    """Symbolic links and other non-regular files in the folder, and notebooks ``collect`` found to be links."""
    problems: list[str] = []
    for _, entries in walk_no_links(folder):
        for e in entries:
            if stat.S_ISLNK(e.mode):
                problems.append(f"{e.rel} is a symbolic link (to {link_text(os.readlink(e.path))}); it was not read")
            elif not (stat.S_ISREG(e.mode) or stat.S_ISDIR(e.mode)):
                problems.append(f"{e.rel} is not a regular file; it was not read")
    try:
        recorded = json.loads((home / COLLECT_FILE).read_text()).get("symlinks", {})
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        recorded = {}
    for name, info in sorted(recorded.items()):
        if name in {f"{n}.ipynb" for n in NOTEBOOKS} and name not in present:  # else a person has since put
            where = info.get("path", name) if isinstance(info, dict) else name  # the real notebook there
            target = info.get("target", "?") if isinstance(info, dict) else "?"
            problems.append(f"{where} is a symbolic link (to {link_text(str(target))}); it was not read")
    return problems


def precheck(course: Course, student: str) -> tuple[str | None, list[str]]:
    """Check a submitted folder before anything reads it: (why it cannot be graded or ``None``, notes).

    Nothing here follows a symbolic link: a link anywhere under ``submitted/<student>/lrdiff/`` (put there by
    hand), a notebook that ``collect`` found to be one, a missing notebook beside one that is not the
    assignment's (renamed), or a notebook nbgrader cannot read: each fails the student with its reason.
    """
    home = course.submitted / student
    folder = home / ASSIGNMENT
    for p in (home, folder):
        if p.is_symlink():
            return f"{p.relative_to(course.root)} is a symbolic link (to {link_text(os.readlink(p))}); " \
                   "it was not read", []
    wanted = [f"{n}.ipynb" for n in NOTEBOOKS]
    present = {p.name for p in folder.iterdir() if p.name.endswith(".ipynb") and p.is_file() and not p.is_symlink()}
    problems = _link_problems(home, folder, present)
    if problems:
        return "; ".join(problems), []
    missing = [n for n in wanted if n not in present]
    extra = sorted(present - set(wanted))
    gone, strays = renamed(missing, extra)
    if strays:
        return renamed_reason(gone, strays), []
    notes = [f"no {n} (scored 0)" for n in missing]
    notes += [f"{e} is not a notebook of {ASSIGNMENT}: not graded" for e in extra]
    problems = [p for p in (notebook_problem(folder / n) for n in wanted if n in present) if p]
    return ("; ".join(problems) if problems else None), notes


def _students_to_grade(course: Course, students: Sequence[str] | None, jobs: int, time_limit: float) -> list[str]:
    """The students to grade, in order; :class:`InputError` for an unknown one or a bad setting."""
    everyone = course.students_submitted()
    if students:
        unknown = sorted(set(students) - set(everyone))
        if unknown:
            raise InputError(f"no submission in submitted/ for: {', '.join(unknown)}")
    todo = list(dict.fromkeys(students)) if students else everyone
    if not todo:
        raise InputError(NOTHING_TO_GRADE)
    if jobs < 1:
        raise InputError(f"jobs must be at least 1 (got {jobs})")
    if time_limit <= 0:
        raise InputError(f"the time limit must be positive (got {time_limit:g} s)")
    return todo


class _Run:
    """One autograde run: its scratch folder, the gradebook snapshot, the status file and the results."""

    def __init__(self, course: Course, work: Path, snapshot_file: Path, progress) -> None:
        from .sandbox import force_rmtree  # also removes folders student code made unreadable

        self.course, self.work, self.snapshot, self.progress = course, work, snapshot_file, progress
        self.rmtree = force_rmtree
        self.status = course.read_status()
        self.results: dict[str, Result] = {}

    def finish(self, res: Result) -> None:
        """Record one student's outcome (status file, results, progress)."""
        if not res.ok:  # no stale output of an earlier run may be handed out for a failed submission
            shutil.rmtree(self.course.autograded / res.student / ASSIGNMENT, ignore_errors=True)
            shutil.rmtree(self.course.feedback_dir / res.student / ASSIGNMENT, ignore_errors=True)
        self.status[res.student] = {"status": res.status, "notes": res.notes, "seconds": round(res.seconds, 2)}
        self.course.write_status(self.status)
        self.results[res.student] = res
        if self.progress is not None:
            self.progress(res)

    def jobs_for(self, todo: list[str]) -> list[Job]:
        """A job per student that passes :func:`precheck`; the others are finished as failed at once."""
        pending: list[Job] = []
        for i, student in enumerate(todo):
            start = time.perf_counter()
            problem, notes = precheck(self.course, student)
            if problem is not None:
                self.finish(Result(student, f"{FAILED}: {problem}", time.perf_counter() - start, notes))
                continue
            folder = self.work / f"{i:05d}"
            pending.append(Job(student, notes, folder, f"sqlite:///{folder / 'gradebook.db'}"))
        return pending

    def start(self, job: Job) -> None:
        job.folder.mkdir(mode=0o700)
        shutil.copyfile(self.snapshot, job.folder / "gradebook.db")
        job.launch(self.course.root, self.course.env)

    def done(self, job: Job, state: str) -> None:
        if state == GRADED:
            try:
                merge_grades(self.course, job.gradebook_url, job.student)
            except Exception as err:  # noqa: BLE001 (any database error fails this student only)
                state = f"{FAILED}: could not copy the grades into the gradebook ({type(err).__name__}: {err})"
        self.finish(Result(job.student, state, time.perf_counter() - job.start, job.notes))
        self.rmtree(job.folder)
        self.rmtree(job.tmpdir)


def autograde(
    course: Course,
    students: Sequence[str] | None = None,
    progress=None,
    jobs: int | None = None,
    time_limit: float = DEFAULT_TIME_LIMIT,
) -> list[Result]:
    """Autograde each submitted student, ``jobs`` at a time; a failure is recorded and the batch goes on.

    Every student is graded by a process of its own (``python -m autograder.worker``: nbgrader's ``Autograde``
    with the course's configuration and the sandbox, as ``nbgrader autograde`` would), so a grader that dies
    (out of memory, a segfault, killed, past ``time_limit`` seconds) fails only that student. nbgrader's
    SQLite gradebook is not safe for several writers: each worker grades against a private copy of it, and
    this process alone copies the student's grades into the course's gradebook (:func:`merge_grades`), one
    student at a time, as each finishes; it alone writes the status file. ``jobs=1`` takes the same path.

    A gradebook that is not a SQLite file (``LRDIFF_GRADEBOOK_URL=postgresql+psycopg://...``) takes the same
    path: each worker grades against a private SQLite copy of it (:func:`private_copy`), and this process alone
    merges the grades, one student at a time (nbgrader's create-or-update steps are not safe to race).

    Before a worker starts, the submitted folder is checked (:func:`precheck`): symbolic links, a renamed
    notebook, a notebook that is not valid JSON fail the student without running anything.
    Registers the assignment first (``release``) when the gradebook does not know it yet.

    Args:
        students: grade only these (default: everyone in ``submitted/``).
        progress: called with each :class:`Result` as its student finishes (in the order they finish).
        jobs: students graded at the same time (default: every core, ``os.cpu_count()``).
        time_limit: seconds one student's grading may take before its worker is killed.

    Returns:
        The results, in the order of ``students`` (or of ``submitted/``).
    """
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    todo = _students_to_grade(course, students, jobs, time_limit)
    require_sandbox()
    require_reproducible()
    if not assignment_registered(course):
        release(course)
    work = Path(tempfile.mkdtemp(prefix="lrdiff-autograde-"))
    os.chmod(work, 0o711)  # the workers' temp folders in it must be reachable (see Job.tmpdir); not listable
    run = _Run(course, work, work / "gradebook.db", progress)
    try:
        private_copy(course, run.snapshot)  # the assignment as registered, and what people entered before this run
        pending = run.jobs_for(todo)
        run_jobs(pending, jobs, time_limit, run.start, run.done)
    finally:
        run.rmtree(work)
    return [run.results[s] for s in todo]
