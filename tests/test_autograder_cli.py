"""The grading pipeline's configuration, collect step and error handling (fast: no notebook is executed)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest
from traitlets.config.loader import PyFileConfigLoader

from tests import support
from autograder import autograde as grading_run
from autograder import collect as collecting
from autograder.apps import failure_reason
from autograder.course import STATUS_FILE, Course, InputError

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    return {**support.grader_env(), **extra}


@pytest.fixture()
def course(tmp_path) -> Course:
    return Course(support.copy_course(tmp_path / "course"))


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
    support.write_submission(inbox, "alice", {"exercises": "{}", "quiz": "{}"})
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

    found = collecting.collect(course, [inbox, single])

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
    support.write_submission(tmp_path / "one", "alice", {"exercises": "{}", "quiz": "{}"})
    support.write_submission(tmp_path / "two", "alice", {"quiz": '{"new": 1}'})
    collecting.collect(course, [tmp_path / "one"])
    collecting.collect(course, [tmp_path / "two"])
    assert sorted(p.name for p in (course.submitted / "alice" / "lrdiff").iterdir()) == ["quiz.ipynb"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda t: t / "nowhere", "no such file or folder"),
        (lambda t: (t / "grades.txt").write_text("x") and t / "grades.txt", "not a folder or a .zip file"),
        (lambda t: (t / "eve.zip").write_bytes(b"not a zip") and t / "eve.zip", "not a readable zip file"),
        (lambda t: (t / "empty").mkdir() or t / "empty", "no <student>/ folder or <student>.zip file"),
        (lambda t: support.write_submission(t / "in", "bad id!", {"quiz": "{}"}) and t / "in",
         "is not a usable student id"),
        (lambda t: (t / "in" / "frank").mkdir(parents=True) or (t / "in" / "frank" / "notes.txt").write_text("x")
         and t / "in", "no notebook of lrdiff in it"),
    ],
)
def test_collect_rejects_bad_input_and_copies_nothing(course, tmp_path, make, message):
    """Does bad input give a clear error, before anything is copied?"""
    support.write_submission(tmp_path / "good", "grace", {"quiz": "{}"})
    with pytest.raises(InputError, match=message):
        collecting.collect(course, [tmp_path / "good", make(tmp_path)])
    assert not course.submitted.exists()


def test_collect_rejects_a_student_twice(course, tmp_path):
    """Is a student found in two inputs an error?"""
    support.write_submission(tmp_path / "a", "heidi", {"quiz": "{}"})
    with zipfile.ZipFile(tmp_path / "heidi.zip", "w") as zf:
        zf.writestr("quiz.ipynb", "{}")
    with pytest.raises(InputError, match="heidi is in the input twice"):
        collecting.collect(course, [tmp_path / "a", tmp_path / "heidi.zip"])


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
    assert grading_run.notebook_problem(bad).startswith("quiz.ipynb is not valid notebook JSON")
    bad.write_text('{"cells": 3}')
    assert grading_run.notebook_problem(bad).startswith("quiz.ipynb is not a valid notebook")
    bad.write_bytes(b"\xff\xfe\x00")
    assert "not UTF-8" in grading_run.notebook_problem(bad)


def test_failure_reason_picks_the_error_line():
    """Is nbgrader's failure log turned into one line that says what went wrong?"""
    log = {"log": "[INFO] Sanitizing x\n[ERROR] There was an error processing assignment: /x\n"
                  "[ERROR] Traceback (most recent call last):\n  File ...\n"
                  "nbclient.exceptions.DeadKernelError: Kernel died\n"
                  "[ERROR] Please see the the above traceback for details on the specific errors on the above failures.",
           "error": "Traceback ...\nnbgrader.utils.NbGraderException: Please see the the above traceback"}
    assert failure_reason(log) == "nbclient.exceptions.DeadKernelError: Kernel died"


# ------------------------------------------------------------------------------------------------ symbolic links,
# renamed and extra notebooks (collect and the checks autograde makes before it runs anything)

STEAL = "../../source/lrdiff/exercises.ipynb"  # from inbox/<student>/ of a course copy: the instructor's solution


def _inbox_with_links(tmp_path: Path, course: Course) -> Path:
    inbox = tmp_path / "inbox"
    support.write_submission(inbox, "linker", {"quiz": "{}"})
    os.symlink(STEAL, inbox / "linker" / "exercises.ipynb")
    os.symlink("/etc/passwd", inbox / "linker" / "experiment.ipynb")
    os.symlink(str(course.root / "source" / "lrdiff"), inbox / "linker" / "more")  # a linked folder
    (inbox / "source" / "lrdiff").mkdir(parents=True)  # what STEAL points to, from inbox/linker/
    (inbox / "source" / "lrdiff" / "exercises.ipynb").write_text('{"secret": 1}')
    with zipfile.ZipFile(inbox / "zipper.zip", "w") as zf:
        zf.writestr("hw/quiz.ipynb", "{}")
        link = zipfile.ZipInfo("hw/exercises.ipynb")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    return inbox


