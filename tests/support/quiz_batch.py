"""A batch of quiz-only submissions (cheap to grade: the quiz runs no training) in a released scratch course.

Right answers are the source's; wrong ones have ``tests/fixtures/submissions/variants.py``'s ``QUIZ_WRONG``
(the cells ``QUIZ_WRONG_CELLS`` then score 0). The parallel-grading and Dask tests share it.
"""

from __future__ import annotations

import runpy
from collections.abc import Iterable, Sequence
from pathlib import Path

from autograder import ROOT
from autograder.apps import release
from autograder.collect import collect
from autograder.course import Course

from .course_copy import copy_course, read, solutions, submission, write_submission

__all__ = ["VARIANTS", "quiz_points", "released_course", "wrong_quiz_points", "write_quizzes"]

VARIANTS = runpy.run_path(str(ROOT / "tests" / "fixtures" / "submissions" / "variants.py"))


def quiz_points() -> dict[str, float]:
    """Each graded quiz cell's points: grade id -> points (full marks)."""
    nb = read(ROOT / "source" / "lrdiff" / "quiz.ipynb")
    return {c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader["points"])
            for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")}


def wrong_quiz_points() -> dict[str, float]:
    """What the wrong quiz scores, cell by cell: 0 in ``QUIZ_WRONG_CELLS``, full points elsewhere."""
    return {g: (0.0 if g in VARIANTS["QUIZ_WRONG_CELLS"] else p) for g, p in quiz_points().items()}


def write_quizzes(inbox: Path, right: Iterable[str] = (), wrong: Iterable[str] = ()) -> None:
    """``inbox/<student>/quiz.ipynb``: the right answers for ``right``, two wrong ones for ``wrong``."""
    good = submission("quiz")
    bad = submission("quiz", {**solutions("quiz"), **VARIANTS["QUIZ_WRONG"]})
    for student in right:
        write_submission(inbox, student, {"quiz": good})
    for student in wrong:
        write_submission(inbox, student, {"quiz": bad})


def released_course(folder: Path, inboxes: Sequence[Path]) -> Course:
    """A scratch copy of the course in ``folder``, released, with the submissions of ``inboxes`` collected."""
    course = Course(copy_course(folder))
    release(course)
    collect(course, list(inboxes))
    return course
