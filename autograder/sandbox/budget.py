"""How much of what a kernel sends back the grader keeps: sizes, the output budget, cut errors.

A kernel can send unbounded output (``while True: print("x" * 10**6)``, one 100 MB print, a huge
display_data), and nbclient keeps all of it in the grader's memory, then nbgrader writes it to disk. Two
layers bound it: :class:`~autograder.sandbox.iopub.CappedIOPubChannel` never decodes a message larger than a
few MB (it reads its header only), and :class:`~autograder.sandbox.execute.SandboxedExecute` keeps at most a
budget of output per cell and per notebook (:class:`OutputBudget`).
"""

from __future__ import annotations

from typing import Any

MIB = 1 << 20
#: Key of a message dict that CappedIOPubChannel made up for a message it dropped unread: that message's size
#: in bytes. A key of the dict itself, not of its content, so nothing the kernel sends can set it.
DROPPED = "lrdiff_dropped_bytes"
#: Message type of such a stand-in (except for errors, which keep their type: a cell that failed still fails).
DROPPED_TYPE = "lrdiff_dropped"


def output_size(obj: Any) -> int:
    """Roughly the memory an output (or a message's content) holds: the characters of its strings and keys,
    the bytes of its buffers, 8 for any other value. Iterative: a deeply nested JSON output cannot overflow
    the stack."""
    total, todo = 0, [obj]
    while todo:
        o = todo.pop()
        if isinstance(o, str):
            total += len(o)
        elif isinstance(o, (bytes, bytearray)):
            total += len(o)
        elif isinstance(o, memoryview):
            total += o.nbytes
        elif isinstance(o, dict):
            for k, v in o.items():
                total += len(k) if isinstance(k, str) else 8
                todo.append(v)
        elif isinstance(o, (list, tuple)):
            total += 8 * len(o)
            todo.extend(o)
        else:
            total += 8
    return total


