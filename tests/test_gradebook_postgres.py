"""A PostgreSQL gradebook, with a real server on loopback (``tests.support.postgres``), through the CLI.

Three quiz-only submissions (cheap: the quiz trains nothing) are graded twice, each time in a scratch copy of
the course, exactly as an instructor would (``python -m autograder release / collect / autograde --jobs 2 /
export``): once with ``LRDIFF_GRADEBOOK_URL`` pointing at the PostgreSQL server, once with the default SQLite
gradebook. nbgrader's own ``Gradebook`` API (what the formgrader reads) reads the scores from PostgreSQL.
Then bad input: a gradebook that cannot be opened or has no tables stops the step, exit status 2, nothing
written.
"""

from __future__ import annotations

import runpy
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests import support
from tests.support.postgres import postgres  # noqa: F401 (a module-scoped fixture)
from autograder.collect import collect
from autograder.course import Course
from autograder.database import nbgrader_tables, table_names
from autograder.gradebook import SUBMISSION_TABLES, private_copy, student_copy
from autograder.report import export
from autograder.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = runpy.run_path(str(ROOT / "tests" / "fixtures" / "submissions" / "variants.py"))
STUDENTS = ("ref", "wrong", "blank")


def _cli(root: Path, *args: str, url: str) -> subprocess.CompletedProcess:
    """``python -m autograder ARGS`` in the course at ``root``, with ``LRDIFF_GRADEBOOK_URL=url`` (``""``: the
    course's default SQLite gradebook)."""
    env = support.grader_env(sandboxed=True) | ({"LRDIFF_GRADEBOOK_URL": url} if url else {})
    return subprocess.run([sys.executable, "-m", "autograder", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)


def _inbox(folder: Path) -> Path:
    quiz = support.submission("quiz")
    support.write_submission(folder, "ref", {"quiz": quiz})
    support.write_submission(folder, "wrong", {
        "quiz": support.submission("quiz", {**support.solutions("quiz"), **VARIANTS["QUIZ_WRONG"]})})
    support.write_submission(folder, "blank", {"quiz": support.submission("quiz", {})})
    return folder


def _grade(root: Path, inbox: Path, url: str) -> dict:
    """release and ``autograde --jobs 2`` through the CLI (collect and export in this process: they are the
    CLI's own functions, and each process start costs seconds): autograde's output, and the CSV's rows."""
    course = Course(root, gradebook_url=url or f"sqlite:///{root / 'autograder' / 'gradebook.db'}")
    out = {}
    for step, args in [("release", []), ("autograde", ["--jobs", "2"])]:
        proc = _cli(root, step, *args, url=url)
        assert proc.returncode == 0, f"{step}:\n{proc.stdout}\n{proc.stderr}"
        out[step] = proc.stdout
        if step == "release":
            collect(course, [inbox])
    out["rows"] = [r.as_dict() for r in export(course, root / "grades.csv")]
    return out


@pytest.fixture(scope="module")
def graded(postgres, tmp_path_factory, require_sandbox):  # noqa: F811 (the fixture imported above)
    tmp = tmp_path_factory.mktemp("pg")
    inbox = _inbox(tmp / "inbox")
    pg = _grade(support.copy_course(tmp / "on_postgres"), inbox, postgres.url)
    lite = _grade(support.copy_course(tmp / "on_sqlite"), inbox, "")
    return {"pg": pg, "sqlite": lite, "url": postgres.url, "root": tmp / "on_postgres"}


def test_release_creates_the_schema_and_registers_the_assignment(graded):
    """Does `release` against an empty PostgreSQL database create nbgrader's tables and register the assignment?"""
    from nbgrader.api import Gradebook

    assert {t.name for t in nbgrader_tables()} <= table_names(graded["url"])
    with Gradebook(graded["url"], "lrdiff") as gb:
        assert sorted(nb.name for nb in gb.find_assignment("lrdiff").notebooks) == ["exercises", "experiment", "quiz"]


def test_autograde_grades_in_parallel_into_postgres(graded):
    """Are the three students graded two at a time, every one of them graded, into PostgreSQL?"""
    out = graded["pg"]["autograde"]
    assert "3 submission(s), 2 at a time" in out, out
    assert "autograde: 3 graded, 0 failed to grade" in out, out


def test_export_matches_the_sqlite_gradebook(graded):
    """Does export from PostgreSQL give exactly the rows of the same batch graded into SQLite?"""
    assert graded["pg"]["rows"] == graded["sqlite"]["rows"]
    quiz = {r["student"]: float(r["quiz"]) for r in graded["pg"]["rows"]}
    assert quiz["ref"] == 17 and quiz["wrong"] < quiz["ref"] and quiz["blank"] == 0


def test_nbgraders_api_reads_the_scores_from_postgres(graded):
    """Does nbgrader's Gradebook API (what the formgrader reads) find each student's quiz score in PostgreSQL?"""
    from nbgrader.api import Gradebook

    csv_quiz = {r["student"]: float(r["quiz"]) for r in graded["pg"]["rows"]}
    with Gradebook(graded["url"], "lrdiff") as gb:
        scores = {s: gb.find_submission_notebook("quiz", "lrdiff", s).score for s in STUDENTS}
        assert {s.id for s in gb.students} == set(STUDENTS)
    assert scores == csv_quiz


def _rows(url: str) -> dict[str, list[tuple]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {t.name: sorted(map(tuple, conn.execute(sa.select(t))), key=repr) for t in nbgrader_tables()}
    finally:
        engine.dispose()


def test_private_copy_of_a_postgres_gradebook_holds_the_course_and_one_student(graded, tmp_path):
    """Does a run's private SQLite copy of PostgreSQL hold every row but the submissions, and a task's copy
    that plus its own student's submission rows, exactly (so that what a task carries does not grow with the
    class)?"""
    course = Course(graded["root"], gradebook_url=graded["url"])
    private_copy(course, tmp_path / "base.db")
    base, source = _rows(f"sqlite:///{tmp_path / 'base.db'}"), _rows(graded["url"])
    assert {t: r for t, r in base.items() if t not in SUBMISSION_TABLES} == \
        {t: r for t, r in source.items() if t not in SUBMISSION_TABLES}
    assert all(base[t] == [] for t in SUBMISSION_TABLES)
    with course.gradebook() as gb:
        student = sorted(s.id for s in gb.students)[0]
        mine = {t.name: len(t.grades) for t in gb.find_submission("lrdiff", student).notebooks}
    student_copy(course, tmp_path / "base.db", student, tmp_path / "task.db")
    task = _rows(f"sqlite:///{tmp_path / 'task.db'}")
    assert {t: r for t, r in task.items() if t not in SUBMISSION_TABLES} == \
        {t: r for t, r in base.items() if t not in SUBMISSION_TABLES}
    assert len(task["submitted_assignment"]) == 1 and len(task["submitted_notebook"]) == len(mine)
    assert len(task["grade"]) == sum(mine.values()) >= 17
    assert set(task["grade"]) <= set(source["grade"]) and set(task["comment"]) <= set(source["comment"])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once it is closed


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> Path:
    """A course with the three submissions collected and nothing graded."""
    tmp = tmp_path_factory.mktemp("pg_bad")
    root = support.copy_course(tmp / "course")
    collect(Course(root), [_inbox(tmp / "inbox")])
    return root


@pytest.mark.parametrize("step, case", [
    ("autograde", "no such database"), ("autograde", "unreachable server"), ("autograde", "not a URL"),
    ("autograde", "no tables"), ("release", "no such database"), ("release", "unreachable server"),
])
def test_a_bad_gradebook_stops_the_step(postgres, collected, step, case, monkeypatch, capsys):  # noqa: F811
    """Does a gradebook that cannot be opened (or, for autograde, has no tables) stop it: exit 2, nothing written?

    The CLI's ``main`` in this process (a process start costs seconds), with ``LRDIFF_GRADEBOOK_URL`` set."""
    url, message = {
        "no such database": (lambda: postgres.url_of("nosuch"), 'database "nosuch" does not exist'),
        "unreachable server": (lambda: f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/lrdiff",
                               "Connection refused"),
        "not a URL": (lambda: "postgresql+psycopg//oops", "is not a database URL SQLAlchemy can use"),
        "no tables": (lambda: postgres.create_database("empty"), "has no nbgrader tables"),
    }[case]
    url = url()
    release_before = {p: p.read_bytes() for p in (collected / "release").rglob("*") if p.is_file()}
    monkeypatch.setenv("LRDIFF_GRADEBOOK_URL", url)
    assert main(["--root", str(collected), step]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not (collected / "autograded").exists()
    assert {p: p.read_bytes() for p in (collected / "release").rglob("*") if p.is_file()} == release_before
    if case == "no tables":
        assert table_names(url) == set()  # autograde did not create them behind release's back
