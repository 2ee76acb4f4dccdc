"""The grading steps: release, collect, autograde, feedback, export.

Each step is a function of a :class:`Course` (the course's folders and nbgrader configuration) that returns
what it did; ``autograder/__main__.py`` turns them into a command line.

``autograde`` grades every student in a process of its own (``python -m autograder.worker``, see
``autograder/worker.py``), several at a time, each against a private copy of the SQLite gradebook; this
process alone copies each student's grades into the real gradebook, one student at a time. A grading process
that dies (out of memory, a segfault, a kill, past the time limit) fails only its own student, and one
submission that cannot be graded (a notebook that is not valid JSON, a symbolic link, a kernel that dies) is
reported and the batch goes on. ``feedback`` and ``export`` run nbgrader in this process.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lrdiff_helpers.reproducibility import PINNED_ENV, pin_status

from . import ASSIGNMENT, NOTEBOOKS, ROOT

#: A student id: letters, digits and ``_ . @ -``, starting with a letter or a digit.
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
#: Where ``autograde`` records each student's status, for ``feedback`` and ``export`` (git-ignored folder).
STATUS_FILE = Path("autograded") / ".lrdiff-status.json"
#: What ``collect`` could not copy (notebooks that were symbolic links), beside ``submitted/<student>/lrdiff/``.
COLLECT_FILE = ".lrdiff-collect.json"
#: A student whose grading takes longer than this (seconds, all notebooks together) is failed and its grading
#: process killed. The sandbox bounds each kernel too (``SandboxedKernelManager.wall_seconds``).
DEFAULT_TIME_LIMIT = 3600.0
#: Set to 1 to grade on a machine that cannot apply the reproducibility pins (not x86-64 with AVX2).
UNPINNED_OPT_OUT_ENV = "LRDIFF_GRADE_UNPINNED"
GRADED = "graded"
FAILED = "failed to grade"


class InputError(Exception):
    """Bad input from the instructor (a missing path, a corrupt zip, a bad student id): nothing was done."""


def _venv_path_env() -> dict[str, str]:
    """The environment with this Python's bin folder first on PATH (nbgrader runs ``alembic`` from PATH)."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    if env.get("PATH", "").split(os.pathsep)[0] != bindir:
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


@dataclass
class Course:
    """The course's folders and its nbgrader configuration (``autograder/nbgrader_config.py``)."""

    root: Path = ROOT
    #: Grade against this gradebook instead of the configured one (a grading worker's private copy).
    gradebook_url: str | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        os.environ.update({"PATH": _venv_path_env()["PATH"]})

    @property
    def config_dir(self) -> Path:
        return self.root / "autograder"

    @property
    def submitted(self) -> Path:
        return self.root / "submitted"

    @property
    def autograded(self) -> Path:
        return self.root / "autograded"

    @property
    def feedback_dir(self) -> Path:
        return self.root / "feedback"

    @property
    def status_file(self) -> Path:
        return self.root / STATUS_FILE

    def config(self):
        from traitlets.config.loader import PyFileConfigLoader

        cfg = PyFileConfigLoader("nbgrader_config.py", path=str(self.config_dir)).load_config()
        # this course's root, even when the config file is a copy elsewhere
        cfg.CourseDirectory.root = str(self.root)
        if self.gradebook_url:
            cfg.CourseDirectory.db_url = self.gradebook_url
        return cfg

    @property
    def db_url(self) -> str:
        return self.config().CourseDirectory.db_url

    def gradebook(self):
        from nbgrader.api import Gradebook

        return Gradebook(self.db_url, "lrdiff")

    def students_submitted(self) -> list[str]:
        if not self.submitted.is_dir():
            return []
        return sorted(d.name for d in self.submitted.iterdir() if (d / ASSIGNMENT).is_dir())

    # ---------------------------------------------------------------------------------------- status

    def read_status(self) -> dict[str, dict]:
        try:
            return json.loads(self.status_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def write_status(self, status: dict[str, dict]) -> None:
        """Replace the status file in one step (a reader never sees half of it)."""
        self.status_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_file.with_name(self.status_file.name + ".tmp")
        tmp.write_text(json.dumps(status, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.status_file)


# ------------------------------------------------------------------------------------------------ release


def release(course: Course) -> str:
    """Regenerate ``release/lrdiff`` from ``source/lrdiff`` (``--force``) and register it in the gradebook.

    Runs ``nbgrader generate_assignment lrdiff --force`` from ``autograder/``, exactly as a person would.
    Returns nbgrader's output; raises ``RuntimeError`` when it fails.
    """
    if not (course.root / "source" / ASSIGNMENT).is_dir():
        raise InputError(f"no source/{ASSIGNMENT}/ under {course.root}")
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force"],
        cwd=course.config_dir, env=_venv_path_env(), capture_output=True, text=True,
    )
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed (exit {proc.returncode}):\n{out}")
    return out


def assignment_registered(course: Course) -> bool:
    """Whether the gradebook knows the assignment and its notebooks (``release`` puts them there)."""
    from nbgrader.api import MissingEntry

    url = course.db_url
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return False
    with course.gradebook() as gb:
        try:
            assignment = gb.find_assignment(ASSIGNMENT)
        except MissingEntry:
            return False
        return {nb.name for nb in assignment.notebooks} >= set(NOTEBOOKS)


# ------------------------------------------------------------------------------------------------ collect


@dataclass
class Found:
    """One student's submission found in the input: where each notebook comes from.

    ``notebooks`` are the assignment's notebooks; ``extra`` other ``.ipynb`` files (copied too: ``autograde``
    tells a renamed notebook from an extra one); ``symlinks`` notebooks that were symbolic links, never read
    (name -> {"path": where, "target": what it pointed to}).
    """

    student: str
    origin: str
    notebooks: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, bytes] = field(default_factory=dict)
    symlinks: dict[str, dict[str, str]] = field(default_factory=dict)


