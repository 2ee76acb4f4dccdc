"""The grading pipeline's configuration, collect step and error handling (fast: no notebook is executed)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from traitlets.config.loader import PyFileConfigLoader

from autograder import pipeline, testing
from autograder.pipeline import Course, InputError

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("LRDIFF_GRADEBOOK_URL", None)
    env.update(extra)
    return env


@pytest.fixture()
def course(tmp_path) -> Course:
    return Course(testing.copy_course(tmp_path / "course"))


def _cli(course_root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", *args], cwd=course_root, env=_env(**env),
                          capture_output=True, text=True, timeout=600)


# ------------------------------------------------------------------------------------------------ config


def test_config_finds_the_course_root_from_any_directory(monkeypatch, tmp_path):
    """Does nbgrader_config.py point at the repository root, wherever nbgrader is started?"""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LRDIFF_GRADEBOOK_URL", raising=False)
    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT / "autograder")).load_config()
    assert Path(cfg.CourseDirectory.root) == ROOT
    assert cfg.CourseDirectory.course_id == "lrdiff"
    assert cfg.CourseDirectory.db_url == f"sqlite:///{ROOT / 'autograder' / 'gradebook.db'}"
    assert cfg.OverwriteCells.add_missing_cells is True
    assert cfg.ExecutePreprocessor.timeout >= 60


def test_gradebook_url_comes_from_the_environment(monkeypatch):
    """Does LRDIFF_GRADEBOOK_URL choose the gradebook?"""
    monkeypatch.setenv("LRDIFF_GRADEBOOK_URL", "sqlite:////tmp/elsewhere.db")
    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT / "autograder")).load_config()
    assert cfg.CourseDirectory.db_url == "sqlite:////tmp/elsewhere.db"


def test_gradebook_is_git_ignored():
    """Are the gradebook and nbgrader's folders of student work ignored by git?"""
    proc = subprocess.run(
        ["git", "check-ignore", "autograder/gradebook.db", "submitted/a/lrdiff/x.ipynb", "autograded/a",
         "feedback/a", "grades.csv"], cwd=ROOT, capture_output=True, text=True,
    )
    assert len(proc.stdout.split()) == 5, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------------ collect


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_collect_from_folders_and_zips_leaves_the_originals_alone(course, tmp_path):
    """Are <student>/ folders (notebooks at any depth) and <student>.zip files copied, originals unchanged?"""
    inbox = tmp_path / "inbox"
    testing.write_submission(inbox, "alice", {"exercises": "{}", "quiz": "{}"})
    (inbox / "bob" / "lrdiff").mkdir(parents=True)
    (inbox / "bob" / "lrdiff" / "experiment.ipynb").write_text("{}")
    (inbox / "bob" / ".ipynb_checkpoints").mkdir()
    (inbox / "bob" / ".ipynb_checkpoints" / "quiz.ipynb").write_text("old")
    (inbox / "bob" / "notes.ipynb").write_text("{}")
    with zipfile.ZipFile(inbox / "carol.zip", "w") as zf:
        zf.writestr("hw/quiz.ipynb", "{}")
        zf.writestr("__MACOSX/hw/._quiz.ipynb", "junk")
    single = tmp_path / "dave.zip"
    with zipfile.ZipFile(single, "w") as zf:
        zf.writestr("exercises.ipynb", "{}")
    before = _tree(tmp_path / "inbox") | {"dave.zip": hashlib.sha256(single.read_bytes()).hexdigest()}

    found = pipeline.collect(course, [inbox, single])

    assert {f.student: sorted(f.notebooks) for f in found} == {
        "alice": ["exercises.ipynb", "quiz.ipynb"], "bob": ["experiment.ipynb"],
        "carol": ["quiz.ipynb"], "dave": ["exercises.ipynb"],
    }
    assert (course.submitted / "bob" / "lrdiff" / "experiment.ipynb").read_text() == "{}"
    assert not (course.submitted / "bob" / "lrdiff" / "quiz.ipynb").exists()
    assert any("notes.ipynb" in n for n in found[1].notes)
    assert _tree(tmp_path / "inbox") | {"dave.zip": hashlib.sha256(single.read_bytes()).hexdigest()} == before


