"""What graded submissions give back: HTML feedback per student, the grade rows, and the grades CSV."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path

from . import ASSIGNMENT, NOTEBOOKS
from .apps import failure_reason, run_app
from .course import FAILED, GRADED, Course, InputError, Result
from .gradebook import assignment_registered

COLUMNS = ["student", "status", *NOTEBOOKS, "total", "max_total", "notes"]


def feedback(course: Course, progress=None) -> list[Result]:
    """Write ``feedback/<student>/lrdiff/*.html`` for every student whose last autograde succeeded."""
    from nbgrader.converters import GenerateFeedback
    from traitlets.config import Config

    status = course.read_status()
    graded = sorted(s for s, st in status.items() if st.get("status") == GRADED)
    if not graded:
        raise InputError("no graded submission to give feedback on (run autograde first)")
    results = []
    for student in graded:
        start = time.perf_counter()
        extra = Config()
        extra.HTMLExporter.template_name = "feedback"
        out = run_app(GenerateFeedback, course, student, extra=extra, force=True)
        res = Result(student, GRADED if out.get("success") else f"no feedback: {failure_reason(out)}")
        res.seconds = time.perf_counter() - start
        results.append(res)
        if progress is not None:
            progress(res)
    return results


@dataclass
class Row:
    student: str
    status: str
    scores: dict[str, float | None]
    total: float | None
    max_total: float
    notes: str = ""

    def as_dict(self) -> dict[str, str]:
        def fmt(v: float | None) -> str:
            return "" if v is None else f"{v:g}"

        return {"student": self.student, "status": self.status, **{k: fmt(v) for k, v in self.scores.items()},
                "total": fmt(self.total), "max_total": fmt(self.max_total), "notes": self.notes}


def _row(gb, student: str, st: dict, max_total: float) -> Row:
    """One student's row: the scores from the gradebook when the last autograde graded it."""
    from nbgrader.api import MissingEntry

    state = st.get("status", "not graded yet (run autograde)")
    notes = "; ".join(st.get("notes", []))
    scores: dict[str, float | None] = {n: None for n in NOTEBOOKS}
    total = None
    if state == GRADED:
        try:
            sub = gb.find_submission(ASSIGNMENT, student)
        except MissingEntry:
            state = f"{FAILED}: not in the gradebook"
        else:
            for snb in sub.notebooks:
                if snb.name in scores:
                    scores[snb.name] = float(snb.score)
            total = sum(v for v in scores.values() if v is not None)
    return Row(student, state, scores, total, max_total, notes)


def grade_rows(course: Course) -> list[Row]:
    """One row per student known to ``submitted/`` or to the last autograde: scores, or why there are none."""
    status = course.read_status()
    students = sorted(set(course.students_submitted()) | set(status))
    if not assignment_registered(course):
        raise InputError(f"the gradebook ({course.db_url}) has no assignment {ASSIGNMENT}: run release and autograde first")
    with course.gradebook() as gb:
        assignment = gb.find_assignment(ASSIGNMENT)
        max_scores = {nb.name: float(nb.max_score) for nb in assignment.notebooks}
        max_total = sum(max_scores.get(n, 0.0) for n in NOTEBOOKS)
        return [_row(gb, student, status.get(student, {}), max_total) for student in students]


def export(course: Course, out: Path) -> list[Row]:
    """Write the grades CSV (one row per student, with a status column) and return its rows."""
    rows = grade_rows(course)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.as_dict())
    out.write_text(buf.getvalue())
    return rows
