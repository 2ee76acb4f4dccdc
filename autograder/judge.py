"""nbgrader preprocessors that take the verdict of each graded test cell out of the student's kernel.

Plain ``nbgrader autograde`` scores a test cell by running it in the student's kernel and looking for an error
in its output: code in an earlier cell can make any test pass (replace ``torch.allclose`` or the checks, install
an IPython input transformer that deletes ``assert`` lines, swallow errors with ``set_custom_exc``, print a
partial-credit number). Here:

1. :class:`ProbeTestCells` (after nbgrader's ``OverwriteCells`` restored the locked test cells) replaces the
   code of every graded test cell with a *probe* (``autograder.verdict.probe_source``): it runs the cell's cases,
   visible and hidden, and displays what the student's functions returned as plain data. The cell's own code is
   kept in the cell's metadata, which the kernel never sees.
2. nbgrader executes the notebook (in the sandbox).
3. :class:`JudgeTestCells` (right after execution, before nbgrader's ``SaveAutoGrades``) reads each probe's
   evidence, judges it in this process with the grader's own torch and checks (``autograder.verdict.judge``),
   puts the cell's code back and replaces its outputs with the verdict: a line on stdout when it passed, an
   ``AssertionError`` saying what was expected and found when it did not. ``SaveAutoGrades`` then scores the
   cell from that, as usual. Whatever else the student's code printed in a test cell (warnings on stderr
   included) is not part of the verdict.

:class:`StripHiddenTests` (feedback) is nbgrader's ``ClearHiddenTests``: it removes ``### BEGIN HIDDEN TESTS``
blocks from the notebooks a student gets back, should an instructor add some to the source.
"""

from __future__ import annotations

from typing import Any

from nbformat.notebooknode import NotebookNode, from_dict
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor
from nbgrader.utils import is_grade, is_solution
from traitlets import Bool

from .time_limits import CALLS_KEY

__all__ = ["JudgeTestCells", "ProbeTestCells", "StripHiddenTests", "use_trusted_checks"]

#: Cell metadata key where the test cell's own code waits while the probe runs.
STASH = "lrdiff_test_source"


def _graded_test(cell: NotebookNode) -> bool:
    return cell.cell_type == "code" and is_grade(cell) and not is_solution(cell)


class ProbeTestCells(NbGraderPreprocessor):
    """Replace the code of each graded test cell that has a check in ``autograder.cases`` with its probe."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        from .cases import CHECKS
        from .verdict import probe_source

        for cell in nb.cells:
            cell.metadata.pop(STASH, None)  # a submission cannot plant its own
            cell.metadata.pop(CALLS_KEY, None)
            if not _graded_test(cell):
                continue
            grade_id = cell.metadata["nbgrader"]["grade_id"]
            if grade_id not in CHECKS:
                self.log.warning("Test cell %s has no check in autograder/cases.py: graded in the kernel", grade_id)
                continue
            cell.metadata[STASH] = cell.source
            cell.source = probe_source(grade_id)
            # the student's functions the probe calls, which its code names only as strings: after one of them
            # hangs, the executor fails the later probes that call it at once (autograder/time_limits.py)
            cell.metadata[CALLS_KEY] = sorted({case.fn for case in CHECKS[grade_id].cases if case.fn})
        return nb, resources


class JudgeTestCells(NbGraderPreprocessor):
    """Judge each probed test cell from its evidence; put its code back and its verdict in its outputs."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        from .verdict import judge

        sources = [c.source for c in nb.cells if c.cell_type == "code" and STASH not in c.metadata]
        probes = [c.source for c in nb.cells if STASH in c.metadata]
        for cell in nb.cells:  # student code that printed a probe (from IPython's In, a hook): not for feedback
            if cell.cell_type == "code" and STASH not in cell.metadata:
                cell.outputs = [_scrubbed(o, probes) for o in cell.get("outputs", [])]
        for cell in nb.cells:
            if STASH not in cell.metadata:
                continue
            cell.metadata.pop(CALLS_KEY, None)
            original = cell.metadata.pop(STASH)
            if not _graded_test(cell):  # not a cell the probe replaced (ProbeTestCells removes planted keys)
                continue
            grade_id = cell.metadata["nbgrader"]["grade_id"]
            verdict = judge(grade_id, list(cell.get("outputs", [])), sources)
            cell.source = original
            cell.outputs = [_verdict_output(verdict.ok, verdict.message)]
            self.log.info("%s: %s", grade_id, "passed" if verdict.ok else "failed")
        return nb, resources


