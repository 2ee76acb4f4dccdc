"""The assignment's notebooks: nbgrader's format, the release generated from the source, validation.

* structure (fast): kernels, points, locked test cells with a one-line docstring, stubs that keep the
  ``def`` line and docstring, nothing hidden or solved left in the release;
* ``nbgrader validate`` passes on every source notebook, and on every release notebook every test fails
  (``nbgrader validate --invert`` reports that "the notebook does not pass any tests");
* regenerating release/ from source/ in a scratch copy of the course gives the committed release/ exactly.
"""

from __future__ import annotations

import ast
import filecmp
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests import support

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "source" / "lrdiff"
RELEASE = ROOT / "release" / "lrdiff"
NOTEBOOKS = ("exercises", "quiz", "experiment")
POINTS = {"exercises": 24, "quiz": 17, "experiment": 5}
FUNCTIONS = ("two_group_sgd", "finetune_param_groups", "layerwise_param_groups", "no_decay_param_groups",
             "one_cycle_for_groups", "vit_llrd_param_groups")
KERNELSPEC = {"name": "lrdiff", "display_name": "Python (lrdiff)", "language": "python"}


def _nb(folder: Path, name: str) -> nbformat.NotebookNode:
    return nbformat.read(str(folder / f"{name}.ipynb"), as_version=4)


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _grade_cells(nb):
    return [c for c in nb.cells if _meta(c).get("grade")]


# ------------------------------------------------------------------------------------------------ structure


