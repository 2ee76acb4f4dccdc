"""The gradebook: is the assignment registered, a private SQLite copy for a grading worker, and merging one
student's grades from that copy into the course's gradebook (this process alone writes it).

The course's gradebook is nbgrader's, at any SQLAlchemy URL nbgrader supports (``autograder/database.py``
reaches it): the SQLite file ``autograder/gradebook.db`` by default, PostgreSQL for many graders.
"""

from __future__ import annotations

import shutil
import sqlite3
import warnings
from pathlib import Path

from . import ASSIGNMENT, NOTEBOOKS
from .course import Course
from .database import copy_rows, engine, nbgrader_tables, require_schema, snapshot, sqlite_file

__all__ = ["assignment_registered", "create_schema", "merge_grades", "private_copy", "snapshot", "sqlite_file",
           "student_copy"]


def assignment_registered(course: Course) -> bool:
    """Whether the gradebook knows the assignment and its notebooks (``release`` puts them there).

    Raises :class:`~autograder.course.InputError` when a gradebook that is not a SQLite file cannot be opened
    or has no nbgrader tables (``release`` creates them, once): nothing is written to it then.
    """
    from nbgrader.api import MissingEntry

    url = course.db_url
    db = sqlite_file(url)
    if db is not None and not db.exists():
        return False
    require_schema(url)
    with course.gradebook() as gb:
        try:
            assignment = gb.find_assignment(ASSIGNMENT)
        except MissingEntry:
            return False
        return {nb.name for nb in assignment.notebooks} >= set(NOTEBOOKS)


def create_schema(course: Course) -> None:
    """Check that the course's gradebook can be opened, and create nbgrader's tables in it if it has none
    (``release`` does this, once, before any grader opens it)."""
    def create() -> None:
        with course.gradebook():  # nbgrader's Gradebook creates its tables
            pass

    require_schema(course.db_url, create=create)


#: nbgrader's tables that hold the students' submissions (the others hold the course, its students, the
#: assignment as released), in foreign-key order.
SUBMISSION_TABLES = ("submitted_assignment", "submitted_notebook", "grade", "comment")


def private_copy(course: Course, dst: Path) -> None:
    """A SQLite gradebook at ``dst`` holding what the course's gradebook holds now, but for the submissions:
    the assignment as registered, its cells, the students. One copy a run; each task gets it with its own
    student's submission added (:func:`student_copy`), so that what a task carries does not grow with the class.

    A SQLite gradebook is copied with SQLite's backup API; any other (PostgreSQL) gets nbgrader's tables in a
    fresh SQLite file (nbgrader's ``Gradebook`` creates them) and then every row of every one of them.
    """
    db = sqlite_file(course.db_url)
    if db is not None:
        snapshot(db, dst)
    else:
        from nbgrader.api import Gradebook

        url = f"sqlite:///{dst}"
        with course.venv_on_path():  # nbgrader runs alembic from PATH
            Gradebook(url, ASSIGNMENT).close()
        copy_rows(course.db_url, url)
    con = sqlite3.connect(dst)
    try:
        for table in reversed(SUBMISSION_TABLES):
            con.execute(f"DELETE FROM {table}")  # noqa: S608 (the table names are this module's constants)
        con.commit()
        con.execute("VACUUM")
    finally:
        con.close()


def student_copy(course: Course, base: Path, student: str, dst: Path) -> None:
    """``base`` (:func:`private_copy`) with ``student``'s submission rows of the course's gradebook added (its
    extension, its cells' scores and comments): what one grading worker needs to grade that student."""
    from sqlalchemy import insert, select

    shutil.copyfile(base, dst)
    tables = {t.name: t for t in nbgrader_tables()}
    sa, sn = tables["submitted_assignment"], tables["submitted_notebook"]
    src, out = engine(course.db_url), engine(f"sqlite:///{dst}")
    try:
        with src.connect() as conn, out.begin() as dst_conn:
            subs = [dict(r) for r in conn.execute(select(sa).where(sa.c.student_id == student)).mappings()]
            nbs = [dict(r) for r in conn.execute(
                select(sn).where(sn.c.assignment_id.in_([r["id"] for r in subs]))).mappings()]
            rows = {"submitted_assignment": subs, "submitted_notebook": nbs}
            for name in ("grade", "comment"):
                t = tables[name]
                rows[name] = [dict(r) for r in conn.execute(
                    select(t).where(t.c.notebook_id.in_([r["id"] for r in nbs]))).mappings()]
            for name in SUBMISSION_TABLES:
                if rows[name]:
                    dst_conn.execute(insert(tables[name]), rows[name])
    finally:
        src.dispose()
        out.dispose()


