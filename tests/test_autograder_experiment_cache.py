"""The experiment's training runs, once per class (:mod:`autograder.experiment_cache`).

The grader's own runs are replaced here by stand-ins that count their calls (the real recipe takes seconds and
is tested in test_exercises_experiment.py): what matters is when a pair is trained, read back, stored or not.
"""

from __future__ import annotations

import json

import pytest

from autograder import experiment_cache
from lrdiff_helpers import grading
from lrdiff_helpers.grading import ExperimentResult


@pytest.fixture
def recipe(monkeypatch):
    """Stand-ins for the grader's runs: ``calls`` lists each pair trained; ``unpinned`` is what they report."""
    state = {"calls": [], "unpinned": ""}

    def results(b, h):
        state["calls"].append((b, h))
        return ExperimentResult(b, h, 70.0 + h, 5.0, (70.0 + h,), (5.0,), state["unpinned"])

    monkeypatch.setattr(grading, "experiment_results", results)
    monkeypatch.setattr(grading, "experiment_test_accuracy", lambda b, h: 66.0 + h)
    yield state
    experiment_cache.use(None)


def test_a_pair_is_trained_once_then_read_back(recipe, tmp_path):
    """Is a pair trained once, stored in the file in use, and read back (same numbers, same text) after?"""
    path = tmp_path / "runs.json"
    experiment_cache.use(path)
    first = experiment_cache.trained(1e-4, 3e-3)
    again = experiment_cache.trained(1e-4, 3e-3)
    other = experiment_cache.trained(1e-4, 1e-2)
    assert recipe["calls"] == [(1e-4, 3e-3), (1e-4, 1e-2)]
    assert again == first and first.val_acc == 70.003 and first.test_acc == 66.003
    assert first.text == str(ExperimentResult(1e-4, 3e-3, 70.003, 5.0, (70.003,), (5.0,)))
    assert other.val_acc == 70.01
    assert set(json.loads(path.read_text())) == {experiment_cache.key(1e-4, 3e-3, grading.EXPERIMENT_SEEDS),
                                                  experiment_cache.key(1e-4, 1e-2, grading.EXPERIMENT_SEEDS)}


def test_an_unpinned_run_is_never_stored(recipe, tmp_path):
    """Is a run computed without the course's pins (its numbers may not be the graders') left out of the file?"""
    path = tmp_path / "runs.json"
    experiment_cache.use(path)
    recipe["unpinned"] = "torch's CPU kernels are DEFAULT, not AVX2"
    experiment_cache.trained(1e-4, 3e-3)
    experiment_cache.trained(1e-4, 3e-3)
    assert len(recipe["calls"]) == 2
    assert not path.exists()


def test_without_a_file_nothing_is_read_or_written(recipe, tmp_path):
    """Does a process that was given no file (nbgrader run by hand) train, and write nothing anywhere?"""
    experiment_cache.use(None)
    assert experiment_cache.trained(1e-4, 3e-3).val_acc == 70.003
    assert recipe["calls"] == [(1e-4, 3e-3)]
    assert list(tmp_path.iterdir()) == []


def test_a_broken_entry_is_trained_again(recipe, tmp_path):
    """Is an entry of the wrong shape (a file edited by hand) trained again instead of crashing the check?"""
    path = tmp_path / "runs.json"
    path.write_text(json.dumps({experiment_cache.key(1e-4, 3e-3, grading.EXPERIMENT_SEEDS): {"val": 1}}))
    experiment_cache.use(path)
    assert experiment_cache.trained(1e-4, 3e-3).val_acc == 70.003
    assert recipe["calls"] == [(1e-4, 3e-3)]


def test_the_coordinator_keeps_runs_of_this_course_only(tmp_path):
    """Does the coordinator's file give back its runs under the same course fingerprint, and none under another
    (the code or the lock file changed: the numbers may too), or when it is missing or not JSON?"""
    assert experiment_cache.load(tmp_path, "a" * 64) == {}
    runs = {"0.0001 0.003 0,1,2": {"val_acc": 67.5, "test_acc": 68.1, "text": "..."}}
    experiment_cache.save(tmp_path, "a" * 64, runs)
    assert experiment_cache.load(tmp_path, "a" * 64) == runs
    assert experiment_cache.load(tmp_path, "b" * 64) == {}
    (tmp_path / experiment_cache.CACHE_FILE).write_text("{not json")
    assert experiment_cache.load(tmp_path, "a" * 64) == {}


def test_the_module_examples_hold():
    """Do the examples in the module's docstrings (the key's form, reading a task's runs) run as written?"""
    import doctest

    result = doctest.testmod(experiment_cache)
    assert result.attempted >= 2 and result.failed == 0, result
