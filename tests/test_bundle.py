"""The students' bundle (``autograder.bundle.build_bundle``): everything a student needs, no solution, no hidden test.

What "no solution code" means here, line by line (a line is compared stripped, with runs of whitespace
collapsed, as a substring of every bundled file: its raw text and, for a notebook, every string of its JSON):

* **solution lines**: every line between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` in
  ``source/lrdiff/*.ipynb`` that is *distinctive*: not a comment, and holding a literal (a string or a number:
  ``q3 = "B"``, ``BACKBONE_LR = 1e-4``) or at least three different names, a dotted name counting once
  (``head_ids = {id(p) for p in head}``). Lines with fewer (``return groups``, ``lr = lr / decay``, ``]``,
  ``[model.layer1],``) are idioms any Python file may hold; they prove nothing either way.
* **hidden-test lines**: every line between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` that has a
  letter or a digit in it. The graded checks are now decided outside the student's kernel, and their hidden
  cases live in ``autograder/cases.py`` (gathered by ``autograder/checks.py``): no distinctive line of those
  files, no hidden case in the form the kernel would receive it, and no probe cell may be in the bundle either.
* Either kind is left out when it also stands in the *public* part of the source notebooks (everything outside
  those two regions, which nbgrader hands out by design): ``model = SmallResNet()`` in a hidden test is the
  same line as in the visible test above it.
* The course's lessons and helper package teach the same idioms the exercises ask for, so a few solution lines
  are in them on purpose; they are listed in ``SHARED_WITH_COURSE`` with the one file each may be in. The
  list is checked both ways (each entry is still a distinctive solution line, and still in that file), and
  none of those lines may be anywhere else, in particular not in a graded notebook or the README.

Quiz answers: every run of 16 hex digits (nbgrader-free answer digests, ``sha256(...).hexdigest()[:16]``) in
``source/lrdiff/quiz.ipynb`` and ``autograder/*.py``, and the first 16 digits of every longer run there, must be
in no bundled file; the helper package's published checksums (the checkpoint's and the digits' sha256) are
the only long hex strings allowed to be shared.
"""

from __future__ import annotations

import ast
import json
import keyword
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import NOTEBOOKS
from autograder.bundle import TOP, BundleError, build_bundle
from tests.support import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "source" / "lrdiff"

#: The bundle's exact layout under TOP/.
TOP_LEVEL = {"README.md", "course", "environment.yml", "pyproject.toml", "requirements-lock.txt",
             "assignment/", "notebooks/", "lrdiff_helpers/"}
#: Files of the repository root that the bundle carries unchanged.
ROOT_FILES_SAME = ("course", "environment.yml", "pyproject.toml", "requirements-lock.txt")
#: Solution lines that the course's own material holds on purpose, and the only bundled files they may be in.
#: Part B's answer (``finetune_param_groups``) is built the way ``lrdiff_helpers.experiment.backbone_head_groups``
#: is, which lesson 4 teaches; lesson 1 splits a ResNet into head and backbone the same way.
SHARED_WITH_COURSE = {
    "head = list(model.fc.parameters())": {"lrdiff_helpers/experiment.py", "notebooks/01_concept.ipynb"},
    "head_ids = {id(p) for p in head}": {"lrdiff_helpers/experiment.py"},
    "backbone = [p for p in model.parameters() if id(p) not in head_ids]": {"lrdiff_helpers/experiment.py"},
}
#: The grader's checks: ``autograder/checks.py`` and the modules it gathers (cases, comparisons, verdict).
CHECKS_MODULES = ("checks.py", "cases.py", "comparisons.py", "verdict.py")
#: Names that must never be a part of a bundled path.
FORBIDDEN_PARTS = {"source", "autograder", "tests", "submitted", "autograded", "feedback", "scripts", "benchmarks",
                   "release", ".git", ".venv", ".work", "__pycache__", ".ipynb_checkpoints", "gradebook.db",
                   "nbgrader_config.py", ".lrdiff-status.json", "lrdiff.egg-info"}

