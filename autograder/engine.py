"""The grading engine: a Dask client (an in-process cluster by default, an existing scheduler, or SLURM) and
a bounded number of tasks in flight, each result handed to the grader as it comes back."""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .course import InputError

#: Seconds to wait for a scheduler that was named before giving up.
CONNECT_SECONDS = 5
#: What to install for ``--cluster slurm``.
SLURM_EXTRA = "install the slurm extra: pip install -e '.[slurm]'"
#: What autograde prints for a scheduler without a dashboard.
NO_DASHBOARD = "none (the scheduler was started without one)"
#: Seconds to wait for every worker's sandbox report, and for the refused ones to leave.
CHECK_SECONDS = 60


@dataclass
class Engine:
    """Where tasks run: ``client``, how many at a time (``slots``), the dashboard link when it has one."""

    client: object
    slots: int
    local: bool
    dashboard: str | None = None


def _slurm_cluster(jobs: int):
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise InputError(SLURM_EXTRA) from None
    cluster = SLURMCluster()  # cores, memory, queue...: dask's jobqueue configuration (jobqueue.yaml)
    cluster.scale(jobs=jobs)
    return cluster


def _dashboard(client) -> str:
    """The dashboard's link when the scheduler serves one, else why there is none.

    The scheduler's HTTP server runs, and is named "dashboard" in its services, even when it was started with
    ``--no-dashboard``; ``client.dashboard_link`` is formatted from that port all the same. So ask that server
    for the dashboard's page: it has one only when it serves the dashboard."""
    import urllib.error
    import urllib.request

    if "dashboard" not in client.scheduler_info(n_workers=0).get("services", {}):
        return NO_DASHBOARD
    link = client.dashboard_link
    try:
        with urllib.request.urlopen(link, timeout=CONNECT_SECONDS):
            return link
    except urllib.error.HTTPError as err:
        return NO_DASHBOARD if err.code == 404 else f"{link} (it answers HTTP {err.code})"
    except (OSError, ValueError) as err:
        return f"{link} (not reachable from here: {err})"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _reports(client, run: str, workers: set[str]) -> dict[str, dict]:
    """The sandbox reports of registration ``run`` from ``workers`` (those that sent one within the time)."""
    from .worker_check import TOPIC

    found: dict[str, dict] = {}
    deadline = time.monotonic() + CHECK_SECONDS
    while True:
        found = {e["worker"]: e for _, e in client.get_events(TOPIC) if e.get("run") == run}
        if workers <= found.keys() or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def check_workers(client, say: Callable[[str], None]) -> None:
    """Make every worker, now and joining later, check its sandbox (:class:`~autograder.worker_check.SandboxCheck`):
    ``say`` a line for each that cannot confine the kernels (it leaves) or grades unconfined; wait for the
    refused ones to leave; :class:`InputError` when they were all the cluster had."""
    from .worker_check import REFUSED, TOPIC, SandboxCheck, describe

    run, told, lock = uuid.uuid4().hex, set(), threading.Lock()

    def tell(event: dict) -> None:
        with lock:
            if event.get("run") != run or event["worker"] in told:
                return
            told.add(event["worker"])
        line = describe(event)
        if line:
            say(line)

    client.subscribe_topic(TOPIC, lambda event: tell(event[1]))  # workers that join later
    reports = _reports(client, run, set(client.register_plugin(SandboxCheck(run))))
    for event in reports.values():
        tell(event)
    refused = [w for w, e in reports.items() if e["state"] == REFUSED]
    deadline = time.monotonic() + CHECK_SECONDS
    while set(refused) & set(client.nthreads()) and time.monotonic() < deadline:
        time.sleep(0.1)
    if refused and not client.nthreads():
        raise InputError(f"no worker left to grade: the {len(refused)} worker(s) of the cluster cannot confine the "
                         "grading kernels (see above); install bubblewrap where they run")


def _forget_check(client) -> None:
    """Unregister the sandbox check: it belongs to this run (the next run registers its own, checking anew)."""
    from .worker_check import SandboxCheck

    try:
        client.unregister_worker_plugin(SandboxCheck.name)
    except Exception:  # noqa: BLE001 (never registered, or the scheduler is gone: nothing left to undo)
        pass


@contextmanager
def open_engine(jobs: int, scheduler: str | None = None, cluster: str | None = None,
                say: Callable[[str], None] | None = None) -> Iterator[Engine]:
    """A client on an in-process ``LocalCluster`` (threads: each task's work is a process of its own), on the
    scheduler at ``scheduler`` (``tcp://HOST:PORT``), or on a SLURM cluster; :class:`InputError` when the
    scheduler cannot be reached, the SLURM extra is missing, or no worker of the cluster can confine the
    grading kernels (:func:`check_workers`: ``say``, default stderr, tells about each that cannot). Closed (its
    cluster stopped) on leaving."""
    from distributed import Client, LocalCluster

    if cluster not in (None, "local", "slurm"):
        raise InputError(f"unknown cluster {cluster!r} (local or slurm)")
    if scheduler:
        try:
            client = Client(scheduler, timeout=f"{CONNECT_SECONDS}s")
        except (OSError, TimeoutError, ValueError) as err:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from None
        own = None
    elif cluster == "slurm":
        own = _slurm_cluster(jobs)
        client = Client(own)
    else:
        # no dashboard; its HTTP server (always started) on a free loopback port, not on 8787 for everyone
        own = LocalCluster(processes=False, n_workers=1, threads_per_worker=jobs, dashboard_address="127.0.0.1:0",
                           scheduler_kwargs={"dashboard": False}, silence_logs=logging.ERROR)
        client = Client(own)
    local = own is not None and cluster != "slurm"
    try:
        if not local:
            check_workers(client, say or _stderr)
        threads = sum(client.nthreads().values())
        yield Engine(client, max(threads, 1), local, None if local else _dashboard(client))
    finally:
        if not local:
            _forget_check(client)
        client.close()
        if own is not None:
            own.close()


def run_tasks(engine: Engine, tasks: Iterable[tuple[str, Callable, tuple]],
              done: Callable[[str, object], None]) -> None:
    """Submit ``(key, function, args)`` tasks, at most two per slot in flight; ``done(key, result)`` as each
    ends, in this process (a task that raised gives its exception as the result). ``retries=0``: a task is run
    again only when the worker running it is lost (Dask's own rule)."""
    from distributed import as_completed

    todo = iter(tasks)
    window = as_completed(with_results=False)

    def submit_next() -> bool:
        item = next(todo, None)
        if item is None:
            return False
        key, fn, args = item
        window.add(engine.client.submit(fn, *args, key=key, retries=0, pure=False))
        return True

    for _ in range(2 * engine.slots):
        if not submit_next():
            break
    for future in window:
        try:
            result = future.result()
        except Exception as err:  # noqa: BLE001 (the task's own failure: reported for its student)
            result = err
        future.release()
        done(future.key, result)
        submit_next()
