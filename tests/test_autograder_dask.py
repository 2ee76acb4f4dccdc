"""Grading on a real Dask cluster on loopback: a scheduler and two ``dask worker`` processes, started and stopped
here, grading three quiz-only submissions (cheap: the quiz runs no training) of a scratch copy of the course.

* ``autograde --scheduler ...`` grades them on the cluster: every cell gets the score the default engine gives
  (an in-process cluster, tests/test_autograder_parallel.py); ``autograde`` again grades nobody and says so;
* a task sent with another course fingerprint is refused with the reason, without running anything;
* an unreachable scheduler is exit status 2 with a clear message, nothing written.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import support
from autograder.apps import release
from autograder.autograde import pending
from autograder.collect import collect
from autograder.course import FAILED, GRADED, Course
from autograder.fingerprint import fingerprint
from autograder.task import COURSE_ROOT_ENV, grade
from lrdiff_helpers.reproducibility import PINNED_ENV

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = runpy.run_path(str(ROOT / "tests" / "fixtures" / "submissions" / "variants.py"))
STUDENTS = ["ann", "bob", "cat"]


def _scores(course: Course) -> dict:
    """student -> notebook -> grade id -> auto score."""
    with course.gradebook() as gb:
        return {s: {nb.name: {g.name: g.auto_score for g in nb.grades}
                    for nb in gb.find_submission("lrdiff", s).notebooks} for s in STUDENTS}


def _cli(course: Course, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", "--root", str(course.root), *args], cwd=ROOT,
                          env=support.grader_env(), capture_output=True, text=True, timeout=600)


def _wait_for(path: Path, procs: list[subprocess.Popen], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert all(p.poll() is None for p in procs), "a Dask process ended while starting"
        assert time.monotonic() < deadline, f"no {path.name} after {seconds} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Dask scheduler on 127.0.0.1 and two single-thread workers grading with the course copy ``course``."""
    from distributed import Client

    tmp = tmp_path_factory.mktemp("dask")
    course = Course(support.copy_course(tmp / "course"))
    inbox = tmp / "inbox"
    quiz = support.submission("quiz")
    support.write_submission(inbox, "ann", {"quiz": quiz})
    support.write_submission(inbox, "bob", {
        "quiz": support.submission("quiz", {**support.solutions("quiz"), **VARIANTS["QUIZ_WRONG"]})})
    support.write_submission(inbox, "cat", {"quiz": quiz})
    release(course)
    collect(course, [inbox])

    env = {**support.grader_env(), **PINNED_ENV, COURSE_ROOT_ENV: str(course.root)}
    file = tmp / "scheduler.json"
    py = [sys.executable, "-m"]
    procs = [subprocess.Popen([*py, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(file)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        _wait_for(file, procs)
        for _ in range(2):
            procs.append(subprocess.Popen(
                [*py, "distributed.cli.dask_worker", "--scheduler-file", str(file), "--nworkers", "1",
                 "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        address = json.loads(file.read_text())["address"]
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            yield {"course": course, "address": address, "client": client}
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _quiz_points() -> dict[str, float]:
    nb = support.read(ROOT / "source" / "lrdiff" / "quiz.ipynb")
    return {c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader["points"])
            for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")}


@pytest.fixture(scope="module")
def graded(cluster):
    course = cluster["course"]
    on_cluster = _cli(course, "autograde", "--scheduler", cluster["address"])
    scores = _scores(course)
    status = course.status_file.read_bytes()
    again = _cli(course, "autograde")  # the default engine: nothing left to grade
    return {**cluster, "scores": scores, "again": again, "status": status, "on_cluster": on_cluster}


@pytest.mark.slow
def test_the_cluster_gives_every_cell_its_score(graded):
    """Does grading on a scheduler with two workers give every quiz cell the score the default engine gives
    (test_autograder_parallel: full marks, 0 for the two wrong answers)?"""
    proc = graded["on_cluster"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "autograde: 3 submission(s)" in proc.stdout and "[3/3] " in proc.stdout
    assert f"on the Dask cluster {graded['address']} (2 worker thread(s))" in proc.stdout
    points = _quiz_points()
    quiz = {s: graded["scores"][s]["quiz"] for s in STUDENTS}
    assert quiz["ann"] == quiz["cat"] == points
    assert quiz["bob"] == {g: (0.0 if g in VARIANTS["QUIZ_WRONG_CELLS"] else p) for g, p in points.items()}
    assert (graded["course"].autograded / "bob" / "lrdiff" / "quiz.ipynb").is_file()  # unpacked by the grader


@pytest.mark.slow
def test_a_second_run_grades_nobody_and_force_grades_all(graded):
    """Does `autograde` again grade nobody (same submissions, same course), and would --force grade everyone?"""
    proc = graded["again"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "autograde: nothing to grade: all 3 submission(s) were graded" in proc.stdout
    assert "[1/" not in proc.stdout
    status = json.loads(graded["status"])
    assert {s: status[s]["status"] for s in STUDENTS} == {s: GRADED for s in STUDENTS}
    course = graded["course"]
    assert {status[s]["fingerprint"] for s in STUDENTS} == {fingerprint(course.root)}
    assert status["ann"]["digest"] == status["cat"]["digest"] != status["bob"]["digest"]
    assert pending(course, fingerprint(course.root)) == []
    assert pending(course, fingerprint(course.root), force=True) == STUDENTS
    assert pending(course, "another course") == STUDENTS


@pytest.mark.slow
def test_a_worker_with_another_course_is_refused(graded):
    """Is a task whose course fingerprint is not the worker's refused with the reason, nothing run?"""
    out = graded["client"].submit(grade, "ann", b"", b"", "0" * 64, 10.0, pure=False).result(timeout=60)
    assert out["status"].startswith(f"{FAILED}: this worker's course differs from the grader's (fingerprint ")
    assert out["status"].endswith(f"expected {'0' * 12}): update its checkout")
    assert "autograded" not in out


@pytest.mark.slow
def test_an_unreachable_scheduler_is_bad_input(graded):
    """Is a scheduler nobody listens at exit status 2 with a clear message, the status file untouched?"""
    course = graded["course"]
    before = course.status_file.read_bytes()
    proc = _cli(course, "autograde", "--force", "--scheduler", "tcp://127.0.0.1:9")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error: cannot reach the Dask scheduler at tcp://127.0.0.1:9" in proc.stderr
    assert course.status_file.read_bytes() == before