_PROBE_MARKERS = ("_lrdiff_evidence", "lrdiff_helpers import evidence")


def _scrubbed(output: NotebookNode, probes: list[str]) -> NotebookNode:
    """The output, or a note in its place when it shows a probe's code or cases (hidden cases included)."""
    parts = [output.get("text", ""), output.get("evalue", ""), *output.get("traceback", [])]
    parts += [v if isinstance(v, str) else "".join(v) if isinstance(v, list) else ""
              for v in output.get("data", {}).values()]
    text = "".join(p if isinstance(p, str) else "".join(p) for p in parts)
    lines = {ln.strip() for probe in probes for ln in probe.splitlines()[2:] if len(ln.strip()) > 40}
    if not any(m in text for m in _PROBE_MARKERS) and not any(ln in text for ln in lines):
        return output
    return from_dict({"output_type": "stream", "name": "stdout",
                      "text": "[output removed by the grader: it showed the grader's code]\n"})


def _verdict_output(ok: bool, message: str) -> NotebookNode:
    if ok:
        return from_dict({"output_type": "stream", "name": "stdout", "text": f"{message}\n"})
    return from_dict({
        "output_type": "error",
        "ename": "AssertionError",
        "evalue": message,
        "traceback": [f"\x1b[0;31mAssertionError\x1b[0m: {message}"],
    })


class StripHiddenTests(ClearHiddenTests):
    """nbgrader's ``ClearHiddenTests``, for the feedback students get: each hidden-test block of a code cell
    becomes one line, ``# (hidden tests)``.

    Feedback is written for every submission, so a code cell that is no grade cell (a student's answer) is not an
    error here (``enforce_metadata`` off), and a block that cannot be cleared (opened and never closed, nested)
    is left as it is, as is every markdown cell.
    """

    enforce_metadata = Bool(False, help=ClearHiddenTests.enforce_metadata.help).tag(config=True)
    #: What stands where a block was.
    placeholder = "# (hidden tests)"

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple[NotebookNode, dict]:
        if cell.cell_type != "code" or self.begin_test_delimeter not in cell.source:
            return cell, resources
        original = cell.source
        cell.source = "\n".join(f"{self.placeholder}\n{line}" if self.begin_test_delimeter in line else line
                                for line in original.split("\n"))  # nbgrader keeps the line before a block
        try:
            return super().preprocess_cell(cell, resources, index)
        except RuntimeError:  # a block nbgrader cannot clear: the cell stays as it was
            cell.source = original
            return cell, resources


def use_trusted_checks(c: Any) -> None:
    """Wire the preprocessors into nbgrader's configuration ``c`` (``autograder/nbgrader_config.py``)."""
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.converters.autograde import Autograde
    from nbgrader.preprocessors import Execute, GetGrades, OverwriteCells

    traits = Autograde.class_traits()
    sanitize = list(traits["sanitize_preprocessors"].default())
    sanitize.insert(sanitize.index(OverwriteCells) + 1, ProbeTestCells)
    autograde = list(traits["autograde_preprocessors"].default())
    autograde.insert(autograde.index(Execute) + 1, JudgeTestCells)
    c.Autograde.sanitize_preprocessors = sanitize
    c.Autograde.autograde_preprocessors = autograde
    c.GenerateFeedback.preprocessors = [StripHiddenTests, GetGrades, CSSHTMLHeaderPreprocessor]
