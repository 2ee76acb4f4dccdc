"""End to end: the instructor's pipeline grades known submissions, and every grade cell scores exactly as it must.

One batch, in a scratch copy of the course (nothing is written into the repository), through the command a
person runs: ``python -m autograder all INPUTS... --out grades.csv`` (``./course grade all ...``). Submissions:

* ``ref``: the reference solution (the source's answers in the release notebooks): full marks;
* ``blank``: the release notebooks as they are: zero;
* ``wrong1``: a typical wrong answer of each of the five functions (lrs swapped, a parameter in two groups,
  decay inverted, a misspelled key, a scalar OneCycle peak), and a test cell rewritten to ``pass``;
* ``wrong2``: three more (an exhausted generator, a module left out, norms found by name), two correct
  answers that warn and write to stderr, and two deleted test cells;
* ``mixed`` (handed in as ``mixed.zip``): one wrong and one lower-case quiz answer, one lr for both parts in
  the experiment;
* ``broken``: an exercises notebook that is not valid JSON: reported as "failed to grade", never as a 0.

Every wrong answer must lose the points of its own function's failing grade cells and only those: the test
asserts the score of every grade cell of every graded notebook.
"""

from __future__ import annotations

import csv
import hashlib
import runpy
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from tests import support

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = runpy.run_path(str(ROOT / "tests" / "fixtures" / "submissions" / "variants.py"))
NOTEBOOKS = ("exercises", "quiz", "experiment")
EDITED = "two_group_sgd_lrs"  # wrong1 rewrites this test cell
DELETED = ("two_group_sgd_groups", "finetune_lrs")  # wrong2 deletes these test cells
BROKEN_JSON = '{"cells": [{"cell_type": "code", "source": "def two_group_sgd(model'


def _answers(table: str) -> dict[str, str]:
    return {gid: code for gid, (_, code, _) in VARIANTS[table].items()}


def _failing(table: str) -> set[str]:
    return set().union(*(cells for _, _, cells in VARIANTS[table].values()))


def _points(notebook: str) -> dict[str, float]:
    nb = support.read(ROOT / "source" / "lrdiff" / f"{notebook}.ipynb")
    return {c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader["points"])
            for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")}


def _expected(notebook: str, failing: set[str]) -> dict[str, float]:
    return {gid: (0.0 if gid in failing else pts) for gid, pts in _points(notebook).items()}


