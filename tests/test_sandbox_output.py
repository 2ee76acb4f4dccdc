"""Output the grader keeps from a sandboxed kernel (autograder/sandbox/): budgets per cell and per notebook.

One notebook ("the flood notebook") prints, displays and raises far more than a grader may keep; it is executed
once by nbgrader's sandboxed Execute preprocessor in a separate grader process, whose peak memory is measured,
and each test reads what one of its cells kept. The tests skip only when bubblewrap cannot run here and env CI
is unset; in CI that is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lrdiff_helpers.evidence import MIME as EVIDENCE

ROOT = Path(__file__).resolve().parents[1]


#: Runs in a fresh interpreter, so that its peak RSS is the grader's own: executes the flood notebook with
#: nbgrader's (sandboxed) Execute preprocessor, then prints what each cell kept and the peak RSS as JSON.
FLOOD_RUNNER = """\
import json, resource, sys, time
import nbformat
sys.path.insert(0, sys.argv[1])
from autograder import sandbox
from traitlets.config import Config
cells = json.loads(sys.argv[2])
nb = nbformat.v4.new_notebook(
    metadata={"kernelspec": {"name": "lrdiff", "display_name": "Python (lrdiff)", "language": "python"}})
nb.cells = [nbformat.v4.new_code_cell(code, metadata={"name": name}) for name, code in cells]
c = Config()
c.SandboxedKernelManager.unsafe_no_sandbox = False
c.SandboxedExecute.evidence_mime = sys.argv[5]  # as the course's nbgrader_config.py sets it
c.Execute.timeout = int(sys.argv[3])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.monotonic()
failure = None
try:
    sandbox.SandboxedExecute(config=c).preprocess(nb, {"metadata": {"path": sys.argv[4]}})
except Exception as err:
    failure = f"{type(err).__name__}: {err}"[:2000]
