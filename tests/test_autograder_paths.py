"""Is every way of starting nbgrader's autograde in this course sandboxed, with the same scores?

The ways an instructor can grade: the course's command (``python -m autograder``, i.e. ``./course grade``),
``nbgrader autograde lrdiff`` in the course root and in ``autograder/`` (as nbgrader's documentation teaches),
nbgrader's Python API, and the formgrader's *Autograde* button (its HTTP endpoint on a real JupyterLab server,
which calls that API). Each grades, in a fresh copy of the course, the same submission: a quiz with wrong
answers that copies the instructor's answers out of ``source/`` and tries to write into the course, over the
gradebook and into the host's ``/tmp``. Unconfined it would score 10 and leave its files; in the sandbox it
must score exactly what its wrong answers score (0), on every path, and leave nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from autograder import ASSIGNMENT
from autograder.sandbox import OPT_OUT_ENV
from tests import support

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "submissions"))
import browser_support as bs  # noqa: E402
import hostile  # noqa: E402

STUDENT = "thief"
PATHS = ("course command", "nbgrader in the root", "nbgrader in autograder/", "nbgrader API", "formgrader button")

API_GRADE = f"""
import json
from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

config = Config(PyFileConfigLoader("nbgrader_config.py", path=".").load_config())
api = NbGraderAPI(CourseDirectory(config=config), config=config)
print(json.dumps(api.autograde({ASSIGNMENT!r}, {STUDENT!r})))
"""


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = support.grader_env(sandboxed=True)  # never unconfined, whatever this shell says
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    print(f"\n$ {' '.join(args[-4:])}  (in {cwd.name}, exit {proc.returncode})\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def prepared(require_sandbox: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A course copy (with the root's nbgrader_config.py), released, holding the thief's collected quiz."""
    course = support.copy_course(tmp_path_factory.mktemp("paths") / "course")
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    ctx = {"course": str(course), "port": 9, "token": uuid.uuid4().hex[:12]}
    answers = hostile.quiz_answers(wrong=True)
    code = hostile.read_source(ctx) + hostile.write_outside(ctx)
    answers["q1"] = answers["q1"].rstrip("\n") + "\n\n" + code.strip("\n") + "\n"
    inbox = course / "inbox"  # inside the course: ../../source from the student's folder is the real source/
    support.write_submission(inbox, STUDENT, {"quiz": hostile.quiz(answers)})
    assert _run([sys.executable, "-m", "autograder", "release"], course).returncode == 0
    assert _run([sys.executable, "-m", "autograder", "collect", str(inbox)], course).returncode == 0
    return course, ctx


def _course(prepared: tuple[Path, dict[str, Any]], tmp: Path) -> Path:
    """A fresh copy of the prepared course, for one path (its own gradebook, nothing graded yet)."""
    return Path(shutil.copytree(prepared[0], tmp / "course", symlinks=True))


def _left_behind(prepared: tuple[Path, dict[str, Any]], course: Path) -> list[Path]:
    token = prepared[1]["token"]  # the attack's absolute paths name the prepared course, its relative ones the copy
    places = [c / p for c in (prepared[0], course) for p in (f"HACKED-{token}", f"autograded/HACKED-{token}",
                                                             f"submitted/HACKED-{token}")]
    return [p for p in (*places, Path(f"/tmp/lrdiff-hostile-{token}")) if p.exists()]


def _grade(path: str, course: Path) -> str:
    """Grade the thief by ``path``; return what it printed."""
    nbgrader = [sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force"]
    if path == "course command":
        proc = _run([sys.executable, "-m", "autograder", "autograde"], course)
    elif path == "nbgrader in the root":
        proc = _run(nbgrader, course)
    elif path == "nbgrader in autograder/":
        proc = _run(nbgrader, course / "autograder")
    elif path == "nbgrader API":
        proc = _run([sys.executable, "-c", API_GRADE], course)
    else:
        server = bs.start_lab(course, course.parent / "home")
        try:
            reply = server.api(f"formgrader/api/submission/{ASSIGNMENT}/{STUDENT}/autograde", method="POST",
                               timeout=600)
        finally:
            bs.stop_lab(server)
        print(f"formgrader: {reply}")
        assert reply["success"], reply
        return str(reply)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def _quiz_score(course: Path) -> float | None:
    """The thief's quiz score in the course's gradebook; ``None`` when it was never graded."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{course / 'autograder' / 'gradebook.db'}") as gb:
        try:
            return gb.find_submission_notebook("quiz", ASSIGNMENT, STUDENT).score
        except MissingEntry:
            return None


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS)
def test_every_grading_path_is_sandboxed(prepared: tuple[Path, dict[str, Any]], tmp_path: Path, path: str):
    """Graded by this path, does the thief score what its wrong answers score, and leave no file behind?"""
    course = _course(prepared, tmp_path)
    out = _grade(path, course)
    left = _left_behind(prepared, course)
    assert not left, f"{path}: the submission wrote {left}"
    assert (course / "autograder" / "gradebook.db").read_bytes()[:16] == b"SQLite format 3\x00", path
    score = _quiz_score(course)
    assert score == 0, f"{path}: the thief scored {score} (the kernel saw source/?)\n{out[-2000:]}"


@pytest.mark.slow
def test_nbgrader_without_bubblewrap_refuses_with_the_reason(prepared: tuple[Path, dict[str, Any]], tmp_path: Path):
    """Where bubblewrap cannot run, does plain ``nbgrader autograde`` fail with how to fix it, running nothing?"""
    course = _course(prepared, tmp_path)
    proc = _run([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force",
                 "--SandboxedKernelManager.bwrap=/nonexistent/bwrap"], course)
    text = proc.stdout + proc.stderr
    assert "bubblewrap" in text and OPT_OUT_ENV in text, text[-3000:]
    assert not _left_behind(prepared, course)
    assert not _quiz_score(course)
