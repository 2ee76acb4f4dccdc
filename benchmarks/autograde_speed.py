"""How long does autograding take per submission? Grades a batch (default 20) in a scratch copy of the course.

    .venv/bin/python benchmarks/autograde_speed.py             # 20 submissions, all three notebooks
    .venv/bin/python benchmarks/autograde_speed.py -n 5 --notebooks exercises quiz

The batch mixes the reference solution, the blank release and the wrong answers of
``tests/fixtures/submissions/variants.py``, as a real class would. Prints each submission's time and a summary.
Timings depend on the machine's load: the course's CI machine has 2 cores shared with other jobs.
"""

from __future__ import annotations

import argparse
import os
import runpy
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder import NOTEBOOKS, pipeline, testing  # noqa: E402


def _batch(n: int, notebooks: list[str]) -> dict[str, dict]:
    variants = runpy.run_path(str(ROOT / "tests" / "fixtures" / "submissions" / "variants.py"))
    sols = {nb: testing.solutions(nb) for nb in NOTEBOOKS}
    kinds = [
        ("ref", {}),
        ("wrong", {gid: code for gid, (_, code, _) in variants["WRONG"].items()}),
        ("blank", None),
        ("wrong2", {gid: code for gid, (_, code, _) in variants["WRONG_2"].items()} | variants["WARNS"]),
    ]
    out = {}
    for i in range(n):
        kind, changes = kinds[i % len(kinds)]
        subs = {}
        for nb in notebooks:
            if changes is None:
                subs[nb] = testing.submission(nb, {})
            else:
                answers = dict(sols[nb])
                answers.update({k: v for k, v in changes.items() if k in answers})
                subs[nb] = testing.submission(nb, answers)
        out[f"s{i:02d}_{kind}"] = subs
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=20, help="submissions in the batch (default 20)")
    p.add_argument("--notebooks", nargs="+", choices=NOTEBOOKS, default=list(NOTEBOOKS))
    args = p.parse_args()
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    os.environ.pop("LRDIFF_GRADEBOOK_URL", None)

    with tempfile.TemporaryDirectory(prefix="lrdiff-bench-") as tmp:
        root = testing.copy_course(Path(tmp) / "course")
        course = pipeline.Course(root)
        inbox = Path(tmp) / "inbox"
        for student, subs in _batch(args.n, args.notebooks).items():
            testing.write_submission(inbox, student, subs)
        t0 = time.perf_counter()
        pipeline.release(course)
        t_release = time.perf_counter() - t0
        pipeline.collect(course, [inbox])
        print(f"batch of {args.n} submissions ({', '.join(args.notebooks)}); release {t_release:.1f} s", flush=True)
        t0 = time.perf_counter()
        results = pipeline.autograde(
            course, progress=lambda r: print(f"  {r.student:14s} {r.seconds:6.1f} s  {r.status}", flush=True))
        total = time.perf_counter() - t0
    secs = [r.seconds for r in results]
    failed = [r for r in results if not r.ok]
    print(f"autograde: {len(results)} submissions in {total:.1f} s: {total / len(results):.1f} s per submission "
          f"(median {statistics.median(secs):.1f} s, min {min(secs):.1f} s, max {max(secs):.1f} s); "
          f"{len(failed)} failed; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