_REGION = re.compile(r"^[ \t]*### BEGIN (SOLUTION|HIDDEN TESTS)[ \t]*$(.*?)^[ \t]*### END \1[ \t]*$",
                     re.MULTILINE | re.DOTALL)
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'')
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\s*\.\s*[A-Za-z_]\w*)*")
_HEX = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{16,}(?![0-9a-fA-F])")


def _norm(text: str) -> str:
    return " ".join(text.split())


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, list):
        for x in obj:
            yield from _strings(x)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _strings(v)


def _distinctive(line: str) -> bool:
    """A solution line worth looking for: not a comment; a literal, or three or more different names."""
    if line.startswith(("#", "import ", "from ")):
        return False
    if _STRING.search(line):
        return True
    rest = _STRING.sub(" ", line)
    if any(n not in ("0", "1") for n in _NUMBER.findall(rest)):
        return True
    names = {re.sub(r"\s", "", n) for n in _DOTTED.findall(rest)} - set(keyword.kwlist)
    return len(names) >= 3


def _source_regions():
    """(solution lines, hidden-test lines, the public text) of the source notebooks; lines stripped."""
    solution, hidden, public = [], [], []
    for path in sorted(SOURCE.glob("*.ipynb")):
        for cell in nbformat.read(str(path), as_version=4).cells:
            for m in _REGION.finditer(cell.source):
                lines = [ln.strip() for ln in m.group(2).splitlines() if ln.strip()]
                (solution if m.group(1) == "SOLUTION" else hidden).extend((path.name, ln) for ln in lines)
            public.append(_REGION.sub("", cell.source))
    return solution, hidden, _norm("\n".join(public))


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("bundle") / "lrdiff-student.zip")


@pytest.fixture(scope="module")
def members(bundle) -> dict[str, bytes]:
    """Bundled files (not folders): path under TOP/ -> bytes."""
    with zipfile.ZipFile(bundle) as zf:
        return {i.filename[len(TOP) + 1:]: zf.read(i) for i in zf.infolist() if not i.is_dir()}


@pytest.fixture(scope="module")
def texts(members) -> dict[str, str]:
    """Bundled files as searchable text (whitespace collapsed): raw text, plus every JSON string of a notebook."""
    out = {}
    for name, data in members.items():
        text = data.decode("utf-8", errors="replace") if not name.endswith(".pt") else data.decode("latin-1")
        if name.endswith(".ipynb"):
            text += "\n" + "\n".join(_strings(json.loads(data)))
        out[name] = _norm(text)
    return out


def _where(line: str, texts: dict[str, str]) -> set[str]:
    needle = _norm(line)
    return {name for name, text in texts.items() if needle in text}


def _scratch_course(dst: Path) -> Path:
    """A copy of what the bundle is built from (and source/, which the release is checked against)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    for part in ("release", "source", "notebooks", "lrdiff_helpers"):
        shutil.copytree(ROOT / part, dst / part, ignore=ignore)
    for name in ("course", "environment.yml", "pyproject.toml", "requirements-lock.txt"):
        shutil.copy2(ROOT / name, dst / name)
    return dst


# ------------------------------------------------------------------------------------------------ layout


def test_layout_is_exact(bundle, members):
    """Is everything under one top folder, holding exactly the student's files, every notebook and lesson?"""
    with zipfile.ZipFile(bundle) as zf:
        names = zf.namelist()
    assert all(n == f"{TOP}/" or n.startswith(f"{TOP}/") for n in names), names
    top = {n[len(TOP) + 1:].split("/")[0] + ("/" if n[len(TOP) + 1:].count("/") else "")
           for n in names if n != f"{TOP}/"}
    assert top == TOP_LEVEL
    assert sorted(n for n in members if n.startswith("assignment/")) == sorted(
        f"assignment/{name}.ipynb" for name in NOTEBOOKS)
    assert sorted(n for n in members if n.startswith("notebooks/")) == sorted(
        f"notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.ipynb"))
    helpers = sorted(n for n in members if n.startswith("lrdiff_helpers/"))
    expected = sorted(f"lrdiff_helpers/{p.relative_to(ROOT / 'lrdiff_helpers').as_posix()}"
                      for p in (ROOT / "lrdiff_helpers").rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts and (p.suffix == ".py" or p.suffix == ".pt"))
    assert helpers == expected
    assert "lrdiff_helpers/weights/small_resnet_digits.pt" in helpers
    for name in ROOT_FILES_SAME:
        assert members[name] == (ROOT / name).read_bytes(), f"{name} is not the repository's"