def _link_text(target: str) -> str:
    """A symbolic link's target, safe to print (it is the student's text)."""
    return repr(target if len(target) <= 120 else target[:117] + "...")


def _pick_notebooks(student: str, origin: str, files: Iterable[tuple[str, Callable[[], bytes]]],
                    links: Iterable[tuple[str, str]] = ()) -> Found:
    """From (relative path, reader) pairs of regular files and (relative path, target) pairs of symbolic links,
    keep the notebooks (found at any depth). A symbolic link is recorded, never followed."""
    found = Found(student, origin)
    wanted = {f"{name}.ipynb" for name in NOTEBOOKS}
    seen: dict[str, str] = {}
    entries = [(rel, read, None) for rel, read in files] + [(rel, None, target) for rel, target in links]
    for rel, read, target in sorted(entries, key=lambda e: e[0]):
        parts = Path(rel).parts
        if any(p in {"__MACOSX", ".ipynb_checkpoints"} or p.startswith("._") for p in parts):
            continue
        base = parts[-1] if parts else ""
        if not base.endswith(".ipynb"):
            continue
        if base not in wanted:
            if read is None:
                found.notes.append(f"ignored {rel}: a symbolic link (to {_link_text(target)}), not read")
            elif base in found.extra:
                found.notes.append(f"ignored {rel}: another {base} was copied")
            else:
                found.extra[base] = read()
                found.notes.append(f"{rel} is not a notebook of {ASSIGNMENT}: copied, not graded")
            continue
        if base in seen:
            raise InputError(f"{origin}: two copies of {base} ({seen[base]} and {rel}); keep one")
        seen[base] = rel
        if read is None:
            found.symlinks[base] = {"path": rel, "target": target}
            found.notes.append(f"{rel} is a symbolic link (to {_link_text(target)}): not read, not copied")
        else:
            found.notebooks[base] = read()
    if not (found.notebooks or found.extra or found.symlinks):
        raise InputError(
            f"{origin}: no notebook of {ASSIGNMENT} in it (expected {', '.join(sorted(wanted))})"
        )
    return found


def _from_folder(student: str, folder: Path) -> Found:
    """Walk the folder without following symbolic links: a linked notebook is recorded, a linked folder skipped."""
    files, links, notes = [], [], []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        for name in sorted(dirnames):
            if (here / name).is_symlink():
                notes.append(f"ignored {(here / name).relative_to(folder)}/: a symbolic link, not followed")
        for name in sorted(filenames):
            p = here / name
            rel = str(p.relative_to(folder))
            mode = p.lstat().st_mode
            if stat.S_ISLNK(mode):
                links.append((rel, os.readlink(p)))
            elif stat.S_ISREG(mode):
                files.append((rel, (lambda p=p: p.read_bytes())))
            elif name.endswith(".ipynb"):
                notes.append(f"ignored {rel}: not a regular file")
    found = _pick_notebooks(student, str(folder), files, links)
    found.notes[:0] = notes
    return found


