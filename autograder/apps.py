"""Running nbgrader: an app in this process (:func:`run_app`), ``generate_assignment`` as a person would
(:func:`release`), and a one-line reason from what an app logged (:func:`failure_reason`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings

from . import ASSIGNMENT
from .course import Course, InputError
from .database import GRADEBOOK_URL_ENV
from .gradebook import create_schema


def run_app(app_cls, course: Course, student: str, sandbox: bool = False, extra=None, **attrs) -> dict:
    """Run nbgrader's ``app_cls`` (``Autograde``, ``GenerateFeedback``) for one student; its captured result.

    ``extra`` (a traitlets ``Config``) is merged into the course's configuration; ``sandbox`` confines student
    code in a bubblewrap kernel (``autograder.sandbox.use_sandbox``); ``attrs`` are set on the app (``force``).
    Returns nbgrader's ``capture_log`` dict: ``success``, ``log``, ``error``.
    """
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log

    cfg = course.config()
    if extra is not None:
        cfg.merge(extra)
    if sandbox:  # student code runs in a bubblewrap-confined kernel (autograder/sandbox/)
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
        with course.venv_on_path():
            return capture_log(app)
    finally:
        os.chdir(cwd)


def release(course: Course) -> str:
    """Regenerate ``release/lrdiff`` from ``source/lrdiff`` (``--force``) and register it in the gradebook.

    Runs ``nbgrader generate_assignment lrdiff --force`` from ``autograder/``, exactly as a person would.
    First the gradebook: a database that cannot be opened stops it (:class:`InputError`, nothing written), and
    one without nbgrader's tables gets them here, once (:func:`~autograder.gradebook.create_schema`), never by
    several graders at once. Returns nbgrader's output; raises ``RuntimeError`` when it fails.
    """
    if not (course.root / "source" / ASSIGNMENT).is_dir():
        raise InputError(f"no source/{ASSIGNMENT}/ under {course.root}")
    create_schema(course)
    proc = subprocess.run(  # into this course's gradebook, even one chosen in this process (Course.gradebook_url)
        [sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force"],
        cwd=course.config_dir, env={**course.env, GRADEBOOK_URL_ENV: course.db_url}, capture_output=True, text=True,
    )
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed (exit {proc.returncode}):\n{out}")
    return out


def failure_reason(result: dict) -> str:
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


def quiet_library_warnings() -> None:
    """nbgrader's own use of SQLAlchemy warns about its sessions; that is not the instructor's business."""
    try:
        from sqlalchemy.exc import SAWarning
    except ImportError:  # pragma: no cover
        return
    warnings.filterwarnings("ignore", category=SAWarning)