def _cell_rows(conn, table, columns: tuple[str, ...], student: str) -> dict[tuple[str, str], dict]:
    """``table``'s rows (``grade`` or ``comment``) of ``student``'s submission, in one query: (notebook, cell)
    -> the row's ``id`` and ``columns``, and its submitted notebook's ``id`` and late penalty."""
    from nbgrader.api import Assignment, BaseCell, Notebook, SubmittedAssignment, SubmittedNotebook
    from sqlalchemy import select

    t, sn, sa = table.__table__, SubmittedNotebook.__table__, SubmittedAssignment.__table__
    a, nb, cell = Assignment.__table__, Notebook.__table__, BaseCell.__table__
    query = (
        select(nb.c.name.label("notebook"), cell.c.name.label("cell"), t.c.id, sn.c.id.label("sn_id"),
               sn.c.late_submission_penalty, *(t.c[c] for c in columns))
        .select_from(t.join(sn, t.c.notebook_id == sn.c.id).join(sa, sn.c.assignment_id == sa.c.id)
                     .join(a, sa.c.assignment_id == a.c.id).join(nb, sn.c.notebook_id == nb.c.id)
                     .join(cell, t.c.cell_id == cell.c.id))
        .where(sa.c.student_id == student, a.c.name == ASSIGNMENT)
    )
    return {(r["notebook"], r["cell"]): dict(r) for r in conn.execute(query).mappings()}


def _graded_rows(scratch_url: str, student: str) -> tuple:
    """What ``nbgrader autograde`` recorded for ``student`` in a private gradebook: its timestamp, grades and
    comments (:func:`_cell_rows`)."""
    from nbgrader.api import Assignment, Comment, Grade, SubmittedAssignment
    from sqlalchemy import select

    sa, a = SubmittedAssignment.__table__, Assignment.__table__
    eng = engine(scratch_url)
    try:
        with eng.connect() as conn:
            stamp = conn.execute(select(sa.c.timestamp).join(a, sa.c.assignment_id == a.c.id)
                                 .where(sa.c.student_id == student, a.c.name == ASSIGNMENT)).one()[0]
            grades = _cell_rows(conn, Grade, ("auto_score", "manual_score", "needs_manual_grade"), student)
            comments = _cell_rows(conn, Comment, ("auto_comment",), student)
    finally:
        eng.dispose()
    return stamp, grades, comments


def _needs_manual(g: dict, d: dict) -> bool:
    """A cell needs grading by a person when autograde says so, or when its manual score changed meanwhile."""
    changed = d["manual_score"] != g["manual_score"] and d["manual_score"] is not None
    return bool(g["needs_manual_grade"] or changed)


def _write(conn, grades: dict, comments: dict, student: str) -> None:
    """Write ``student``'s graded cells (:func:`_graded_rows`) over their rows in the course's gradebook, with
    one statement per table (a cell the course's gradebook does not have: ``KeyError``)."""
    from nbgrader.api import Comment, Grade, SubmittedNotebook
    from sqlalchemy import bindparam, update

    g, c, sn = Grade.__table__, Comment.__table__, SubmittedNotebook.__table__
    present = _cell_rows(conn, Grade, ("manual_score",), student)
    said = _cell_rows(conn, Comment, (), student)
    scores = [{"row": present[k]["id"], "auto": x["auto_score"], "needs": _needs_manual(x, present[k])}
              for k, x in grades.items()]
    texts = [{"row": said[k]["id"], "text": x["auto_comment"]} for k, x in comments.items()]
    late = {mine[k]["sn_id"]: {"row": mine[k]["sn_id"], "late": x["late_submission_penalty"]}
            for graded, mine in ((grades, present), (comments, said)) for k, x in graded.items()}
    for statement, params in [
        (update(g).where(g.c.id == bindparam("row"))
         .values(auto_score=bindparam("auto"), needs_manual_grade=bindparam("needs")), scores),
        (update(c).where(c.c.id == bindparam("row")).values(auto_comment=bindparam("text")), texts),
        (update(sn).where(sn.c.id == bindparam("row")).values(late_submission_penalty=bindparam("late")),
         list(late.values())),
    ]:
        if params:
            conn.execute(statement, params)


def merge_grades(course: Course, scratch_url: str, student: str) -> None:
    """Copy what ``nbgrader autograde`` recorded for ``student`` in a private gradebook into the course's.

    The student, the submission's timestamp, each notebook's late penalty, each cell's ``auto_score`` and
    ``needs_manual_grade`` and each ``auto_comment``. What people enter (manual scores and comments, extra
    credit, flags, extensions) stays as it is in the course's gradebook, as on a re-autograde with nbgrader; a
    cell whose manual score changed while the student was being graded is marked as needing manual grading.
    The cells are read and written a table at a time (not object by object): a merge takes milliseconds.
    """
    from sqlalchemy.exc import SAWarning

    stamp, grades, comments = _graded_rows(scratch_url, student)
    with warnings.catch_warnings(), course.gradebook() as dst:
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's own use of its session when it adds a submission
        dst.update_or_create_student(student)
        dst.update_or_create_submission(ASSIGNMENT, student, **({} if stamp is None else {"timestamp": stamp}))
        _write(dst.db.connection(), grades, comments, student)
        dst.db.commit()