def test_collect_again_replaces_the_earlier_copy(course, tmp_path):
    """Does a second collect of a student replace the first copy (no stale notebook left)?"""
    testing.write_submission(tmp_path / "one", "alice", {"exercises": "{}", "quiz": "{}"})
    testing.write_submission(tmp_path / "two", "alice", {"quiz": '{"new": 1}'})
    pipeline.collect(course, [tmp_path / "one"])
    pipeline.collect(course, [tmp_path / "two"])
    assert sorted(p.name for p in (course.submitted / "alice" / "lrdiff").iterdir()) == ["quiz.ipynb"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda t: t / "nowhere", "no such file or folder"),
        (lambda t: (t / "grades.txt").write_text("x") and t / "grades.txt", "not a folder or a .zip file"),
        (lambda t: (t / "eve.zip").write_bytes(b"not a zip") and t / "eve.zip", "not a readable zip file"),
        (lambda t: (t / "empty").mkdir() or t / "empty", "no <student>/ folder or <student>.zip file"),
        (lambda t: testing.write_submission(t / "in", "bad id!", {"quiz": "{}"}) and t / "in",
         "is not a usable student id"),
        (lambda t: testing.write_submission(t / "in", "frank", {"homework": "{}"}) and t / "in",
         "no notebook of lrdiff in it"),
    ],
)
def test_collect_rejects_bad_input_and_copies_nothing(course, tmp_path, make, message):
    """Does bad input give a clear error, before anything is copied?"""
    testing.write_submission(tmp_path / "good", "grace", {"quiz": "{}"})
    with pytest.raises(InputError, match=message):
        pipeline.collect(course, [tmp_path / "good", make(tmp_path)])
    assert not course.submitted.exists()


def test_collect_rejects_a_student_twice(course, tmp_path):
    """Is a student found in two inputs an error?"""
    testing.write_submission(tmp_path / "a", "heidi", {"quiz": "{}"})
    with zipfile.ZipFile(tmp_path / "heidi.zip", "w") as zf:
        zf.writestr("quiz.ipynb", "{}")
    with pytest.raises(InputError, match="heidi is in the input twice"):
        pipeline.collect(course, [tmp_path / "a", tmp_path / "heidi.zip"])


def test_cli_reports_bad_input_with_exit_status_2(course, tmp_path):
    """Does the command line print a clear error and exit 2 on bad input?"""
    proc = _cli(course.root, "collect", str(tmp_path / "missing"))
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "no such file or folder" in proc.stderr
    proc = _cli(course.root, "autograde")
    assert proc.returncode == 2 and "nothing to grade" in proc.stderr
    proc = _cli(course.root, "export", "--out", str(tmp_path / "g.csv"))
    assert proc.returncode == 2 and "has no assignment lrdiff" in proc.stderr
    proc = _cli(course.root, "feedback")
    assert proc.returncode == 2 and "run autograde first" in proc.stderr


# ------------------------------------------------------------------------------------------------ failures


def test_unreadable_notebooks_are_named_with_a_reason(tmp_path):
    """Does the pre-check name the notebook and the reason it cannot be read?"""
    bad = tmp_path / "quiz.ipynb"
    bad.write_text('{"cells": [')
    assert pipeline._notebook_problem(bad).startswith("quiz.ipynb is not valid notebook JSON")
    bad.write_text('{"cells": 3}')
    assert pipeline._notebook_problem(bad).startswith("quiz.ipynb is not a valid notebook")
    bad.write_bytes(b"\xff\xfe\x00")
    assert "not UTF-8" in pipeline._notebook_problem(bad)


def test_failure_reason_picks_the_error_line():
    """Is nbgrader's failure log turned into one line that says what went wrong?"""
    log = {"log": "[INFO] Sanitizing x\n[ERROR] There was an error processing assignment: /x\n"
                  "[ERROR] Traceback (most recent call last):\n  File ...\n"
                  "nbclient.exceptions.DeadKernelError: Kernel died\n"
                  "[ERROR] Please see the the above traceback for details on the specific errors on the above failures.",
           "error": "Traceback ...\nnbgrader.utils.NbGraderException: Please see the the above traceback"}
    assert pipeline._failure_reason(log) == "nbclient.exceptions.DeadKernelError: Kernel died"
