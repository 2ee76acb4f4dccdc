"""The grading steps: release, collect, autograde, feedback, export.

Each step is a function of a :class:`Course` (the course's folders and nbgrader configuration) that returns
what it did; ``autograder/__main__.py`` turns them into a command line. nbgrader's converters run in this
process, one student at a time, so that one submission that cannot be graded (a notebook that is not valid
JSON, a kernel that dies) is reported and the batch goes on.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import ASSIGNMENT, NOTEBOOKS, ROOT

#: A student id: letters, digits and ``_ . @ -``, starting with a letter or a digit.
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
#: Where ``autograde`` records each student's status, for ``feedback`` and ``export`` (git-ignored folder).
STATUS_FILE = Path("autograded") / ".lrdiff-status.json"
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

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        os.environ.update({"PATH": _venv_path_env()["PATH"]})
        # The grading kernels inherit this: one torch thread each. On a machine shared by several jobs,
        # threads waiting for each other made a notebook 5-30 times slower; the scores do not change.
        os.environ.setdefault("OMP_NUM_THREADS", "1")

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
        self.status_file.parent.mkdir(parents=True, exist_ok=True)
        self.status_file.write_text(json.dumps(status, indent=1, sort_keys=True) + "\n")


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
    """One student's submission found in the input: where each notebook comes from."""

    student: str
    origin: str
    notebooks: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _pick_notebooks(student: str, origin: str, files: Iterable[tuple[str, callable]]) -> Found:
    """From (relative path, reader) pairs, keep the assignment's notebooks (found at any depth)."""
    found = Found(student, origin)
    wanted = {f"{name}.ipynb" for name in NOTEBOOKS}
    seen: dict[str, str] = {}
    for rel, read in files:
        parts = Path(rel).parts
        if any(p in {"__MACOSX", ".ipynb_checkpoints"} or p.startswith("._") for p in parts):
            continue
        base = parts[-1] if parts else ""
        if base not in wanted:
            if base.endswith(".ipynb"):
                found.notes.append(f"ignored {rel} (not a notebook of {ASSIGNMENT})")
            continue
        if base in seen:
            raise InputError(f"{origin}: two copies of {base} ({seen[base]} and {rel}); keep one")
        seen[base] = rel
        found.notebooks[base] = read()
    if not found.notebooks:
        raise InputError(
            f"{origin}: no notebook of {ASSIGNMENT} in it (expected {', '.join(sorted(wanted))})"
        )
    return found


def _from_folder(student: str, folder: Path) -> Found:
    files = [
        (str(p.relative_to(folder)), (lambda p=p: p.read_bytes()))
        for p in sorted(folder.rglob("*")) if p.is_file()
    ]
    return _pick_notebooks(student, str(folder), files)


def _from_zip(student: str, path: Path) -> Found:
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            contents = {m.filename: zf.read(m) for m in members if m.filename.endswith(".ipynb")}
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(f"{path}: not a readable zip file ({err})") from None
    return _pick_notebooks(student, str(path), [(n, (lambda n=n: contents[n])) for n in sorted(contents)])


def _check_student_id(student: str, origin: Path) -> None:
    if not STUDENT_ID.match(student):
        raise InputError(
            f"{origin}: {student!r} is not a usable student id (letters, digits, '_', '.', '@', '-'; "
            "starting with a letter or digit)"
        )


def find_submissions(paths: Sequence[str | Path]) -> list[Found]:
    """Read (never change) the input: folders of ``<student>/`` folders, ``<student>.zip`` files, or both.

    A path may be a folder (each subfolder is a student, each ``.zip`` in it a student's zip) or a zip file
    (``alice.zip`` is alice's). Raises :class:`InputError` listing every problem; nothing is copied then.
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


def collect(course: Course, paths: Sequence[str | Path]) -> list[Found]:
    """Copy each student's notebooks into ``submitted/<student>/lrdiff/`` (replacing an earlier copy).

    The originals are only read. Malformed notebooks are copied as they are: ``autograde`` reports them.
    """
    found = find_submissions(paths)
    for f in found:
        dest = course.submitted / f.student / ASSIGNMENT
        if dest.exists():
            f.notes.append(f"replaced an earlier copy in {dest.relative_to(course.root)}")
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for name, data in f.notebooks.items():
            (dest / name).write_bytes(data)
        missing = sorted(f"{n}.ipynb" for n in NOTEBOOKS if f"{n}.ipynb" not in f.notebooks)
        if missing:
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
    skip = ("NbGraderException: Please see", "nbgrader.utils.NbGraderException")
    errors = [e for e in errors if not e.startswith(skip)]
    if errors:
        return errors[-1]
    errs = [ln.removeprefix("[ERROR] ") for ln in lines if ln.startswith("[ERROR]")]
    return errs[0] if errs else "nbgrader failed (no reason given)"


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


def _run_app(app_cls, course: Course, student: str, sandbox: bool = False, **attrs) -> dict:
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log

    cfg = course.config()
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


def autograde(course: Course, students: Sequence[str] | None = None, progress=None) -> list[Result]:
    """Autograde each submitted student, one at a time; a failure is recorded and the batch goes on.

    Registers the assignment first (``release``) when the gradebook does not know it yet.
    """
    from nbgrader.converters import Autograde

    everyone = course.students_submitted()
    if students:
        unknown = sorted(set(students) - set(everyone))
        if unknown:
            raise InputError(f"no submission in submitted/ for: {', '.join(unknown)}")
    todo = list(students) if students else everyone
    if not todo:
        raise InputError("nothing to grade: submitted/ has no <student>/lrdiff/ folder (run collect first)")
    _require_sandbox()
    status = course.read_status()
    results = []
    for student in todo:
        start = time.perf_counter()
        folder = course.submitted / student / ASSIGNMENT
        problems = [p for p in (_notebook_problem(nb) for nb in sorted(folder.glob("*.ipynb"))) if p]
        notes = [f"no {n}.ipynb (scored 0)" for n in NOTEBOOKS if not (folder / f"{n}.ipynb").exists()]
        if problems:
            res = Result(student, f"{FAILED}: {'; '.join(problems)}", notes=notes)
            shutil.rmtree(course.autograded / student / ASSIGNMENT, ignore_errors=True)
        else:
            out = _run_app(Autograde, course, student, sandbox=True, force=True, create_student=True)
            if out.get("success"):
                res = Result(student, GRADED, notes=notes)
            else:
                res = Result(student, f"{FAILED}: {_failure_reason(out)}", notes=notes)
        res.seconds = time.perf_counter() - start
        if not res.ok:  # no stale feedback of an earlier run may be handed out for a failed submission
            shutil.rmtree(course.feedback_dir / student / ASSIGNMENT, ignore_errors=True)
        status[student] = {"status": res.status, "notes": res.notes, "seconds": round(res.seconds, 2)}
        course.write_status(status)
        results.append(res)
        if progress is not None:
            progress(res)
    return results


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
        out = _run_feedback(GenerateFeedback, course, student, extra)
        res = Result(student, GRADED if out.get("success") else f"no feedback: {_failure_reason(out)}")
        res.seconds = time.perf_counter() - start
        results.append(res)
        if progress is not None:
            progress(res)
    return results


def _run_feedback(app_cls, course: Course, student: str, extra) -> dict:
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log

    cfg = course.config()
    cfg.merge(extra)
    coursedir = CourseDirectory(config=cfg)
    coursedir.assignment_id = ASSIGNMENT
    coursedir.student_id = student
    app = app_cls(coursedir=coursedir, config=cfg)
    app.force = True
    return capture_log(app)


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
