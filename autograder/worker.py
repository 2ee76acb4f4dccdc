"""Grade one student in a process of its own: what a grading task (``autograder/task.py``) starts.

    python -m autograder.worker --root COURSE --student ID --gradebook sqlite:////tmp/.../gradebook.db --result OUT.json

Runs nbgrader's ``Autograde`` for one student (:func:`autograder.apps.run_app` with the course's
``autograder/nbgrader_config.py`` and the sandbox), against the gradebook named by ``--gradebook`` (the grader
passes a private copy; it copies the grades into the course's gradebook itself, see ``autograder/task.py``). Writes ``autograded/<student>/lrdiff/`` and ``--result``: JSON with
``success``, ``log`` and ``error`` (nbgrader's captured log and traceback, the end of each). Exits 0 when it
could write the result, whether or not grading succeeded; the parent treats a missing result as a dead worker.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

from . import experiment_cache
from .apps import quiet_library_warnings, run_app
from .course import Course
from .files import write_atomic

#: How much of nbgrader's log and traceback the result keeps (the end of each; the reason is near it).
KEEP_CHARS = 200_000


def grade(root: Path, student: str, gradebook_url: str) -> dict:
    """Autograde ``student`` of the course at ``root`` against ``gradebook_url``; nbgrader's captured result."""
    from nbgrader.converters import Autograde

    course = Course(root, gradebook_url=gradebook_url)
    return run_app(Autograde, course, student, sandbox=True, force=True, create_student=True)


def _die_with(parent: int) -> None:
    """Exit when ``parent`` (the grader that started this worker) is gone: no orphan grades a student on.

    The sandboxed kernel goes too (bubblewrap's ``--die-with-parent``).
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(3)

    if os.getppid() != parent:
        os._exit(3)
    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder.worker", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="the course's root folder")
    p.add_argument("--student", required=True)
    p.add_argument("--gradebook", required=True, help="SQLAlchemy URL of the gradebook to write")
    p.add_argument("--result", type=Path, required=True, help="JSON file to write the outcome to")
    p.add_argument("--experiments", type=Path, help="the experiment's training runs to read and extend (JSON), "
                   "see autograder/experiment_cache.py")
    p.add_argument("--parent", type=int, default=0, help="exit when this process (the grader, or the forkserver it was forked from) is gone")
    args = p.parse_args(argv)
    if args.parent:
        _die_with(args.parent)
    quiet_library_warnings()
    experiment_cache.use(args.experiments)
    try:
        out = grade(args.root, args.student, args.gradebook)
    except Exception:  # noqa: BLE001 (reported to the parent as this student's failure)
        out = {"success": False, "error": traceback.format_exc()}
    result = {
        "success": bool(out.get("success")),
        "log": (out.get("log") or "")[-KEEP_CHARS:],
        "error": (out.get("error") or "")[-KEEP_CHARS:],
    }
    write_atomic(args.result, json.dumps(result))  # the parent never reads half a result
    return 0


if __name__ == "__main__":
    sys.exit(main())
