"""Finding submissions (folders of ``<student>/`` folders, ``<student>.zip`` files) and copying them into
``submitted/<student>/lrdiff/``; symbolic links are recorded, never followed. Also the rules, shared with
``autograde``'s checks, that tell a renamed notebook (``Quiz (1).ipynb``) from an extra one."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import ASSIGNMENT, NOTEBOOKS
from .course import STUDENT_ID, Course, InputError

#: What ``collect`` could not copy (notebooks that were symbolic links), beside ``submitted/<student>/lrdiff/``.
COLLECT_FILE = ".lrdiff-collect.json"

_COPY_SUFFIX = re.compile(r"([ _-]*(\(\d+\)|copy\d*|kopie|\d+))+$")


@dataclass
class Found:
    """One student's submission found in the input: where each notebook comes from.

    ``notebooks`` are the assignment's notebooks; ``extra`` other ``.ipynb`` files (copied too: ``autograde``
    tells a renamed notebook from an extra one); ``symlinks`` notebooks that were symbolic links, never read
    (name -> {"path": where, "target": what it pointed to}).
    """

    student: str
    origin: str
    notebooks: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, bytes] = field(default_factory=dict)
    symlinks: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Entry:
    """One thing in a folder, seen without following symbolic links (``mode`` is its ``lstat`` mode)."""

    path: Path
    rel: Path  # relative to the folder walked
    mode: int
    listed_as_dir: bool  # os.walk lists it among folders (a folder, or a link to one)


def walk_no_links(folder: Path) -> Iterator[tuple[Path, list[Entry]]]:
    """Each folder under ``folder`` (links to folders are not entered) with its entries, sorted by name."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        entries = [Entry(here / name, (here / name).relative_to(folder), (here / name).lstat().st_mode,
                         name in dirnames) for name in sorted(dirnames + filenames)]
        yield here, entries


def link_text(target: str) -> str:
    """A symbolic link's target, safe to print (it is the student's text)."""
    return repr(target if len(target) <= 120 else target[:117] + "...")


def stem_of(name: str) -> str:
    """``'quiz'`` for ``'Quiz (1).ipynb'``, ``'quiz-Copy1.ipynb'``, ``'QUIZ copy.ipynb'``: a notebook's name as a
    download or a file manager may have changed it."""
    stem = name[: -len(".ipynb")] if name.lower().endswith(".ipynb") else name
    return _COPY_SUFFIX.sub("", stem.strip().lower()).strip(" _-")


def renamed(missing: Sequence[str], extra: Sequence[str]) -> tuple[list[str], list[str]]:
    """(missing notebooks, stray notebooks) that look renamed: a stray whose name is a missing one's as a
    download or file manager changes it (``Quiz (1).ipynb``), or every stray when none of the assignment's
    notebooks is there. Empty lists when nothing looks renamed (a stray ``scratch.ipynb`` beside the rest)."""
    if missing and extra and len(missing) == len(NOTEBOOKS):
        return list(missing), list(extra)
    by_stem = {stem_of(m): m for m in missing}
    strays = [e for e in extra if stem_of(e) in by_stem]
    return sorted({by_stem[stem_of(e)] for e in strays}, key=list(missing).index), strays


def renamed_reason(missing: Sequence[str], extra: Sequence[str]) -> str:
    """Why a submission with an assignment notebook missing and a renamed copy of it present is not graded."""
    return (f"no {', '.join(missing)}; the submission has {', '.join(repr(e) for e in extra)} "
            "(rename it and collect again)")


