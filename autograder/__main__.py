"""Command line of the grading pipeline: ``python -m autograder <step> [...]`` (``./course grade <step>``).

Steps:
    release                 regenerate release/lrdiff from source/lrdiff (--force); register it in the gradebook
    collect PATH...         copy submissions into submitted/<student>/lrdiff/ (folders of <student>/ folders,
                            <student>.zip files, or folders of zips); the originals are never changed
    autograde [--student S] [--jobs N] [--time-limit SECONDS] [--force] [--scheduler tcp://HOST:PORT]
              [--cluster slurm]
                            grade every collected submission not graded yet with its content and this
                            course (--force: all of them; --student S: only S, repeatable, always), N at a
                            time (default: every core) on an in-process Dask cluster, or on the Dask
                            scheduler named, or on SLURM, each in a sandboxed process of its own; a line per
                            student as it finishes; a student still being graded after SECONDS (default
                            3600) is failed
    feedback                write feedback/<student>/lrdiff/*.html for every graded submission
    export [--out CSV]      write the grades, one row per student, with a status column (default grades.csv)
    all PATH... [--out CSV] [--jobs N] [--time-limit SECONDS] [--force] [--scheduler ...] [--cluster ...]
                            release, collect PATH..., autograde, feedback, export
    bundle [--out ZIP]      build what is handed to students (release notebooks, lessons, lrdiff_helpers,
                            environment files; no solutions, no hidden tests), default dist/lrdiff-student.zip

Exit status: 0 when every submission was graded; 1 when some could not be ("failed to grade: <reason>",
after the rest of the batch was graded and reported); 2 for bad input (nothing was done).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lrdiff_helpers.reproducibility import pin

from . import ASSIGNMENT, NOTEBOOKS, ROOT
from .apps import quiet_library_warnings, release
from .autograde import DEFAULT_TIME_LIMIT, NOTHING_TO_GRADE, autograde, pending
from .collect import collect
from .course import FAILED, GRADED, Course, InputError, Result
from .fingerprint import fingerprint
from .gradebook import assignment_registered
from .report import export, feedback
from .time_limits import describe_limits


#: Where ``bundle`` writes by default, under the course root.
BUNDLE = Path("dist") / "lrdiff-student.zip"


def _say(msg: str = "") -> None:
    print(msg, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m autograder",
        description=f"Grade the {ASSIGNMENT} assignment with nbgrader (see autograder/README.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Steps:", 1)[1],
    )
    p.add_argument("--root", type=Path, default=ROOT, help="the course's root folder (default: %(default)s)")
    sub = p.add_subparsers(dest="step", required=True, metavar="STEP")
    sub.add_parser("release", help="regenerate release/ from source/ and register the assignment")
    c = sub.add_parser("collect", help="copy submissions into submitted/")
    c.add_argument("paths", nargs="+", metavar="PATH", help="a folder of <student>/ folders or <student>.zip files, or a zip")
    a = sub.add_parser("autograde", help="grade the collected submissions")
    a.add_argument("--student", action="append", metavar="ID", help="grade only this student (repeatable)")
    _grading_options(a)
    sub.add_parser("feedback", help="write HTML feedback for graded submissions")
    e = sub.add_parser("export", help="write the grades CSV")
    e.add_argument("--out", type=Path, default=Path("grades.csv"), help="CSV file to write (default: %(default)s)")
    al = sub.add_parser("all", help="release, collect, autograde, feedback, export")
    al.add_argument("paths", nargs="+", metavar="PATH")
    al.add_argument("--out", type=Path, default=Path("grades.csv"))
    _grading_options(al)
    b = sub.add_parser("bundle", help="build the zip handed to students (no solutions, no hidden tests)")
    b.add_argument("--out", type=Path, default=None,
                   help=f"zip file to write (default: {BUNDLE} under the course root)")
    return p


def _number(convert, what: str, ok, too_small: str):
    """An argparse ``type``: ``convert(text)``, refused with a reason when it is not ``what`` or not ``ok``."""
    def parse(text: str):
        try:
            x = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not ok(x):
            raise argparse.ArgumentTypeError(too_small.format(x=x, text=text))
        return x

    return parse


_positive_int = _number(int, "a whole number", lambda n: n >= 1, "must be at least 1 (got {x})")
_positive_seconds = _number(float, "a number of seconds", lambda x: x > 0, "must be positive (got {text})")


def _grading_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", "-j", type=_positive_int, default=None, metavar="N",
                   help=f"students graded at the same time (default: every core, {os.cpu_count()} here)")
    p.add_argument("--time-limit", type=_positive_seconds, default=DEFAULT_TIME_LIMIT, metavar="SECONDS",
                   help="fail a student whose grading takes longer than this (default: %(default)g)")
    p.add_argument("--force", action="store_true",
                   help="grade every submission again, even one already graded with this course")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", default=None,
                   help="grade on this Dask scheduler (machines started with `dask scheduler` / `dask worker`)")
    p.add_argument("--cluster", choices=("local", "slurm"), default=None,
                   help="local: an in-process Dask cluster (the default); slurm: workers through dask-jobqueue")


def _line(res: Result, course: Course) -> str:
    if res.ok:
        with course.gradebook() as gb:
            sub = gb.find_submission(ASSIGNMENT, res.student)
            scores = {nb.name: (nb.score, nb.max_score) for nb in sub.notebooks}
        parts = "  ".join(f"{n} {scores[n][0]:g}/{scores[n][1]:g}" for n in NOTEBOOKS if n in scores)
        total = sum(s for s, _ in scores.values())
        top = sum(m for _, m in scores.values())
        text = f"  {res.student}: {total:g} / {top:g}  ({parts})  [{res.seconds:.1f} s]"
    else:
        text = f"  {res.student}: {res.status}  [{res.seconds:.1f} s]"
    return text + "".join(f"\n      note: {n}" for n in res.notes)


def _do_release(course: Course) -> None:
    _say(f"release: generating release/{ASSIGNMENT} from source/{ASSIGNMENT} ...")
    release(course)
    _say(f"release: release/{ASSIGNMENT} regenerated; the assignment is registered in the gradebook")


def _do_collect(course: Course, paths) -> None:
    found = collect(course, paths)
    _say(f"collect: {len(found)} submission(s) copied into submitted/")
    for f in found:
        _say(f"  {f.student}: {', '.join(sorted(f.notebooks))}  (from {f.origin})"
             + "".join(f"\n      note: {n}" for n in f.notes))


def _grading(args) -> dict:
    """The autograde options of ``args``, as keyword arguments of :func:`_do_autograde`."""
    return {"jobs": args.jobs, "time_limit": args.time_limit, "force": args.force, "scheduler": args.scheduler,
            "cluster": args.cluster}


def _progress_bar(total: int):
    """A tqdm bar on stderr (shown on a terminal): done, failed, remaining and the rate."""
    from tqdm import tqdm

    return tqdm(total=total, file=sys.stderr, unit="submission", disable=None, leave=False)


def _do_autograde(course: Course, students=None, jobs: int | None = None,
                  time_limit: float = DEFAULT_TIME_LIMIT, force: bool = False, scheduler: str | None = None,
                  cluster: str | None = None) -> int:
    if not course.students_submitted():
        raise InputError(NOTHING_TO_GRADE)
    if not assignment_registered(course):
        _say("autograde: the gradebook does not know the assignment yet; running release first")
        _do_release(course)
    todo = students or pending(course, fingerprint(course.root), force)
    if not todo:  # a student who failed to grade is never "done" (autograde.pending)
        _say(f"autograde: nothing to grade: all {len(course.students_submitted())} submission(s) were graded "
             "with this content and this course already (--force grades them again)")
        return 0
    jobs = min(jobs or os.cpu_count() or 1, len(todo))
    _say(f"autograde: {len(todo)} submission(s), {jobs} at a time")
    _say(f"autograde: time limits: {describe_limits(course.config(), NOTEBOOKS)}")
    done = []
    bar = _progress_bar(len(todo))

    def progress(res: Result) -> None:
        done.append(res)
        bar.update(1)
        failed = sum(not r.ok for r in done)
        bar.set_postfix(done=len(done) - failed, failed=failed, remaining=len(todo) - len(done))
        bar.clear()
        _say(f"[{len(done)}/{len(todo)}]" + _line(res, course)[1:])

    try:
        results = autograde(course, todo, progress=progress, jobs=jobs, time_limit=time_limit,
                            scheduler=scheduler, cluster=cluster, say=_say)
    finally:
        bar.close()
    failed = [r for r in results if not r.ok]
    _say(f"autograde: {len(results) - len(failed)} graded, {len(failed)} {FAILED}")
    return 1 if failed else 0


def _do_feedback(course: Course) -> int:
    results = feedback(course, progress=lambda r: _say(f"  {r.student}: "
                                                         + ("feedback written" if r.ok else r.status)))
    bad = [r for r in results if not r.ok]
    _say(f"feedback: {len(results) - len(bad)} written to feedback/, {len(bad)} failed")
    return 1 if bad else 0


def _do_export(course: Course, out: Path) -> int:
    out = out if out.is_absolute() else Path.cwd() / out
    rows = export(course, out)
    failed = [r for r in rows if r.status != GRADED]
    _say(f"export: {len(rows)} row(s) written to {out}")
    for r in failed:
        _say(f"  {r.student}: {r.status}")
    return 1 if failed else 0


def _do_bundle(course: Course, out: Path | None) -> int:
    try:
        from . import bundle  # noqa: PLC0415 (imported only when asked for)
    except ModuleNotFoundError as err:
        if err.name != f"{__package__}.bundle":
            raise
        raise RuntimeError("this version of the course has no autograder/bundle.py") from None
    out = course.root / BUNDLE if out is None else out if out.is_absolute() else Path.cwd() / out
    try:
        written = Path(bundle.build_bundle(out, root=course.root))
    except getattr(bundle, "BundleError", RuntimeError) as err:  # an unsafe or stale release: nothing written
        raise RuntimeError(f"bundle: {err}") from None
    _say(f"bundle: wrote {written} ({written.stat().st_size / 1024:.0f} KiB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    quiet_library_warnings()
    pin()  # the same numbers on every grading machine: before anything is computed
    course = Course(args.root)
    try:
        if args.step == "release":
            _do_release(course)
            return 0
        if args.step == "collect":
            _do_collect(course, args.paths)
            return 0
        if args.step == "autograde":
            return _do_autograde(course, args.student, **_grading(args))
        if args.step == "bundle":
            return _do_bundle(course, args.out)
        if args.step == "feedback":
            return _do_feedback(course)
        if args.step == "export":
            return _do_export(course, args.out)
        if args.step == "all":
            _do_release(course)
            _do_collect(course, args.paths)
            code = _do_autograde(course, **_grading(args))
            try:
                code = max(code, _do_feedback(course))
            except InputError as err:  # nothing was graded: still export the statuses
                _say(f"feedback: {err}")
            return max(code, _do_export(course, args.out))
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