print(json.dumps({
    "cells": {cell.metadata["name"]: cell.outputs for cell in nb.cells},
    "failure": failure,
    "seconds": time.monotonic() - t0,
    "rss_before_mb": before / 1024,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""
FLOOD_CELLS = [
    ("hello", "print('hello')"),
    ("print_100mb", "print('x' * 10**8)"),
    ("print_loop", "while True:\n    print('x' * 10**6)"),  # stopped by the cell timeout
    ("after_loop", "print('alive')"),
    (
        "kernel_memory",
        "import gc, json\ngc.collect()\n"
        "status = dict(line.split(':', 1) for line in open('/proc/self/status') if ':' in line)\n"
        "print(json.dumps({'rss_mb': int(status['VmRSS'].split()[0]) // 1024}))",
    ),
    (
        "evidence",
        "import json\nfrom IPython.display import display\n"
        "print('y' * 3 * 10**6)\n"
        f"display({{{EVIDENCE!r}: json.dumps({{'probe': 'ok', 'pad': 'p' * 500_000}})}}, raw=True)\n"
        f"display({{{EVIDENCE!r}: json.dumps({{'probe': 'too big', 'pad': 'p' * 1_500_000}})}}, raw=True)\n"
        "print('not kept')",
    ),
    ("huge_display", "from IPython.display import display\ndisplay({'text/plain': 'd' * 10**7}, raw=True)"),
    (
        "updates",
        "from IPython.display import display, update_display\n"
        "display({'text/plain': 'a'}, raw=True, display_id='u')\n"
        "for _ in range(30):\n"
        "    update_display({'text/plain': 'b' * 10**6}, raw=True, display_id='u')\n"
        "update_display({'text/plain': 'c' * 3 * 10**6}, raw=True, display_id='u')  # over the cell budget",
    ),
    (
        "error_flood",
        "k = get_ipython().kernel\n"
        "for i in range(200):  # raw error messages, as a hostile kernel could send them\n"
        "    k.session.send(k.iopub_socket, 'error', {'ename': 'E', 'evalue': 'v' * 100_000, 'traceback': []},\n"
        "                   parent=k.get_parent(), ident=b'error')\n"
        "raise ValueError('w' * 10**7)",
    ),
    ("stderr", "import sys\nprint('e' * 3 * 10**6, file=sys.stderr)"),
    ("done", "print('done')"),
]


@pytest.fixture(scope="module")
def flood(require_sandbox: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The flood notebook, executed once by nbgrader's sandboxed Execute in a separate grader process."""
    folder = tmp_path_factory.mktemp("flood")
    proc = subprocess.run(
        [sys.executable, "-c", FLOOD_RUNNER, str(ROOT), json.dumps(FLOOD_CELLS), "8", str(folder), EVIDENCE],
        capture_output=True, text=True, timeout=600, env=dict(os.environ),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\nflood notebook: {result['seconds']:.1f} s, grader peak RSS {result['peak_rss_mb']:.0f} MB "
          f"(after imports {result['rss_before_mb']:.0f} MB)")  # fmt: skip
    return result


def stream_text(outputs: list[dict[str, Any]], name: str = "stdout") -> str:
    return "".join(o["text"] for o in outputs if o["output_type"] == "stream" and o["name"] == name)


def kept_bytes(outputs: list[dict[str, Any]]) -> int:
    return len(json.dumps(outputs))


NOTE = "[output truncated by the grader: more than 2 MB]"


@pytest.mark.slow
def test_flood_is_graded_with_bounded_memory(flood: dict[str, Any]) -> None:
    """Do a 100 MB print and an endless print loop leave the grader's memory bounded (peak RSS well under what
    one such print costs to keep), with the notebook executed to its last cell?"""
    assert flood["failure"] is None
    assert stream_text(flood["cells"]["done"]) == "done\n"
    assert flood["peak_rss_mb"] < flood["rss_before_mb"] + 250, f"grader peak RSS {flood['peak_rss_mb']:.0f} MB"


@pytest.mark.slow
def test_big_print_becomes_a_note(flood: dict[str, Any]) -> None:
    """Is a 100 MB print dropped, with one short note on stdout (not stderr: nbgrader scores stderr 0)?"""
    outs = flood["cells"]["print_100mb"]
    assert stream_text(outs) == NOTE + "\n"
    assert stream_text(outs, "stderr") == ""
    assert stream_text(flood["cells"]["hello"]) == "hello\n"


@pytest.mark.slow
def test_print_loop_is_cut_at_the_cell_budget(flood: dict[str, Any]) -> None:
    """Does a print loop keep its first 2 MB and one note, get interrupted by the timeout, and the next cell
    run?"""
    outs = flood["cells"]["print_loop"]
    text = stream_text(outs)
    assert text.endswith(NOTE + "\n") and text.count(NOTE) == 1
    assert 1 << 20 < len(text) <= (2 << 20) + 100
    assert set(text[: -len(NOTE) - 2].replace("\n", "")) == {"x"}
    assert "KeyboardInterrupt" in [o.get("ename") for o in outs]  # interrupted by the cell timeout
    assert stream_text(flood["cells"]["after_loop"]) == "alive\n"


@pytest.mark.slow
def test_kernel_keeps_no_copy_of_its_output(flood: dict[str, Any]) -> None:
    """After printing 100 MB and looping on prints for 8 s, is the kernel's own memory small (IPython 9 would
    keep a copy of every printed string: gigabytes, then MemoryError in every later cell)?"""
    assert json.loads(stream_text(flood["cells"]["kernel_memory"]))["rss_mb"] < 500


@pytest.mark.slow
def test_evidence_is_exempt_from_the_cell_budget(flood: dict[str, Any]) -> None:
    """Is a grading-evidence output of up to 1 MB kept after the cell's prints used up its budget, while a
    larger one, and further prints, are dropped?"""
    outs = flood["cells"]["evidence"]
    evidence = [json.loads(o["data"][EVIDENCE]) for o in outs if EVIDENCE in o.get("data", {})]
    assert [e["probe"] for e in evidence] == ["ok"]
    text = stream_text(outs)
    assert text.count(NOTE) == 1 and "not kept" not in text


@pytest.mark.slow
def test_huge_display_and_display_updates_are_bounded(flood: dict[str, Any]) -> None:
    """Is a 10 MB display dropped with a note, and a display update larger than the cell budget ignored
    (the display keeps its last update that fitted)?"""
    assert stream_text(flood["cells"]["huge_display"]) == NOTE + "\n"
    outs = flood["cells"]["updates"]
    (display,) = [o for o in outs if o["output_type"] == "display_data"]
    assert display["data"]["text/plain"] == "b" * 10**6


@pytest.mark.slow
def test_errors_are_kept_cut_and_bounded(flood: dict[str, Any]) -> None:
    """Is the cell's own error kept (its name, so nbgrader scores the cell as failing) and cut to about
    64 KB, while a flood of raw error messages keeps no more than the cell budget?"""
    outs = flood["cells"]["error_flood"]
    errors = [o for o in outs if o["output_type"] == "error"]
    assert "ValueError" in [e["ename"] for e in errors]
    assert all(len(json.dumps(e)) < 80_000 for e in errors)
    assert kept_bytes(outs) < (2 << 20) + 200_000


@pytest.mark.slow
def test_stderr_past_the_budget_is_cut_with_a_stdout_note(flood: dict[str, Any]) -> None:
    """Is a 3 MB write to stderr cut at 2 MB, with the note on stdout?"""
    outs = flood["cells"]["stderr"]
    assert stream_text(outs) == NOTE + "\n"
    assert (1 << 20) < len(stream_text(outs, "stderr")) <= (2 << 20) + 100
