"""nbgrader's ``Execute`` preprocessor with its kernel in the sandbox and a bounded amount of output kept.

Importing this module imports nbgrader; ``autograder.sandbox`` imports it only when ``SandboxedExecute`` is
asked for.
"""

from __future__ import annotations

from typing import Any

from nbclient.exceptions import DeadKernelError
from nbclient.util import run_sync
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Float, Int, Unicode

from ..time_limits import NOT_RUN, NotebookTimeLimits
from .budget import DROPPED, MIB, OutputBudget, output_size, truncate_error
from .iopub import CappedIOPubChannel
from .kernel import SandboxedKernelManager

#: Message types whose outputs nbclient keeps (errors aside).
_KEPT_TYPES = ("stream", "display_data", "execute_result")


class KernelTimeoutError(DeadKernelError):
    """The kernel was killed for running longer than ``SandboxedKernelManager.wall_seconds``."""


class SandboxedExecute(NotebookTimeLimits, Execute):
    """nbgrader's ``Execute`` preprocessor with its kernel in the sandbox, keeping a bounded amount of output.

    Per cell, outputs are kept up to ``output_mb_per_cell``; past it the cell's further outputs are dropped
    (a stream is cut at the limit), never held in memory, and one note is added as a stdout stream
    (stderr would score a test cell 0): ``[output truncated by the grader: more than 2 MB]``. The cell keeps
    running. The notebook as a whole keeps up to ``output_mb_per_notebook`` the same way. Errors are always
    kept, cut to ``error_kb_each``. Outputs holding ``evidence_mime`` (the course sets its grading evidence's
    MIME type) of up to ``evidence_mb_each`` are exempt from the cell budget (see :class:`OutputBudget`). A
    single message larger than twice the larger of the cell budget and the evidence limit is not even decoded
    (:class:`CappedIOPubChannel`).
    """

    output_mb_per_cell = Float(2.0, help="Output kept per cell, in MB (MiB); 0 = no limit.").tag(config=True)
    output_mb_per_notebook = Float(20.0, help="Output kept per notebook, in MB (MiB); 0 = no limit.").tag(
        config=True
    )
    evidence_mime = Unicode(
        "", help="MIME type of the outputs exempt from the cell budget (up to evidence_mb_each each); '' = none."
    ).tag(config=True)
    evidence_mb_each = Float(
        1.0, help="Largest evidence_mime output exempt from the cell budget, in MB (MiB)."
    ).tag(config=True)
    error_kb_each = Int(64, help="Error outputs are cut to about this many KB (KiB) each; 0 = never.").tag(
        config=True
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # nbgrader's Execute passes kernel_manager_class=AsyncKernelManager to the constructor, which
        # beats any config; setting it first here is the one way in.
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)

    # ---- time limits (autograder/time_limits.py)

    def preprocess(self, nb: Any, resources: Any = None, *args: Any, **kwargs: Any) -> Any:
        nbgrader_meta = (resources or {}).get("nbgrader") or {}
        self.start_notebook(nb, str(nbgrader_meta.get("notebook") or (resources or {}).get("unique_key") or ""))
        return super().preprocess(nb, resources, *args, **kwargs)

    # ---- budgets

    def reset_execution_trackers(self) -> None:
        super().reset_execution_trackers()
        self.apply_cell_limit()  # after nbclient re-read the configuration for this notebook
        self.output_budget = OutputBudget(
            int(self.output_mb_per_cell * MIB),
            int(self.output_mb_per_notebook * MIB),
            int(self.evidence_mb_each * MIB),
            int(self.error_kb_each * 1024),
        )

    def message_limit_mb(self) -> float:
        """Larger messages are dropped unread: twice the most one output may keep, and a little."""
        if self.output_mb_per_cell <= 0:
            return 0.0
        return 2 * max(self.output_mb_per_cell, self.evidence_mb_each) + 0.25

    def create_kernel_manager(self) -> Any:
        km = super().create_kernel_manager()
        if isinstance(km, SandboxedKernelManager):
            km.max_message_mb = self.message_limit_mb()
            km.wall_seconds = self.wall_seconds_for_notebook() or km.wall_seconds
            self.log_limits(km.wall_seconds)
        return km

    async def async_execute_cell(self, cell: Any, cell_index: int, *args: Any, **kwargs: Any) -> Any:
        self.output_budget.start_cell(cell_index)
        reason = self.skip_reason(cell) if cell.cell_type == "code" else None
        if reason is not None:  # it would call a function that already hung: fail it now, with the reason
            cell.outputs = [new_output("error", ename=NOT_RUN, evalue=reason,
                                       traceback=[f"\x1b[0;31m{NOT_RUN}\x1b[0m: {reason}"])]  # fmt: skip
            return cell
        try:
            result = await super().async_execute_cell(cell, cell_index, *args, **kwargs)
            self.note_cell_result(cell, cell_index)
            return result
        except DeadKernelError:
            err = self._death_error()
            if err is None:
                raise
            raise err from None

    def _death_error(self) -> Exception | None:
        """What to raise for a dead sandboxed kernel (a timeout or a crash, saying how), or ``None``."""
        km = self.km
        how = km.exit_description() if isinstance(km, SandboxedKernelManager) else None
        if how is None:
            return None
        # (the exception is made on a line of its own: a grader that reports the first line naming the
        # exception class then reports its message, not this source line)
        if km.wall_clock_killed:  # a timeout, not a crash: say so
            err: Exception = KernelTimeoutError(f"Timeout: the notebook's kernel was {how}")
        else:
            err = DeadKernelError(f"Kernel died ({how})")
        return err

    async def _async_check_alive(self) -> None:
        km = self.km
        if isinstance(km, SandboxedKernelManager) and km.wall_clock_killed:
            # no "Kernel died" log line: it is a timeout, reported when the cell ends (above)
            raise DeadKernelError("Kernel died")
        await super()._async_check_alive()

    execute_cell = run_sync(async_execute_cell)  # nbclient binds the sync name to its own coroutine

    # ---- outputs

    def _hooked(self, msg: dict[str, Any]) -> bool:
        """Does an Output widget capture this message's outputs (nbclient routes them to it)?"""
        return bool(self.output_hook_stack.get(msg["parent_header"].get("msg_id")))

    def _iopub(self) -> CappedIOPubChannel | None:
        channel = self.kc.iopub_channel if self.kc is not None else None
        return channel if isinstance(channel, CappedIOPubChannel) else None

    def _add_note(self, outs: list[Any], note: str) -> None:
        last = outs[-1] if outs else None
        if last is not None and last.get("output_type") == "stream" and not str(last.get("text")).endswith("\n"):
            note = "\n" + note
        outs.append(new_output("stream", name="stdout", text=note))

    def _clear_if_pending(self, outs: list[Any], msg: dict[str, Any], cell_index: int) -> None:
        """The delayed clear_output(wait=True) nbclient would do now: first, so the budget starts afresh."""
        if self.clear_before_next_output and not self._hooked(msg):
            outs[:] = []
            self.clear_display_id_mapping(cell_index)
            self.clear_before_next_output = False
            self.output_budget.cleared(cell_index)

    def _skip_rest_of_cell(self, msg: dict[str, Any]) -> None:
        """The cell is over budget from now on: its outputs are dropped unread, in the IOPub channel."""
        channel = self._iopub()
        if channel is not None:
            channel.exempt_mime = self.evidence_mime
            channel.skip_parents.add(msg["parent_header"].get("msg_id"))

    def _keep_part(self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int,
                   keep: int, size: int) -> Any:  # fmt: skip
        """Record all of an output (``keep >= size``), the first ``keep`` characters of a stream, or nothing."""
        if keep >= size:
            return super().output(outs, msg, display_id, cell_index)
        content = msg["content"]
        if keep > 0 and msg["msg_type"] == "stream" and isinstance(content.get("text"), str):
            text = content["text"]
            cut = text[: max(0, keep - (size - len(text)))]
            if cut:
                content["text"] = cut if cut.endswith("\n") else cut + "\n"
                return super().output(outs, msg, display_id, cell_index)
        return None

    def _is_evidence(self, content: dict[str, Any]) -> bool:
        data = content.get("data")
        return bool(self.evidence_mime) and isinstance(data, dict) and self.evidence_mime in data

    def output(self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int) -> Any:
        budget = self.output_budget
        self._clear_if_pending(outs, msg, cell_index)
        msg_type = msg["msg_type"]
        content = msg["content"]
        if msg_type == "error":
            truncate_error(content, budget.error_bytes)
            if not budget.admit_error(cell_index, output_size(content)):
                return None
            return super().output(outs, msg, display_id, cell_index)
        if DROPPED not in msg and msg_type not in _KEPT_TYPES:
            return None  # nbclient would keep nothing (and log the kernel's message type as an error)
        size = msg.get(DROPPED) or output_size(content) + output_size(msg.get("buffers") or [])
        keep, note = budget.admit(cell_index, size, evidence=self._is_evidence(content))
        if note:
            self._skip_rest_of_cell(msg)
        out = None if DROPPED in msg else self._keep_part(outs, msg, display_id, cell_index, keep, size)
        if note:
            self._add_note(outs, note)
        return out

    def clear_output(self, outs: list[Any], msg: dict[str, Any], cell_index: int) -> None:
        super().clear_output(outs, msg, cell_index)
        if self._hooked(msg):
            return
        channel = self._iopub()
        if channel is not None:  # outputs after the clear are read again
            channel.skip_parents.discard(msg["parent_header"].get("msg_id"))
        if not msg["content"].get("wait"):
            self.output_budget.cleared(cell_index)

    def handle_comm_msg(self, outs: list[Any], msg: dict[str, Any], cell_index: int) -> None:
        size = output_size(msg["content"]) + output_size(msg.get("buffers") or [])
        if self.output_budget.admit_widget(size):
            super().handle_comm_msg(outs, msg, cell_index)

    def _displayed_size(self, display_id: str) -> tuple[int, int]:
        """``(bytes, count)`` of the outputs now showing ``display_id``."""
        old, count = 0, 0
        for cell_idx, indices in self._display_id_map.get(display_id, {}).items():
            outputs = self.nb["cells"][cell_idx].get("outputs", [])
            for i in indices:
                if i < len(outputs):
                    old += output_size(outputs[i].get("data")) + output_size(outputs[i].get("metadata"))
                    count += 1
        return old, count

    def _update_display_id(self, display_id: str, msg: dict[str, Any]) -> None:
        if DROPPED in msg:
            return  # an update dropped unread: the displays keep what they show
        if not self._display_id_map.get(display_id):
            return super()._update_display_id(display_id, msg)
        content = msg["content"]
        new = output_size(content.get("data")) + output_size(content.get("metadata"))
        old, count = self._displayed_size(display_id)
        if self.output_budget.admit_update(new, new * count - old):
            super()._update_display_id(display_id, msg)
        else:
            self.log.warning("A display update of %d bytes was dropped (output budget)", new)

    def on_cell_executed(self, **kwargs: Any) -> None:
        super().on_cell_executed(**kwargs)  # nbgrader adds the reply's error when no output recorded it
        for out in kwargs["cell"].get("outputs", []):
            if out.get("output_type") == "error":
                truncate_error(out, self.output_budget.error_bytes)


# Their names in tracebacks and logs, as before the package (a grader's log reports the exception class).
for _cls in (SandboxedExecute, KernelTimeoutError):
    _cls.__module__ = "autograder.sandbox"
del _cls
