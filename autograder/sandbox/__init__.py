"""Run a student's notebook in a Jupyter kernel confined by bubblewrap.

``nbgrader autograde`` executes every submission as the instructor, with the instructor's files, network and
memory. :class:`SandboxedKernelManager` starts the kernel inside ``bwrap`` instead:

* no network (a network namespace of its own: not even the host's loopback);
* a read-only view of ``/usr``, a few ``/etc`` files, the course's Python environment and ``lrdiff_helpers``,
  and nothing else of the host (no ``/home``, ``/root``, ``/work``, gradebook, other submissions, ``source/``);
* one writable folder, ``/submission``: a private scratch copy of the submission (the original is untouched),
  plus a private, size-capped ``/tmp``;
* an unprivileged user (uid 65534 inside; on the host the instructor's uid, or a random unused uid when the
  grader runs as root) and resource limits: address space, processes, file size, CPU time;
* the kernel talks to the grader over ZeroMQ ``ipc`` sockets in a folder shared with the sandbox
  (``/run/kernel`` inside), since TCP on the host's loopback is out of reach without network;
* what the kernel sends back is bounded in the grader's memory (:class:`SandboxedExecute`): 2 MB of output per
  cell and 20 MB per notebook are kept, the rest dropped with a note; a single message larger than a few MB is
  never decoded (:class:`CappedIOPubChannel`); inside the sandbox, stdout and stderr are sent on every 1 MB.

Wiring it into nbgrader 0.9.6 (``nbgrader_config.py``)::

    from autograder.sandbox import use_sandbox
    use_sandbox(c)                       # autograde executes with SandboxedExecute / SandboxedKernelManager
    c.SandboxedKernelManager.memory_mb = 4096

``c.Execute.kernel_manager_class = "autograder.sandbox.SandboxedKernelManager"`` (or the same key on
``ExecutePreprocessor`` or ``NotebookClient``) also works with nbgrader 0.9.6 and nbconvert 7.17, but only by a
detail of nbconvert (see :func:`use_sandbox`); ``use_sandbox`` does not depend on it. For plain nbconvert or
nbclient, ``NotebookClient(kernel_manager_class=SandboxedKernelManager)`` or that config key is the way.

Machines that cannot run bubblewrap can opt out with ``LRDIFF_UNSAFE_NO_SANDBOX=1`` (or
``c.SandboxedKernelManager.unsafe_no_sandbox = True``): the kernel then runs unconfined, with a loud warning.

Where things are (each file one job; a kernel start goes kernel -> scratch -> command -> prelude):

    command.py   finding bwrap, the bwrap command line, the probe (check_sandbox, sandbox_available), opt-out
    stage.py     the program run as root before bwrap (binds unreachable paths, drops to the sandbox's uid)
    prelude.py   the program that starts the kernel inside (rlimits, sys.path, output-history and flush patches)
    scratch.py   the per-kernel scratch folder: the submission's copy, passwd/group, force_rmtree
    kernel.py    SandboxedKernelManager: the Jupyter kernel manager that starts its kernel in the sandbox
    budget.py    OutputBudget, output_size, truncate_error: how much output the grader keeps
    iopub.py     CappedIOPubChannel, CappedKernelClient: messages too big are dropped unread
    execute.py   SandboxedExecute: nbgrader's Execute with the sandboxed kernel, the budgets and time limits
    wiring.py    use_sandbox, autograde_preprocessors: the sandbox in nbgrader's autograde

The sandbox knows nothing of grading: the course's configuration (``autograder/nbgrader_config.py``) says which
outputs are its grading evidence (``c.SandboxedExecute.evidence_mime``). ``SandboxedExecute`` (and
``KernelTimeoutError``) are imported on first use, so that importing this package does not import nbgrader.
"""

from __future__ import annotations

from typing import Any

from .budget import DROPPED, DROPPED_TYPE, MIB, OutputBudget, output_size, truncate_error
from .command import (
    INSTALL_HINT,
    OPT_OUT_ENV,
    SandboxUnavailable,
    check_sandbox,
    opted_out,
    sandbox_available,
    sandbox_command,
)
from .iopub import CappedIOPubChannel, CappedKernelClient
from .kernel import SandboxedKernelManager
from .scratch import force_rmtree
from .wiring import autograde_preprocessors, use_sandbox

__all__ = [
    "DROPPED",
    "DROPPED_TYPE",
    "INSTALL_HINT",
    "MIB",
    "OPT_OUT_ENV",
    "CappedIOPubChannel",
    "CappedKernelClient",
    "KernelTimeoutError",
    "OutputBudget",
    "SandboxUnavailable",
    "SandboxedExecute",
    "SandboxedKernelManager",
    "autograde_preprocessors",
    "check_sandbox",
    "force_rmtree",
    "opted_out",
    "output_size",
    "sandbox_available",
    "sandbox_command",
    "truncate_error",
    "use_sandbox",
]


def __getattr__(name: str) -> Any:
    # nbgrader is imported only by the code that needs SandboxedExecute (3 s, not needed to start a kernel)
    if name in ("SandboxedExecute", "KernelTimeoutError"):
        from . import execute

        return getattr(execute, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
