"""Does the grader skip, with the reason, the cells that would wait again for a function that already hung?

Unit tests of ``autograder/time_limits.py`` on notebooks built here (no kernel); the end-to-end hang is in the
hostile suite (``hang_in_exercise``).
"""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from traitlets.config import Config

from autograder import NOTEBOOKS
from autograder.course import Course
from autograder.time_limits import CALLS_KEY, NotebookTimeLimits, called_names, defined_functions, describe_limits


class Limits(NotebookTimeLimits):
    timeout = 300  # Execute's trait, in the real class


def _notebook() -> nbformat.NotebookNode:
    probe = new_code_cell("_lrdiff_evidence.probe('g', [], globals())")
    probe.metadata[CALLS_KEY] = ["slow"]
    return new_notebook(cells=[
        new_code_cell("def slow(x):\n    while True:\n        pass\n\ndef fast(x):\n    return x"),
        new_markdown_cell("slow(1)"),
        new_code_cell("print(slow(1))"),  # 2: hangs
        new_code_cell("print(fast(2))"),  # 3: calls print too, but not slow
        new_code_cell("y = [slow(i) for i in range(3)]"),  # 4
        probe,  # 5: calls slow through its metadata
    ])


def _timed_out(cell: nbformat.NotebookNode) -> None:
    cell.outputs = [new_output("error", ename="CellTimeoutError", evalue="", traceback=[])]


def test_called_and_defined_names():
    """Are calls found by name and by attribute, and top-level defs only, with magics ignored?"""
    assert called_names("a = f(1) + obj.g(h(2))") == {"f", "g", "h"}
    assert called_names("%timeit f(1)") == set()
    assert defined_functions(["def f():\n    def inner(): pass", "class C:\n    def m(self): pass", "%%bash"]) == {"f"}


def test_after_a_timeout_only_the_cells_calling_the_hung_function_are_skipped():
    """After the cell calling slow() times out, are the later cells calling slow() (in code or through a probe's
    metadata) skipped with the reason, and the others run?"""
    nb, limits = _notebook(), Limits()
    limits.start_notebook(nb, "exercises")
    assert all(limits.skip_reason(c) is None for c in nb.cells)
    _timed_out(nb.cells[2])
    limits.note_cell_result(nb.cells[2], 2)
    reasons = {i: limits.skip_reason(c) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    assert reasons[3] is None and reasons[0] is None
    for i in (4, 5):
        assert "cell 2 timed out after 300 s calling slow" in reasons[i], reasons[i]


def test_a_cell_that_finished_marks_nothing():
    """Does a cell that ended (even with an error) leave every later cell to run?"""
    nb, limits = _notebook(), Limits()
    limits.start_notebook(nb, "exercises")
    nb.cells[2].outputs = [new_output("error", ename="KeyboardInterrupt", evalue="", traceback=[])]
    limits.note_cell_result(nb.cells[2], 2)
    assert all(limits.skip_reason(c) is None for c in nb.cells)


def test_limits_per_notebook_and_in_the_log_line():
    """Does each notebook get its own cell limit and kernel lifetime, the others the defaults, and does the
    course's configuration say what they are?"""
    limits = Limits(config=Config({"NotebookTimeLimits": {"cell_seconds": {"quiz": 7},
                                                          "notebook_seconds": {"quiz": 40}}}))
    limits.start_notebook(new_notebook(), "quiz")
    limits.apply_cell_limit()
    assert (limits.timeout, limits.wall_seconds_for_notebook()) == (7, 40)
    limits.start_notebook(new_notebook(), "experiment")
    limits.timeout = 300
    limits.apply_cell_limit()
    assert (limits.timeout, limits.wall_seconds_for_notebook()) == (300, None)
    line = describe_limits(Course().config(), NOTEBOOKS)
    assert all(name in line for name in NOTEBOOKS) and "s per cell" in line
