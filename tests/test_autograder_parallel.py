"""Parallel autograde: every student in a process of its own, the gradebook written by the parent alone.

One small batch of quiz-only submissions (cheap: the quiz runs no training), in a scratch copy of the course,
graded through :func:`autograder.autograde.autograde` with the sandbox on:

* ``ref`` and ``wrong`` (two wrong quiz answers) are graded with ``jobs=2``, then again with ``jobs=1``: the
  gradebook must hold the same score for every cell, and a manual score entered in between must survive;
* ``victim``'s grading process is killed (SIGKILL, as the out-of-memory killer would) while it runs: only
  ``victim`` fails to grade;
* ``linker`` (a notebook that is a symbolic link to the instructor's source) and ``renamer`` (``Exercises
  (1).ipynb``) fail to grade with their reason, and nothing of theirs is run;
* ``late`` (an answer cell that sleeps a minute) is graded alone with a 2-second time limit: its worker is
  killed, the student is failed.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests import support
from tests.support.processes import graders_of
from tests.support.quiz_batch import VARIANTS, quiz_points, released_course, wrong_quiz_points, write_quizzes
from autograder.autograde import autograde
from autograder.course import FAILED, GRADED, Course
from autograder.gradebook import sqlite_file

STEAL = "../../source/lrdiff/exercises.ipynb"
PARALLEL = ["ref", "wrong", "victim", "linker", "renamer"]


def _scores(course: Course, students) -> dict:
    """student -> notebook -> grade id -> (auto_score, manual_score, needs_manual_grade)."""
    out: dict = {}
    with course.gradebook() as gb:
        for student in students:
            sub = gb.find_submission("lrdiff", student)
            out[student] = {nb.name: {g.name: (g.auto_score, g.manual_score, g.needs_manual_grade) for g in nb.grades}
                            for nb in sub.notebooks}
    return out


def _workers_of(student: str) -> list[int]:
    """Pids of the processes grading ``student`` (forks of the grading server)."""
    return graders_of(student)


class _Killer(threading.Thread):
    """Kill ``student``'s grading worker with SIGKILL once it has run ``after`` seconds."""

    def __init__(self, student: str, after: float = 3.0) -> None:
        super().__init__(daemon=True)
        self.student, self.after, self.killed, self.stop = student, after, [], threading.Event()

    def run(self) -> None:
        seen = None
        while not self.stop.is_set() and not self.killed:
            pids = _workers_of(self.student)
            if pids and seen is None:
                seen = time.monotonic()
            if pids and time.monotonic() - seen >= self.after:
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                self.killed.extend(pids)
            time.sleep(0.1)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parallel")
    inbox = tmp / "inbox"
    write_quizzes(inbox, right=["ref", "linker", "renamer"], wrong=["wrong"])
    slow = {**support.solutions("quiz")}
    slow["q1"] = "import time\ntime.sleep(60)\n" + slow["q1"]  # outlasts the time limit, whatever the machine
    for student in ("victim", "late"):  # still grading when the killer comes, or the time limit
        support.write_submission(inbox, student, {"quiz": support.submission("quiz", slow)})
    os.symlink(STEAL, inbox / "linker" / "exercises.ipynb")
    support.write_submission(inbox, "renamer", {"Exercises (1)": support.submission("exercises")})
    course = released_course(tmp / "course", [inbox])

    finished: list[str] = []
    killer = _Killer("victim", after=1.0)
    killer.start()
    try:
        parallel = autograde(course, PARALLEL, progress=lambda r: finished.append(r.student), jobs=2)
    finally:
        killer.stop.set()
        killer.join()
    after_parallel = _scores(course, ["ref", "wrong"])
    status_parallel = course.read_status()
    leftover = {s: _workers_of(s) for s in PARALLEL}

    # a grader enters a manual score for one cell of `wrong`; then both are graded again, one at a time
    manual_cell = sorted(VARIANTS["QUIZ_WRONG_CELLS"])[0]
    with course.gradebook() as gb:
        grade = gb.find_grade(manual_cell, "quiz", "lrdiff", "wrong")
        grade.manual_score = 0.5
        gb.db.commit()
    serial = autograde(course, ["ref", "wrong"], jobs=1)
    after_serial = _scores(course, ["ref", "wrong"])

    late = autograde(course, ["late"], jobs=1, time_limit=2)
    return {"course": course, "parallel": parallel, "serial": serial, "late": late, "finished": finished,
            "after_parallel": after_parallel, "after_serial": after_serial, "status_parallel": status_parallel,
            "killed": killer.killed, "leftover": leftover, "manual_cell": manual_cell}