def _cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how many went."""
    return text[:limit] + f" [... {len(text) - limit} characters cut by the grader]"


def _last_lines(lines: list[str], room: int) -> list[str]:
    """The last of ``lines`` that fit in ``room`` characters (each cut to half of it), after a note of how
    many were left out."""
    kept: list[str] = []
    used = 0
    for line in reversed(lines):
        if len(line) > room // 2:
            line = _cut(line, room // 2)
        if used + len(line) > room:
            break
        kept.append(line)
        used += len(line)
    kept.reverse()
    if len(kept) < len(lines):
        kept.insert(0, f"[... {len(lines) - len(kept)} traceback entries cut by the grader]")
    return kept


def truncate_error(err: dict, limit: int) -> None:
    """Cut an error output (or an error message's content) down to about ``limit`` characters, in place:
    the name and the start of the value stay, and the traceback keeps its last entries (where the error is)."""
    if limit <= 0:
        return
    tb = err.get("traceback")
    lines = [x if isinstance(x, str) else str(x) for x in tb] if isinstance(tb, list) else []
    ename = err.get("ename") if isinstance(err.get("ename"), str) else str(err.get("ename", ""))
    evalue = err.get("evalue") if isinstance(err.get("evalue"), str) else str(err.get("evalue", ""))
    if len(ename) + len(evalue) + sum(map(len, lines)) <= limit and isinstance(tb, list):
        return
    ename = ename[:200]
    if len(evalue) > limit // 4:
        evalue = _cut(evalue, limit // 4)
    room = max(limit - len(ename) - len(evalue), 1024)
    err["ename"], err["evalue"], err["traceback"] = ename, evalue, _last_lines(lines, room)


class _CellUse:
    __slots__ = ("used", "truncated", "late_errors")

    def __init__(self) -> None:
        self.used = 0
        self.truncated = False
        self.late_errors = 0


class OutputBudget:
    """How much output of a notebook's cells the grader keeps (see ``SandboxedExecute``).

    Sizes are :func:`output_size`'s; a limit of 0 or less means none. Per cell, outputs are kept until
    ``cell_bytes``, then dropped (a stream is cut at the limit) and the caller adds :meth:`admit`'s note, once.
    The whole notebook keeps at most ``notebook_bytes`` the same way. Privileged outputs (``evidence=True``:
    the caller decides which, ``SandboxedExecute.evidence_mime``) of up to ``evidence_bytes`` each are exempt
    from the cell budget; they count against the notebook's, and are themselves kept up to ``notebook_bytes``
    in all (a student's prints cannot push them out). An error is always kept (the caller cuts it to
    ``error_bytes``), past the budget one per cell. Widget (comm) messages, which nbclient keeps as widget
    state, have a budget of ``notebook_bytes`` of their own.
    """

    def __init__(self, cell_bytes: int, notebook_bytes: int, evidence_bytes: int = MIB, error_bytes: int = 64 << 10):
        inf = float("inf")
        self.cell_bytes = cell_bytes if cell_bytes > 0 else inf
        self.notebook_bytes = notebook_bytes if notebook_bytes > 0 else inf
        self.evidence_bytes = evidence_bytes
        self.error_bytes = error_bytes
        self.cells: dict[int, _CellUse] = {}
        self.notebook_used = 0
        self.evidence_used = 0
        self.widget_used = 0

    def _cell(self, index: int) -> _CellUse:
        return self.cells.setdefault(index, _CellUse())

    def start_cell(self, index: int) -> None:
        """A cell starts executing: its earlier outputs (if it ran before) are gone."""
        old = self.cells.pop(index, None)
        if old is not None:
            self.notebook_used -= old.used

    def cleared(self, index: int) -> None:
        """The cell's outputs were cleared (``clear_output``): what they used is free again."""
        cell = self._cell(index)
        self.notebook_used -= cell.used
        cell.used, cell.truncated = 0, False

    def _note(self, by_cell: bool) -> str:
        if by_cell:
            return f"[output truncated by the grader: more than {self.cell_bytes / MIB:g} MB]\n"
        return f"[output truncated by the grader: more than {self.notebook_bytes / MIB:g} MB in this notebook]\n"

    def admit(self, index: int, size: int, *, evidence: bool = False) -> tuple[int, str | None]:
        """How much of a new output of ``size`` to keep (all of it, the first part of a stream, or 0), and
        the note to add after it (``None``: no note)."""
        if evidence and size <= self.evidence_bytes and self.evidence_used + size <= self.notebook_bytes:
            self.evidence_used += size
            self.notebook_used += size
            return size, None
        cell = self._cell(index)
        if cell.truncated:
            return 0, None
        cell_room = self.cell_bytes - cell.used
        notebook_room = self.notebook_bytes - self.notebook_used
        room = min(cell_room, notebook_room)
        if size <= room:
            cell.used += size
            self.notebook_used += size
            return size, None
        cell.truncated = True
        keep = int(max(room, 0))
        cell.used += keep
        self.notebook_used += keep
        return keep, self._note(cell_room <= notebook_room)

    def admit_error(self, index: int, size: int) -> bool:
        """Whether to keep an error output (already cut to ``error_bytes``)."""
        cell = self._cell(index)
        if not cell.truncated and size <= min(self.cell_bytes - cell.used, self.notebook_bytes - self.notebook_used):
            cell.used += size
            self.notebook_used += size
            return True
        cell.late_errors += 1
        return cell.late_errors == 1

    def admit_widget(self, size: int) -> bool:
        """Whether to keep a widget (comm) message."""
        if self.widget_used + size > self.notebook_bytes:
            return False
        self.widget_used += size
        return True

    def admit_update(self, new_size: int, delta: int) -> bool:
        """Whether to apply a display update whose data has ``new_size`` and grows the notebook by ``delta``."""
        if new_size > self.cell_bytes or self.notebook_used + delta > self.notebook_bytes:
            return False
        self.notebook_used += delta
        return True
