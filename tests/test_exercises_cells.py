"""The graded exercises' test cells, run in this process (fast): do they grade answers as they should?

Each test runs the source notebook's setup cell, a set of answers, and every grade cell: its visible code (what
students run, recording whether it wrote to stderr, which nbgrader scores 0) and then its probe, whose evidence
``autograder.checks.judge`` decides (visible and hidden cases), as the grader does outside the kernel.
The end-to-end test (``test_autograder_e2e.py``) does the same through nbgrader itself.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import runpy
import warnings
from pathlib import Path

import nbformat
import pytest

from autograder import checks
from lrdiff_helpers import evidence

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "source" / "lrdiff"
VARIANTS = runpy.run_path(str(ROOT / "tests" / "fixtures" / "submissions" / "variants.py"))


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _cells(notebook: str):
    nb = nbformat.read(str(SOURCE / f"{notebook}.ipynb"), as_version=4)
    setup = [c.source for c in nb.cells if c.cell_type == "code" and _meta(c).get("locked") and not _meta(c).get("grade")]
    answers = {_meta(c)["grade_id"]: c.source for c in nb.cells if _meta(c).get("solution")}
    tests = {_meta(c)["grade_id"]: c.source for c in nb.cells if _meta(c).get("grade")}
    return setup, answers, tests


def run_notebook(notebook: str, answers: dict[str, str] | None = None) -> dict[str, tuple[bool, str, str]]:
    """Grade id -> (passed, message, stderr text) for every grade cell, with ``answers`` replacing the source's.

    "passed" is the grader's verdict: the cell's probe (``autograder.checks``: visible and hidden cases) run
    here, its evidence judged by ``autograder.checks.judge``, as ``nbgrader autograde`` does through
    ``autograder/judge.py``. The stderr text is what the cell's *visible* code (what students run) wrote there.
    """
    setup, source_answers, tests = _cells(notebook)
    code = dict(source_answers)
    code.update(answers or {})
    ns: dict = {"__name__": "__main__"}
    for src in setup:
        exec(compile(src, "setup", "exec"), ns)
    for gid, src in code.items():
        try:
            with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
                exec(compile(src, gid, "exec"), ns)
        except Exception:  # an answer cell that fails: its tests will fail  # noqa: BLE001
            pass
    sources = [*setup, *code.values()]
    out = {}
    for gid, src in tests.items():
        err = io.StringIO()
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # warnings shown, as in a fresh kernel: on stderr
            try:
                with contextlib.redirect_stderr(err):
                    exec(compile(src, gid, "exec"), ns)
            except Exception:  # the visible part failing is the student's signal; the verdict is below  # noqa: BLE001
                pass
        cases = [c.for_kernel() for c in checks.CHECKS[gid].cases]
        payload = json.loads(json.dumps(evidence.probe(gid, cases, ns)))  # as it travels: JSON
        verdict = checks.judge(gid, payload, sources)
        out[gid] = (verdict.ok, "" if verdict.ok else verdict.message, err.getvalue())
    return out


def visible_failures(notebook: str, answers: dict[str, str] | None = None) -> set[str]:
    """The grade cells whose visible code (what students run) raises, with ``answers``."""
    setup, source_answers, tests = _cells(notebook)
    code = {**source_answers, **(answers or {})}
    ns: dict = {"__name__": "__main__"}
    failed = set()
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        for src in [*setup, *code.values()]:
            try:
                exec(compile(src, "cell", "exec"), ns)
            except Exception:  # noqa: BLE001
                pass
        for gid, src in tests.items():
            try:
                exec(compile(src, gid, "exec"), ns)
            except Exception:  # noqa: BLE001
                failed.add(gid)
    return failed


def stub_answers(notebook: str) -> dict[str, str]:
    """The answer cells of the release notebook: the stubs students start from."""
    nb = nbformat.read(str(ROOT / "release" / "lrdiff" / f"{notebook}.ipynb"), as_version=4)
    return {_meta(c)["grade_id"]: c.source for c in nb.cells if _meta(c).get("solution")}


def failing(results) -> set[str]:
    return {gid for gid, (ok, _, _) in results.items() if not ok}


@pytest.fixture(scope="module")
def reference():
    return run_notebook("exercises")


@functools.lru_cache(maxsize=None)
def results_of(table: str):
    """Results of the exercises with every answer of ``VARIANTS[table]`` (each of another function)."""
    return run_notebook("exercises", {gid: code for gid, (_, code, _) in VARIANTS[table].items()})


def test_reference_passes_every_grade_cell_silently(reference):
    """Does the reference solution pass every grade cell, without writing to stderr?"""
    assert failing(reference) == set(), {g: e for g, (ok, e, _) in reference.items() if not ok}
    noisy = {g: s for g, (_, _, s) in reference.items() if s}
    assert not noisy, noisy


def test_stubs_fail_every_grade_cell():
    """Does the release's stub (raise NotImplementedError) fail every grade cell?"""
    results = run_notebook("exercises", stub_answers("exercises"))
    assert failing(results) == set(results)


