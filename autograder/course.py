"""The course: its folders, its nbgrader configuration (read once), the status file, and what a step returns.

Nothing here changes ``os.environ`` for good: :attr:`Course.env` is the environment that nbgrader and the
grading workers need (this Python's ``bin`` folder first on ``PATH``: nbgrader runs ``alembic`` from it),
passed to the subprocesses that need it; :meth:`Course.venv_on_path` applies it only while nbgrader runs in
this process.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ASSIGNMENT, ROOT
from .files import write_atomic

#: A student id: letters, digits and ``_ . @ -``, starting with a letter or a digit.
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
#: Where ``autograde`` records each student's status, for ``feedback`` and ``export`` (git-ignored folder).
STATUS_FILE = Path("autograded") / ".lrdiff-status.json"
GRADED = "graded"
FAILED = "failed to grade"


class InputError(Exception):
    """Bad input from the instructor (a missing path, a corrupt zip, a bad student id): nothing was done."""


@dataclass
class Result:
    """One student's outcome of a step."""

    student: str
    status: str  # GRADED or "failed to grade: <reason>"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == GRADED


def venv_path_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with this Python's bin folder first on PATH."""
    env = dict(os.environ if base is None else base)
    bindir = str(Path(sys.executable).parent)
    if env.get("PATH", "").split(os.pathsep)[0] != bindir:
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


@dataclass
class Course:
    """The course's folders and its nbgrader configuration (``autograder/nbgrader_config.py``)."""

    root: Path = ROOT
    #: Grade against this gradebook instead of the configured one (a grading worker's private copy).
    gradebook_url: str | None = None
    _loaded: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()

    @property
    def config_dir(self) -> Path:
        return self.root / "autograder"

    @property
    def submitted(self) -> Path:
        return self.root / "submitted"

    @property
    def autograded(self) -> Path:
        return self.root / "autograded"

    @property
    def feedback_dir(self) -> Path:
        return self.root / "feedback"

    @property
    def status_file(self) -> Path:
        return self.root / STATUS_FILE

    @property
    def env(self) -> dict[str, str]:
        """The environment for nbgrader and the grading workers: this one, the venv's bin first on PATH."""
        return venv_path_env()

    @contextmanager
    def venv_on_path(self) -> Iterator[None]:
        """While nbgrader runs in this process (it starts ``alembic`` from PATH): :attr:`env`'s PATH."""
        before = os.environ.get("PATH")
        os.environ["PATH"] = self.env["PATH"]
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("PATH", None)
            else:
                os.environ["PATH"] = before

    def config(self):
        """nbgrader's configuration for this course (a copy of the one read once: callers may change it)."""
        if self._loaded is None:
            from traitlets.config.loader import PyFileConfigLoader

            cfg = PyFileConfigLoader("nbgrader_config.py", path=str(self.config_dir)).load_config()
            # this course's root, even when the config file is a copy elsewhere
            cfg.CourseDirectory.root = str(self.root)
            if self.gradebook_url:
                cfg.CourseDirectory.db_url = self.gradebook_url
            self._loaded = cfg
        return copy.deepcopy(self._loaded)

    @property
    def db_url(self) -> str:
        if self._loaded is None:
            self.config()
        return self._loaded.CourseDirectory.db_url

    def gradebook(self):
        """nbgrader's ``Gradebook`` of this course (use it in a ``with``)."""
        from nbgrader.api import Gradebook

        with self.venv_on_path():
            return Gradebook(self.db_url, ASSIGNMENT)

    def students_submitted(self) -> list[str]:
        if not self.submitted.is_dir():
            return []
        return sorted(d.name for d in self.submitted.iterdir() if (d / ASSIGNMENT).is_dir())

    def read_status(self) -> dict[str, dict]:
        try:
            return json.loads(self.status_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def write_status(self, status: dict[str, dict]) -> None:
        """Replace the status file in one step (a reader never sees half of it)."""
        self.status_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.status_file, json.dumps(status, indent=1, sort_keys=True) + "\n")
