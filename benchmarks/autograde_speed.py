"""Submissions per minute: serial nbgrader against the course's grader (local and on a Dask cluster), same batch.

    .venv/bin/python benchmarks/autograde_speed.py               # 40 submissions, all three notebooks
    .venv/bin/python benchmarks/autograde_speed.py --batch 8 --jobs 2 --keep

Builds a batch (default 40) of submissions the way a class hands them in (``tests.support``: the release
notebooks with answers filled in): the reference solution, the wrong answers of
``tests/fixtures/submissions/variants.py``, the blank release, and hostile ones (see ``HOSTILE``). Then
grades the same batch three times, each in its own fresh scratch copy of the course (``support.copy_course``):

(a) serial nbgrader: ``nbgrader autograde lrdiff --force``, one process for the whole batch, with a config that
    loads the course's ``autograder/nbgrader_config.py`` and calls ``autograder.sandbox.use_sandbox(c)``
    (the same grading as the course's grader, one student after another);
(b) the course's grader: ``python -m autograder autograde --jobs N`` (default: every core), on its default
    in-process Dask ``LocalCluster``;
(c) the course's grader on a real Dask cluster that the benchmark starts on 127.0.0.1: ``dask scheduler --host
    127.0.0.1 --port 0 --scheduler-file F --no-dashboard`` and ``--workers`` (default 2) ``dask worker
    --scheduler-file F --nworkers 1 --nthreads 1 --no-dashboard`` processes (not daemons:
    ``DASK_DISTRIBUTED__WORKER__DAEMON=False``, as the README says to start them; cwd: the course copy; the
    grader's pinned environment; ``LRDIFF_COURSE_ROOT`` and ``PYTHONPATH``: the course copy, so that the
    workers grade with that checkout; the scheduler gets the same environment: it unpickles the tasks, so it
    must import ``autograder``), then ``python -m autograder autograde --scheduler tcp://127.0.0.1:PORT``.
    Starting the cluster is not timed; the scheduler and the workers are stopped at the end, even on error.

Prints submissions per minute for each, side by side, the speed-up of (b) and (c) over (a), the CPU-seconds
each spent per submission (the whole machine's busy time over the run: run it on a quiet machine), and each
student's outcome under all three, so that a reader sees what the hostile submissions got. Each student's outcome
(the score, or "failed" when the grader reported that it could not grade the student) must be the same under
(a), (b) and (c): every difference is printed and the exit status is 1. It asserts nothing about speed: timings
depend on the machine and its load (the course's CI machine has 2 cores shared with other jobs). Release and
collect are not timed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder import ASSIGNMENT, NOTEBOOKS  # noqa: E402
from tests import support  # noqa: E402
from autograder.apps import release  # noqa: E402
from autograder.autograde import require_sandbox  # noqa: E402
from autograder.collect import collect  # noqa: E402
from autograder.course import GRADED, Course, InputError, venv_path_env  # noqa: E402
from lrdiff_helpers.reproducibility import PINNED_ENV  # noqa: E402

VARIANTS = runpy.run_path(str(ROOT / "tests" / "fixtures" / "submissions" / "variants.py"))

_STRIP_ASSERTS = '''
from IPython import get_ipython

def _no_checks(lines):
    """Drop every line that checks something, before the cell runs."""
    return [ln for ln in lines if not ln.lstrip().startswith(("assert", "grading."))]

get_ipython().input_transformers_post.append(_no_checks)
'''

_PATCH_CHECKS = '''
from lrdiff_helpers import grading as _grading

for _name in dir(_grading):
    if _name.startswith(("check_", "assert_")):
        setattr(_grading, _name, lambda *args, **kwargs: None)
'''

_MEMORY_BOMB = '''
_hog = []
while True:
    _hog.append(bytearray(256 * 2**20))
'''

_FORK_BOMB = '''
import os, time

_me = os.getpid()
for _ in range(200):  # every process forks again: 2**n processes, up to the sandbox's process limit
    try:
        os.fork()
    except OSError:
        break
if os.getpid() != _me:
    time.sleep(10)
    os._exit(0)
'''

#: kind -> (what it does, how the exercises' answer cells are built from the solutions)
HOSTILE = {
    "strip_asserts": ("wrong answers, and an input transformer that deletes assert and grading.* lines",
                      "wrong", _STRIP_ASSERTS, "before"),
    "patch_checks": ("wrong answers, and the grading module's check functions replaced by no-ops",
                     "wrong", _PATCH_CHECKS, "before"),
    "steal_source": ("every answer read from ../../../source/lrdiff/exercises.ipynb", "steal", "", ""),
    "os_exit": ("correct answers; os._exit(1) in the first answer cell", "ref", "import os\nos._exit(1)", "after"),
    "memory_bomb": ("correct answers; the first answer cell allocates until it fails", "ref", _MEMORY_BOMB,
                    "after"),
    "fork_bomb": ("correct answers; the first answer cell forks until the process limit", "ref", _FORK_BOMB,
                  "after"),
    "print_20mb": ("correct answers; the first answer cell prints 20 MB", "ref", 'print("x" * 20_000_000)',
                   "after"),
}
#: The order kinds are dealt in: a small batch (--n 8) still gets most hostile kinds.
KINDS = ["ref", "strip_asserts", "wrong", "steal_source", "os_exit", "patch_checks", "memory_bomb", "fork_bomb",
         "print_20mb", "wrong2", "blank"]


def _answers(table: str) -> dict[str, str]:
    return {gid: code for gid, (_, code, _) in VARIANTS[table].items()}


def _exercises(kind: str) -> dict[str, str] | None:
    """The exercises' answer cells of a submission of ``kind`` (``None``: the blank release)."""
    sols = support.solutions("exercises")
    if kind == "ref":
        return sols
    if kind == "wrong":
        return {**sols, **_answers("WRONG")}
    if kind == "wrong2":
        return {**sols, **_answers("WRONG_2"), **VARIANTS["WARNS"]}
    if kind == "blank":
        return None
    _, base, code, where = HOSTILE[kind]
    if base == "steal":
        return {gid: support.steal_source_answer(gid) for gid in sols}
    answers = _exercises(base)
    first = next(iter(answers))
    answers[first] = code + "\n\n" + answers[first] if where == "before" else answers[first] + "\n\n" + code
    return answers


