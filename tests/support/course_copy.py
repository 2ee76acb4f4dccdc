"""A scratch copy of the course, and submissions made from the release.

A submission is what a student hands in: the *release* notebook with answer cells filled in. The tests
(``tests/test_autograder_*.py``) and the benchmark (``benchmarks/autograde_speed.py``) build them here, from
the committed ``release/lrdiff`` and answer code (the source's solutions, or the wrong variants in
``tests/fixtures/submissions/variants.py``), so that they follow the release as it changes.
"""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import nbformat

from autograder import ASSIGNMENT, NOTEBOOKS, ROOT

__all__ = [
    "COURSE_PARTS", "ROOT", "blank_submission", "copy_course", "full_submission", "grade_id", "read", "solutions",
    "submission", "write_submission",
]

_SOLUTION = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)

#: Folders of the course that grading needs (the rest of the repository is left out of a copy).
COURSE_PARTS = ("source", "release", "autograder")


def copy_course(dst: Path, root: Path = ROOT) -> Path:
    """Copy what grading needs (``source/``, ``release/``, ``autograder/``) into ``dst``; no gradebook, no state."""
    dst = Path(dst)
    for part in COURSE_PARTS:
        shutil.copytree(
            root / part, dst / part,
            ignore=shutil.ignore_patterns("gradebook.db*", "__pycache__", ".nbgrader.log", "*.pyc"),
        )
    return dst


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def solutions(notebook: str, root: Path = ROOT) -> dict[str, str]:
    """The source's answer cells of ``notebook``, as a student would write them: grade id -> code."""
    nb = read(root / "source" / ASSIGNMENT / f"{notebook}.ipynb")
    out = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and not meta.get("grade"):
            out[meta["grade_id"]] = _SOLUTION.sub("", cell.source).rstrip("\n")
    return out


def submission(
    notebook: str,
    answers: Mapping[str, str] | None = None,
    *,
    edit: Mapping[str, str] | None = None,
    delete: tuple[str, ...] = (),
    transform: Callable[[nbformat.NotebookNode], None] | None = None,
    root: Path = ROOT,
) -> nbformat.NotebookNode:
    """A student's ``notebook``: the release with ``answers`` (grade id -> code) in its answer cells.

    Args:
        notebook: ``"exercises"``, ``"quiz"`` or ``"experiment"``.
        answers: code for answer cells; ``None`` fills in the source's solutions, ``{}`` leaves the stubs.
        edit: grade id -> new source, for *test* cells (a student who rewrites a test).
        delete: grade ids of cells to delete.
        transform: a last change to the notebook, in place.
    """
    nb = copy.deepcopy(read(root / "release" / ASSIGNMENT / f"{notebook}.ipynb"))
    if answers is None:
        answers = solutions(notebook, root)
    known = {grade_id(c) for c in nb.cells}
    unknown = (set(answers) | set(edit or {}) | set(delete)) - known
    if unknown:
        raise KeyError(f"{notebook}.ipynb has no cells {sorted(unknown)}")
    for cell in nb.cells:
        gid = grade_id(cell)
        if gid in answers:
            cell.source = answers[gid]
        if edit and gid in edit:
            cell.source = edit[gid]
    nb.cells = [c for c in nb.cells if grade_id(c) not in delete]
    if transform is not None:
        transform(nb)
    return nb


def write_submission(folder: Path, student: str, notebooks: Mapping[str, nbformat.NotebookNode | str | bytes]) -> Path:
    """Write ``folder/<student>/<name>.ipynb`` for each notebook (a notebook, or raw text/bytes as is)."""
    dest = Path(folder) / student
    dest.mkdir(parents=True, exist_ok=True)
    for name, nb in notebooks.items():
        path = dest / f"{name}.ipynb"
        if isinstance(nb, bytes):
            path.write_bytes(nb)
        elif isinstance(nb, str):
            path.write_text(nb)
        else:
            nbformat.write(nb, str(path))
    return dest


def full_submission(**kwargs) -> dict[str, nbformat.NotebookNode]:
    """The three notebooks with the source's solutions."""
    return {name: submission(name, **kwargs) for name in NOTEBOOKS}


def blank_submission(**kwargs) -> dict[str, nbformat.NotebookNode]:
    """The three release notebooks as they are."""
    return {name: submission(name, {}, **kwargs) for name in NOTEBOOKS}
