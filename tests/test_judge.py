"""The verdict of a graded test cell is the grader's: probes record, ``autograder.checks.judge`` decides.

Fast, in this process: the checks cover every test cell; evidence that is missing, doubled, malformed, for
another cell or for another model earns nothing; the probe sent to a kernel carries no expected value; the
preprocessors put the test cell's code back, replace its outputs with the verdict whatever the kernel printed
there (stderr, a partial-credit number, a planted stash), and hidden-test blocks never reach feedback.
The end-to-end attacks (input transformers, patched checks, fake modules) are in ``test_autograder_hostile.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from autograder import checks
from autograder.judge import STASH, JudgeTestCells, ProbeTestCells, StripHiddenTests
from lrdiff_helpers import TwoPartModel, evidence, grading
from nbgrader.utils import determine_grade

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "source" / "lrdiff"


def _grade_ids() -> set[str]:
    out = set()
    for path in SOURCE.glob("*.ipynb"):
        for cell in nbformat.read(str(path), as_version=4).cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution") and cell.cell_type == "code":
                out.add(meta["grade_id"])
    return out


def _two_group_sgd(model, part1_lr, part2_lr, momentum=0.9):
    import torch

    return torch.optim.SGD([{"params": model.part1.parameters(), "lr": part1_lr},
                            {"params": model.part2.parameters(), "lr": part2_lr}], momentum=momentum)


def _honest(gid: str = "two_group_sgd_lrs") -> dict:
    cases = [c.for_kernel() for c in checks.CHECKS[gid].cases]
    return json.loads(json.dumps(evidence.probe(gid, cases, {"two_group_sgd": _two_group_sgd})))


def _output(payload) -> dict:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return {"output_type": "display_data", "data": {evidence.MIME: text}, "metadata": {}}


def test_every_graded_test_cell_has_a_check_and_no_check_is_orphaned():
    assert set(checks.CHECKS) == _grade_ids()


@pytest.mark.parametrize("gid", sorted(checks.CHECKS))
def test_the_probe_sent_to_the_kernel_carries_no_expected_value(gid):
    """Is the code that runs in the student's kernel free of expected values and of the quiz key?"""
    code = checks.probe_source(gid)
    assert "expect" not in code and "hidden" not in code.split("\n", 1)[1]
    assert not any(d in code for d in checks.QUIZ_KEY.values())
    compile(code, gid, "exec")


def test_honest_evidence_passes_through_outputs():
    verdict = checks.judge("two_group_sgd_lrs", [_output(_honest())])
    assert verdict.ok, verdict.message


@pytest.mark.parametrize(
    "outputs, message",
    [
        ([], "did not run to the end"),
        ([{"output_type": "error", "ename": "CellTimeoutError", "evalue": "", "traceback": []}],
         "did not run to the end (CellTimeoutError"),
        ([_output(_honest()), _output(_honest())], "more than one result"),
        ([_output(_honest("two_group_sgd_groups"))], "not this test's"),
        ([_output("{not json")], "malformed"),
        ([_output([1, 2])], "not this test's"),
        ([_output("x" * (evidence.MAX_EVIDENCE + 1))], "malformed"),
    ],
    ids=["missing", "timed out", "twice", "another cell's", "not JSON", "not an object", "huge"],
)
def test_evidence_that_is_not_one_honest_record_earns_nothing(outputs, message):
    verdict = checks.judge("two_group_sgd_lrs", outputs)
    assert not verdict.ok and message in verdict.message, verdict.message


def test_evidence_about_another_model_earns_nothing():
    """Evidence listing the parameters of another model (a forged, easier one) is refused."""
    payload = _honest()
    for case in payload["cases"]:
        case["map"]["placements"] = [row for row in case["map"]["placements"] if row[0].startswith("part1")]
    verdict = checks.judge("two_group_sgd_lrs", payload)
    assert not verdict.ok and "does not describe the parameters" in verdict.message


def test_malformed_placements_are_refused_not_crashing():
    payload = _honest()
    payload["cases"][0]["map"]["placements"][0][1] = [99]
    verdict = checks.judge("two_group_sgd_lrs", payload)
    assert not verdict.ok and "malformed evidence" in verdict.message


def test_a_hidden_case_is_named_generically():
    def wrong_on_other_sizes(model, part1_lr, part2_lr, momentum=0.9):
        lrs = (part1_lr, part2_lr) if model.part1.in_features == 10 else (part2_lr, part1_lr)
        return _two_group_sgd(model, *lrs, momentum=momentum)

    cases = [c.for_kernel() for c in checks.CHECKS["two_group_sgd_lrs"].cases]
    payload = json.loads(json.dumps(evidence.probe("two_group_sgd_lrs", cases, {"two_group_sgd": wrong_on_other_sizes})))
    verdict = checks.judge("two_group_sgd_lrs", payload)
    assert not verdict.ok and verdict.message.startswith("[hidden case 2]"), verdict.message
    assert "(3, 7, 4)" not in verdict.message