def _zip_is_symlink(info: zipfile.ZipInfo) -> bool:
    """Whether a zip member is a symbolic link (Unix mode in the high bits of external_attr)."""
    return stat.S_ISLNK(info.external_attr >> 16)


def _from_zip(student: str, path: Path) -> Found:
    """Read the notebooks of a zip; a member that is a symbolic link is recorded (its target), never followed."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir() and m.filename.endswith(".ipynb")]
            contents = {m.filename: zf.read(m) for m in members if not _zip_is_symlink(m)}
            links = [(m.filename, zf.read(m)[:1024].decode("utf-8", "replace")) for m in members if _zip_is_symlink(m)]
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(f"{path}: not a readable zip file ({err})") from None
    return _pick_notebooks(student, str(path), [(n, (lambda n=n: contents[n])) for n in sorted(contents)], links)


def _check_student_id(student: str, origin: Path) -> None:
    if not STUDENT_ID.match(student):
        raise InputError(
            f"{origin}: {student!r} is not a usable student id (letters, digits, '_', '.', '@', '-'; "
            "starting with a letter or digit)"
        )


def find_submissions(paths: Sequence[str | Path]) -> list[Found]:
    """Read (never change) the input: folders of ``<student>/`` folders, ``<student>.zip`` files, or both.

    A path may be a folder (each subfolder is a student, each ``.zip`` in it a student's zip) or a zip file
    (``alice.zip`` is alice's). Inside a student's folder or zip, symbolic links are never followed: a notebook
    that is one is recorded (``autograde`` then fails that student), a linked folder is skipped with a note.
    Raises :class:`InputError` listing every problem; nothing is copied then.
    """
    if not paths:
        raise InputError("collect needs at least one path: a folder of <student>/ folders or <student>.zip files")
    found: list[Found] = []
    errors: list[str] = []
    for raw in paths:
        path = Path(raw)
        try:
            if not path.exists():
                raise InputError(f"{path}: no such file or folder")
            if path.is_file():
                if path.suffix.lower() != ".zip":
                    raise InputError(f"{path}: not a folder or a .zip file")
                _check_student_id(path.stem, path)
                found.append(_from_zip(path.stem, path))
                continue
            entries = sorted(path.iterdir())
            students = [e for e in entries if (e.is_dir() and not e.name.startswith(".") and e.name != "__MACOSX")
                        or (e.is_file() and e.suffix.lower() == ".zip")]
            if not students:
                raise InputError(f"{path}: no <student>/ folder or <student>.zip file in it")
            for entry in students:
                try:
                    student = entry.stem if entry.is_file() else entry.name
                    _check_student_id(student, entry)
                    found.append(_from_zip(student, entry) if entry.is_file() else _from_folder(student, entry))
                except InputError as err:
                    errors.append(str(err))
        except InputError as err:
            errors.append(str(err))
    by_student: dict[str, str] = {}
    for f in found:
        if f.student in by_student:
            errors.append(f"student {f.student} is in the input twice: {by_student[f.student]} and {f.origin}")
        by_student[f.student] = f.origin
    if errors:
        raise InputError("\n".join(errors))
    return found


_COPY_SUFFIX = re.compile(r"([ _-]*(\(\d+\)|copy\d*|kopie|\d+))+$")


def _stem_of(name: str) -> str:
    """``'quiz'`` for ``'Quiz (1).ipynb'``, ``'quiz-Copy1.ipynb'``, ``'QUIZ copy.ipynb'``: a notebook's name as a
    download or a file manager may have changed it."""
    stem = name[: -len(".ipynb")] if name.lower().endswith(".ipynb") else name
    return _COPY_SUFFIX.sub("", stem.strip().lower()).strip(" _-")


def _renamed(missing: Sequence[str], extra: Sequence[str]) -> tuple[list[str], list[str]]:
    """(missing notebooks, stray notebooks) that look renamed: a stray whose name is a missing one's as a
    download or file manager changes it (``Quiz (1).ipynb``), or every stray when none of the assignment's
    notebooks is there. Empty lists when nothing looks renamed (a stray ``scratch.ipynb`` beside the rest)."""
    if missing and extra and len(missing) == len(NOTEBOOKS):
        return list(missing), list(extra)
    by_stem = {_stem_of(m): m for m in missing}
    strays = [e for e in extra if _stem_of(e) in by_stem]
    return sorted({by_stem[_stem_of(e)] for e in strays}, key=list(missing).index), strays


def _renamed_reason(missing: Sequence[str], extra: Sequence[str]) -> str:
    """Why a submission with an assignment notebook missing and a renamed copy of it present is not graded."""
    return (f"no {', '.join(missing)}; the submission has {', '.join(repr(e) for e in extra)} "
            "(rename it and collect again)")


def collect(course: Course, paths: Sequence[str | Path]) -> list[Found]:
    """Copy each student's notebooks into ``submitted/<student>/lrdiff/`` (replacing an earlier copy).

    The originals are only read. Malformed notebooks are copied as they are, and so are notebooks that are not
    the assignment's (``Exercises (1).ipynb``): ``autograde`` reports them. Notebooks that were symbolic links
    are not copied; they are listed in ``submitted/<student>/.lrdiff-collect.json`` for ``autograde``.
    """
    found = find_submissions(paths)
    for f in found:
        home = course.submitted / f.student
        dest = home / ASSIGNMENT
        for p in (home, dest):  # a link put there by hand: remove the link, never what it points to
            if p.is_symlink():
                p.unlink()
        if dest.exists():
            f.notes.append(f"replaced an earlier copy in {dest.relative_to(course.root)}")
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for name, data in {**f.extra, **f.notebooks}.items():
            (dest / name).write_bytes(data)
        marker = home / COLLECT_FILE
        if f.symlinks:
            marker.write_text(json.dumps({"symlinks": f.symlinks}, indent=1, sort_keys=True) + "\n")
        else:
            marker.unlink(missing_ok=True)
        missing = sorted(f"{n}.ipynb" for n in NOTEBOOKS if f"{n}.ipynb" not in f.notebooks | f.symlinks)
        gone, renamed = _renamed(missing, sorted(f.extra))
        if renamed:
            f.notes.append(f"will fail to grade: {_renamed_reason(gone, renamed)}")
        elif missing:
            f.notes.append(f"no {', '.join(missing)} (scored 0)")
    return found


# ------------------------------------------------------------------------------------------------ autograde


@dataclass
class Result:
    """One student's outcome of a step."""

    student: str
    status: str  # GRADED or "failed to grade: <reason>"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == GRADED


def _notebook_problem(path: Path) -> str | None:
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


def _failure_reason(result: dict) -> str:
    """A one-line reason from nbgrader's captured log and traceback."""
    text = (result.get("log") or "") + "\n" + (result.get("error") or "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for pattern in ("DeadKernelError", "kernel died", "Kernel died", "UnresponsiveKernelError", "Timeout"):
        for ln in lines:
            if pattern in ln:
                return ln.removeprefix("[ERROR] ")
    errors = [ln for ln in lines if re.match(r"^[A-Za-z_.]+(Error|Exception)\b", ln)]
    errors = [e for e in errors if "NbGraderException: Please see" not in e]  # nbgrader's "see above"
    if errors:
        return errors[-1]
    errs = [ln.removeprefix("[ERROR] ") for ln in lines if ln.startswith("[ERROR]")]
    return errs[0] if errs else "nbgrader failed (no reason given)"


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


def _require_sandbox() -> None:
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


def _run_app(app_cls, course: Course, student: str, sandbox: bool = False, extra=None, **attrs) -> dict:
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log

    cfg = course.config()
    if extra is not None:
        cfg.merge(extra)
    if sandbox:  # student code runs in a bubblewrap-confined kernel (autograder/sandbox.py)
        from .sandbox import use_sandbox

        use_sandbox(cfg)
    coursedir = CourseDirectory(config=cfg)
    coursedir.assignment_id = ASSIGNMENT
    coursedir.student_id = student
    app = app_cls(coursedir=coursedir, config=cfg)
    for k, v in attrs.items():
        setattr(app, k, v)
    cwd = os.getcwd()
    try:
        return capture_log(app)
    finally:
        os.chdir(cwd)


def _precheck(course: Course, student: str) -> tuple[str | None, list[str]]:
    """Check a submitted folder before anything reads it: (why it cannot be graded or ``None``, notes).

    Nothing here follows a symbolic link: a link anywhere under ``submitted/<student>/lrdiff/`` (put there by
    hand), a notebook that ``collect`` found to be one, a missing notebook beside one that is not the
    assignment's (renamed), or a notebook nbgrader cannot read: each fails the student with its reason.
    """
    home = course.submitted / student
    folder = home / ASSIGNMENT
    for p in (home, folder):
        if p.is_symlink():
            return f"{p.relative_to(course.root)} is a symbolic link (to {_link_text(os.readlink(p))}); " \
                   "it was not read", []
    problems: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(folder)
            mode = p.lstat().st_mode
            if stat.S_ISLNK(mode):
                problems.append(f"{rel} is a symbolic link (to {_link_text(os.readlink(p))}); it was not read")
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                problems.append(f"{rel} is not a regular file; it was not read")
    wanted = [f"{n}.ipynb" for n in NOTEBOOKS]
    present = {p.name for p in folder.iterdir() if p.name.endswith(".ipynb") and p.is_file() and not p.is_symlink()}
    try:
        recorded = json.loads((home / COLLECT_FILE).read_text()).get("symlinks", {})
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        recorded = {}
    for name, info in sorted(recorded.items()):
        if name in wanted and name not in present:  # else a person has since put the real notebook there
            where = info.get("path", name) if isinstance(info, dict) else name
            target = info.get("target", "?") if isinstance(info, dict) else "?"
            problems.append(f"{where} is a symbolic link (to {_link_text(str(target))}); it was not read")
    if problems:
        return "; ".join(problems), []
    missing = [n for n in wanted if n not in present]
    extra = sorted(present - set(wanted))
    gone, renamed = _renamed(missing, extra)
    if renamed:
        return _renamed_reason(gone, renamed), []
    notes = [f"no {n} (scored 0)" for n in missing]
    notes += [f"{e} is not a notebook of {ASSIGNMENT}: not graded" for e in extra]
    problems = [p for p in (_notebook_problem(folder / n) for n in wanted if n in present) if p]
    return ("; ".join(problems) if problems else None), notes


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite gradebook URL, or ``None`` for any other database (or an in-memory one)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _snapshot(db: Path, dst: Path) -> None:
    """A consistent copy of a SQLite database (SQLite's backup API, not a file copy)."""
    src = sqlite3.connect(db)  # only read (the backup API copies page by page under a read lock)
    try:
        out = sqlite3.connect(dst)
        try:
            src.backup(out)
        finally:
            out.close()
    finally:
        src.close()


def _merge_grades(course: Course, scratch_url: str, student: str) -> None:
    """Copy what ``nbgrader autograde`` recorded for ``student`` in a private gradebook into the course's.

    The student, the submission's timestamp, each notebook's late penalty, each cell's ``auto_score`` and
    ``needs_manual_grade`` and each ``auto_comment``. What people enter (manual scores and comments, extra
    credit, flags, extensions) stays as it is in the course's gradebook, as on a re-autograde with nbgrader; a
    cell whose manual score changed while the student was being graded is marked as needing manual grading.
    """
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    with warnings.catch_warnings(), Gradebook(scratch_url, ASSIGNMENT) as src, course.gradebook() as dst:
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's own use of its session when it adds a submission
        graded = src.find_submission(ASSIGNMENT, student)
        dst.update_or_create_student(student)
        if graded.timestamp is not None:
            sub = dst.update_or_create_submission(ASSIGNMENT, student, timestamp=graded.timestamp)
        else:
            sub = dst.update_or_create_submission(ASSIGNMENT, student)
        notebooks = {nb.name: nb for nb in sub.notebooks}
        for snb in graded.notebooks:
            nb = notebooks[snb.name]
            nb.late_submission_penalty = snb.late_submission_penalty
            grades = {g.name: g for g in nb.grades}
            for g in snb.grades:
                d = grades[g.name]
                d.auto_score = g.auto_score
                changed = d.manual_score != g.manual_score and d.manual_score is not None
                d.needs_manual_grade = bool(g.needs_manual_grade or changed)
            comments = {c.name: c for c in nb.comments}
            for c in snb.comments:
                comments[c.name].auto_comment = c.auto_comment
        dst.db.commit()


def _worker_env(tmpdir: Path) -> dict[str, str]:
    """A grading worker's environment: the venv's bin first on PATH, the reproducibility pins (one torch thread,
    AVX2 kernels), its own temp folder (the sandbox's scratch folders go there, and go with it when the worker
    is killed)."""
    env = {**_venv_path_env(), **PINNED_ENV}
    env["TMPDIR"] = str(tmpdir)
    return env


@dataclass
class _Job:
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

    def launch(self, course: Course) -> None:
        self.tmpdir.mkdir(mode=0o711)
        os.chmod(self.tmpdir, 0o711)  # whatever the umask
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autograder.worker", "--root", str(course.root), "--student", self.student,
                 "--gradebook", self.gradebook_url, "--result", str(self.result_file),
                 "--parent", str(os.getpid())],
                cwd=ROOT,  # imports this very autograder package (the course graded may be a copy elsewhere)
                env=_worker_env(self.tmpdir), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
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
            return GRADED if out.get("success") else f"{FAILED}: {_failure_reason(out)}"
        if code < 0:
            try:
                how = signal.Signals(-code).name
            except ValueError:
                how = f"signal {-code}"
            why = f"the grading process was killed ({how})"
        else:
            why = f"the grading process exited with status {code}"
        return f"{FAILED}: {why}{self._log_tail()}"

    def _log_tail(self) -> str:
        try:
            lines = [ln.strip() for ln in self.log_file.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return f" ({lines[-1][:200]})" if lines else ""


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
    this process alone copies the student's grades into the course's gradebook (:func:`_merge_grades`), one
    student at a time, as each finishes; it alone writes the status file. ``jobs=1`` takes the same path.

    A gradebook that is not a SQLite file (``LRDIFF_GRADEBOOK_URL=postgresql://...``) is written by the workers
    directly, one student at a time (``jobs`` is then 1): a database server takes one writer safely, and
    nbgrader's own create-or-update steps are not safe to race.

    Before a worker starts, the submitted folder is checked (:func:`_precheck`): symbolic links, a renamed
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
    everyone = course.students_submitted()
    if students:
        unknown = sorted(set(students) - set(everyone))
        if unknown:
            raise InputError(f"no submission in submitted/ for: {', '.join(unknown)}")
    todo = list(dict.fromkeys(students)) if students else everyone
    if not todo:
        raise InputError("nothing to grade: submitted/ has no <student>/lrdiff/ folder (run collect first)")
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    if jobs < 1:
        raise InputError(f"jobs must be at least 1 (got {jobs})")
    if time_limit <= 0:
        raise InputError(f"the time limit must be positive (got {time_limit:g} s)")
    _require_sandbox()
    require_reproducible()
    if not assignment_registered(course):
        release(course)
    db = sqlite_file(course.db_url)
    if db is None:
        jobs = 1
    status = course.read_status()
    results: dict[str, Result] = {}

    def finish(res: Result) -> None:
        if not res.ok:  # no stale output of an earlier run may be handed out for a failed submission
            shutil.rmtree(course.autograded / res.student / ASSIGNMENT, ignore_errors=True)
            shutil.rmtree(course.feedback_dir / res.student / ASSIGNMENT, ignore_errors=True)
        status[res.student] = {"status": res.status, "notes": res.notes, "seconds": round(res.seconds, 2)}
        course.write_status(status)
        results[res.student] = res
        if progress is not None:
            progress(res)

    from .sandbox import force_rmtree as rmtree  # also removes folders student code made unreadable

    work = Path(tempfile.mkdtemp(prefix="lrdiff-autograde-"))
    os.chmod(work, 0o711)  # the workers' temp folders in it must be reachable (see _Job.tmpdir); not listable
    running: list[_Job] = []
    try:
        snapshot = None
        if db is not None:
            snapshot = work / "gradebook.db"
            _snapshot(db, snapshot)  # the assignment as registered, and what people entered before this run
        pending: list[_Job] = []
        for i, student in enumerate(todo):
            start = time.perf_counter()
            problem, notes = _precheck(course, student)
            if problem is not None:
                finish(Result(student, f"{FAILED}: {problem}", time.perf_counter() - start, notes))
                continue
            folder = work / f"{i:05d}"
            url = course.db_url
            if snapshot is not None:
                url = f"sqlite:///{folder / 'gradebook.db'}"
            pending.append(_Job(student, notes, folder, url))
        pending.reverse()
        while pending or running:
            while pending and len(running) < jobs:
                job = pending.pop()
                job.folder.mkdir(mode=0o700)
                if snapshot is not None:
                    shutil.copyfile(snapshot, job.folder / "gradebook.db")
                job.launch(course)
                running.append(job)
            done = [(job, state) for job in running if (state := job.outcome(time_limit)) is not None]
            if not done:
                time.sleep(0.1)
                continue
            for job, state in done:
                running.remove(job)
                if state == GRADED and snapshot is not None:
                    try:
                        _merge_grades(course, job.gradebook_url, job.student)
                    except Exception as err:  # noqa: BLE001 (any database error fails this student only)
                        state = f"{FAILED}: could not copy the grades into the gradebook ({type(err).__name__}: {err})"
                finish(Result(job.student, state, time.perf_counter() - job.start, job.notes))
                rmtree(job.folder)
                rmtree(job.tmpdir)
    finally:
        for job in running:  # interrupted (Ctrl-C): no orphan grading a student
            job.kill()
        rmtree(work)
    return [results[s] for s in todo]


# ------------------------------------------------------------------------------------------------ feedback


def feedback(course: Course, progress=None) -> list[Result]:
    """Write ``feedback/<student>/lrdiff/*.html`` for every student whose last autograde succeeded."""
    from nbgrader.converters import GenerateFeedback
    from traitlets.config import Config

    status = course.read_status()
    graded = sorted(s for s, st in status.items() if st.get("status") == GRADED)
    if not graded:
        raise InputError("no graded submission to give feedback on (run autograde first)")
    results = []
    for student in graded:
        start = time.perf_counter()
        extra = Config()
        extra.HTMLExporter.template_name = "feedback"
        out = _run_app(GenerateFeedback, course, student, extra=extra, force=True)
        res = Result(student, GRADED if out.get("success") else f"no feedback: {_failure_reason(out)}")
        res.seconds = time.perf_counter() - start
        results.append(res)
        if progress is not None:
            progress(res)
    return results


# ------------------------------------------------------------------------------------------------ export

COLUMNS = ["student", "status", *NOTEBOOKS, "total", "max_total", "notes"]


@dataclass
class Row:
    student: str
    status: str
    scores: dict[str, float | None]
    total: float | None
    max_total: float
    notes: str = ""

    def as_dict(self) -> dict[str, str]:
        def fmt(v: float | None) -> str:
            return "" if v is None else f"{v:g}"

        return {"student": self.student, "status": self.status, **{k: fmt(v) for k, v in self.scores.items()},
                "total": fmt(self.total), "max_total": fmt(self.max_total), "notes": self.notes}


def grade_rows(course: Course) -> list[Row]:
    """One row per student known to ``submitted/`` or to the last autograde: scores, or why there are none."""
    from nbgrader.api import MissingEntry

    status = course.read_status()
    students = sorted(set(course.students_submitted()) | set(status))
    rows = []
    if not assignment_registered(course):
        raise InputError(f"the gradebook ({course.db_url}) has no assignment {ASSIGNMENT}: run release and autograde first")
    with course.gradebook() as gb:
        assignment = gb.find_assignment(ASSIGNMENT)
        max_scores = {nb.name: float(nb.max_score) for nb in assignment.notebooks}
        max_total = sum(max_scores.get(n, 0.0) for n in NOTEBOOKS)
        for student in students:
            st = status.get(student, {})
            state = st.get("status", "not graded yet (run autograde)")
            notes = "; ".join(st.get("notes", []))
            scores: dict[str, float | None] = {n: None for n in NOTEBOOKS}
            total = None
            if state == GRADED:
                try:
                    sub = gb.find_submission(ASSIGNMENT, student)
                except MissingEntry:
                    state = f"{FAILED}: not in the gradebook"
                else:
                    for snb in sub.notebooks:
                        if snb.name in scores:
                            scores[snb.name] = float(snb.score)
                    total = sum(v for v in scores.values() if v is not None)
            rows.append(Row(student, state, scores, total, max_total, notes))
    return rows


def export(course: Course, out: Path) -> list[Row]:
    """Write the grades CSV (one row per student, with a status column) and return its rows."""
    rows = grade_rows(course)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.as_dict())
    out.write_text(buf.getvalue())
    return rows