@pytest.mark.parametrize("table", ["WRONG", "WRONG_2"])
def test_wrong_answers_lose_their_own_cells_only(table):
    """Does each typical wrong answer fail exactly the grade cells of its function?"""
    variants = VARIANTS[table]
    results = results_of(table)
    expected = set().union(*(cells for _, _, cells in variants.values()))
    assert failing(results) == expected, {g: results[g][1] for g in failing(results) ^ expected}
    noisy = {g: s for g, (_, _, s) in results.items() if s}
    assert not noisy, noisy


def test_correct_answers_that_warn_keep_full_marks():
    """Does a correct answer that warns and writes to stderr still pass, with nothing on the test cells' stderr?"""
    results = run_notebook("exercises", VARIANTS["WARNS"])
    assert failing(results) == set(), {g: e for g, (ok, e, _) in results.items() if not ok}
    noisy = {g: s for g, (_, _, s) in results.items() if s}
    assert not noisy, noisy


@pytest.mark.parametrize(
    "table, gid, message",
    [
        ("WRONG_2", "layerwise_groups",
         "bn1.weight is in no param group; every trainable parameter must be in exactly one"),
        ("WRONG", "finetune_groups", "fc.weight is in 2 param groups (0, 1)"),
        ("WRONG_2", "finetune_groups", "group 1 is empty"),
        ("WRONG", "two_group_sgd_lrs", "part1.weight has lr 0.01, expected 0.001 (part1)"),
        ("WRONG", "layerwise_lrs", "conv1.weight has lr 0.01, expected 8.41653e-05 (stem = head_lr / decay**5)"),
        ("WRONG", "no_decay_weight_decays", "torch ignores its key 'weight_deacy'"),
        ("WRONG_2", "no_decay_weight_decays",
         "layer2.0.downsample.1.weight has weight decay 0.0005, expected 0 (a BatchNorm2d parameter)"),
        ("WRONG", "one_cycle_peaks", "group 0 peaks at lr 0.01, expected 0.001"),
    ],
)
def test_failure_messages_say_what_was_expected_and_found(table, gid, message):
    """Does a failing check say what it expected and what it found?"""
    ok, error, _ = results_of(table)[gid]
    assert not ok
    assert message in error, error


def test_quiz_reference_passes_and_wrong_letters_fail():
    """Does each quiz question grade its own answer: the key passes, another letter or a lower-case one fails?"""
    assert failing(run_notebook("quiz")) == set()
    results = run_notebook("quiz", VARIANTS["QUIZ_WRONG"])
    assert failing(results) == VARIANTS["QUIZ_WRONG_CELLS"]
    assert "q7 should be one of 'A', 'B', 'C', 'D'" in results["q7_test"][1]


def test_quiz_key_is_only_in_the_grader():
    """Is the quiz's key (its digests) only in autograder/quiz_key.py: in neither the source nor the release?"""
    for folder in ("source", "release"):
        text = (ROOT / folder / "lrdiff" / "quiz.ipynb").read_text()
        assert "answer_digest" not in text and "BEGIN HIDDEN" not in text
        assert not any(d in text for d in checks.QUIZ_KEY.values())
    questions = {c.metadata["nbgrader"]["grade_id"] for c in nbformat.read(str(SOURCE / "quiz.ipynb"), as_version=4).cells
                 if c.metadata.get("nbgrader", {}).get("solution")}
    assert set(checks.QUIZ_KEY) == questions and len(questions) >= 10


def test_visible_checks_pass_for_the_reference_and_fail_for_stubs():
    """Do the checks students run pass on the reference and fail on the release's stubs (as the grader does)?"""
    assert visible_failures("exercises") == set()
    assert visible_failures("exercises", stub_answers("exercises")) == set(_cells("exercises")[2])


def test_grading_docstring_examples():
    """Do the examples in lrdiff_helpers.grading's docstrings hold?"""
    import doctest
    import importlib
    import pkgutil

    from lrdiff_helpers import grading

    modules = [importlib.import_module(m.name) for m in pkgutil.iter_modules(grading.__path__, grading.__name__ + ".")]
    results = [doctest.testmod(m, optionflags=doctest.ELLIPSIS) for m in [grading, *modules]]
    result = doctest.TestResults(sum(r.failed for r in results), sum(r.attempted for r in results))
    assert result.attempted > 10 and result.failed == 0


def test_answers_that_call_the_helper_builders_lose_the_structure_points():
    """Does an answer that wraps lrdiff_helpers' own builder lose its part's first grade cell, and only that?"""
    answers = {
        "layerwise_param_groups": '''
from lrdiff_helpers import layerwise_param_groups as ready_made


def layerwise_param_groups(model, head_lr, decay=2.6):
    return ready_made(model, head_lr, decay)
''',
        "finetune_param_groups": '''
import lrdiff_helpers as lh


def finetune_param_groups(model, backbone_lr, head_lr):
    return lh.param_groups_by_module(model, {"": backbone_lr, "fc": head_lr})
''',
    }
    results = run_notebook("exercises", answers)
    assert failing(results) == {"layerwise_groups", "finetune_groups"}
    assert "uses lrdiff_helpers' layerwise_param_groups" in results["layerwise_groups"][1]