@pytest.mark.slow
def test_parallel_grading_scores_every_cell_as_expected(batch):
    """Does grading two at a time give every quiz cell its expected score (full marks, two wrong answers)?"""
    auto = {s: {g: v[0] for g, v in batch["after_parallel"][s]["quiz"].items()} for s in ("ref", "wrong")}
    assert auto["ref"] == quiz_points()
    assert auto["wrong"] == wrong_quiz_points()
    for s in ("ref", "wrong"):  # missing notebooks: 0, as nbgrader scores them
        assert all(v[0] == 0 for nb in ("exercises", "experiment") for v in batch["after_parallel"][s][nb].values())


@pytest.mark.slow
def test_one_at_a_time_gives_the_same_gradebook(batch):
    """Does jobs=1 record the same auto score in every cell as jobs=2?"""
    assert [r.status for r in batch["serial"]] == [GRADED, GRADED]
    par, ser = batch["after_parallel"], batch["after_serial"]
    assert {s: {nb: {g: v[0] for g, v in cells.items()} for nb, cells in nbs.items()} for s, nbs in par.items()} == \
           {s: {nb: {g: v[0] for g, v in cells.items()} for nb, cells in nbs.items()} for s, nbs in ser.items()}


@pytest.mark.slow
def test_regrading_keeps_a_manual_score(batch):
    """Does re-autograding keep a grader's manual score (and flag the cell for review), as nbgrader does?"""
    auto, manual, needs = batch["after_serial"]["wrong"]["quiz"][batch["manual_cell"]]
    assert (auto, manual, needs) == (0.0, 0.5, True)
    others = [v for g, v in batch["after_serial"]["wrong"]["quiz"].items() if g != batch["manual_cell"]]
    assert all(m is None and not n for _, m, n in others)


@pytest.mark.slow
def test_gradebook_passes_sqlite_integrity_check(batch):
    """Is the gradebook a sound SQLite database after parallel grading, a kill and a regrade?"""
    db = sqlite_file(batch["course"].db_url)
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        con.close()


@pytest.mark.slow
def test_a_killed_grader_fails_only_its_student(batch):
    """Is a grading process killed mid-way (SIGKILL) reported for its student alone, the rest graded?"""
    assert batch["killed"], "the test did not find victim's worker to kill"
    status = {r.student: r.status for r in batch["parallel"]}
    assert status["victim"] == f"{FAILED}: the grading process was killed (SIGKILL)"
    assert status["ref"] == status["wrong"] == GRADED
    assert not (batch["course"].autograded / "victim" / "lrdiff").exists()
    assert batch["leftover"] == {s: [] for s in PARALLEL}  # no worker outlives autograde


@pytest.mark.slow
def test_links_and_renamed_notebooks_fail_before_anything_runs(batch):
    """Are a linked notebook and a renamed one "failed to grade" with the reason, with nothing graded?"""
    status = {r.student: r.status for r in batch["parallel"]}
    assert status["linker"] == f"{FAILED}: exercises.ipynb is a symbolic link (to '{STEAL}'); it was not read"
    assert status["renamer"] == (f"{FAILED}: no exercises.ipynb; the submission has "
                                 "'Exercises (1).ipynb' (rename it and collect again)")
    for s in ("linker", "renamer"):
        assert not (batch["course"].autograded / s).exists()
        with batch["course"].gradebook() as gb:
            assert s not in {st.id for st in gb.students}


@pytest.mark.slow
def test_time_limit_kills_the_grader(batch):
    """Is a student whose grading outlasts the time limit failed, its worker killed, its output removed?"""
    (res,) = batch["late"]
    assert res.status == f"{FAILED}: grading took longer than 2 s"
    assert res.seconds < 30
    assert not (batch["course"].autograded / "late" / "lrdiff").exists()
    assert batch["course"].read_status()["late"]["status"] == res.status


@pytest.mark.slow
def test_status_and_progress_come_from_the_parent(batch):
    """Is every student reported once, as it finishes, and recorded in the status file?"""
    assert sorted(batch["finished"]) == sorted(PARALLEL)
    assert [r.student for r in batch["parallel"]] == PARALLEL  # results in the order asked
    assert set(batch["status_parallel"]) == set(PARALLEL)
    assert all(batch["status_parallel"][r.student]["status"] == r.status for r in batch["parallel"])
    assert (batch["course"].autograded / "ref" / "lrdiff" / "quiz.ipynb").is_file()  # written by the worker


def test_only_a_sqlite_file_gets_private_copies():
    """Which gradebook URLs are graded through private copies (SQLite files) and which directly?"""
    assert sqlite_file("sqlite:////srv/g/lrdiff.db") == Path("/srv/g/lrdiff.db")
    assert sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file("postgresql://grader@db/lrdiff") is None
