"""Grading on a real Dask cluster on loopback: a scheduler (no dashboard) and two ``dask worker`` processes,
started and stopped here (``tests/support/dask_cluster.py``), grading quiz-only submissions (cheap: the quiz
runs no training) of scratch copies of the course.

* ``autograde --scheduler ...`` grades them on the cluster: every cell gets the score the default engine gives
  (an in-process cluster, tests/test_autograder_parallel.py), and says the scheduler has no dashboard;
  ``autograde`` again grades nobody and says so;
* a task sent with another course fingerprint is refused with the reason, without running anything;
* an unreachable scheduler is exit status 2 with a clear message, nothing written;
* a worker that cannot run bubblewrap leaves the cluster with its reason, the others grade; alone: exit 2;
* a worker that opted out of the sandbox stays, loudly (the plugin's check alone, no cluster);
* a worker SIGKILLed mid-grade: its student is graded once, elsewhere, and nothing of its task runs on;
* a coordinator SIGKILLed mid-run: the next run grades only the rest, and nobody is lost;
* a fork bomb, ``os._exit`` and a memory bomb affect only their own student; both workers live on.

Each scenario after the first grades its own students in its own copy of the released course (a second
``autograde`` there grades only what is pending there); the workers grade with the first copy's checkout.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests import support
from tests.support.dask_cluster import dask_cluster
from tests.support.quiz_batch import VARIANTS, quiz_points, released_course, wrong_quiz_points, write_quizzes
from autograder.autograde import pending
from autograder.collect import collect
from autograder.course import FAILED, GRADED, Course
from autograder.fingerprint import fingerprint
from autograder.task import COURSE_ROOT_ENV, grade
from lrdiff_helpers.reproducibility import PINNED_ENV

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = runpy.run_path(str(ROOT / "tests" / "fixtures" / "submissions" / "hostile.py"))
STUDENTS = ["ann", "bob", "cat"]
#: The scratch course's kernels get the hostile suite's memory limit (tests/test_autograder_hostile.py).
MEMORY_CONFIG = "\n# tests/test_autograder_dask.py\nc.SandboxedKernelManager.memory_mb = 2048\n"
#: Generous: two cores shared with other work.
DEADLINE = 120


def _scores(course: Course, students=STUDENTS) -> dict:
    """student -> notebook -> grade id -> auto score."""
    with course.gradebook() as gb:
        return {s: {nb.name: {g.name: g.auto_score for g in nb.grades}
                    for nb in gb.find_submission("lrdiff", s).notebooks} for s in students}


def _argv(course: Course, *args: str) -> list[str]:
    return [sys.executable, "-m", "autograder", "--root", str(course.root), *args]


def _cli(course: Course, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_argv(course, *args), cwd=ROOT, env=support.grader_env(), capture_output=True, text=True,
                          timeout=600)


def _start_cli(course: Course, log: Path, *args: str) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(_argv(course, *args), cwd=ROOT, env=support.grader_env(), stdout=out,
                                stderr=subprocess.STDOUT)


def _poll(what: str, check, seconds: float = DEADLINE, every: float = 0.2):
    """``check()``'s first true value within ``seconds``; fails saying ``what`` was expected."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"expected {what} within {seconds} s, found none"
        time.sleep(every)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Dask scheduler on 127.0.0.1 and two single-thread workers grading with the course copy ``course``."""
    from distributed import Client

    tmp = tmp_path_factory.mktemp("dask")
    inbox = tmp / "inbox"
    write_quizzes(inbox, right=["ann", "cat"], wrong=["bob"])
    course = released_course(tmp / "course", [inbox])
    with open(course.root / "autograder" / "nbgrader_config.py", "a") as f:
        f.write(MEMORY_CONFIG)
    env = {**support.grader_env(), **PINNED_ENV, COURSE_ROOT_ENV: str(course.root)}
    (tmp / "cluster").mkdir()
    with dask_cluster(tmp / "cluster", env, workers=2) as dask, Client(dask.address, timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
        yield {"course": course, "address": dask.address, "client": client, "dask": dask, "tmp": tmp, "env": env}


def _course_for(cluster, name: str, right=(), wrong=(), notebooks=None) -> Course:
    """A copy of the cluster's released course, with only these students' quizzes collected (or
    ``notebooks``: student -> notebooks)."""
    folder, inbox = cluster["tmp"] / name, cluster["tmp"] / f"{name}-inbox"
    shutil.copytree(cluster["course"].root, folder,
                    ignore=lambda d, names: {"submitted", "autograded", "feedback"} & set(names))
    write_quizzes(inbox, right, wrong)
    for student, nbs in (notebooks or {}).items():
        support.write_submission(inbox, student, nbs)
    course = Course(folder)
    collect(course, [inbox])
    return course


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
    (test_autograder_parallel: full marks, 0 for the two wrong answers), and say it has no dashboard?"""
    proc = graded["on_cluster"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "autograde: 3 submission(s)" in proc.stdout and "[3/3] " in proc.stdout
    assert f"on the Dask cluster {graded['address']} (2 worker thread(s)); " \
           "dashboard: none (the scheduler was started without one)" in proc.stdout, proc.stdout
    points = quiz_points()
    quiz = {s: graded["scores"][s]["quiz"] for s in STUDENTS}
    assert quiz["ann"] == quiz["cat"] == points
    assert quiz["bob"] == wrong_quiz_points()
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
def test_a_student_who_failed_to_grade_is_tried_again(graded):
    """Is a student recorded as failed to grade (same submission, same course) pending again, the others not?"""
    course = graded["course"]
    before = course.read_status()
    failed = {**before, "bob": {**before["bob"], "status": f"{FAILED}: the grading process was killed (SIGKILL)"}}
    try:
        course.write_status(failed)
        assert pending(course, fingerprint(course.root)) == ["bob"]
    finally:
        course.write_status(before)


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


# ---------------------------------------------------------------------------------------------------------
# A worker without bubblewrap


def _without_bwrap() -> dict[str, str]:
    """A worker's environment where ``find_bwrap`` finds no bwrap: PATH holds only the course's Python."""
    return {"PATH": str(Path(sys.executable).parent)}


REFUSED = ": cannot confine the grading kernels: bubblewrap (`bwrap`) is not installed"


@pytest.mark.slow
def test_a_worker_without_bubblewrap_leaves_and_the_others_grade(cluster):
    """Does a worker that cannot find bubblewrap leave the cluster, its reason printed by the grader, while the
    good workers grade the batch?"""
    client, dask = cluster["client"], cluster["dask"]
    bad = dask.add_worker("nobwrap", **_without_bwrap())
    client.wait_for_workers(3, timeout=60)
    course = _course_for(cluster, "nobwrap", right=["dan"])
    proc = _cli(course, "autograde", "--scheduler", cluster["address"])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    refusals = [line for line in out.splitlines() if REFUSED in line]
    assert len(refusals) == 1 and refusals[0].startswith("worker tcp://127.0.0.1:"), out
    assert refusals[0].endswith("; it was not used"), refusals[0]
    assert "(2 worker thread(s))" in out, out
    assert course.read_status()["dan"]["status"] == GRADED
    assert _scores(course, ["dan"])["dan"]["quiz"] == quiz_points()
    _poll("the refused worker's `dask worker` to exit", lambda: bad.poll() is not None, 60)
    assert bad.returncode == 0, f"expected the refused worker to exit 0, found {bad.returncode}"
    assert not list(dask.tmpdir("nobwrap").glob("lrdiff-task-*")), "expected no task on the refused worker"


@pytest.mark.slow
def test_a_cluster_of_workers_without_bubblewrap_is_bad_input(cluster):
    """Is a scheduler whose only worker cannot confine kernels exit status 2, the reason printed, the status
    file untouched?"""
    from distributed import Client

    course = _course_for(cluster, "alone", right=["eli"])
    (cluster["tmp"] / "alone-cluster").mkdir()
    with dask_cluster(cluster["tmp"] / "alone-cluster", cluster["env"], workers=0) as dask:
        dask.add_worker("nobwrap", **_without_bwrap())
        with Client(dask.address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
        proc = _cli(course, "autograde", "--scheduler", dask.address)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert REFUSED in out, out
    assert "error: no worker left to grade: the 1 worker(s) of the cluster cannot confine" in proc.stderr, out
    assert not course.status_file.exists()
    assert not (course.autograded / "eli").exists()


def test_a_worker_that_opted_out_of_the_sandbox_stays_loudly(monkeypatch):
    """Does a worker with LRDIFF_UNSAFE_NO_SANDBOX=1 stay in the cluster, with a loud line for the grader?"""
    from autograder.sandbox import OPT_OUT_ENV
    from autograder.worker_check import UNCONFINED, describe, sandbox_state

    monkeypatch.setenv(OPT_OUT_ENV, "1")
    state, why = sandbox_state()
    assert state == UNCONFINED, f"expected {UNCONFINED}, found {state} ({why})"
    line = describe({"worker": "tcp://10.0.0.7:4242", "state": state, "reason": why})
    assert line == ("worker tcp://10.0.0.7:4242: grades UNCONFINED (LRDIFF_UNSAFE_NO_SANDBOX=1 there: student code "
                    "runs unconfined, with that worker's privileges)"), line


# ---------------------------------------------------------------------------------------------------------
# Machines lost mid-run


def _worker_pids(client) -> dict[str, int]:
    """Worker name -> the pid of the process that runs its tasks (the nanny's child, not ``dask worker``)."""
    names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
    return {names[a]: pid for a, pid in client.run(os.getpid).items() if a in names}


def _task_scratch(dask, student: str):
    """(worker name, scratch folder) of the task grading ``student``, once one is running."""
    for name in dask.workers:
        for scratch in dask.tmpdir(name).glob("lrdiff-task-*"):
            if (scratch / "submitted" / student).is_dir():
                return name, scratch
    return None


def _mentions(proc: psutil.Process, token: str) -> bool:
    """Does ``proc``'s command line, working folder or an open file name ``token``?"""
    try:
        return (token in " ".join(proc.cmdline()) or token in proc.cwd()
                or any(token in f.path for f in proc.open_files()))
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _survivors(tree: list[psutil.Process], scratch: str) -> list[str]:
    """The processes of ``tree`` still running, and any process whose command line or cwd names ``scratch``."""
    found = []
    for proc in {*tree, *(p for p in psutil.process_iter() if _mentions(p, scratch))}:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _none_left(tree: list[psutil.Process], scratch: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while left := _survivors(tree, scratch):
        assert time.monotonic() < deadline, f"expected no process of the killed task after {seconds} s, found {left}"
        time.sleep(0.5)


@pytest.mark.slow
def test_a_worker_killed_mid_grade_costs_nothing(cluster):
    """Is a student whose worker is SIGKILLed mid-grade graded exactly once, elsewhere, with the right scores,
    and does nothing of the lost task (grading process, kernel) run on?"""
    course = _course_for(cluster, "kill-worker", right=["fay"])
    proc = _start_cli(course, cluster["tmp"] / "kill-worker.log", "autograde", "--scheduler", cluster["address"])
    try:
        name, scratch = _poll("fay's task to start on a worker", lambda: _task_scratch(cluster["dask"], "fay"))
        # The process to kill is the one that runs the task: the nanny's child (client.run's os.getpid there),
        # not `dask worker` (the nanny, which only restarts it). Kill it once grading is under way in it.
        victim = psutil.Process(_worker_pids(cluster["client"])[name])
        _poll("a grading process of fay's task", lambda: [p for p in victim.children(recursive=True)
                                                          if _mentions(p, str(scratch))], 60)
        time.sleep(0.5)
        tree = victim.children(recursive=True)
        victim.send_signal(signal.SIGKILL)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = (cluster["tmp"] / "kill-worker.log").read_text()
    assert proc.returncode == 0, out
    assert course.read_status()["fay"]["status"] == GRADED, out
    with course.gradebook() as gb:
        assert len(gb.find_student("fay").submissions) == 1
    assert _scores(course, ["fay"])["fay"]["quiz"] == quiz_points()
    assert out.count("] fay: ") == 1, out
    assert scratch.exists(), "expected the killed task's scratch folder left behind (killed mid-grade), found none"
    _none_left(tree, str(scratch))
    cluster["client"].wait_for_workers(2, timeout=60)  # the nanny restarted it: the next tests have two again


@pytest.mark.slow
def test_a_coordinator_killed_mid_run_loses_nobody(cluster):
    """After the grader is SIGKILLed once a student is GRADED, does the next run grade only the rest, and does
    every student end GRADED with the right scores?"""
    students = ["gus", "hal", "ivy"]
    course = _course_for(cluster, "kill-grader", right=["gus", "ivy"], wrong=["hal"])
    log = cluster["tmp"] / "kill-grader.log"
    proc = _start_cli(course, log, "autograde", "--scheduler", cluster["address"])
    try:
        _poll("a student GRADED in the status file", lambda: course.status_file.exists() and GRADED in
              {v["status"] for v in course.read_status().values()}, 300, 0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = {s for s, v in course.read_status().items() if v["status"] == GRADED}
    rest = [s for s in students if s not in first]
    again = _cli(course, "autograde", "--scheduler", cluster["address"])
    assert again.returncode == 0, again.stdout + again.stderr
    if rest:
        assert f"autograde: {len(rest)} submission(s)" in again.stdout, again.stdout
    graded_again = sorted(line.split()[1].rstrip(":") for line in again.stdout.splitlines() if line.startswith("["))
    assert graded_again == rest, f"expected the second run to grade {rest}, found {graded_again}"
    assert {s: v["status"] for s, v in course.read_status().items()} == {s: GRADED for s in students}
    scores = _scores(course, students)
    assert {s: scores[s]["quiz"] for s in students} == {"gus": quiz_points(), "hal": wrong_quiz_points(),
                                                        "ivy": quiz_points()}


# ---------------------------------------------------------------------------------------------------------
# Hostile submissions


@pytest.mark.slow
def test_hostile_submissions_affect_only_their_student(cluster):
    """Do a fork bomb, os._exit(1) and a memory bomb each get the hostile suite's outcome on the cluster, a
    normal student next to them full marks, and do both workers live on?"""
    client = cluster["client"]
    before = _worker_pids(client)
    table = {s.name: s for s in HOSTILE["SUBMISSIONS"] if s.name in ("fork_bomb", "os_exit", "memory_bomb")}
    course = _course_for(cluster, "hostile", right=["jon"],
                         notebooks={name: s.build({}, VARIANTS) for name, s in table.items()})
    proc = _cli(course, "autograde", "--scheduler", cluster["address"])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out  # os_exit fails to grade
    status = {s: v["status"] for s, v in course.read_status().items()}
    assert status["jon"] == GRADED, status
    assert _scores(course, ["jon"])["jon"]["quiz"] == quiz_points()
    for name, sub in table.items():
        if sub.expect.failed is not None:
            assert status[name].startswith(FAILED), f"{name}: expected failed to grade, found {status[name]}"
            assert re.search(sub.expect.failed, status[name]), f"{name}: the reason is {status[name]!r}"
        else:
            assert status[name] == GRADED, f"{name}: expected graded, found {status[name]}"
            got = sum(_scores(course, [name])[name]["quiz"].values())
            assert got == sub.expect.scores["quiz"], f"{name}: expected quiz {sub.expect.scores['quiz']}, found {got}"
    nb = support.read(course.autograded / "memory_bomb" / "lrdiff" / "quiz.ipynb")
    q1 = next(c for c in nb.cells if support.grade_id(c) == "q1")
    assert "MemoryError" in [o.get("ename") for o in q1.get("outputs", [])]
    assert _worker_pids(client) == before, "expected both workers alive (the same processes) after the batch"
