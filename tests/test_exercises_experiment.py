"""Is the graded experiment's task fair and does it need differential lrs?

The target (validation accuracy) and the bound (train - validation gap) of ``experiment.ipynb`` live in
``lrdiff_helpers.grading``. They must let the reference solution pass with a margin, and no single lr for
both parts may pass: the grid below proves the second by running it (Adam, the course's RECIPE, 3 seeds).
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
#: How far inside the target and the bound the reference solution must be.
MARGIN_VAL, MARGIN_GAP = 1.0, 2.0


def _reference_lrs() -> tuple[float, float]:
    nb = nbformat.read(str(SOURCE), as_version=4)
    cell = next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "experiment_lrs")
    ns: dict = {}
    exec(cell.source, ns)
    return ns["BACKBONE_LR"], ns["HEAD_LR"]


def _passes(r: grading.ExperimentResult) -> bool:
    return r.val_acc >= grading.EXPERIMENT_MIN_VAL_ACC and r.gap <= grading.EXPERIMENT_MAX_GAP


def test_notebook_states_the_target_and_the_bound():
    """Does the student's notebook state the graders' target, bound and seeds?"""
    text = "\n".join(c.source for c in nbformat.read(str(RELEASE), as_version=4).cells if c.cell_type == "markdown")
    assert f"at least {grading.EXPERIMENT_MIN_VAL_ACC:g}%" in text
    assert f"at most {grading.EXPERIMENT_MAX_GAP:g} percentage points" in text
    assert ", ".join(map(str, grading.EXPERIMENT_SEEDS)) in text
    assert re.search(r'finetune\(BACKBONE_LR, HEAD_LR,\s+seed=s, optimizer="adam"\)', text)


def test_reference_values_are_positive_floats_and_differential():
    """Is the reference answer two positive floats, the backbone's below the head's?"""
    b, h = _reference_lrs()
    grading.check_experiment_values(b, h)
    assert b < h


@pytest.mark.slow
def test_reference_solution_passes_with_margin():
    """Does the reference pair reach the target and stay under the bound, with a margin (3 runs)?"""
    r = grading.experiment_results(*_reference_lrs())
    assert r.val_acc >= grading.EXPERIMENT_MIN_VAL_ACC + MARGIN_VAL, r
    assert r.gap <= grading.EXPERIMENT_MAX_GAP - MARGIN_GAP, r


@pytest.mark.slow
def test_no_single_lr_passes():
    """Does every single lr for both parts, 1e-5 .. 1e-1, miss the target or the bound (30 runs)?"""
    results = [grading.experiment_results(lr, lr) for lr in SINGLE_LR_GRID]
    table = "\n".join(str(r) for r in results)
    assert not any(_passes(r) for r in results), table
    # the trade-off the task is about: below the bound the accuracy is far from the target, and vice versa
    assert max(r.val_acc for r in results if r.gap <= grading.EXPERIMENT_MAX_GAP) < grading.EXPERIMENT_MIN_VAL_ACC - 5, table
    assert min(r.gap for r in results if r.val_acc >= grading.EXPERIMENT_MIN_VAL_ACC) > grading.EXPERIMENT_MAX_GAP + 3, table


def test_values_check_rejects_what_is_not_a_positive_float():
    """Does the visible check reject strings, zero, negatives, booleans and None, and accept ints and floats?"""
    for bad in ["1e-3", 0, 0.0, -1e-3, True, None, float("nan"), float("inf")]:
        with pytest.raises(AssertionError, match="should be a positive float"):
            grading.check_experiment_values(bad, 1e-3)
    grading.check_experiment_values(1e-4, 1)
