"""The instructor's grading pipeline of the lrdiff course, on top of nbgrader.

``python -m autograder <step>`` (or ``./course grade <step>``): ``release``, ``collect PATH...``,
``autograde``, ``feedback``, ``export --out grades.csv``, ``all PATH...``. See ``autograder/README.md``.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "lrdiff"
NOTEBOOKS = ("exercises", "quiz", "experiment")