def test_modes_timestamps_and_kinds(bundle):
    """Is course executable, every other file 0644 (folders 0755), every entry at 1980-01-01, none a link?"""
    with zipfile.ZipFile(bundle) as zf:
        for info in zf.infolist():
            mode = info.external_attr >> 16
            assert info.date_time == (1980, 1, 1, 0, 0, 0), info.filename
            if info.is_dir():
                assert mode == stat.S_IFDIR | 0o755, info.filename
            else:
                assert stat.S_ISREG(mode), info.filename
                want = 0o755 if info.filename == f"{TOP}/course" else 0o644
                assert stat.S_IMODE(mode) == want, (info.filename, oct(mode))


def test_no_instructor_file_by_name_or_content(members):
    """Is nothing of source/, autograder/, tests/ (nor grading state, git, the venv) in it, even renamed?"""
    for name in members:
        bad = set(name.split("/")) & FORBIDDEN_PARTS
        assert not bad, f"{name} must not be in the bundle"
        assert not name.endswith((".pyc", ".db", ".csv", ".log")), name
    contents = {data for data in members.values()}
    for folder in ("source", "autograder", "tests"):
        for path in (ROOT / folder).rglob("*"):
            if not path.is_file() or "__pycache__" in path.parts or path.stat().st_size == 0:
                continue
            assert path.read_bytes() not in contents, f"{path.relative_to(ROOT)} is in the bundle"


# ------------------------------------------------------------------------------------------------ no leaks


def test_no_solution_line(texts):
    """Is no distinctive line of a source solution in any bundled file (bar the reviewed shared idioms)?"""
    solution, _, public = _source_regions()
    lines = {line for _, line in solution if _distinctive(line) and _norm(line) not in public}
    assert len(lines) >= 30, f"only {len(lines)} distinctive solution lines: has the source changed form?"
    for line in SHARED_WITH_COURSE:
        assert line in lines, f"SHARED_WITH_COURSE lists {line!r}, no longer a distinctive solution line"
    leaks = {}
    for line in sorted(lines):
        found = _where(line, texts)
        allowed = SHARED_WITH_COURSE.get(line, set())
        if found - allowed:
            leaks[line] = sorted(found - allowed)
        if allowed:
            assert found == allowed, f"{line!r}: listed as in {sorted(allowed)}, found in {sorted(found)}"
    assert not leaks, "solution lines in the bundle:\n" + "\n".join(f"  {k!r}: {v}" for k, v in leaks.items())


def test_no_hidden_test_line(texts):
    """Is no line of a source ``### BEGIN HIDDEN TESTS`` block in any bundled file?

    The course now keeps its hidden cases in autograder/cases.py, so the source may have no such block; the
    next two tests cover those.
    """
    _, hidden, public = _source_regions()
    lines = {line for _, line in hidden if re.search(r"\w", line) and _norm(line) not in public}
    leaks = {line: sorted(_where(line, texts)) for line in sorted(lines) if _where(line, texts)}
    assert not leaks, "hidden-test lines in the bundle:\n" + "\n".join(f"  {k!r}: {v}" for k, v in leaks.items())


