"""The students' bundle: one zip with everything a student needs and nothing an instructor keeps.

``build_bundle(out)`` writes ``out`` (a ``.zip``), whose single top folder ``lrdiff/`` holds:

    README.md                 for students, generated here (how to start, where the exercises are)
    course                    the entry point (``./course lab``), executable
    environment.yml, pyproject.toml, requirements-lock.txt    the environment
    assignment/*.ipynb        the graded notebooks, exactly as committed in release/lrdiff/
    notebooks/*.ipynb         the lessons, exactly as committed (with their outputs)
    lrdiff_helpers/           the package: its .py files and package data (weights/*.pt), no caches

Everything else of the repository (``source/``, ``autograder/``, ``tests/``, ``scripts/``, ``benchmarks/``,
``submitted/``, ``autograded/``, ``feedback/``, the gradebook, ``.git``, ``.venv``, ...) is left out, because
the bundle is built from the list above, never by copying the tree and excluding things.

The bundle is refused (:class:`BundleError`, nothing written) when the release is unsafe or stale:

* a release notebook holds a solution, hidden-test or mark-scheme marker, an output or an execution count;
* a release notebook is missing, or is not valid nbformat;
* the release does not match the source: the cells, their nbgrader ids, or the text that nbgrader keeps
  (everything outside the solution and hidden-test regions) differ. Run ``./course grade release`` (and
  commit ``release/``) after editing ``source/``;
* any file of the bundle contains one of those markers, or a symlink would be bundled.

The zip is deterministic: entries sorted by name, every timestamp 1980-01-01 00:00, modes normalized as
git does (0755 for a file with any executable bit, else 0644; 0755 for folders), fixed compression. The same
tree gives the same bytes, on any machine and at any time.
"""

from __future__ import annotations

import copy
import io
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import ASSIGNMENT, NOTEBOOKS, ROOT
from .files import write_atomic

__all__ = ["BundleError", "TOP", "bundle_files", "build_bundle", "check_release", "student_readme"]

#: The bundle's top folder.
TOP = "lrdiff"
#: The folder (inside TOP) of the graded notebooks.
ASSIGNMENT_DIR = "assignment"
#: Files of the repository root that the bundle carries as they are.
ROOT_FILES = ("course", "environment.yml", "pyproject.toml", "requirements-lock.txt")
#: Package data of lrdiff_helpers when pyproject.toml cannot be read (it says the same).
DEFAULT_PACKAGE_DATA = ("weights/*.pt",)

#: nbgrader's markers: none may reach a student.
MARKERS = (
    "### BEGIN SOLUTION",
    "### END SOLUTION",
    "### BEGIN HIDDEN TESTS",
    "### END HIDDEN TESTS",
    "=== BEGIN MARK SCHEME ===",
    "=== END MARK SCHEME ===",
)
#: What nbgrader writes in place of a solution (ClearSolutions' code and text stubs).
STUB_LINES = ("# YOUR CODE HERE", "raise NotImplementedError()", "YOUR ANSWER HERE")

_DATE = (1980, 1, 1, 0, 0, 0)


class BundleError(RuntimeError):
    """The bundle cannot be built safely; the message says why and what to do."""


@dataclass(frozen=True)
class _Entry:
    arcname: str  # path inside the zip, under TOP/
    path: Path | None  # file on disk, or None for generated content
    data: bytes | None = None  # generated content


# ------------------------------------------------------------------------------------------------ the release


def _as_released(src_nb, src: Path):
    """The source notebook as nbgrader's ``generate_assignment`` clears it: its own ``ClearSolutions`` (solutions
    become stubs) and ``ClearHiddenTests``, on a copy."""
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    nb = copy.deepcopy(src_nb)
    try:
        for clear in (ClearSolutions(enforce_metadata=False), ClearHiddenTests(enforce_metadata=False)):
            nb, _ = clear.preprocess(nb, {})
    except RuntimeError as exc:  # a region opened and never closed, or nested: nbgrader could not release it
        raise BundleError(f"{src} cannot be released by nbgrader ({exc}); fix its markers") from None
    return nb


def _without_stubs(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip() not in STUB_LINES]


def _trim(lines: list[str]) -> list[str]:
    while lines and not lines[-1]:
        lines = lines[:-1]
    return lines