def _pick_one(found: Found, rel: str, read: Callable[[], bytes] | None, target: str | None,
              seen: dict[str, str]) -> None:
    """Keep one ``.ipynb`` entry: an assignment notebook, an extra one, or a symbolic link (recorded)."""
    base = Path(rel).parts[-1]
    if base not in {f"{name}.ipynb" for name in NOTEBOOKS}:
        if read is None:
            found.notes.append(f"ignored {rel}: a symbolic link (to {link_text(target)}), not read")
        elif base in found.extra:
            found.notes.append(f"ignored {rel}: another {base} was copied")
        else:
            found.extra[base] = read()
            found.notes.append(f"{rel} is not a notebook of {ASSIGNMENT}: copied, not graded")
        return
    if base in seen:
        raise InputError(f"{found.origin}: two copies of {base} ({seen[base]} and {rel}); keep one")
    seen[base] = rel
    if read is None:
        found.symlinks[base] = {"path": rel, "target": target}
        found.notes.append(f"{rel} is a symbolic link (to {link_text(target)}): not read, not copied")
    else:
        found.notebooks[base] = read()


def _pick_notebooks(student: str, origin: str, files: Iterable[tuple[str, Callable[[], bytes]]],
                    links: Iterable[tuple[str, str]] = ()) -> Found:
    """From (relative path, reader) pairs of regular files and (relative path, target) pairs of symbolic links,
    keep the notebooks (found at any depth). A symbolic link is recorded, never followed."""
    found = Found(student, origin)
    seen: dict[str, str] = {}
    entries = [(rel, read, None) for rel, read in files] + [(rel, None, target) for rel, target in links]
    for rel, read, target in sorted(entries, key=lambda e: e[0]):
        parts = Path(rel).parts
        if any(p in {"__MACOSX", ".ipynb_checkpoints"} or p.startswith("._") for p in parts):
            continue
        if parts and parts[-1].endswith(".ipynb"):
            _pick_one(found, rel, read, target, seen)
    if not (found.notebooks or found.extra or found.symlinks):
        wanted = ", ".join(sorted(f"{name}.ipynb" for name in NOTEBOOKS))
        raise InputError(f"{origin}: no notebook of {ASSIGNMENT} in it (expected {wanted})")
    return found


def _from_folder(student: str, folder: Path) -> Found:
    """Walk the folder without following symbolic links: a linked notebook is recorded, a linked folder skipped."""
    files, links, notes = [], [], []
    for _, entries in walk_no_links(folder):
        folders = [e for e in entries if e.listed_as_dir]
        notes += [f"ignored {e.rel}/: a symbolic link, not followed" for e in folders if stat.S_ISLNK(e.mode)]
        for e in (e for e in entries if not e.listed_as_dir):
            if stat.S_ISLNK(e.mode):
                links.append((str(e.rel), os.readlink(e.path)))
            elif stat.S_ISREG(e.mode):
                files.append((str(e.rel), (lambda p=e.path: p.read_bytes())))
            elif e.path.name.endswith(".ipynb"):
                notes.append(f"ignored {e.rel}: not a regular file")
    found = _pick_notebooks(student, str(folder), files, links)
    found.notes[:0] = notes
    return found


def _zip_is_symlink(info: zipfile.ZipInfo) -> bool:
    """Whether a zip member is a symbolic link (Unix mode in the high bits of external_attr)."""
    return stat.S_ISLNK(info.external_attr >> 16)