@pytest.mark.parametrize("folder", [SOURCE, RELEASE], ids=["source", "release"])
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_uses_the_course_kernel_and_is_valid(folder, name):
    """Is each notebook valid nbformat, run by the course's kernel, and free of outputs?"""
    nb = _nb(folder, name)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec == KERNELSPEC
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_points_add_up_and_match_the_headings(name):
    """Do the grade cells' points add up to the notebook's total and to each "## Part X (N points)" heading?"""
    nb = _nb(SOURCE, name)
    assert sum(_meta(c)["points"] for c in _grade_cells(nb)) == POINTS[name]
    heading, parts = None, {}
    for cell in nb.cells:
        m = re.search(r"^## (Part [A-Z]) \((\d+) points?\)", cell.source, re.MULTILINE)
        if cell.cell_type == "markdown" and m:
            heading = m.group(1)
            parts[heading] = [int(m.group(2)), 0]
        elif _meta(cell).get("grade") and heading:
            parts[heading][1] += _meta(cell)["points"]
    for part, (stated, counted) in parts.items():
        assert stated == counted, f"{name} {part}: heading says {stated} points, grade cells give {counted}"
    if name == "exercises":
        assert sorted(parts) == ["Part A", "Part B", "Part C", "Part D", "Part E", "Part F"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_test_cells_are_locked_and_say_what_they_check(name):
    """Is every grade cell locked (restored if edited) and opened by a one-line docstring?"""
    for cell in _grade_cells(_nb(SOURCE, name)):
        assert _meta(cell)["locked"] is True and _meta(cell)["solution"] is False
        first = cell.source.splitlines()[0]
        assert re.fullmatch(r'"""Check .+[^.]"""', first), first


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_test_cells_end_in_no_value_nbgrader_would_take_for_partial_credit(name):
    """Does every grade cell end in a statement, or a grading check (which returns None)?

    nbgrader reads a grade cell's last value, when it is a number, as partial credit.
    """
    for cell in _grade_cells(_nb(SOURCE, name)):
        last = ast.parse(cell.source).body[-1]
        if isinstance(last, ast.Expr):
            call = last.value
            assert isinstance(call, ast.Call) and ast.unparse(call.func).startswith("grading."), cell.source


def test_each_function_has_its_own_answer_cell_with_def_and_docstring_kept():
    """Does the release keep each graded function's def line and docstring, with the stub for a body?"""
    release = {(_meta(c).get("grade_id")): c.source for c in _nb(RELEASE, "exercises").cells if _meta(c).get("solution")}
    assert sorted(release) == sorted(FUNCTIONS)
    for name, src in release.items():
        tree = ast.parse(src)
        (func,) = tree.body
        assert isinstance(func, ast.FunctionDef) and func.name == name
        assert ast.get_docstring(func)
        assert src.rstrip().endswith("# YOUR CODE HERE\n    raise NotImplementedError()")


def test_quiz_and_experiment_answer_cells():
    """Does the quiz have one answer cell per question (q1..q17), and the experiment one for the two lrs?"""
    quiz = [_meta(c)["grade_id"] for c in _nb(SOURCE, "quiz").cells if _meta(c).get("solution")]
    assert quiz == [f"q{i}" for i in range(1, 18)]
    exp = [c.source for c in _nb(SOURCE, "experiment").cells if _meta(c).get("solution")]
    assert len(exp) == 1 and "BACKBONE_LR =" in exp[0] and "HEAD_LR =" in exp[0]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_release_has_no_solution_and_no_hidden_test(name):
    """Are the solutions and hidden tests gone from the release, and the students told not to use the builders?"""
    text = (RELEASE / f"{name}.ipynb").read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    from autograder import checks

    # every graded test cell is decided by the grader (autograder/checks.py), with hidden cases for the exercises
    ids = {_meta(c)["grade_id"] for c in _grade_cells(_nb(SOURCE, name))}
    assert ids <= set(checks.CHECKS)
    if name == "exercises":
        parts = {gid.split("_")[0] for gid in ids}
        hidden = {gid.split("_")[0] for gid in ids if any(c.hidden for c in checks.CHECKS[gid].cases)}
        assert hidden == parts
    if name == "exercises":
        intro = _nb(RELEASE, name).cells[0].source
        assert "Do not use the param-group builders of `lrdiff_helpers`" in intro


def test_release_grades_like_the_source():
    """Do the release's grade cells have the source's ids, points and order?"""
    for name in NOTEBOOKS:
        ids = lambda nb: [(_meta(c)["grade_id"], _meta(c).get("points")) for c in nb.cells if _meta(c).get("grade")]  # noqa: E731
        assert ids(_nb(SOURCE, name)) == ids(_nb(RELEASE, name))


# ------------------------------------------------------------------------------------------------ nbgrader


def _validate(path: Path, *flags: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", "validate", *flags, str(path)],
        cwd=ROOT / "autograder", env=support.grader_env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_source_notebook_passes_nbgrader_validate(name):
    """Does `nbgrader validate` pass on the source notebook (the reference solution)?"""
    out = _validate(SOURCE / f"{name}.ipynb")
    assert "Success! Your notebook passes all the tests." in out, out


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_release_notebook_passes_no_test_as_is(name):
    """Does every test of the release notebook fail as it is (`nbgrader validate --invert` finds none passing)?"""
    out = _validate(RELEASE / f"{name}.ipynb", "--invert")
    assert "Success! The notebook does not pass any tests." in out, out


@pytest.mark.slow
def test_release_regenerates_from_source_without_drift(tmp_path):
    """Does `cd autograder && nbgrader generate_assignment lrdiff --force` reproduce the committed release/?"""
    course = support.copy_course(tmp_path / "course")
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", "lrdiff", "--force"],
        cwd=course / "autograder", env=support.grader_env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fresh, committed = course / "release" / "lrdiff", RELEASE
    cmp = filecmp.dircmp(fresh, committed)
    assert not (cmp.left_only or cmp.right_only), (cmp.left_only, cmp.right_only)
    for name in sorted(os.listdir(committed)):
        assert (fresh / name).read_bytes() == (committed / name).read_bytes(), (
            f"release/lrdiff/{name} differs from a fresh generate_assignment: run `./course grade release`")
    assert (course / "autograder" / "gradebook.db").exists()  # the assignment was registered