def _read_notebook(path: Path):
    import nbformat

    try:
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # noqa: BLE001 - any reason makes it unusable
        raise BundleError(f"{path} is not a valid notebook ({type(exc).__name__}: {exc})") from None
    return nb


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def check_release(root: Path = ROOT) -> list[Path]:
    """Check that release/ is safe to hand out and generated from the current source/; return its notebooks.

    Raises:
        BundleError: what is wrong, which notebook and cell, and what to run.
    """
    root = Path(root)
    release, source = root / "release" / ASSIGNMENT, root / "source" / ASSIGNMENT
    regenerate = "run `./course grade release` (then commit release/)"
    paths = []
    for name in NOTEBOOKS:
        rel, src = release / f"{name}.ipynb", source / f"{name}.ipynb"
        if not rel.is_file() or rel.is_symlink():
            raise BundleError(f"{rel} is missing (or not a plain file); {regenerate}")
        text = rel.read_text(encoding="utf-8")
        for marker in MARKERS:
            if marker in text:
                raise BundleError(
                    f"{rel} contains {marker!r}: it holds solutions or hidden tests and must not reach students; "
                    f"{regenerate}"
                )
        nb = _read_notebook(rel)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
                where = _grade_id(cell) or f"cell {i}"
                raise BundleError(
                    f"{rel} has outputs ({where}): it was executed (perhaps with solutions in it); {regenerate}"
                )
        if not src.is_file():
            raise BundleError(f"{src} is missing: the release cannot be checked against it")
        _check_generated_from(_read_notebook(src), nb, rel, src, regenerate)
        paths.append(rel)
    extra = sorted(p.name for p in release.glob("*.ipynb") if p.stem not in NOTEBOOKS)
    if extra:
        raise BundleError(f"{release} has notebooks that are not part of the assignment: {extra}; remove them")
    return paths


def _check_generated_from(src_nb, rel_nb, rel: Path, src: Path, regenerate: str) -> None:
    """Is the release what nbgrader makes of the source (same cells, same kept text)?"""
    ids = ([_grade_id(c) for c in src_nb.cells], [_grade_id(c) for c in rel_nb.cells])
    if ids[0] != ids[1] or len(src_nb.cells) != len(rel_nb.cells):
        raise BundleError(f"{rel} is stale: its cells differ from {src}'s; {regenerate}")
    for i, (s, kept, r) in enumerate(zip(src_nb.cells, _as_released(src_nb, src).cells, rel_nb.cells)):
        where = _grade_id(s) or f"cell {i}"
        if s.cell_type != r.cell_type:
            raise BundleError(f"{rel} is stale: {where} is a {r.cell_type} cell, {s.cell_type} in {src}; {regenerate}")
        expected = _trim(_without_stubs(kept.source))
        if expected != _trim(_without_stubs(r.source)):
            # a solution cell without markers: nbgrader replaces it entirely by a stub, nothing of it may remain
            what = "should hold only the stub" if not expected else f"differs from {src}"
            raise BundleError(f"{rel} is stale: {where} {what}; {regenerate}")


# ------------------------------------------------------------------------------------------------ the README