def test_collect_never_follows_a_symbolic_link(course, tmp_path):
    """Is a notebook that is a symbolic link (in a folder or a zip) recorded but never read or copied?"""
    found = {f.student: f for f in collecting.collect(course, [_inbox_with_links(tmp_path, course)])}
    linker, zipper = found["linker"], found["zipper"]
    assert sorted(linker.notebooks) == ["quiz.ipynb"] and sorted(zipper.notebooks) == ["quiz.ipynb"]
    assert linker.symlinks == {"exercises.ipynb": {"path": "exercises.ipynb", "target": STEAL},
                               "experiment.ipynb": {"path": "experiment.ipynb", "target": "/etc/passwd"}}
    assert zipper.symlinks == {"exercises.ipynb": {"path": "hw/exercises.ipynb", "target": "/etc/passwd"}}
    assert any("more/" in n and "not followed" in n for n in linker.notes)
    copied = {p.name: p.read_bytes() for p in (course.submitted / "linker" / "lrdiff").iterdir()}
    assert list(copied) == ["quiz.ipynb"]  # nothing behind a link, no link
    recorded = json.loads((course.submitted / "linker" / collecting.COLLECT_FILE).read_text())
    assert recorded["symlinks"] == linker.symlinks


def test_a_linked_notebook_fails_to_grade_with_the_reason(course, tmp_path):
    """Is a student whose notebook was a symbolic link "failed to grade", named, before anything runs?"""
    collecting.collect(course, [_inbox_with_links(tmp_path, course)])
    problem, _ = grading_run.precheck(course, "linker")
    assert problem.startswith(f"exercises.ipynb is a symbolic link (to '{STEAL}'); it was not read")
    assert "experiment.ipynb is a symbolic link (to '/etc/passwd')" in problem
    problem, _ = grading_run.precheck(course, "zipper")
    assert problem.startswith("hw/exercises.ipynb is a symbolic link (to '/etc/passwd')")


def test_a_link_put_in_submitted_by_hand_fails_to_grade(course, tmp_path):
    """Is a symbolic link copied by hand into submitted/<student>/lrdiff/ (any name) never read?"""
    support.write_submission(tmp_path / "in", "hand", {"quiz": support.submission("quiz", {})})
    collecting.collect(course, [tmp_path / "in"])
    folder = course.submitted / "hand" / "lrdiff"
    os.symlink("/etc/passwd", folder / "exercises.ipynb")
    assert grading_run.precheck(course, "hand")[0] == (
        "exercises.ipynb is a symbolic link (to '/etc/passwd'); it was not read")
    (folder / "exercises.ipynb").unlink()
    os.symlink("/etc", folder / "data")  # nbgrader would copy what is behind it into autograded/
    assert grading_run.precheck(course, "hand")[0] == "data is a symbolic link (to '/etc'); it was not read"
    (folder / "data").unlink()
    assert grading_run.precheck(course, "hand") == (
        None, ["no exercises.ipynb (scored 0)", "no experiment.ipynb (scored 0)"])


def test_renamed_notebook_fails_to_grade_and_says_what_to_do(course, tmp_path):
    """Is a missing notebook beside one that is not the assignment's reported as renamed, not scored 0?"""
    quiz = support.submission("quiz", {})
    support.write_submission(tmp_path / "in", "renamer", {"quiz": quiz, "Exercises (1)": quiz, "experiment": quiz})
    found = collecting.collect(course, [tmp_path / "in"])
    assert (course.submitted / "renamer" / "lrdiff" / "Exercises (1).ipynb").is_file()  # copied, for autograde
    reason = "no exercises.ipynb; the submission has 'Exercises (1).ipynb' (rename it and collect again)"
    assert f"will fail to grade: {reason}" in found[0].notes
    assert grading_run.precheck(course, "renamer") == (reason, [])


def test_a_stray_notebook_of_another_name_is_not_taken_for_a_renamed_one(course, tmp_path):
    """Is a scratch notebook beside a submission that lacks one notebook a note, with the missing one 0?"""
    support.write_submission(tmp_path / "in", "partial", {"quiz": support.submission("quiz", {}), "scratch": "{}"})
    collecting.collect(course, [tmp_path / "in"])
    assert grading_run.precheck(course, "partial") == (None, [
        "no exercises.ipynb (scored 0)", "no experiment.ipynb (scored 0)",
        "scratch.ipynb is not a notebook of lrdiff: not graded"])
    assert [collecting.stem_of(n) for n in ("Quiz (1).ipynb", "quiz-Copy1.ipynb", "QUIZ copy.ipynb", "quiz_2.ipynb")] \
        == ["quiz"] * 4


