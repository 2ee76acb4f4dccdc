"""Hostile and broken submissions, end to end through the real grader: each gets exactly its expected outcome.

One batch, in a scratch copy of the course, through the command a person runs:
``python -m autograder all INBOX --out grades.csv --jobs 2``. The submissions and their outcomes are the table
in ``tests/fixtures/submissions/hostile.py``: attacks that try to earn points score what the same wrong
answers score honestly; crashes, loops, bombs and broken files affect only their own submission (or cell), or
fail to grade with the reason, never as a 0; nothing a student does leaves a file on the host or reaches its
network. The scratch course's ``nbgrader_config.py`` gets a short cell timeout and wall-clock limit, so that
the suite is bounded. The batch skips when bubblewrap cannot run here and env CI is unset (in CI it fails):
these submissions must never run unconfined.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import runpy
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import nbformat
import pytest

from autograder import NOTEBOOKS
from tests import support

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "submissions"
HOSTILE = runpy.run_path(str(FIXTURES / "hostile.py"))
VARIANTS = runpy.run_path(str(FIXTURES / "variants.py"))
SUBMISSIONS = HOSTILE["SUBMISSIONS"]

#: Appended to the scratch course's nbgrader_config.py: every cell and every kernel bounded, quickly.
SCRATCH_CONFIG = """
# tests/test_autograder_hostile.py: a bounded batch
c.Execute.timeout = 20
c.SandboxedKernelManager.wall_seconds = 60
c.SandboxedExecute.cell_seconds = {"exercises": 20, "quiz": 20, "experiment": 20}
c.SandboxedExecute.notebook_seconds = {"exercises": 60, "quiz": 60, "experiment": 60}
c.SandboxedKernelManager.memory_mb = 2048
"""
NOTE = "[output truncated by the grader"


def _digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hash) and every symbolic link (its target), links never followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(folder))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _grader(args: list[str], course: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "autograder", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=1200)
    print(f"\n$ python -m autograder {' '.join(args)}  (exit {proc.returncode})\n{proc.stdout}{proc.stderr[-3000:]}")
    return proc


def _pending_connections(listener: socket.socket) -> int:
    n = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


@pytest.fixture(scope="module")
def batch(require_sandbox: None, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Build every submission, grade them all in one batch (then the second run), and collect what came out."""
    tmp = tmp_path_factory.mktemp("hostile")
    course = support.copy_course(tmp / "course")
    with open(course / "autograder" / "nbgrader_config.py", "a") as f:
        f.write(SCRATCH_CONFIG)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    token = uuid.uuid4().hex[:12]
    ctx = {"course": str(course), "port": listener.getsockname()[1], "token": token}
    inbox = course / "inbox"  # inside the course: ../../source from a student's folder is the real source/
    second = tmp / "inbox2"
    for sub in SUBMISSIONS:
        dest = support.write_submission(second if sub.name in HOSTILE["SECOND_RUN"] else inbox, sub.name,
                                        sub.build(ctx, VARIANTS))
        if sub.symlink:
            os.symlink(sub.symlink, dest / "quiz.ipynb")
    before = {"inbox": _digest(inbox), "second": _digest(second)}

    env = support.grader_env(sandboxed=True)
    start = time.perf_counter()
    first = _grader(["all", str(inbox), "--out", "grades.csv", "--jobs", "2"], course, env)
    # The files a student drops beside the notebook: collect copies only notebooks, so put them there after.
    collected = _grader(["collect", str(second)], course, env)
    for student in HOSTILE["SECOND_RUN"]:
        for name, code in HOSTILE["HIJACK_FILES"].items():
            (course / "submitted" / student / "lrdiff" / name).write_text(code)
    again = [*(a for s in HOSTILE["SECOND_RUN"] for a in ("--student", s))]
    rerun = _grader(["autograde", *again, "--jobs", "1"], course, env)
    export = _grader(["export", "--out", "grades.csv"], course, env)
    seconds = time.perf_counter() - start
    print(f"\nhostile batch: {len(SUBMISSIONS)} submissions graded in {seconds:.0f} s")

    with open(course / "grades.csv", newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    try:
        status = json.loads((course / "autograded" / ".lrdiff-status.json").read_text())
    except FileNotFoundError:
        status = {}
    from nbgrader.api import Gradebook

    cells: dict[str, dict[str, float]] = {}  # student -> "notebook/grade id" -> score, graded students only
    with Gradebook(f"sqlite:///{course / 'autograder' / 'gradebook.db'}", "lrdiff") as gb:
        for student, row in rows.items():
            if row["status"] == "graded":
                sub = gb.find_submission("lrdiff", student)
                cells[student] = {f"{nb.name}/{g.name}": float(g.score) for nb in sub.notebooks for g in nb.grades}
    yield {
        "course": course, "ctx": ctx, "rows": rows, "status": status, "cells": cells, "seconds": seconds,
        "procs": {"all": first, "collect": collected, "rerun": rerun, "export": export},
        "before": before, "after": {"inbox": _digest(inbox), "second": _digest(second)},
        "connections": _pending_connections(listener), "listener": listener,
    }  # fmt: skip
    listener.close()


def _autograded(batch: Any, student: str, notebook: str = "quiz") -> nbformat.NotebookNode:
    return nbformat.read(str(batch["course"] / "autograded" / student / "lrdiff" / f"{notebook}.ipynb"), 4)


def _cell(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if support.grade_id(c) == grade_id)


# ---------------------------------------------------------------------------------------------------------
# What some submissions must also leave behind (or not), beyond their row in the CSV


def _bounded_time(batch: Any, student: str) -> None:
    seconds = batch["status"][student]["seconds"]
    assert seconds < 150, f"{student} took {seconds:.0f} s to fail (cell timeout 20 s, kernel wall clock 60 s)"


#: The cells from the hung function's definition to the last graded cell that calls it (exercises.ipynb).
HANG_CELLS = ("layerwise_param_groups", "layerwise_lrs_other_models")


def _seconds_in_hang(nb: nbformat.NotebookNode) -> float:
    """The kernel's time in the cells that call the hung function, from the timings nbclient records in each
    executed cell (a cell not run has none): one cell timeout when the later calls fail at once, one per call
    when each is waited out. Unlike the wall clock of the whole grading, it does not grow on a busy machine."""
    from datetime import datetime

    code = [c for c in nb.cells if c.cell_type == "code"]
    ids = [support.grade_id(c) for c in code]
    first, last = ids.index(HANG_CELLS[0]), ids.index(HANG_CELLS[1])
    total = 0.0
    for cell in code[first:last + 1]:
        ex = cell.metadata.get("execution", {})
        if "iopub.execute_input" in ex and "shell.execute_reply" in ex:
            start, end = (datetime.fromisoformat(ex[k].replace("Z", "+00:00"))
                          for k in ("iopub.execute_input", "shell.execute_reply"))
            total += (end - start).total_seconds()
    return total


def _hang_costs_one_cell_timeout(batch: Any, student: str) -> None:
    seconds = batch["status"][student]["seconds"]
    nb = _autograded(batch, student, "exercises")
    hang = _seconds_in_hang(nb)
    print(f"\n{student}: graded in {seconds:.1f} s, {hang:.1f} s of it in the cells that call the hung function "
          "(one cell timeout of 20 s, the later calls failed at once)")
    assert hang < 40, f"{student}: {hang:.0f} s in the cells calling the hung function: the later ones were waited out"
    reasons = [o.get("evalue", "") for gid in ("layerwise_groups", "layerwise_lrs", "layerwise_lrs_other_models")
               for o in _cell(nb, gid).outputs]
    assert all("timed out" in r and "layerwise_param_groups" in r for r in reasons), reasons


def _memory_error_in_its_cell(batch: Any, student: str) -> None:
    nb = _autograded(batch, student)
    assert "MemoryError" in [o.get("ename") for o in _cell(nb, "q1").outputs]
    others = [support.grade_id(c) for c in nb.cells if c.cell_type == "code" and support.grade_id(c) != "q1"
              and any(o.get("ename") == "MemoryError" for o in c.get("outputs", []))]
    assert others == [], f"MemoryError outside the bomb's cell: {others}"


def _interrupted_in_its_cell(batch: Any, student: str) -> None:
    nb = _autograded(batch, student)
    assert any(o.get("output_type") == "error" for o in _cell(nb, "q1").outputs)


def _small_notebook_with_a_note(batch: Any, student: str) -> None:
    path = batch["course"] / "autograded" / student / "lrdiff" / "quiz.ipynb"
    assert path.stat().st_size < 5 << 20, f"the autograded notebook is {path.stat().st_size >> 20} MB"
    assert NOTE in "".join(o.get("text", "") for o in _cell(_autograded(batch, student), "q1").outputs)


def _no_file_on_the_host(batch: Any, student: str) -> None:
    course, token = batch["course"], batch["ctx"]["token"]
    left = [p for p in (course / f"HACKED-{token}", course / "autograded" / f"HACKED-{token}",
                        course / "submitted" / f"HACKED-{token}", Path(f"/tmp/lrdiff-hostile-{token}"))
            if p.exists()]  # fmt: skip
    assert left == [], f"files written outside the sandbox: {left}"
    assert (course / "autograder" / "gradebook.db").read_bytes()[:16] == b"SQLite format 3\x00"


def _no_connection(batch: Any, student: str) -> None:
    assert batch["connections"] == 0, "a student cell reached a server on the host's 127.0.0.1"


def _real_modules_ran(batch: Any, student: str) -> None:
    # the files were there, beside the notebook the kernel ran (its working folder), and did not run
    for step in ("submitted", "autograded"):
        folder = batch["course"] / step / student / "lrdiff"
        assert sorted(p.name for p in folder.iterdir() if p.suffix == ".py") == sorted(HOSTILE["HIJACK_FILES"])


def _never_read(batch: Any, student: str) -> None:
    assert not (batch["course"] / "autograded" / student / "lrdiff" / "quiz.ipynb").exists()


ALSO = {
    "swallow_interrupt": _bounded_time,
    "hang_in_exercise": _hang_costs_one_cell_timeout,
    "background_sleeper": _bounded_time,
    "memory_bomb": _memory_error_in_its_cell,
    "infinite_loop": _interrupted_in_its_cell,
    "print_100mb": _small_notebook_with_a_note,
    "write_outside": _no_file_on_the_host,
    "network": _no_connection,
    "atk_hijack_files": _real_modules_ran,
    "symlink": _never_read,
}

# ---------------------------------------------------------------------------------------------------------
# The table


@pytest.mark.slow
@pytest.mark.parametrize("sub", SUBMISSIONS, ids=lambda s: s.name)
def test_outcome(batch: Any, sub: Any) -> None:
    """Does this hostile or broken submission get exactly its expected outcome (hostile.py's table)?"""
    rows = batch["rows"]
    assert sub.name in rows, f"{sub.name} is not in the CSV"
    row, expect = rows[sub.name], sub.expect
    if expect.failed is not None:
        assert row["status"].startswith("failed to grade: "), f"{sub.name}: {row['status']} ({row['total']})"
        assert re.search(expect.failed, row["status"]), f"{sub.name}: the reason is {row['status']!r}"
    else:
        assert row["status"] == "graded", f"{sub.name}: {row['status']}"
        twin_name = expect.same_as or expect.no_more_than
        if twin_name:
            assert rows[twin_name]["status"] == "graded"
            got, twin = batch["cells"][sub.name], batch["cells"][twin_name]
            assert set(got) == set(twin)
            if expect.same_as:
                differ = {g: (got[g], twin[g]) for g in got if got[g] != twin[g]}
                assert differ == {}, f"{sub.name} vs its honest twin {twin_name}, cell: (score, twin's): {differ}"
            else:
                above = {g: (got[g], twin[g]) for g in got if got[g] > twin[g]}
                assert above == {}, f"{sub.name} earned points its honest twin {twin_name} did not: {above}"
        else:
            expected = {nb: f"{expect.scores.get(nb, 0):g}" for nb in NOTEBOOKS}
            assert {nb: row[nb] for nb in NOTEBOOKS} == expected
        for note in expect.notes:
            assert note in row["notes"], f"{sub.name}: no note {note!r} in {row['notes']!r}"
    if sub.name in ALSO:
        ALSO[sub.name](batch, sub.name)


# ---------------------------------------------------------------------------------------------------------
# The whole batch


@pytest.mark.slow
def test_failed_to_grade_is_never_a_zero(batch: Any) -> None:
    """Does every submission that failed to grade have empty scores in the CSV (never a 0), and does the
    batch report that some failed (exit status 1) after finishing?"""
    failed = {s: r for s, r in batch["rows"].items() if r["status"] != "graded"}
    assert failed, "the batch has submissions that must fail to grade"
    for student, row in failed.items():
        assert row["status"].startswith("failed to grade: "), f"{student}: {row['status']}"
        assert [row[k] for k in (*NOTEBOOKS, "total")] == ["", "", "", ""], f"{student} has scores: {row}"
    assert batch["procs"]["all"].returncode == 1
    assert set(batch["rows"]) == {s.name for s in SUBMISSIONS}


@pytest.mark.slow
def test_originals_are_untouched(batch: Any) -> None:
    """Are the handed-in files (and links) byte for byte what they were before grading?"""
    assert batch["after"] == batch["before"]


@pytest.mark.slow
def test_second_run_worked(batch: Any) -> None:
    """Did the second run (collect, files dropped beside the notebook, autograde) itself succeed?"""
    for step in ("collect", "rerun", "export"):
        assert batch["procs"][step].returncode in (0, 1), batch["procs"][step].stderr[-2000:]


#: Graded again by plain ``nbgrader autograde`` (as nbgrader's own documentation teaches instructors) after the
#: batch: same scores, same confinement, same bounded time. (The copy from source/ and the writes outside the
#: sandbox go through every grading path in tests/test_autograder_paths.py.)
PLAIN_NBGRADER = ("network", "hang_in_exercise")


@pytest.mark.slow
def test_plain_nbgrader_autograde_gives_the_same_outcome(batch: Any) -> None:
    """Graded again by ``nbgrader autograde lrdiff --force`` in autograder/, do the network attack and the hang
    get the course grader's scores, cell by cell, the hang in bounded time, and does nothing reach a server?"""
    course, env = batch["course"], support.grader_env(sandboxed=True)
    from nbgrader.api import Gradebook

    for student in PLAIN_NBGRADER:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", "lrdiff", "--force", f"--student={student}"],
                              cwd=course / "autograder", env=env, capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - start
        print(f"\nnbgrader autograde --student={student}: exit {proc.returncode}, {seconds:.1f} s")
        assert proc.returncode == 0, proc.stderr[-3000:]
        with Gradebook(f"sqlite:///{course / 'autograder' / 'gradebook.db'}", "lrdiff") as gb:
            sub = gb.find_submission("lrdiff", student)
            cells = {f"{nb.name}/{g.name}": float(g.score) for nb in sub.notebooks for g in nb.grades}
        assert cells == batch["cells"][student], student
        if student == "hang_in_exercise":
            hang = _seconds_in_hang(_autograded(batch, student, "exercises"))
            assert hang < 40, f"plain nbgrader spent {hang:.0f} s in the cells calling the hung function"
    assert _pending_connections(batch["listener"]) == 0, "a student cell reached a server on the host's 127.0.0.1"