def test_no_line_of_the_grader_s_checks(texts):
    """Is no distinctive line of the grader's checks (autograder/checks.py and the modules it gathers: the hidden
    cases, the comparisons, the verdict) in any bundled file?"""
    _, _, public = _source_regions()
    lines = {ln.strip() for part in CHECKS_MODULES
             for ln in (ROOT / "autograder" / part).read_text(encoding="utf-8").splitlines()}
    lines = {ln for ln in lines if ln and _distinctive(ln) and _norm(ln) not in public}
    assert len(lines) >= 100, f"only {len(lines)} distinctive lines in {CHECKS_MODULES}: has it changed form?"
    leaks = {line: sorted(_where(line, texts)) for line in sorted(lines) if _where(line, texts)}
    assert not leaks, "lines of checks.py in the bundle:\n" + "\n".join(f"  {k!r}: {v}" for k, v in leaks.items())


def test_no_hidden_case_and_no_probe(texts):
    """Is no hidden case there as a kernel would get it, and no probe cell (a notebook prepared for grading)?"""
    from autograder import checks

    hidden = [case for check in checks.CHECKS.values() for case in check.cases if case.hidden]
    assert len(hidden) >= 10, f"only {len(hidden)} hidden cases in autograder/cases.py"
    for case in hidden:
        found = _where(json.dumps(case.for_kernel()), texts)
        assert not found, f"hidden case {case.for_kernel()} is in {sorted(found)}"
    for grade_id in checks.CHECKS:
        for line in checks.probe_source(grade_id).splitlines():
            if _distinctive(line.strip()):
                assert not _where(line.strip(), texts), f"the probe of {grade_id} is in {sorted(_where(line, texts))}"


def _published_checksums() -> set[str]:
    """The helper package's own sha256s (``DIGITS_SHA256``, each checkpoint's ``sha256=``), read without torch."""
    out = set()
    for name in ("data.py", "hub.py"):
        tree = ast.parse((ROOT / "lrdiff_helpers" / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "DIGITS_SHA256" for t in node.targets):
                out.add(ast.literal_eval(node.value).lower())
            elif isinstance(node, ast.keyword) and node.arg == "sha256" and isinstance(node.value, ast.Constant):
                out.add(node.value.value.lower())
    return out


def _answer_digests() -> set[str]:
    published = _published_checksums()
    assert len(published) >= 2, "the helpers' checksums were not found"
    files = [SOURCE / "quiz.ipynb", *sorted((ROOT / "autograder").glob("*.py"))]
    found = set()
    for path in files:
        for run in _HEX.findall(path.read_text(encoding="utf-8")):
            run = run.lower()
            if run in published:
                continue
            found |= {run, run[:16]}
    return found


def test_no_quiz_answer_digest(members):
    """Is no quiz answer digest (from the source quiz or autograder/*.py) in any bundled file?"""
    digests = _answer_digests()
    assert len(digests) >= 10, f"found {len(digests)} answer digests (one per quiz question expected)"
    for name, data in members.items():
        text = data.decode("latin-1").lower()
        hits = sorted(d for d in digests if d in text)
        assert not hits, f"{name} holds quiz answer digests {hits}"


def test_no_nbgrader_marker_anywhere(texts):
    """Is no nbgrader solution, hidden-test or mark-scheme marker left in any bundled file?"""
    for name, text in texts.items():
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "MARK SCHEME"):
            assert marker not in text, f"{name} contains {marker!r}"


# ------------------------------------------------------------------------------------------------ notebooks


def test_lessons_are_the_committed_ones(members):
    """Is each lesson byte for byte the committed notebook (outputs and all), and does it open with nbformat?"""
    lessons = sorted(n for n in members if n.startswith("notebooks/"))
    git = shutil.which("git") and (ROOT / ".git").exists()
    if git:
        tracked = subprocess.run(["git", "ls-files", "notebooks/*.ipynb"], cwd=ROOT, capture_output=True,
                                 text=True, check=True).stdout.split()
        assert lessons == sorted(tracked)
    for name in lessons:
        assert members[name] == (ROOT / name).read_bytes()
        if git:
            committed = subprocess.run(["git", "show", f"HEAD:{name}"], cwd=ROOT, capture_output=True, check=True)
            assert members[name] == committed.stdout, f"{name} differs from the committed one (uncommitted edits?)"
        nb = nbformat.reads(members[name].decode("utf-8"), as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "lrdiff"
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name} has no outputs"