def test_extra_notebook_is_graded_with_a_note(course, tmp_path):
    """Is an extra notebook, with none of the assignment's missing, left out of grading with a note?"""
    subs = {name: support.submission(name, {}) for name in ("exercises", "quiz", "experiment")}
    support.write_submission(tmp_path / "in", "extra", {**subs, "scratch": "not even JSON"})
    collecting.collect(course, [tmp_path / "in"])
    assert grading_run.precheck(course, "extra") == (None, ["scratch.ipynb is not a notebook of lrdiff: not graded"])


def test_only_a_renamed_notebook_is_collected_not_refused(course, tmp_path):
    """Does a student who renamed every notebook stay in the batch (failed to grade later), not stop collect?"""
    support.write_submission(tmp_path / "in", "frank", {"homework": "{}"})
    support.write_submission(tmp_path / "in", "grace", {"quiz": "{}"})
    assert sorted(f.student for f in collecting.collect(course, [tmp_path / "in"])) == ["frank", "grace"]
    assert grading_run.precheck(course, "frank")[0].startswith("no exercises.ipynb, quiz.ipynb, experiment.ipynb; "
                                                             "the submission has 'homework.ipynb'")


def test_collect_again_forgets_a_recorded_link(course, tmp_path):
    """Does collecting a fixed submission clear the record of a linked notebook?"""
    collecting.collect(course, [_inbox_with_links(tmp_path, course)])
    support.write_submission(tmp_path / "fixed", "linker", {"quiz": "{}"})
    collecting.collect(course, [tmp_path / "fixed"])
    assert not (course.submitted / "linker" / collecting.COLLECT_FILE).exists()
    assert grading_run.precheck(course, "linker")[0].startswith("quiz.ipynb is not a valid notebook")


# ------------------------------------------------------------------------------------------------ CLI: jobs, bundle


def test_cli_rejects_a_bad_jobs_count(course):
    """Are --jobs 0 and --time-limit 0 refused before anything runs?"""
    for args in (["autograde", "--jobs", "0"], ["autograde", "--time-limit", "0"], ["all", "x", "--jobs", "-1"]):
        proc = _cli(course.root, *args)
        assert proc.returncode == 2 and "must be" in proc.stderr, proc.stderr


def test_cli_autograde_reports_each_student_as_it_finishes(course, tmp_path):
    """Does `autograde --jobs 2` print a numbered line per student and exit 1 when some failed to grade?
    (Both students fail the checks made before grading, so no notebook runs.)"""
    support.write_submission(tmp_path / "in", "renamer", {"exercises": "{}", "Quiz (1)": "{}"})
    support.write_submission(tmp_path / "in", "linker", {"exercises": "{}"})
    os.symlink("/etc/passwd", tmp_path / "in" / "linker" / "quiz.ipynb")
    assert _cli(course.root, "collect", str(tmp_path / "in")).returncode == 0
    proc = _cli(course.root, "autograde", "--jobs", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "autograde: 2 submission(s), 2 at a time" in out
    assert "[1/2] " in out and "[2/2] " in out
    assert "linker: failed to grade: quiz.ipynb is a symbolic link (to '/etc/passwd')" in out
    assert "renamer: failed to grade: no quiz.ipynb; the submission has 'Quiz (1).ipynb'" in out
    status = json.loads((course.root / STATUS_FILE).read_text())
    assert set(status) == {"linker", "renamer"}


def test_cli_bundle_calls_build_bundle(monkeypatch, tmp_path, capsys):
    """Does `bundle --out PATH` hand PATH (and the course root) to autograder.bundle.build_bundle?"""
    import autograder
    from autograder.__main__ import main

    calls = []

    def fake(out, root):
        calls.append((Path(out), Path(root)))
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(b"zip")
        return Path(out)

    fake_module = types.SimpleNamespace(build_bundle=fake, BundleError=RuntimeError)
    monkeypatch.setitem(sys.modules, "autograder.bundle", fake_module)
    monkeypatch.setattr(autograder, "bundle", fake_module, raising=False)
    assert main(["--root", str(tmp_path), "bundle", "--out", str(tmp_path / "b.zip")]) == 0
    assert calls == [(tmp_path / "b.zip", tmp_path.resolve())]
    assert f"bundle: wrote {tmp_path / 'b.zip'}" in capsys.readouterr().out
    calls.clear()
    assert main(["--root", str(tmp_path), "bundle"]) == 0  # the default: dist/lrdiff-student.zip of the course
    assert calls == [(tmp_path.resolve() / "dist" / "lrdiff-student.zip", tmp_path.resolve())]


def test_cli_bundle_writes_the_zip(tmp_path):
    """Does `python -m autograder bundle --out PATH` write the students' zip and say where?"""
    out = tmp_path / "student.zip"
    proc = _cli(ROOT, "bundle", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"bundle: wrote {out}" in proc.stdout
    assert zipfile.is_zipfile(out)
