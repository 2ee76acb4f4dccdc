"""The visible checks of the exercises' "other ..." grade cells, in the student's own notebook and kernel.

Five grade cells of ``exercises.ipynb`` grade each function on other models, arguments or lengths than the
cells before them: ``finetune_lrs_other_models`` and ``layerwise_lrs_other_models`` (resnet18, decay=3.0),
``no_decay_other_models`` (resnet18, another weight decay), ``no_decay_other_norms`` (GroupNorm) and
``one_cycle_schedule`` (four groups of an Adam, 50 steps). Their visible code must show a student, before
handing in, what the grader will find on the visible case, and stay silent on stderr when the answer is right
(nbgrader scores a test cell that writes there 0).

Each test fills answers into the *release* notebook (the student's copy: ``tests.support.submission``),
runs it in the course's kernel ("Python (lrdiff)") with errors allowed, and reads every grade cell's outcome
on its own: a grade cell depends only on its own function, so one run holds a wrong answer of each of the four
functions at once. The "other ..." cells' probes (``autograder/checks.py``: visible and hidden cases) then run at the
end of the same kernel, and their evidence is judged as the grader judges it, so the visible verdict can be
compared with the grader's. The answers are in ``tests/fixtures/submissions/variants.py`` (``UNSEEN``,
``UNSEEN_2``): each passes the visible cells before its "other ..." cell.
"""

from __future__ import annotations

import runpy
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from autograder import checks
from tests import support

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "release" / "lrdiff"
VARIANTS = runpy.run_path(str(ROOT / "tests" / "fixtures" / "submissions" / "variants.py"))
KERNEL = "lrdiff"  # the kernel of the notebooks' metadata: "Python (lrdiff)", with the course's pins
OTHER = ("finetune_lrs_other_models", "layerwise_lrs_other_models", "no_decay_other_models", "no_decay_other_norms",
         "one_cycle_schedule", "vit_llrd_other_models")

#: What each visible check says about each wrong answer (the first lines of its AssertionError).
MESSAGES = {
    ("UNSEEN", "finetune_lrs_other_models"): "fc.weight has lr 0.001, expected 0.1 (head_lr)",
    ("UNSEEN", "layerwise_lrs_other_models"):
        "conv1.weight has lr 2.52496e-05, expected 1.23457e-05 (stem = head_lr / decay**5)",
    ("UNSEEN", "no_decay_other_models"): "conv1.weight has weight decay 0.0005, expected 0.01 (a weight)",
    ("UNSEEN", "one_cycle_schedule"):
        "step 1: group 0 has lr 4.28138e-07, expected 5.20346e-07 (OneCycleLR peaking at 1e-05)",
    ("UNSEEN", "vit_llrd_other_models"):
        "cls_token has lr 9.375e-05, expected 0.000375 (layer 0 (embeddings) = lr * decay**3)",
    ("UNSEEN_2", "finetune_lrs_other_models"):
        "layer1.1.conv1.weight is in no param group, so it is never trained; expected lr 0.001 (backbone_lr)",
    ("UNSEEN_2", "layerwise_lrs_other_models"):
        "layer1.1.conv1.weight is in no param group, so it is never trained; expected lr 3.7037e-05 "
        "(layer1 = head_lr / decay**4)",
    ("UNSEEN_2", "no_decay_other_norms"): "bn1.weight has weight decay 0.0005, expected 0 (a GroupNorm parameter)",
    ("UNSEEN_2", "one_cycle_schedule"):
        "step 1: group 0 has lr 1.08571e-06, expected 5.20346e-07 (OneCycleLR peaking at 1e-05)",
}


@dataclass(frozen=True)
class Outcome:
    """One grade cell as the student sees it: its error (``"AssertionError: ..."``, ``""`` when it passed), what it
    wrote to stderr, and the grader's verdict on the same answers (for the cells of :data:`OTHER`)."""

    error: str
    stderr: str
    graded_ok: bool | None = None


def run_release(answers: dict[str, str]) -> dict[str, Outcome]:
    """Grade id -> :class:`Outcome` of every grade cell of the release's exercises with ``answers`` (the source's
    solutions for the other functions), run in the course's kernel; then the probes of :data:`OTHER`."""
    nb = support.submission("exercises", {**support.solutions("exercises"), **answers})
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    graded = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    probes = [nbformat.v4.new_code_cell(checks.probe_source(gid)) for gid in OTHER]
    nb.cells.extend(probes)
    NotebookClient(nb, kernel_name=KERNEL, timeout=300, allow_errors=True,
                   resources={"metadata": {"path": str(RELEASE)}}).execute()
    verdicts = {gid: checks.judge(gid, cell.outputs, sources) for gid, cell in zip(OTHER, probes)}
    out = {}
    for cell in graded:
        gid = support.grade_id(cell)
        error = "".join(f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error")
        stderr = "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr")
        out[gid] = Outcome(error, stderr, verdicts[gid].ok if gid in verdicts else None)
    return out


@pytest.mark.slow
def test_reference_passes_every_visible_check_silently():
    """With the source's answers in the student's copy, does every grade cell pass in the kernel, with nothing
    on stderr, and does the grader pass the "other ..." cells too?"""
    results = run_release({})
    assert set(OTHER) <= set(results)
    failed = {gid: r.error for gid, r in results.items() if r.error}
    assert not failed, failed
    noisy = {gid: r.stderr for gid, r in results.items() if r.stderr}
    assert not noisy, noisy
    assert all(results[gid].graded_ok for gid in OTHER), {gid: results[gid] for gid in OTHER}


@pytest.mark.slow
@pytest.mark.parametrize("table", ["UNSEEN", "UNSEEN_2"])
def test_answers_wrong_on_other_models_fail_the_visible_check_that_grades_them(table):
    """Does an answer that passes its part's first cells but is wrong on the visible case of an "other ..." cell
    fail that cell's visible check, with what was expected and what was found, as the grader fails it?"""
    variants = VARIANTS[table]
    results = run_release({fn: code for fn, (_, code, _) in variants.items()})
    caught = set().union(*(cells for _, _, cells in variants.values()))
    # the "other ..." cell catches it, and no grade cell before it does: that cell's visible check is what shows it
    assert {gid for gid, r in results.items() if r.error} == caught, {g: r.error[:300] for g, r in results.items()}
    for gid in caught:
        assert results[gid].error.startswith("AssertionError: "), results[gid].error
        assert MESSAGES[table, gid] in results[gid].error, results[gid].error
        assert results[gid].graded_ok is False, f"{gid}: the grader passes what the visible check fails"
    noisy = {gid: r.stderr for gid, r in results.items() if r.stderr}
    assert not noisy, noisy
