"""The autograde step: checks before grading (the machine, the sandbox, each submitted folder), which students
need grading (resumable runs), one Dask task per student (:mod:`autograder.engine`, :mod:`autograder.task`),
each against a private copy of the gradebook, merged into the course's gradebook by this process alone
(:mod:`autograder.gradebook`), and the status file."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from lrdiff_helpers.reproducibility import pin_status

from . import ASSIGNMENT, NOTEBOOKS, experiment_cache
from .apps import release
from .collect import COLLECT_FILE, link_text, renamed, renamed_reason, walk_no_links
from .course import FAILED, GRADED, Course, InputError, Result
from .archive import digest, pack
from .engine import open_engine, run_tasks
from .fingerprint import fingerprint
from .gradebook import assignment_registered, merge_grades, private_copy, student_copy
from .task import grade, kill_all

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


def submission_digest(course: Course, student: str) -> str:
    """The sha256 of everything under ``submitted/<student>/`` (the files, and where each link points)."""
    home = course.submitted / student
    links = sorted(f"{e.rel}->{os.readlink(e.path)}" for _, entries in walk_no_links(home)
                   for e in entries if stat.S_ISLNK(e.mode))
    return digest(pack(home) + "\n".join(links).encode())


def pending(course: Course, course_fingerprint: str, force: bool = False) -> list[str]:
    """The submitted students not graded yet with this submission and this course (all of them: ``force``).

    A student who failed to grade is tried again: the failure may have been the machine's (a lost worker, an
    out-of-memory kill during a crash), and a submission that fails for its own reasons fails again quickly.
    """
    status = course.read_status()

    def done(s: str) -> bool:
        st = status.get(s, {})
        return (st.get("status"), st.get("digest"), st.get("fingerprint")) == \
            (GRADED, submission_digest(course, s), course_fingerprint)

    return [s for s in course.students_submitted() if force or not done(s)]


class _Run:
    """One autograde run: its scratch folder, the gradebook snapshot, the status file and the results."""

    def __init__(self, course: Course, work: Path, course_fingerprint: str, progress) -> None:
        from .sandbox import force_rmtree  # also removes folders student code made unreadable

        self.course, self.work, self.fingerprint, self.progress = course, work, course_fingerprint, progress
        self.rmtree = force_rmtree
        self.status = course.read_status()
        self.results: dict[str, Result] = {}
        self.experiments = experiment_cache.load(course.config_dir, course_fingerprint)  # known training runs
        self.asked: dict[str, tuple[str, list[str], float]] = {}  # task key -> student, notes, start

    def finish(self, res: Result, submitted: str) -> None:
        """Record one student's outcome (status file, results, progress)."""
        if not res.ok:  # no stale output of an earlier run may be handed out for a failed submission
            shutil.rmtree(self.course.autograded / res.student / ASSIGNMENT, ignore_errors=True)
            shutil.rmtree(self.course.feedback_dir / res.student / ASSIGNMENT, ignore_errors=True)
        self.status[res.student] = {"status": res.status, "notes": res.notes, "seconds": round(res.seconds, 2),
                                    "digest": submitted, "fingerprint": self.fingerprint}
        self.course.write_status(self.status)
        self.results[res.student] = res
        if self.progress is not None:
            self.progress(res)

    def tasks(self, todo: list[str], base: Path, time_limit: float, root: str | None):
        """A task per student that passes :func:`precheck`; the others are finished as failed at once."""
        for student in todo:
            start = time.perf_counter()
            submitted = submission_digest(self.course, student)
            problem, notes = precheck(self.course, student)
            if problem is not None:
                self.finish(Result(student, f"{FAILED}: {problem}", time.perf_counter() - start, notes), submitted)
                continue
            key = f"grade-{student}-{submitted}"
            self.asked[key] = (student, notes, start)
            submission = pack(self.course.submitted / student / ASSIGNMENT)
            mine = self.work / f"{student}-task.db"
            student_copy(self.course, base, student, mine)  # the run's copy with this student's own rows
            gradebook = mine.read_bytes()
            mine.unlink()
            known = json.dumps(self.experiments).encode()  # as of now: what earlier tasks trained too
            yield key, grade, (student, submission, gradebook, self.fingerprint, time_limit, root, known)

    def done(self, key: str, out) -> None:
        """A task's result: the graded notebooks into ``autograded/``, the grades into the gradebook."""
        student, notes, start = self.asked[key]
        if isinstance(out, BaseException):
            state = f"{FAILED}: the grading task failed ({type(out).__name__}: {out})"
        else:
            state = out["status"]
            self._keep_experiments(out.get("experiments"))
        if state == GRADED:
            state = self._merge(student, out)
        self.finish(Result(student, state, time.perf_counter() - start, notes), key.rsplit("-", 1)[1])

    def _keep_experiments(self, returned: bytes | None) -> None:
        """Keep the training runs a task returned that are new (the task's copy held the known ones)."""
        new = {k: v for k, v in experiment_cache.runs_from(returned).items() if k not in self.experiments}
        if new:
            self.experiments.update(new)
            experiment_cache.save(self.course.config_dir, self.fingerprint, self.experiments)

    def _merge(self, student: str, out: dict) -> str:
        from .archive import unpack

        dst = self.course.autograded / student / ASSIGNMENT
        scratch = self.work / f"{student}.db"
        try:
            shutil.rmtree(dst, ignore_errors=True)
            unpack(out["autograded"], dst)
            scratch.write_bytes(out["gradebook"])
            merge_grades(self.course, f"sqlite:///{scratch}", student)
        except Exception as err:  # noqa: BLE001 (any database error fails this student only)
            return f"{FAILED}: could not copy the grades into the gradebook ({type(err).__name__}: {err})"
        finally:
            scratch.unlink(missing_ok=True)
        return GRADED


