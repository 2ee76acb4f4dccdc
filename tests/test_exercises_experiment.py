"""Is the graded experiment's task fair and does it need differential lrs?

The targets of ``experiment.ipynb`` (validation accuracy, which students see, and held-out test accuracy, which
only the graders compute) live in ``lrdiff_helpers.grading``. They must let the reference solution pass with a
margin, and no single lr for both parts may pass: the grid below proves the second by running it (Adam, the
course's RECIPE, 3 seeds).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from lrdiff_helpers import grading

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "source" / "lrdiff" / "experiment.ipynb"
RELEASE = ROOT / "release" / "lrdiff" / "experiment.ipynb"

#: One lr for every parameter, from 1e-5 to 1e-1 (denser where validation accuracy and gap both climb).
SINGLE_LR_GRID = (1e-5, 3e-5, 1e-4, 2e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
#: How far above the targets the reference solution must be.
MARGIN = 2.0


def _reference_lrs() -> tuple[float, float]:
    nb = nbformat.read(str(SOURCE), as_version=4)
    cell = next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "experiment_lrs")
    ns: dict = {}
    exec(cell.source, ns)
    return ns["BACKBONE_LR"], ns["HEAD_LR"]


def test_notebook_states_the_targets():
    """Does the student's notebook state the graders' targets and seeds, and never evaluate the test split?"""
    nb = nbformat.read(str(RELEASE), as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert grading.EXPERIMENT_MIN_VAL_ACC == grading.EXPERIMENT_MIN_TEST_ACC
    assert f"is **at least {grading.EXPERIMENT_MIN_VAL_ACC:g}%**" in text and "held-out **test** split" in text
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "test_acc" not in code and "experiment_test_accuracy" not in code
    assert ", ".join(map(str, grading.EXPERIMENT_SEEDS)) in text
    assert re.search(r'finetune\(BACKBONE_LR, HEAD_LR,\s+seed=s, optimizer="adam"\)', text)


def test_reference_values_are_positive_floats_and_differential():
    """Is the reference answer two positive floats, the backbone's below the head's?"""
    b, h = _reference_lrs()
    grading.check_experiment_values(b, h)
    assert b < h


@pytest.mark.slow
def test_reference_solution_passes_with_margin():
    """Does the reference pair reach both targets, validation and test, with a margin (3 runs)?"""
    lrs = _reference_lrs()
    r = grading.experiment_results(*lrs)
    assert r.val_acc >= grading.EXPERIMENT_MIN_VAL_ACC + MARGIN, r
    assert grading.experiment_test_accuracy(*lrs) >= grading.EXPERIMENT_MIN_TEST_ACC + MARGIN, r


@pytest.mark.slow
def test_no_single_lr_passes():
    """Does every single lr for both parts, 1e-5 .. 1e-1, miss both targets by a margin (30 runs)?"""
    results = [(grading.experiment_results(lr, lr), grading.experiment_test_accuracy(lr, lr)) for lr in SINGLE_LR_GRID]
    table = "\n".join(f"{r}, test {t:.1f}%" for r, t in results)
    assert max(r.val_acc for r, _ in results) < grading.EXPERIMENT_MIN_VAL_ACC - MARGIN, table
    assert max(t for _, t in results) < grading.EXPERIMENT_MIN_TEST_ACC - MARGIN, table


def test_values_check_rejects_what_is_not_a_positive_float():
    """Does the visible check reject strings, zero, negatives, booleans and None, and accept ints and floats?"""
    for bad in ["1e-3", 0, 0.0, -1e-3, True, None, float("nan"), float("inf")]:
        with pytest.raises(AssertionError, match="should be a positive float"):
            grading.check_experiment_values(bad, 1e-3)
    grading.check_experiment_values(1e-4, 1)
