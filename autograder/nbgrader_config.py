"""nbgrader configuration of the lrdiff course (one assignment, ``lrdiff``, three notebooks).

Works wherever nbgrader is started: the course root is computed from this file's location, so
``cd autograder && nbgrader generate_assignment lrdiff --force`` and ``./course grade ...`` (which loads this
file) see the same course:

    source/lrdiff/       the instructor's notebooks (solutions, hidden tests)        committed
    release/lrdiff/      what students get (generated from source/)                 committed
    submitted/<student>/lrdiff/, autograded/, feedback/                             git-ignored
    autograder/gradebook.db   nbgrader's SQLite gradebook                          git-ignored

The gradebook's URL can be set with the environment variable ``LRDIFF_GRADEBOOK_URL`` (any SQLAlchemy URL,
e.g. ``sqlite:////srv/grading/lrdiff.db``).
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821 (nbgrader provides get_config)

ROOT = Path(__file__).resolve().parent.parent

c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.course_id = "lrdiff"
c.CourseDirectory.db_url = os.environ.get(
    "LRDIFF_GRADEBOOK_URL", f"sqlite:///{ROOT / 'autograder' / 'gradebook.db'}"
)

# Executing a notebook: one cell may take this long, unless its notebook has a limit of its own (below). A cell
# past the limit is interrupted and scored as an error; the rest of the notebook still runs.
c.ExecutePreprocessor.timeout = 300
c.Execute.timeout = 300
c.Execute.startup_timeout = 120

# A student who deletes a test cell does not escape it: the cell is put back (from the gradebook) and run.
c.OverwriteCells.add_missing_cells = True
# Test cells are "locked" (read-only) in the source: an edited test cell is restored from the gradebook
# before grading (nbgrader does this for every locked cell; nothing to configure beyond the lock).

# Release notebooks: the stub that replaces each solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# Graded test cells are decided outside the student's kernel (autograder/judge.py, autograder/checks.py): the
# kernel only runs probes that record what the answers return; the grader judges that evidence itself.
# Feedback handed back to students has no hidden-test code.
import sys  # noqa: E402

sys.path.insert(0, str(ROOT))  # `autograder` importable wherever nbgrader is started
from autograder.judge import use_trusted_checks  # noqa: E402
from lrdiff_helpers.reproducibility import PINNED_ENV, pin  # noqa: E402

use_trusted_checks(c)

# Every autograde started with this configuration runs student code in the bubblewrap sandbox: `./course grade`,
# `nbgrader autograde` in the course root or in autograder/, the formgrader's Autograde button, nbgrader's API.
# Without bubblewrap each notebook fails to grade with the reason and how to install it; LRDIFF_UNSAFE_NO_SANDBOX=1
# grades unconfined, loudly. (Only autograde: Validate and the lessons run as usual.)
from autograder.sandbox import autograde_preprocessors  # noqa: E402
from lrdiff_helpers.evidence import MIME as EVIDENCE_MIME  # noqa: E402

c.Autograde.autograde_preprocessors = autograde_preprocessors(c)
# The probes' evidence (one output of this MIME type per graded case, lrdiff_helpers/evidence.py) is what the
# grader judges: the sandbox keeps it (up to 1 MB each) even after a cell's prints used up the cell's budget.
c.SandboxedExecute.evidence_mime = EVIDENCE_MIME

# Time limits per notebook (autograder/time_limits.py), printed in the grading log. The exercises and the quiz
# need a few seconds (kernel start and imports; the answers return in milliseconds); the experiment's own cells
# may fine-tune a few times (about a second each), and its verdicts are computed by the grader, not the kernel.
# After a cell times out, later cells that call the same function of the student's are failed at once.
c.SandboxedExecute.cell_seconds = {"exercises": 20, "quiz": 20, "experiment": 120}
c.SandboxedExecute.notebook_seconds = {"exercises": 120, "quiz": 120, "experiment": 600}

# The same numbers on every grading machine (x86-64 with AVX2 or newer): one thread and CPU kernels capped at
# AVX2, in the grader's process (the experiment is trained there) and in the students' sandboxed kernels.
pin()
c.SandboxedKernelManager.env_passthrough.extend(list(PINNED_ENV))
