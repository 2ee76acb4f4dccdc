"""How long does each lesson take to execute? Prints seconds per lesson and the total.

    .venv/bin/python benchmarks/lesson_times.py [notebooks/NAME.ipynb ...]

Each lesson is executed top to bottom in a fresh `lrdiff` kernel (on a copy: the committed file is not
touched). Goals: under 60 s each and under 4 minutes together on 2 CPU cores. A lesson that "runs" in well
under a second has not really run: it is flagged.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lrdiff_helpers.reproducibility import pin  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(paths: list[str]) -> int:
    pin()  # the kernels get the same pins from their kernelspec; this covers this process's helpers
    lessons = [Path(p) for p in paths] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    total, bad = 0.0, []
    for path in lessons:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, kernel_name="lrdiff", timeout=600, resources={"metadata": {"path": str(path.parent)}}).execute()
        seconds = time.perf_counter() - start
        total += seconds
        flag = "  <- over 60 s" if seconds > 60 else ("  <- suspiciously fast: did it run?" if seconds < 1 else "")
        if flag:
            bad.append(path.name)
        print(f"{path.name:32s} {seconds:6.1f} s{flag}", flush=True)
    print(f"{'total':32s} {total:6.1f} s{'  <- over 4 minutes' if total > 240 else ''}")
    return 1 if bad or total > 240 else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
