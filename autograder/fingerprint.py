"""The course's fingerprint: one sha256 over what decides a grade (the lock file, ``autograder/``, ``source/``,
``release/``, ``lrdiff_helpers/``), by content, not by date. A grading worker whose checkout has another
fingerprint than the grader's refuses its tasks; the status file records the fingerprint each student was
graded with, so that ``autograde`` grades again only what changed."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from pathlib import Path

#: What the fingerprint covers, under the course root (a part that is missing is left out).
PARTS = ("requirements-lock.txt", "autograder", "source", "release", "lrdiff_helpers")
#: Files under those parts that are state or caches, not course content (git-ignored).
IGNORED = ("gradebook.db*", "experiment_cache.json", "__pycache__", "*.pyc", ".nbgrader.log", ".ipynb_checkpoints")


def _ignored(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED)


def _files(root: Path) -> list[str]:
    """The fingerprinted files' paths relative to ``root``, sorted; symbolic links are not followed."""
    found: list[str] = []
    for part in PARTS:
        top = root / part
        if top.is_file():
            found.append(part)
            continue
        for folder, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not _ignored(d)]
            rel = Path(folder).relative_to(root)
            found += [str(rel / f) for f in files if not _ignored(f)]
    return sorted(found)


def fingerprint(root: Path) -> str:
    """The hex sha256 of the course at ``root``: each file's path and content, in a fixed order.

    >>> len(fingerprint(Path(__file__).resolve().parent.parent))
    64
    """
    h = hashlib.sha256()
    for rel in _files(Path(root)):
        data = (Path(root) / rel).read_bytes()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()
