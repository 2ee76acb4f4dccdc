"""What the grading forkserver imports once (:mod:`autograder.forkserver`), so that no grading imports it again.

Importing this module pins torch's arithmetic (:func:`lrdiff_helpers.reproducibility.pin`: the variables first,
then one thread, before anything computes or forks) and imports what grading one student needs: torch,
nbgrader's ``Autograde`` with nbconvert and nbclient, the course's checks and the sandbox. Only the forkserver
imports it: the import is its whole job. It computes nothing, starts no thread and opens no file or socket,
so a fork of it is a clean start.
"""

from __future__ import annotations

from lrdiff_helpers.reproducibility import pin

pin()

import nbgrader.converters  # noqa: E402,F401
import torch  # noqa: E402,F401

import lrdiff_helpers.evidence  # noqa: E402,F401
import lrdiff_helpers.experiment  # noqa: E402,F401  (the grader's own training runs, autograder/comparisons.py)
from lrdiff_helpers.grading import (  # noqa: E402,F401  (the package imports its checks on first use: here)
    assertions, builders, expected, experiment, groupmap, messages, optimizer, quiz, schedule, structure,
)

from . import judge, sandbox, worker  # noqa: E402,F401
