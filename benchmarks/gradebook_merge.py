"""Results per second: how fast the coordinator merges graded students into a SQLite and a PostgreSQL gradebook.

    .venv/bin/python benchmarks/gradebook_merge.py              # 100 students, PostgreSQL with fsync on
    .venv/bin/python benchmarks/gradebook_merge.py --n 300 --existing 2000

During ``autograde`` only the coordinator writes the course's gradebook: for each student a worker hands back,
it calls :func:`autograder.gradebook.merge_grades` with the worker's private SQLite gradebook. That is the one
serial step of a run however many machines grade, so it bounds a class's speed (the issue's bar: at least 10
results a second; 10,000 students on 160 cores need about 6).

For each gradebook (the default SQLite file, and a throwaway PostgreSQL server started as the tests start it,
``tests.support.postgres``, here with PostgreSQL's durable settings), in a scratch copy of the course:
``release`` registers the assignment; ``--existing`` students are put in the gradebook first (a class already
half graded); then ``--n`` private gradebooks are made as a worker leaves them (nbgrader's
``add_submission`` with an auto score and comment in every cell: what ``Autograde`` records), and merged one
after the other, timed. The private copy each run starts from (:func:`autograder.gradebook.private_copy`) is
timed too. Prints the figures; asserts nothing (timings depend on the machine and its load).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder import ASSIGNMENT  # noqa: E402
from autograder.apps import quiet_library_warnings, release  # noqa: E402
from autograder.course import Course  # noqa: E402
from autograder.gradebook import merge_grades, private_copy  # noqa: E402
from tests import support  # noqa: E402
from tests.support.postgres import running_postgres  # noqa: E402


def _graded(gb, student: str, seed: int) -> None:
    """What ``Autograde`` leaves in a gradebook for ``student``: a submission, a score and comment per cell."""
    gb.update_or_create_student(student)
    sub = gb.add_submission(ASSIGNMENT, student)
    for nb in sub.notebooks:
        for i, g in enumerate(nb.grades):
            g.auto_score = g.max_score if (seed + i) % 3 else 0.0
        for c in nb.comments:
            c.auto_comment = f"graded for {student}"
    gb.db.commit()


def _add_existing(course: Course, n: int) -> None:
    """``n`` students graded earlier, in the course's gradebook itself."""
    with course.gradebook() as gb:
        for i in range(n):
            _graded(gb, f"old{i:05d}", i)


def _workers_copies(course: Course, folder: Path, n: int) -> list[tuple[str, str]]:
    """``n`` private gradebooks as workers hand them back: (student, SQLite URL)."""
    from nbgrader.api import Gradebook

    base = folder / "base.db"
    private_copy(course, base)
    out = []
    for i in range(n):
        db = folder / f"s{i:05d}.db"
        shutil.copyfile(base, db)
        student = f"s{i:05d}"
        with course.venv_on_path(), Gradebook(f"sqlite:///{db}", ASSIGNMENT) as gb:
            _graded(gb, student, i)
        out.append((student, f"sqlite:///{db}"))
    return out


def measure(name: str, url: str | None, scratch: Path, n: int, existing: int) -> dict:
    """Release, ``existing`` students, ``n`` private gradebooks; time the private copy and the ``n`` merges."""
    root = support.copy_course(scratch / name)
    course = Course(root, gradebook_url=url or f"sqlite:///{root / 'autograder' / 'gradebook.db'}")
    release(course)
    _add_existing(course, existing)
    copies = scratch / f"{name}-workers"
    copies.mkdir()
    t0 = time.perf_counter()
    private_copy(course, scratch / f"{name}-snapshot.db")
    copy_s = time.perf_counter() - t0
    results = _workers_copies(course, copies, n)
    t0 = time.perf_counter()
    for student, scratch_url in results:
        merge_grades(course, scratch_url, student)
    merge_s = time.perf_counter() - t0
    with course.gradebook() as gb:
        assert len(gb.students) == existing + n, "every merged student is in the gradebook"
    return {"name": name, "merge_s": merge_s, "rate": n / merge_s, "copy_s": copy_s}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="students merged and timed (default %(default)s)")
    p.add_argument("--existing", type=int, default=0, help="students already in the gradebook (default 0)")
    p.add_argument("--fast-postgres", action="store_true", help="the tests' server settings (fsync off)")
    p.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = p.parse_args()
    quiet_library_warnings()
    scratch = Path(tempfile.mkdtemp(prefix="lrdiff-merge-bench-"))
    rows = []
    try:
        rows.append(measure("sqlite", None, scratch, args.n, args.existing))
        server = nullcontext() if args.no_postgres else running_postgres(durable=not args.fast_postgres)
        with server as pg:
            if pg is not None:
                rows.append(measure("postgresql", pg.url, scratch, args.n, args.existing))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nmerging {args.n} graded students into a gradebook that already holds {args.existing}:")
    print(f"{'gradebook':<12}{'merge (s)':>11}{'results/s':>11}{'  private copy (s)':>18}")
    for r in rows:
        print(f"{r['name']:<12}{r['merge_s']:>11.2f}{r['rate']:>11.1f}{r['copy_s']:>18.2f}")
    print("(the issue's bar: at least 10 results/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