def _title(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def _points(nb) -> float:
    return sum(c.get("metadata", {}).get("nbgrader", {}).get("points", 0) or 0 for c in nb.cells
               if c.get("metadata", {}).get("nbgrader", {}).get("grade"))


#: The bundle's README.md; ``student_readme`` fills in the lessons, the graded notebooks and their folder.
STUDENT_README = """\
# lrdiff: learning-rate differentials in PyTorch (student copy)

A short course on giving different parts of a PyTorch model different learning rates (optimizer param
groups): lessons to read and run, then graded exercises.

## Start

On Linux or macOS, with Python 3.10-3.13 on the PATH, in this folder:

```bash
./course lab
```

The first time, this makes a virtual environment in `.venv/` with the exact versions of
`requirements-lock.txt` (it downloads PyTorch once: a few minutes) and a Jupyter kernel named
**Python (lrdiff)**, then opens JupyterLab on the first lesson. Afterwards it starts in seconds. Nothing
downloads data or weights while you work; everything runs on a CPU.

With conda instead: `conda env create -f environment.yml`, `conda activate lrdiff`,
`python -m ipykernel install --user --name lrdiff --display-name "Python (lrdiff)"`, then `jupyter lab`.

## The lessons

{lessons}

## The graded exercises

In `{folder}/`:

{graded}

How to work on them, and how they are graded:

- Replace each `# YOUR CODE HERE` / `raise NotImplementedError()` with your answer. Keep the function names,
  their arguments and the notebook names.
- Leave the test cells as they are: a test cell that is edited or deleted is put back before grading.
- The visible tests are a first check, not the grade. Grading runs more checks than the ones you see (other
  models, sizes and values; the quiz's visible tests only check that you chose one of the offered letters),
  so passing every visible test does not guarantee full marks. Read each docstring: it is the specification.
- Before handing in: *Kernel > Restart Kernel and Run All Cells*, or nbgrader's **Validate** button, so that
  the notebook runs from top to bottom.
- Hand in the {count} notebooks of `{folder}/` as your instructor tells you (a folder or a zip
  named with your student id).

## What is here

- `notebooks/`: the lessons, with their outputs.
- `{folder}/`: the graded notebooks.
- `lrdiff_helpers/`: the small package that the notebooks import (data, models, param-group tools, training).
- `course`, `pyproject.toml`, `requirements-lock.txt`, `environment.yml`: the environment. `./course lab`
  (or `./course setup`, which only sets up) is all you need; `./course test` and `./course grade` are the
  instructor's and need files that are not in this copy.
"""


def student_readme(lessons: list[Path], assignment: list[Path]) -> str:
    """The bundle's README.md, for students: how to start, what is where, how the exercises are graded."""
    lesson_lines = []
    for path in lessons:
        title = _title(_read_notebook(path))
        lesson_lines.append(f"- `notebooks/{path.name}`" + (f": {title}" if title else ""))
    graded_lines = []
    for path in assignment:
        nb = _read_notebook(path)
        points = _points(nb)
        title = _title(nb)
        graded_lines.append(
            f"- `{ASSIGNMENT_DIR}/{path.name}`" + (f": {title}" if title else "") + f" ({points:g} points)"
        )
    return STUDENT_README.format(lessons="\n".join(lesson_lines), graded="\n".join(graded_lines),
                                 folder=ASSIGNMENT_DIR, count=len(assignment))


# ------------------------------------------------------------------------------------------------ the files


def _package_data(root: Path) -> tuple[str, ...]:
    try:
        import tomllib

        conf = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
        return tuple(conf["tool"]["setuptools"]["package-data"]["lrdiff_helpers"])
    except Exception:  # noqa: BLE001 - Python 3.10 (no tomllib) or no such table: the default
        return DEFAULT_PACKAGE_DATA


def _helper_files(root: Path) -> list[Path]:
    """What pip installs of lrdiff_helpers: its .py files and its package data; no caches, no stray files."""
    pkg = root / "lrdiff_helpers"
    if not (pkg / "__init__.py").is_file():
        raise BundleError(f"{pkg} is missing")
    found = set()
    for pattern in ("**/*.py", *_package_data(root)):
        for path in pkg.glob(pattern):
            rel = path.relative_to(pkg)
            if any(part == "__pycache__" or part.startswith(".") for part in rel.parts):
                continue
            found.add(path)
    return sorted(found)


def bundle_files(root: Path = ROOT) -> list[_Entry]:
    """Every entry of the bundle (checked: the release is safe and current), sorted by name."""
    root = Path(root).resolve()
    assignment = check_release(root)
    lessons = sorted((root / "notebooks").glob("*.ipynb"))
    if not lessons:
        raise BundleError(f"no lessons in {root / 'notebooks'}")
    entries = [_Entry(f"{TOP}/{ASSIGNMENT_DIR}/{p.name}", p) for p in assignment]
    entries += [_Entry(f"{TOP}/notebooks/{p.name}", p) for p in lessons]
    entries += [_Entry(f"{TOP}/lrdiff_helpers/{p.relative_to(root / 'lrdiff_helpers').as_posix()}", p)
                for p in _helper_files(root)]
    for name in ROOT_FILES:
        if not (root / name).is_file():
            raise BundleError(f"{root / name} is missing")
        entries.append(_Entry(f"{TOP}/{name}", root / name))
    entries.append(_Entry(f"{TOP}/README.md", None, student_readme(lessons, assignment).encode("utf-8")))
    for entry in entries:
        if entry.path is not None and (entry.path.is_symlink() or not entry.path.resolve().is_relative_to(root)):
            raise BundleError(f"{entry.path} is a symlink (or inside one); the bundle takes plain files only")
        if entry.path is not None and entry.path.suffix != ".pt":
            text = entry.path.read_bytes().decode("utf-8", errors="replace")
            for marker in MARKERS:
                if marker in text:
                    raise BundleError(f"{entry.path} contains {marker!r}; it must not reach students")
    return sorted(entries, key=lambda e: e.arcname)


def _mode(path: Path | None) -> int:
    if path is None:
        return 0o644
    return 0o755 if os.stat(path).st_mode & 0o111 else 0o644


def build_bundle(out: Path, root: Path = ROOT) -> Path:
    """Write the students' bundle to ``out`` (a zip; a folder gets ``lrdiff-student.zip`` in it); return its path.

    Raises:
        BundleError: the release is unsafe or stale, or a file is missing; nothing is written.
    """
    root, out = Path(root).resolve(), Path(out)
    if out.is_dir():
        out = out / "lrdiff-student.zip"
    entries = bundle_files(root)
    folders = sorted({"/".join(e.arcname.split("/")[:i]) + "/" for e in entries
                      for i in range(1, e.arcname.count("/") + 1)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        items = [(f, None) for f in folders] + [(e.arcname, e) for e in entries]
        for name, entry in sorted(items, key=lambda item: item[0]):
            info = zipfile.ZipInfo(name, date_time=_DATE)
            info.create_system = 3  # Unix, so that the modes below are honoured by unzip
            if entry is None:
                info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
                zf.writestr(info, b"")
                continue
            info.external_attr = (stat.S_IFREG | _mode(entry.path)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = entry.data if entry.path is None else entry.path.read_bytes()
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, buf.getvalue())  # all or nothing: never a half-written bundle
    return out