def build_batch(n: int, notebooks: list[str]) -> dict[str, tuple[str, dict]]:
    """student -> (kind, notebooks)."""
    out = {}
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        subs = {}
        for nb in notebooks:
            if kind == "blank":
                subs[nb] = support.submission(nb, {})
            elif nb == "exercises":
                subs[nb] = support.submission(nb, _exercises(kind))
            elif kind in ("wrong", "wrong2") and nb == "quiz":
                subs[nb] = support.submission(nb, {**support.solutions("quiz"), **VARIANTS["QUIZ_WRONG"]})
            else:
                subs[nb] = support.submission(nb)
        out[f"s{i:02d}_{kind}"] = (kind, subs)
    return out


def _env() -> dict[str, str]:
    env = venv_path_env()
    env.update(PINNED_ENV)  # as the course's grader gives its workers
    env.pop("LRDIFF_GRADEBOOK_URL", None)
    return env


def _prepare(dst: Path, inbox: Path) -> Course:
    course = Course(support.copy_course(dst))
    release(course)
    collect(course, [inbox])
    return course


def _scores(course: Course, students) -> dict[str, float | None]:
    from nbgrader.api import MissingEntry

    out: dict[str, float | None] = {}
    with course.gradebook() as gb:
        for s in students:
            try:
                out[s] = float(gb.find_submission(ASSIGNMENT, s).score)
            except MissingEntry:
                out[s] = None
    return out