def _grade_all(run: _Run, engine, todo: list[str], time_limit: float) -> None:
    """Snapshot the gradebook (all but the submissions) and grade ``todo`` on ``engine``."""
    private_copy(run.course, run.work / "gradebook.db")  # the assignment as registered, the students
    root = str(run.course.root) if engine.local else None
    run_tasks(engine, run.tasks(todo, run.work / "gradebook.db", time_limit, root), run.done)


def autograde(
    course: Course,
    students: Sequence[str] | None = None,
    progress: Callable[[Result], None] | None = None,
    jobs: int | None = None,
    time_limit: float = DEFAULT_TIME_LIMIT,
    *,
    force: bool = False,
    scheduler: str | None = None,
    cluster: str | None = None,
    say: Callable[[str], None] | None = None,
) -> list[Result]:
    """Autograde the submitted students, one Dask task each; a failure is recorded and the batch goes on.

    Each task grades its student by a process of its own (:mod:`autograder.worker`, forked from a server that
    imported it once: nbgrader's ``Autograde`` with the course's configuration and the sandbox), against a private SQLite copy of the
    gradebook (:func:`private_copy` and :func:`student_copy`: the course, the students and that student's own
    submission rows, not the class's), so a grader that dies (out of memory, a segfault, killed, past
    ``time_limit`` seconds) fails only that student. This process alone unpacks the graded notebooks into
    ``autograded/``, merges the grades into the course's gradebook (:func:`merge_grades`, keeping manual
    scores), one student at a time, and writes the status file, which records each student's submission
    digest and the course fingerprint it was graded with.

    Each submitted folder is checked first (:func:`precheck`); registers the assignment (``release``) first
    when the gradebook does not know it yet. The experiment's training runs are kept per class
    (:mod:`autograder.experiment_cache`): each distinct pair of lrs is trained once.

    The grading processes are forks of a server started by multiprocessing (:mod:`autograder.forkserver`): a
    script that calls this function must do so under ``if __name__ == "__main__":``, as any program that uses
    multiprocessing must (``python -m autograder`` does).

    Args:
        students: grade these (always); default: those :func:`pending` names (every one with ``force``).
        progress: called with each :class:`Result` as its student finishes (in the order they finish).
        jobs: students graded at the same time on the in-process cluster (default: every core).
        time_limit: seconds one student's grading may take before its process is killed.
        scheduler: ``tcp://HOST:PORT`` of a Dask scheduler to grade on instead (workers started by hand).
        cluster: ``"slurm"``: workers started through dask-jobqueue.
        say: called with a line for people (the dashboard's address).

    Returns:
        The results of the students graded, in the order of ``students`` (or of ``submitted/``).
    """
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    _students_to_grade(course, students, jobs, time_limit)
    require_sandbox()
    require_reproducible()
    if not assignment_registered(course):
        release(course)  # before the fingerprint: it covers release/
    course_fingerprint = fingerprint(course.root)
    todo = list(dict.fromkeys(students)) if students else pending(course, course_fingerprint, force)
    if not todo:
        return []
    with open_engine(jobs, scheduler, cluster, say=say) as engine:
        if engine.dashboard and say is not None:
            say(f"autograde: on the Dask cluster {engine.client.scheduler.address} ({engine.slots} worker "
                f"thread(s)); dashboard: {engine.dashboard}")
        run = _Run(course, Path(tempfile.mkdtemp(prefix="lrdiff-autograde-")), course_fingerprint, progress)
        try:
            _grade_all(run, engine, todo, time_limit)
        finally:
            if engine.local:
                kill_all()  # interrupted (Ctrl-C): no grading process outlives the grader
            run.rmtree(run.work)
    return [run.results[s] for s in todo]
