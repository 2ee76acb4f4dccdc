"""Runs inside the sandbox, before the kernel: ``python -s -P -c <this file's text> SPEC MODULE ARGS...``.

Sets the resource limits, makes the submission importable *after* the real packages, then runs the kernel's
module as ``python -m`` would. :class:`autograder.sandbox.kernel.SandboxedKernelManager` passes this file's own
text to ``-c`` (so what runs inside is exactly this module); imported, it runs nothing.
SPEC is a JSON object: ``rlimits`` (``{"RLIMIT_...": [soft, hard]}``), ``append_path``, ``module``,
``flush_chars`` and ``forget_output_history``.
"""

import json
import resource
import runpy
import sys


def flush_streams_every(limit):
    """Make ipykernel send stdout/stderr once ``limit`` characters are pending.

    ipykernel sends them every 0.2 s, however much is buffered: a print loop makes messages of hundreds of MB.
    With this, the writer waits for the send instead.
    """
    try:
        from ipykernel.iostream import OutStream
    except ImportError:
        return
    write = OutStream.write

    def capped_write(self, string):
        n = write(self, string)
        pending = self.__dict__.get("_lrdiff_pending", 0) + len(string)
        if pending >= limit and self._is_master_process():
            pending = 0
            self.flush()
        self.__dict__["_lrdiff_pending"] = pending
        return n

    OutStream.write = capped_write


class Forget(dict):
    """A dict that keeps nothing (every key reads as an empty list)."""

    def __missing__(self, key):
        return []

    def __setitem__(self, key, value):
        pass


def forget_output_history():
    """Keep no copy of what cells print or display.

    IPython >= 9 keeps one (``HistoryManager.outputs``, for %notebook): a print loop would fill the kernel's
    memory.
    """
    try:
        from IPython.core.history import HistoryManager
    except ImportError:
        return
    if not isinstance(getattr(HistoryManager, "outputs", None), dict):
        return
    HistoryManager.outputs = Forget()


def setup(spec, argv):
    """Apply ``spec`` to this process; returns the module to run (``argv``: this program's ``sys.argv``)."""
    for name, (soft, hard) in spec["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    sys.path.extend(spec["append_path"])
    sys.argv = [spec["module"], *argv[3:]]
    if spec["flush_chars"] > 0:
        flush_streams_every(spec["flush_chars"])
    if spec["forget_output_history"]:
        forget_output_history()
    return spec["module"]


def main(argv):
    runpy.run_module(setup(json.loads(argv[1]), argv), run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv)