def test_graded_notebooks_are_the_release_and_open(members):
    """Are the graded notebooks release/lrdiff/ as it is, valid, in the course's kernel, without outputs?"""
    for name in NOTEBOOKS:
        data = members[f"assignment/{name}.ipynb"]
        assert data == (ROOT / "release" / "lrdiff" / f"{name}.ipynb").read_bytes()
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "lrdiff"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None


def test_readme_tells_students_how_to_start(members):
    """Does the README say how to start, where the exercises are, and that grading checks more?"""
    readme = members["README.md"].decode("utf-8")
    assert "./course lab" in readme
    for name in NOTEBOOKS:
        assert f"assignment/{name}.ipynb" in readme
    assert "more checks than the ones you see" in readme


# ------------------------------------------------------------------------------------------------ it works


def _extract(bundle: Path, dst: Path) -> Path:
    """Unzip keeping the modes (zipfile does not)."""
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(dst)
        for info in zf.infolist():
            if not info.is_dir():
                os.chmod(dst / info.filename, stat.S_IMODE(info.external_attr >> 16))
    return dst / TOP


def test_course_lab_starts_jupyterlab_on_a_lesson_in_the_bundle(bundle, tmp_path):
    """Does ``./course lab`` in the unzipped bundle open lesson 1 (set-up done: a stand-in .venv)?"""
    top = _extract(bundle, tmp_path)
    assert os.access(top / "course", os.X_OK)
    venv = top / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text("#!/bin/sh\nexit 0\n")
    (venv / "jupyter").write_text(  # a stand-in that checks and prints what it is asked to open
        '#!/bin/sh\nfor a; do last=$a; done\n[ -f "$last" ] || { echo "missing: $last"; exit 3; }\n'
        'echo "jupyter $*"\n')
    for exe in ("python", "jupyter"):
        (venv / exe).chmod(0o755)
    stamp = subprocess.run("cat requirements-lock.txt pyproject.toml | sha256sum | cut -d' ' -f1", shell=True,
                           cwd=top, capture_output=True, text=True, check=True).stdout
    (top / ".venv" / ".lrdiff-setup").write_text(stamp)
    run = subprocess.run([str(top / "course"), "lab"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"--ServerApp.root_dir={top}" in run.stdout and run.stdout.rstrip().endswith("notebooks/01_concept.ipynb")


def test_pyproject_builds_from_the_bundle(bundle, tmp_path):
    """Does pip build the package from the bundle alone (README.md, lrdiff_helpers, the weights)?"""
    try:
        import setuptools  # noqa: F401 (pip builds the package with it, without build isolation)
    except ImportError:
        skip_or_fail("pip needs setuptools to build the package without build isolation")
    top = _extract(bundle, tmp_path / "x")
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", "-w", str(tmp_path / "wheel"), str(top)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert {"lrdiff_helpers/__init__.py", "lrdiff_helpers/weights/small_resnet_digits.pt"} <= names


# ------------------------------------------------------------------------------------------------ deterministic


def test_same_tree_same_bytes(bundle, tmp_path):
    """Built again, and from a copy elsewhere with other timestamps: are the bytes the very same?"""
    again = build_bundle(tmp_path / "again.zip")
    assert again.read_bytes() == bundle.read_bytes()
    copy = _scratch_course(tmp_path / "copy")
    for path in copy.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    assert build_bundle(tmp_path / "copy.zip", root=copy).read_bytes() == bundle.read_bytes()


def test_out_may_be_a_folder(tmp_path):
    """Given a folder, does it write lrdiff-student.zip in it?"""
    assert build_bundle(tmp_path) == tmp_path / "lrdiff-student.zip"


# ------------------------------------------------------------------------------------------------ refusals


def _edit_release(course: Path, name: str, edit) -> None:
    path = course / "release" / "lrdiff" / f"{name}.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    edit(nb)
    nbformat.write(nb, str(path))


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)


def _solution_marker(nb):
    _cell(nb, "two_group_sgd").source += "\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION"


def _hidden_tests(nb):
    _cell(nb, "two_group_sgd_lrs").source += "\n### BEGIN HIDDEN TESTS\nassert True\n### END HIDDEN TESTS"


def _outputs(nb):
    cell = _cell(nb, "two_group_sgd_lrs")
    cell.execution_count = 3
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ok\n")]


def _solution_pasted(nb):  # a release made without clearing solutions, markers and all removed
    src = nbformat.read(str(SOURCE / "exercises.ipynb"), as_version=4)
    body = _cell(src, "one_cycle_for_groups").source
    _cell(nb, "one_cycle_for_groups").source = re.sub(r"^\s*### (BEGIN|END) SOLUTION\n?", "", body, flags=re.M)


def _test_cell_changed(nb):  # the source's tests moved on; this release did not
    cell = _cell(nb, "two_group_sgd_momentum")
    cell.source = cell.source.replace("momentum=0.9", "momentum=0.8")


def _quiz_answer_kept(nb):
    _cell(nb, "q1").source = 'q1 = "C"'


REFUSALS = {
    "solution marker": (_solution_marker, "BEGIN SOLUTION"),
    "hidden tests marker": (_hidden_tests, "BEGIN HIDDEN TESTS"),
    "outputs": (_outputs, "has outputs"),
    "solution without markers": (_solution_pasted, "stale"),
    "stale test cell": (_test_cell_changed, "stale"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refuses_an_unsafe_or_stale_release(case, tmp_path):
    """Does a release with a marker, outputs, a pasted solution or an old test cell stop the build, writing nothing?"""
    edit, message = REFUSALS[case]
    course = _scratch_course(tmp_path / "course")
    _edit_release(course, "exercises", edit)
    out = tmp_path / "out.zip"
    with pytest.raises(BundleError, match=re.escape(message)):
        build_bundle(out, root=course)
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_refuses_a_quiz_answer_left_in_the_release(tmp_path):
    """Does a quiz answer left in a release answer cell (no markers) stop the build?"""
    course = _scratch_course(tmp_path / "course")
    _edit_release(course, "quiz", _quiz_answer_kept)
    with pytest.raises(BundleError, match="stale"):
        build_bundle(tmp_path / "out.zip", root=course)


def test_refuses_a_missing_release_notebook_and_a_linked_helper(tmp_path):
    """Do a missing release notebook, and a helper that is a symlink (to the source), stop the build?"""
    course = _scratch_course(tmp_path / "course")
    (course / "release" / "lrdiff" / "quiz.ipynb").unlink()
    with pytest.raises(BundleError, match="quiz.ipynb is missing"):
        build_bundle(tmp_path / "out.zip", root=course)
    shutil.copy2(ROOT / "release" / "lrdiff" / "quiz.ipynb", course / "release" / "lrdiff" / "quiz.ipynb")
    (course / "lrdiff_helpers" / "answers.py").symlink_to(course / "source" / "lrdiff" / "quiz.ipynb")
    with pytest.raises(BundleError, match="symlink"):
        build_bundle(tmp_path / "out.zip", root=course)


def test_refuses_a_marker_in_a_bundled_helper(tmp_path):
    """Does an nbgrader marker in any bundled file (here a helper module) stop the build?"""
    course = _scratch_course(tmp_path / "course")
    with open(course / "lrdiff_helpers" / "train.py", "a") as f:
        f.write("\n# ### BEGIN HIDDEN TESTS\n")
    with pytest.raises(BundleError, match="train.py contains"):
        build_bundle(tmp_path / "out.zip", root=course)