def busy_cpu_seconds() -> float:
    """CPU-seconds this machine has spent not idle since boot, all processes together (``psutil.cpu_times``):
    the difference over a run is what the run cost, as long as nothing else runs (the load average is printed)."""
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def run_nbgrader(course: Course, log: Path) -> tuple[float, set[str]]:
    """(a): plain ``nbgrader autograde lrdiff --force`` over the batch; (seconds, students it failed)."""
    conf = course.root / "bench_nbgrader"
    conf.mkdir()
    (conf / "nbgrader_config.py").write_text(textwrap.dedent(f"""\
        # The course's configuration, and the sandbox, for plain `nbgrader autograde` (benchmark only).
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        c = get_config()
        load_subconfig("nbgrader_config.py", path={str(course.config_dir)!r})
        c.CourseDirectory.root = {str(course.root)!r}
        from autograder.sandbox import use_sandbox
        use_sandbox(c)
        """))
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        subprocess.run([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force"], cwd=conf, env=_env(),
                       stdout=out, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    failed = set(re.findall(r"There was an error processing assignment '[^']*' for student '([^']+)'", text))
    return seconds, failed


def run_course_grader(course: Course, log: Path, jobs: int | None = None, scheduler: str | None = None) -> float:
    """(b) ``python -m autograder autograde --jobs N`` or (c) ``... --scheduler ADDRESS``, its progress lines
    shown as they come. The course is a fresh copy: nothing graded yet, so every student is graded."""
    where = ["--scheduler", scheduler] if scheduler else ["--jobs", str(jobs)]
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "autograder", "--root", str(course.root), "autograde",
                                 *where], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if line.startswith(("[", "autograde: on the Dask cluster")):
                print("    " + line.rstrip()[:150], flush=True)
        proc.wait()
    if proc.returncode not in (0, 1):  # 1: some submissions failed to grade (the hostile ones)
        print(f"    the grader exited with status {proc.returncode}; its output: {log}", flush=True)
    return time.perf_counter() - t0


def _stop(proc: subprocess.Popen, name: str) -> None:
    """Stop one process this benchmark started (its own process group): SIGTERM, then SIGKILL after 15 s."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    if proc.poll() is None:
        print(f"warning: could not stop {name} (pid {proc.pid})", file=sys.stderr)


@contextlib.contextmanager
def dask_cluster(course: Course, workers: int, logs: Path) -> Iterator[str]:
    """A Dask scheduler and ``workers`` single-thread workers on 127.0.0.1, the workers grading with the
    course copy ``course``; yields the scheduler's address. Everything started is stopped on leaving."""
    from distributed import Client

    dask = str(Path(sys.executable).parent / "dask")
    sched_file = logs / "scheduler.json"
    env = _env()
    procs: list[tuple[subprocess.Popen, str]] = []
    handles = []

    def start(args: list[str], name: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
        log = open(logs / f"{name}.log", "wb")
        handles.append(log)
        proc = subprocess.Popen([dask, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        procs.append((proc, name))
        return proc

    # The workers, and the scheduler too (it unpickles the task graph: it must import `autograder`), run with
    # the course copy's checkout.
    # DASK_DISTRIBUTED__WORKER__DAEMON=False: a worker that is not a daemon process may fork its grading processes
    # from the forkserver (autograder/forkserver.py), as the README tells instructors to start theirs.
    env = {**env, "LRDIFF_COURSE_ROOT": str(course.root), "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(course.root), env.get("PYTHONPATH")]))}
    try:
        sched = start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(sched_file),
                       "--no-dashboard"], "scheduler", course.root, env)
        address = None
        deadline = time.monotonic() + 60
        while address is None:
            if sched.poll() is not None:
                raise RuntimeError(f"dask scheduler exited with status {sched.returncode}; see {logs}/scheduler.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"dask scheduler wrote no {sched_file} in 60 s")
            try:
                address = json.loads(sched_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.2)
        for i in range(workers):
            start(["worker", "--scheduler-file", str(sched_file), "--nworkers", "1", "--nthreads", "1",
                   "--no-dashboard"], f"worker{i}", course.root, env)
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=120)
        print(f"    cluster up: scheduler {address}, {workers} worker(s) x 1 thread (logs: {logs})", flush=True)
        yield address
    finally:
        for proc, name in reversed(procs):  # workers first, then the scheduler
            _stop(proc, name)
        for log in handles:
            log.close()


def _status(course: Course) -> dict:
    """The grader's per-student status file (empty if it wrote none)."""
    try:
        return json.loads(course.status_file.read_text())
    except (OSError, ValueError):
        return {}


def _outcome(score: float | None, failed: bool) -> str:
    """What is compared across (a), (b) and (c): "failed", or the score."""
    return "failed" if failed else ("not in gradebook" if score is None else f"{score:g}")


def _cell(score: float | None, top: float, failed: str | None) -> str:
    if failed:
        return failed
    return "not in gradebook" if score is None else f"{score:g}/{top:g}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", "--n", "-n", dest="n", type=int, default=40,
                   help="submissions in the batch (default 40)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="the course grader's --jobs (default: every core, %(default)s here)")
    p.add_argument("--workers", type=int, default=2,
                   help="(c): dask worker processes started on 127.0.0.1, one thread each (default 2)")
    p.add_argument("--notebooks", nargs="+", choices=NOTEBOOKS, default=list(NOTEBOOKS))
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (courses, logs) and print where")
    args = p.parse_args()
    os.environ.update(_env())
    try:
        require_sandbox()
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from autograder.sandbox import opted_out

    if opted_out():  # fork and memory bombs unconfined would take the machine down
        print("error: the benchmark grades fork and memory bombs: it runs only with the sandbox on", file=sys.stderr)
        return 2

    differ: dict[str, tuple] = {}
    tmp = Path(tempfile.mkdtemp(prefix="lrdiff-bench-"))
    try:
        batch = build_batch(args.n, args.notebooks)
        inbox = tmp / "inbox"
        for student, (_, subs) in batch.items():
            support.write_submission(inbox, student, subs)
        kinds = [k for k in KINDS if any(kind == k for kind, _ in batch.values())]
        print(f"batch: {args.n} submissions ({', '.join(args.notebooks)}): "
              + ", ".join(f"{k} x{sum(kind == k for kind, _ in batch.values())}" for k in kinds))
        for k in kinds:
            if k in HOSTILE:
                print(f"  {k:14s} {HOSTILE[k][0]}")
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; sandbox on", flush=True)

        nbg = _prepare(tmp / "nbgrader" / "course", inbox)
        print(f"\n(a) serial nbgrader: nbgrader autograde {ASSIGNMENT} --force (one process) ...", flush=True)
        cpu0 = busy_cpu_seconds()
        t_a, failed_a = run_nbgrader(nbg, tmp / "nbgrader.log")
        cpu_a = busy_cpu_seconds() - cpu0
        scores_a = _scores(nbg, batch)

        ours = _prepare(tmp / "grader" / "course", inbox)
        print(f"\n(b) course grader, LocalCluster: python -m autograder autograde --jobs {args.jobs} ...",
              flush=True)
        cpu0 = busy_cpu_seconds()
        t_b = run_course_grader(ours, tmp / "grader.log", jobs=args.jobs)
        cpu_b = busy_cpu_seconds() - cpu0
        status_b = _status(ours)
        scores_b = _scores(ours, batch)

        dist = _prepare(tmp / "dask" / "course", inbox)
        logs = tmp / "dask-logs"
        logs.mkdir()
        print(f"\n(c) course grader on a Dask cluster on 127.0.0.1 ({args.workers} dask worker(s), 1 thread each):"
              " starting it (not timed) ...", flush=True)
        with dask_cluster(dist, args.workers, logs) as address:
            print(f"    python -m autograder autograde --scheduler {address} ...", flush=True)
            cpu0 = busy_cpu_seconds()
            t_c = run_course_grader(dist, tmp / "dask.log", scheduler=address)
            cpu_c = busy_cpu_seconds() - cpu0
        status_c = _status(dist)
        scores_c = _scores(dist, batch)

        with ours.gradebook() as gb:
            top = sum(float(nb.max_score) for nb in gb.find_assignment(ASSIGNMENT).notebooks
                      if nb.name in args.notebooks)
        print(f"\nper student (score out of {top:g}; under (a) 'nbgrader error' means nbgrader reported an error for"
              " that student, and what its gradebook holds is shown after it)")
        print(f"  {'student':20s} {'(a) serial nbgrader':30s} {'(b) course grader, local':30s} "
              "(c) course grader, Dask cluster")
        outcomes: dict[str, tuple] = {}
        for student in batch:
            a = _cell(scores_a[student], top, None)
            if student in failed_a:
                a = f"nbgrader error ({a})"
            st_b = status_b.get(student, {}).get("status", "?")
            b = _cell(scores_b[student], top, None if st_b == GRADED else st_b)
            st_c = status_c.get(student, {}).get("status", "?")
            c = _cell(scores_c[student], top, None if st_c == GRADED else st_c)
            print(f"  {student:20s} {a:30s} {b[:30]:30s} {c[:60]}")
            outcomes[student] = (_outcome(scores_a[student], student in failed_a),
                                 _outcome(scores_b[student], st_b != GRADED),
                                 _outcome(scores_c[student], st_c != GRADED))

        differ = {s: o for s, o in outcomes.items() if len(set(o)) > 1}
        if differ:
            print(f"\nDIFFERENT outcomes for {len(differ)} of {len(batch)} student(s) (score, or 'failed'):")
            for s, (oa, ob, oc) in differ.items():
                print(f"  {s:20s} (a) {oa}   (b) {ob}   (c) {oc}")
                for label, st in (("(b)", status_b), ("(c)", status_c)):
                    reason = st.get(s, {}).get("status", "?")
                    if reason != GRADED:
                        print(f"  {'':20s} {label} {reason[:140]}")
        else:
            print(f"\nsame outcome (score, or 'failed') for all {len(batch)} students under (a), (b) and (c)")

        n = len(batch)
        rate_a, rate_b, rate_c = n / t_a * 60, n / t_b * 60, n / t_c * 60
        print(f"\n{'':56s}{'seconds':>9s} {'submissions/min':>16s} {'speed-up over (a)':>18s} "
              f"{'CPU-s/submission':>17s}")
        for label, t, rate, cpu in (
            ("(a) serial nbgrader, sandbox on", t_a, rate_a, cpu_a),
            (f"(b) course grader, LocalCluster --jobs {args.jobs}", t_b, rate_b, cpu_b),
            (f"(c) course grader, --scheduler ({args.workers} workers x 1 thread)", t_c, rate_c, cpu_c),
        ):
            print(f"  {label:54s}{t:9.1f} {rate:16.2f} {f'{rate / rate_a:.2f}x':>18s} {cpu / n:17.1f}")
        print(f"  {n} submissions; {os.cpu_count()} CPUs (load average now {os.getloadavg()[0]:.1f}); sandbox on")
        if args.keep:
            print(f"\nkept: {tmp} (nbgrader.log, grader.log, dask.log, dask-logs/, nbgrader/course, grader/course,"
                  " dask/course)")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if differ:
        print("error: the three graders disagree (above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
