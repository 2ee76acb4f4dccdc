"""How long a grading kernel may run: limits per notebook, and no second wait on a function that hung.

nbgrader gives every cell the same timeout, and after a cell times out it runs the next cell, which often calls
the same function and waits it out again: one student's infinite loop in one exercise held a grading core for
over ten minutes. :class:`NotebookTimeLimits` (mixed into :class:`autograder.sandbox.SandboxedExecute`) gives
each notebook its own limits (``cell_seconds``, ``notebook_seconds``, by notebook name) and, once a cell has
timed out, fails every later cell that calls one of the notebook's own functions that the timed-out cell called,
at once, with the reason, instead of running it.

A cell "calls" the functions named in its code (``f(...)``, ``obj.f(...)``), plus those listed in its metadata
under :data:`CALLS_KEY` (set by a preprocessor that rewrites a cell so that its code no longer shows them).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any

from traitlets import Dict, Int
from traitlets.config import LoggingConfigurable

#: Cell metadata: names of functions the cell calls that its code does not show.
CALLS_KEY = "lrdiff_calls"

#: The ``ename`` of an error output for a cell that was not run because an earlier one hung.
NOT_RUN = "NotRunAfterTimeout"


def called_names(source: str) -> set[str]:
    """Names called in ``source``: ``f`` for ``f(...)`` and ``obj.f(...)``; none when it is not Python.

    >>> sorted(called_names("x = f(1) + m.g(h)"))
    ['f', 'g']
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics and the like
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name):
                names.add(node.func.id)
            elif isinstance(node.func, ast.Attribute):
                names.add(node.func.attr)
    return names


def defined_functions(sources: Iterable[str]) -> set[str]:
    """Names of the functions defined at the top level of the cells ``sources``."""
    names = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        names |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return names


class NotebookTimeLimits(LoggingConfigurable):
    """Per-notebook cell and kernel time limits, and cells skipped after a timeout (see the module's doc)."""

    cell_seconds = Dict(
        value_trait=Int(),
        help="Per notebook (its name without .ipynb): seconds one cell may run before it is interrupted and "
        "failed. A notebook not listed uses Execute.timeout.",
    ).tag(config=True)
    notebook_seconds = Dict(
        value_trait=Int(),
        help="Per notebook: seconds its kernel may live, all cells together, before it is killed (the notebook "
        "then fails to grade). A notebook not listed uses SandboxedKernelManager.wall_seconds.",
    ).tag(config=True)

    # set per notebook by start_notebook; these hold until then (nothing has hung, no notebook-specific limits)
    _notebook: str = ""
    _own_functions: frozenset[str] | set[str] = frozenset()
    _hung: dict[str, int] | None = None  # function -> index of the cell that timed out calling it

    def start_notebook(self, nb: Any, notebook: str) -> None:
        """Before a notebook runs: remember its name, its own functions, and that nothing has hung yet."""
        self._notebook = notebook
        self._own_functions = defined_functions(c.source for c in nb.cells if c.cell_type == "code")
        self._hung = {}

    def apply_cell_limit(self) -> None:
        """Set this notebook's cell limit (call after nbclient re-read its configuration)."""
        seconds = self.cell_seconds.get(self._notebook)
        if seconds:
            self.timeout = seconds

    def wall_seconds_for_notebook(self) -> int | None:
        """This notebook's kernel lifetime, or ``None`` for the kernel manager's own."""
        return self.notebook_seconds.get(self._notebook) or None

    def log_limits(self, wall_seconds: int) -> None:
        self.log.info("Time limits for %s: %s s per cell, %s s for the notebook", self._notebook or "?",
                      self.timeout, wall_seconds or "no limit")

    def _calls(self, cell: Any) -> set[str]:
        extra = cell.get("metadata", {}).get(CALLS_KEY) or []
        names = called_names(cell.source) | {n for n in extra if isinstance(n, str)}
        return names & (self._own_functions | set(extra))

    def skip_reason(self, cell: Any) -> str | None:
        """Why ``cell`` is not run (it calls a function that already hung), or ``None`` to run it."""
        if not self._hung:
            return None
        hung = sorted(self._calls(cell) & set(self._hung))
        if not hung:
            return None
        first = min(self._hung[n] for n in hung)
        return (f"not run: cell {first} timed out after {self.timeout} s calling {', '.join(hung)}, and this cell "
                "calls it too (the grader does not wait for it twice)")

    def note_cell_result(self, cell: Any, index: int) -> None:
        """After a cell ran: if it timed out, remember the notebook functions it called."""
        timed_out = any(o.get("output_type") == "error" and o.get("ename") == "CellTimeoutError"
                        for o in cell.get("outputs", []))
        if timed_out:
            if self._hung is None:
                self._hung = {}
            for name in self._calls(cell):
                self._hung.setdefault(name, index)
            self.log.warning("Cell %d of %s timed out after %s s; later cells calling %s are not run", index,
                             self._notebook or "?", self.timeout, ", ".join(sorted(self._calls(cell))) or "-")


def describe_limits(config: Any, notebooks: Iterable[str]) -> str:
    """One line for the grading log: each notebook's cell and kernel limits under ``config``."""
    section = config.get("SandboxedExecute", {})
    cells, walls = section.get("cell_seconds", {}), section.get("notebook_seconds", {})
    cell_default = config.get("Execute", {}).get("timeout", 30)
    wall_default = config.get("SandboxedKernelManager", {}).get("wall_seconds", 3600)
    return "; ".join(f"{name} {cells.get(name, cell_default)} s per cell, {walls.get(name, wall_default)} s in all"
                     for name in notebooks)