def _from_zip(student: str, path: Path) -> Found:
    """Read the notebooks of a zip; a member that is a symbolic link is recorded (its target), never followed."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir() and m.filename.endswith(".ipynb")]
            contents = {m.filename: zf.read(m) for m in members if not _zip_is_symlink(m)}
            links = [(m.filename, zf.read(m)[:1024].decode("utf-8", "replace")) for m in members if _zip_is_symlink(m)]
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(f"{path}: not a readable zip file ({err})") from None
    return _pick_notebooks(student, str(path), [(n, (lambda n=n: contents[n])) for n in sorted(contents)], links)


def _check_student_id(student: str, origin: Path) -> None:
    if not STUDENT_ID.match(student):
        raise InputError(
            f"{origin}: {student!r} is not a usable student id (letters, digits, '_', '.', '@', '-'; "
            "starting with a letter or digit)"
        )


def _from_path(path: Path, found: list[Found], errors: list[str]) -> None:
    """One input path: a student's zip, or a folder of student folders and zips (their errors collected)."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".zip":
            raise InputError(f"{path}: not a folder or a .zip file")
        _check_student_id(path.stem, path)
        found.append(_from_zip(path.stem, path))
        return
    entries = sorted(path.iterdir())
    students = [e for e in entries if (e.is_dir() and not e.name.startswith(".") and e.name != "__MACOSX")
                or (e.is_file() and e.suffix.lower() == ".zip")]
    if not students:
        raise InputError(f"{path}: no <student>/ folder or <student>.zip file in it")
    for entry in students:
        try:
            student = entry.stem if entry.is_file() else entry.name
            _check_student_id(student, entry)
            found.append(_from_zip(student, entry) if entry.is_file() else _from_folder(student, entry))
        except InputError as err:
            errors.append(str(err))


def find_submissions(paths: Sequence[str | Path]) -> list[Found]:
    """Read (never change) the input: folders of ``<student>/`` folders, ``<student>.zip`` files, or both.

    A path may be a folder (each subfolder is a student, each ``.zip`` in it a student's zip) or a zip file
    (``alice.zip`` is alice's). Inside a student's folder or zip, symbolic links are never followed: a notebook
    that is one is recorded (``autograde`` then fails that student), a linked folder is skipped with a note.
    Raises :class:`InputError` listing every problem; nothing is copied then.
    """
    if not paths:
        raise InputError("collect needs at least one path: a folder of <student>/ folders or <student>.zip files")
    found: list[Found] = []
    errors: list[str] = []
    for raw in paths:
        try:
            _from_path(Path(raw), found, errors)
        except InputError as err:
            errors.append(str(err))
    by_student: dict[str, str] = {}
    for f in found:
        if f.student in by_student:
            errors.append(f"student {f.student} is in the input twice: {by_student[f.student]} and {f.origin}")
        by_student[f.student] = f.origin
    if errors:
        raise InputError("\n".join(errors))
    return found


def _copy_in(course: Course, f: Found) -> None:
    """Replace ``submitted/<student>/lrdiff/`` with the notebooks found; record the symbolic links."""
    home = course.submitted / f.student
    dest = home / ASSIGNMENT
    for p in (home, dest):  # a link put there by hand: remove the link, never what it points to
        if p.is_symlink():
            p.unlink()
    if dest.exists():
        f.notes.append(f"replaced an earlier copy in {dest.relative_to(course.root)}")
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name, data in {**f.extra, **f.notebooks}.items():
        (dest / name).write_bytes(data)
    marker = home / COLLECT_FILE
    if f.symlinks:
        marker.write_text(json.dumps({"symlinks": f.symlinks}, indent=1, sort_keys=True) + "\n")
    else:
        marker.unlink(missing_ok=True)


def collect(course: Course, paths: Sequence[str | Path]) -> list[Found]:
    """Copy each student's notebooks into ``submitted/<student>/lrdiff/`` (replacing an earlier copy).

    The originals are only read. Malformed notebooks are copied as they are, and so are notebooks that are not
    the assignment's (``Exercises (1).ipynb``): ``autograde`` reports them. Notebooks that were symbolic links
    are not copied; they are listed in ``submitted/<student>/.lrdiff-collect.json`` for ``autograde``.
    """
    found = find_submissions(paths)
    for f in found:
        _copy_in(course, f)
        missing = sorted(f"{n}.ipynb" for n in NOTEBOOKS if f"{n}.ipynb" not in f.notebooks | f.symlinks)
        gone, strays = renamed(missing, sorted(f.extra))
        if strays:
            f.notes.append(f"will fail to grade: {renamed_reason(gone, strays)}")
        elif missing:
            f.notes.append(f"no {', '.join(missing)} (scored 0)")
    return found
