"""Does `autograde` run student code in the sandbox? A submission that copies the instructor's solution.

The attack (seen on plain nbgrader 0.9.6): an answer cell reads ``../../../source/lrdiff/exercises.ipynb``
(autograde runs the notebook in ``autograded/<student>/lrdiff/``, inside the course) and executes the
instructor's solution. Unconfined, that scores full marks for the function; in the sandbox the source is
not there, so the stub stays and the function scores 0.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from tests import support

CHEAT = support.steal_source_answer("two_group_sgd", """
def two_group_sgd(model, part1_lr, part2_lr, momentum=0.9):
    raise NotImplementedError()
""")


def test_the_cheat_works_where_the_source_is_readable(tmp_path):
    """The attack is real: run from autograded/<student>/lrdiff/ of a course copy, it finds the solution."""
    course = support.copy_course(tmp_path / "course")
    where = course / "autograded" / "cheat" / "lrdiff"
    where.mkdir(parents=True)
    cwd = os.getcwd()
    import torch

    namespace: dict = {"torch": torch}  # the notebook's setup cell imports torch before the answer cells
    try:
        os.chdir(where)
        exec(CHEAT, namespace)
    finally:
        os.chdir(cwd)
    from lrdiff_helpers import TwoPartModel

    opt = namespace["two_group_sgd"](TwoPartModel(), 0.1, 0.01)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]


@pytest.mark.slow
def test_sandboxed_autograde_gives_the_cheat_nothing(require_sandbox, tmp_path):
    """Graded through the pipeline, does the copied solution earn no points (the source is out of sight)?"""
    course = support.copy_course(tmp_path / "course")
    inbox = tmp_path / "inbox"
    support.write_submission(inbox, "cheat", {"exercises": support.submission("exercises", {"two_group_sgd": CHEAT})})
    env = support.grader_env(sandboxed=True)
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "all", str(inbox), "--out", "grades.csv"],
        cwd=course, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(course / "grades.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["student"] == "cheat")
    assert row["status"] == "graded"
    assert row["exercises"] == "0", f"the copied solution scored {row['exercises']} points: the kernel saw source/"
