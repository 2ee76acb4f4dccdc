"""What the course's tests and benchmarks share: course copies and submissions, attacks, processes, CI rules.

Imported as ``tests.support`` from the repository root (pytest run as ``python -m pytest`` there, and the
benchmarks, which put the root on ``sys.path``):

* :mod:`tests.support.course_copy`: a scratch copy of the course, and submissions built from the release;
* :mod:`tests.support.attacks`: answer cells that try to cheat (copy the instructor's solution);
* :mod:`tests.support.processes`: processes on the host, found with ``psutil``;
* :mod:`tests.support.environment`: :func:`grader_env`, the environment of a grader started as a subprocess;
* :mod:`tests.support.ci`: :func:`skip_or_fail`, the one "skip here, fail under CI" rule;
* :mod:`tests.support.postgres`: :func:`running_postgres`, a throwaway PostgreSQL server on loopback (and
  ``postgres``, the same as a module-scoped fixture: ``from tests.support.postgres import postgres``).

``tests/support/sandbox_attacks.py`` holds the attack cells of ``tests/test_sandbox.py``.
"""

from __future__ import annotations

from .attacks import steal_source_answer
from .ci import skip_or_fail
from .course_copy import (
    COURSE_PARTS,
    blank_submission,
    copy_course,
    full_submission,
    grade_id,
    read,
    solutions,
    submission,
    write_submission,
)
from .environment import grader_env
from .postgres import PostgresServer, running_postgres

__all__ = [
    "COURSE_PARTS", "PostgresServer", "blank_submission", "copy_course", "full_submission", "grade_id", "grader_env",
    "read", "running_postgres", "skip_or_fail", "solutions", "steal_source_answer", "submission", "write_submission",
]
