"""The SQLite gradebook: is the assignment registered, a consistent snapshot, and merging one student's grades
from a grading worker's private copy into the course's gradebook (this process alone writes it)."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

from . import ASSIGNMENT, NOTEBOOKS
from .course import Course


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


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite gradebook URL, or ``None`` for any other database (or an in-memory one)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def snapshot(db: Path, dst: Path) -> None:
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


def private_copy(course: Course, dst: Path) -> None:
    """A private SQLite gradebook at ``dst`` holding what the course's gradebook holds now (the assignment as
    registered, the students, what people entered), for one grading worker to write."""
    db = sqlite_file(course.db_url)
    if db is None:
        raise NotImplementedError("a private copy of a gradebook that is not a SQLite file")
    snapshot(db, dst)


def _copy_notebook_grades(graded_nb, nb) -> None:
    """One notebook: late penalty, each cell's auto score and comment; what people entered stays."""
    nb.late_submission_penalty = graded_nb.late_submission_penalty
    grades = {g.name: g for g in nb.grades}
    for g in graded_nb.grades:
        d = grades[g.name]
        d.auto_score = g.auto_score
        changed = d.manual_score != g.manual_score and d.manual_score is not None
        d.needs_manual_grade = bool(g.needs_manual_grade or changed)
    comments = {c.name: c for c in nb.comments}
    for c in graded_nb.comments:
        comments[c.name].auto_comment = c.auto_comment


def merge_grades(course: Course, scratch_url: str, student: str) -> None:
    """Copy what ``nbgrader autograde`` recorded for ``student`` in a private gradebook into the course's.

    The student, the submission's timestamp, each notebook's late penalty, each cell's ``auto_score`` and
    ``needs_manual_grade`` and each ``auto_comment``. What people enter (manual scores and comments, extra
    credit, flags, extensions) stays as it is in the course's gradebook, as on a re-autograde with nbgrader; a
    cell whose manual score changed while the student was being graded is marked as needing manual grading.
    """
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    with course.venv_on_path():
        src = Gradebook(scratch_url, ASSIGNMENT)
    with warnings.catch_warnings(), src, course.gradebook() as dst:
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's own use of its session when it adds a submission
        graded = src.find_submission(ASSIGNMENT, student)
        dst.update_or_create_student(student)
        if graded.timestamp is not None:
            sub = dst.update_or_create_submission(ASSIGNMENT, student, timestamp=graded.timestamp)
        else:
            sub = dst.update_or_create_submission(ASSIGNMENT, student)
        notebooks = {nb.name: nb for nb in sub.notebooks}
        for snb in graded.notebooks:
            _copy_notebook_grades(snb, notebooks[snb.name])
        dst.db.commit()
