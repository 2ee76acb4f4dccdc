"""The graded checks of the ``lrdiff`` assignment, decided outside the student's kernel: the public names.

At grading time (``autograder/judge.py``) the code of every graded test cell is replaced by a probe that runs
the cell's cases in the student's kernel and displays plain-data evidence; the grader then judges that evidence
in its own process, rebuilding every model itself. The parts, one job each:

* ``autograder/cases.py``: :class:`Case`, :class:`Check` and :data:`CHECKS`, every graded test cell's cases
  (hidden ones included), as data;
* ``autograder/comparisons.py``: the checks, which compare a case's evidence with the expected values;
* ``autograder/verdict.py``: :func:`probe_source` (the probe) and :func:`judge` (the :class:`Verdict`);
* ``autograder/quiz_key.py``: the quiz's answer key (digests) and explanations.

This module gathers their public names for the callers (``from autograder import checks``).
"""

from __future__ import annotations

from .cases import CHECKS, Case, Check
from .quiz_key import QUIZ_KEY
from .verdict import Verdict, judge, probe_source

__all__ = ["CHECKS", "Case", "Check", "QUIZ_KEY", "Verdict", "judge", "probe_source"]