#: student -> notebook -> grade id -> expected score
EXPECTED = {
    "ref": {nb: _expected(nb, set()) for nb in NOTEBOOKS},
    "blank": {nb: _expected(nb, set(_points(nb))) for nb in NOTEBOOKS},
    "wrong1": {"exercises": _expected("exercises", _failing("WRONG"))},
    "wrong2": {"exercises": _expected("exercises", _failing("WRONG_2"))},
    "mixed": {"quiz": _expected("quiz", VARIANTS["QUIZ_WRONG_CELLS"]),
              "experiment": _expected("experiment", VARIANTS["EXPERIMENT_ONE_LR_CELLS"])},
}


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Build the submissions, run the whole pipeline once, and return what it produced."""
    tmp = tmp_path_factory.mktemp("e2e")
    course = support.copy_course(tmp / "course")
    inbox = tmp / "inbox"
    support.write_submission(inbox, "ref", support.full_submission())
    support.write_submission(inbox, "blank", support.blank_submission())
    support.write_submission(inbox, "wrong1", {
        "exercises": support.submission("exercises", {**support.solutions("exercises"), **_answers("WRONG")},
                                        edit={EDITED: '"""Check nothing"""\npass'}),
    })
    support.write_submission(inbox, "wrong2", {
        "exercises": support.submission(
            "exercises", {**support.solutions("exercises"), **_answers("WRONG_2"), **VARIANTS["WARNS"]},
            delete=DELETED),
    })
    support.write_submission(inbox, "broken", {"exercises": BROKEN_JSON, "quiz": support.submission("quiz")})
    # one student hands in a zip, with the notebooks in a subfolder (and macOS debris)
    mixed = tmp / "mixed_src"
    support.write_submission(mixed, "mixed", {
        "quiz": support.submission("quiz", {**support.solutions("quiz"), **VARIANTS["QUIZ_WRONG"]}),
        "experiment": support.submission("experiment", VARIANTS["EXPERIMENT_ONE_LR"]),
    })
    zips = tmp / "zips"
    zips.mkdir()
    with zipfile.ZipFile(zips / "mixed.zip", "w") as zf:
        for p in sorted((mixed / "mixed").iterdir()):
            zf.write(p, f"lrdiff_hw/{p.name}")
        zf.writestr("__MACOSX/lrdiff_hw/._quiz.ipynb", "junk")
    before = {**_digest(inbox), **_digest(zips)}

    env = support.grader_env()
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "all", str(inbox), str(zips / "mixed.zip"), "--out", "grades.csv"],
        cwd=course, env=env, capture_output=True, text=True, timeout=1800,
    )
    seconds = time.perf_counter() - start
    print(f"\nautograder all: {seconds:.1f} s for 6 submissions\n{proc.stdout}")
    after = {**_digest(inbox), **_digest(zips)}

    from nbgrader.api import Gradebook

    scores: dict = {}
    with Gradebook(f"sqlite:///{course / 'autograder' / 'gradebook.db'}", "lrdiff") as gb:
        for student in EXPECTED:
            sub = gb.find_submission("lrdiff", student)
            scores[student] = {nb.name: {g.name: float(g.score) for g in nb.grades} for nb in sub.notebooks}
    with open(course / "grades.csv", newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    return {"course": course, "proc": proc, "scores": scores, "rows": rows, "before": before, "after": after,
            "seconds": seconds}


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_every_grade_cell_scores_as_expected(graded, student):
    """Does every grade cell of every submitted notebook get exactly its expected score?"""
    got = graded["scores"][student]
    for notebook, cells in EXPECTED[student].items():
        assert got[notebook] == cells, f"{student}/{notebook}: " + ", ".join(
            f"{g}: got {got[notebook].get(g)}, expected {s}" for g, s in cells.items() if got[notebook].get(g) != s)


@pytest.mark.slow
def test_totals_in_the_csv(graded):
    """Does the CSV give the reference full marks, the blank release 0, and each variant its exact total?"""
    rows = graded["rows"]
    assert set(rows) == {"ref", "blank", "wrong1", "wrong2", "mixed", "broken"}
    assert rows["ref"]["total"] == "46" and rows["ref"]["max_total"] == "46"
    assert (rows["ref"]["exercises"], rows["ref"]["quiz"], rows["ref"]["experiment"]) == ("24", "17", "5")
    assert rows["blank"]["total"] == "0" and rows["blank"]["status"] == "graded"
    # wrong1: A loses 1 (lrs), B 4, C 3, D 3, E 3, F 2; wrong2: B 4, C 4, D 3, F 2 (A and E warn but are right)
    assert rows["wrong1"]["exercises"] == "8" and rows["wrong1"]["quiz"] == "0"
    assert rows["wrong2"]["exercises"] == "11"
    assert (rows["mixed"]["quiz"], rows["mixed"]["experiment"], rows["mixed"]["exercises"]) == ("15", "1", "0")
    for student in EXPECTED:
        assert rows[student]["status"] == "graded"


@pytest.mark.slow
def test_unreadable_submission_is_reported_not_scored(graded):
    """Is a notebook that is not JSON reported as "failed to grade: <reason>" (CLI and CSV), with no score?"""
    row = graded["rows"]["broken"]
    assert row["status"].startswith("failed to grade: exercises.ipynb is not valid notebook JSON")
    assert row["total"] == "" and row["exercises"] == "" and row["quiz"] == ""
    assert "broken: failed to grade: exercises.ipynb is not valid notebook JSON" in graded["proc"].stdout
    assert graded["proc"].returncode == 1  # the batch finished; one submission could not be graded


@pytest.mark.slow
def test_edited_and_deleted_test_cells_are_restored(graded):
    """Are an edited test cell and deleted test cells put back from the source before grading?"""
    source = {c.metadata.nbgrader["grade_id"]: c.source
              for c in support.read(ROOT / "source" / "lrdiff" / "exercises.ipynb").cells
              if c.get("metadata", {}).get("nbgrader", {}).get("grade")}
    auto = graded["course"] / "autograded"
    one = {support.grade_id(c): c.source for c in nbformat.read(str(auto / "wrong1" / "lrdiff" / "exercises.ipynb"), 4).cells}
    assert one[EDITED] == source[EDITED]  # hidden tests included
    two = {support.grade_id(c): c.source for c in nbformat.read(str(auto / "wrong2" / "lrdiff" / "exercises.ipynb"), 4).cells}
    for gid in DELETED:
        assert gid in two and source[gid] in two[gid]
    assert graded["scores"]["wrong2"]["exercises"]["two_group_sgd_groups"] == 1.0  # restored, passes
    assert graded["scores"]["wrong2"]["exercises"]["finetune_lrs"] == 0.0  # restored, fails
    assert graded["scores"]["wrong1"]["exercises"][EDITED] == 0.0  # restored, fails


@pytest.mark.slow
def test_originals_untouched_and_feedback_written(graded):
    """Are the handed-in files left as they were, and is there HTML feedback for each graded notebook?"""
    assert graded["before"] == graded["after"]
    fb = graded["course"] / "feedback"
    for student, notebooks in EXPECTED.items():
        for nb in notebooks:
            assert (fb / student / "lrdiff" / f"{nb}.html").is_file()
    assert not (fb / "broken").exists()


@pytest.mark.slow
def test_quiz_feedback_explains_every_answer(graded):
    """Does the quiz's feedback show each question's explanation, for right and wrong answers alike?"""
    import html

    from autograder import quiz_key

    for student in ("ref", "mixed"):
        text = html.unescape((graded["course"] / "feedback" / student / "lrdiff" / "quiz.html").read_text())
        for q, why in quiz_key.EXPLANATIONS.items():
            assert why[:60] in text, f"{student}'s feedback lacks the explanation of {q}"


