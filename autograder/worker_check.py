"""The Dask worker plugin that keeps a worker without a working sandbox out of the grading.

:class:`SandboxCheck` runs on every worker of a cluster (those there when the grader registers it, and those
that join later): a worker where bubblewrap cannot confine the grading kernels reports why and leaves (it and
its nanny close), instead of grading student code unconfined; one that opted out of the sandbox
(``LRDIFF_UNSAFE_NO_SANDBOX=1`` in its environment) stays, loudly. Each worker reports what it found as one
event on the scheduler (topic :data:`TOPIC`): ``{"worker", "run", "state", "reason"}``, ``state`` one of
:data:`CONFINED`, :data:`UNCONFINED`, :data:`REFUSED`; ``run`` names the registration, so that a grader reads
only its own.
"""

from __future__ import annotations

import asyncio
import logging

from distributed.diagnostics.plugin import WorkerPlugin

#: The scheduler's event topic of the workers' reports.
TOPIC = "lrdiff-sandbox-check"
CONFINED, UNCONFINED, REFUSED = "confined", "unconfined", "refused"

logger = logging.getLogger("autograder.worker_check")


def sandbox_state() -> tuple[str, str]:
    """What this machine can do: ``(CONFINED, "")``, ``(UNCONFINED, why)`` or ``(REFUSED, why)``."""
    from .sandbox import OPT_OUT_ENV, opted_out, sandbox_available

    if opted_out():
        return UNCONFINED, f"{OPT_OUT_ENV}=1 there: student code runs unconfined, with that worker's privileges"
    ok, why = sandbox_available()
    return (CONFINED, "") if ok else (REFUSED, why)


def describe(event: dict) -> str | None:
    """A line for people about a worker's report, or ``None`` when there is nothing to say (confined)."""
    if event["state"] == REFUSED:
        why = event["reason"].rstrip(". ")
        return f"worker {event['worker']}: cannot confine the grading kernels: {why}; it was not used"
    if event["state"] == UNCONFINED:
        return f"worker {event['worker']}: grades UNCONFINED ({event['reason']})"
    return None


class SandboxCheck(WorkerPlugin):
    """On each worker: check the sandbox, report it (:data:`TOPIC`), and leave the cluster when it cannot run."""

    name = "lrdiff-sandbox-check"

    def __init__(self, run: str) -> None:
        self.run = run
        self._closing: asyncio.Task | None = None

    async def setup(self, worker) -> None:
        from distributed.core import Status

        state, reason = await asyncio.get_running_loop().run_in_executor(None, sandbox_state)
        event = {"worker": worker.address, "run": self.run, "state": state, "reason": reason}
        if state == REFUSED:
            worker.status = Status.paused  # no task is given to it while it closes
            logger.error("%s", describe(event))
        elif state == UNCONFINED:
            logger.warning("lrdiff: %s", describe(event))
        worker.log_event(TOPIC, event)
        if state == REFUSED:  # not awaited here: the scheduler waits for this setup to return
            self._closing = asyncio.create_task(worker.close(nanny=True, reason=f"lrdiff: {reason}"))