def test_builders_are_found_in_the_source_not_in_the_kernel():
    src = "from lrdiff_helpers import ulmfit_lrs as decay\n\ndef layerwise_param_groups(model, head_lr, decay_=2.6):\n" \
          "    return decay(6, head_lr)\n"
    assert grading.builders_used([src], "layerwise_param_groups") == ["ulmfit_lrs"]
    assert grading.builders_used(["def two_group_sgd(m, a, b):\n    return lh.stage_param_groups(m)\n"],
                                  "two_group_sgd") == ["stage_param_groups"]
    assert grading.builders_used(["%timeit x", "def f():\n    return 1\n"], "f") == []


def _test_cell(gid: str, source: str = "assert False") -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source, metadata={"nbgrader": {
        "grade": True, "solution": False, "locked": True, "grade_id": gid, "points": 1, "schema_version": 3}})


def test_preprocessors_restore_the_code_and_replace_whatever_the_kernel_printed():
    nb = nbformat.v4.new_notebook()
    answer = nbformat.v4.new_code_cell("x = 1", metadata={STASH: "planted"})
    nb.cells = [answer, _test_cell("two_group_sgd_lrs", "visible checks")]
    nb, _ = ProbeTestCells().preprocess(nb, {})
    assert STASH not in nb.cells[0].metadata  # a planted stash is removed
    assert "_lrdiff_evidence.probe('two_group_sgd_lrs'" in nb.cells[1].source
    # the kernel ran the probe, and student code added noise: stderr, a number nbgrader would take as a score
    nb.cells[1].outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: lr too high\n"),
        nbformat.from_dict(_output(_honest())),
        nbformat.v4.new_output("execute_result", data={"text/plain": "0.0"}, execution_count=3),
    ]
    nb, _ = JudgeTestCells().preprocess(nb, {})
    cell = nb.cells[1]
    assert cell.source == "visible checks" and STASH not in cell.metadata
    assert [o.output_type for o in cell.outputs] == ["stream"] and cell.outputs[0].name == "stdout"
    assert determine_grade(cell) == (1.0, 1.0)

    nb.cells[1] = _test_cell("two_group_sgd_lrs")
    nb, _ = ProbeTestCells().preprocess(nb, {})
    nb.cells[1].outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "1.0"}, execution_count=1)]
    nb, _ = JudgeTestCells().preprocess(nb, {})  # no evidence (the probe was stripped): a 0, whatever was printed
    assert nb.cells[1].outputs[0].output_type == "error" and determine_grade(nb.cells[1]) == (0, 1.0)


def test_cells_put_back_with_plain_dict_metadata_are_probed():
    """nbgrader's add_missing_cells restores a deleted test cell with a plain dict as its metadata."""
    nb = nbformat.v4.new_notebook()
    cell = _test_cell("two_group_sgd_lrs", "visible")
    dict.__setitem__(cell, "metadata", {"nbgrader": dict(cell["metadata"]["nbgrader"])})  # not a NotebookNode
    assert type(cell["metadata"]) is dict
    nb.cells = [cell]
    nb, _ = ProbeTestCells().preprocess(nb, {})
    nb.cells[0]["outputs"] = [nbformat.from_dict(_output(_honest()))]
    nb, _ = JudgeTestCells().preprocess(nb, {})
    assert nb.cells[0]["source"] == "visible" and nb.cells[0]["outputs"][0]["name"] == "stdout"


def test_outputs_that_show_a_probe_are_removed_from_the_notebook():
    """A later cell that prints IPython's In (the probes, hidden cases included) gets a note, not the code."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [_test_cell("two_group_sgd_lrs", "visible"), nbformat.v4.new_code_cell("print(In)")]
    nb, _ = ProbeTestCells().preprocess(nb, {})
    probe = nb.cells[0].source
    nb.cells[0].outputs = [nbformat.from_dict(_output(_honest()))]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=repr([probe])),
                           nbformat.v4.new_output("stream", name="stdout", text="fine\n")]
    nb, _ = JudgeTestCells().preprocess(nb, {})
    texts = [o.text for o in nb.cells[1].outputs]
    assert texts == ["[output removed by the grader: it showed the grader's code]\n", "fine\n"]


def test_feedback_drops_hidden_test_blocks():
    cell = _test_cell("x", 'check(a)\n### BEGIN HIDDEN TESTS\nassert secret == 42\n### END HIDDEN TESTS\nafter()\n')
    cell, _ = StripHiddenTests().preprocess_cell(cell, {}, 0)
    assert "secret" not in cell.source and "check(a)" in cell.source and "after()" in cell.source


def test_models_are_rebuilt_the_same_on_both_sides():
    a, b = evidence.build_model("TwoPartModel(3, 7, 4)"), TwoPartModel(3, 7, 4)
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    with pytest.raises(ValueError):
        evidence.build_model("__import__('os').system('true')")
