"""The grading engine: a Dask client (an in-process cluster by default, an existing scheduler, or SLURM) and
a bounded number of tasks in flight, each result handed to the grader as it comes back."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .course import InputError

#: Seconds to wait for a scheduler that was named before giving up.
CONNECT_SECONDS = 5
#: What to install for ``--cluster slurm``.
SLURM_EXTRA = "install the slurm extra: pip install -e '.[slurm]'"


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
    """The dashboard's link, or why there is none."""
    try:
        link = client.dashboard_link
    except KeyError:  # the scheduler serves no dashboard
        link = None
    return link or "none (the scheduler serves no dashboard: it needs bokeh)"


@contextmanager
def open_engine(jobs: int, scheduler: str | None = None, cluster: str | None = None) -> Iterator[Engine]:
    """A client on an in-process ``LocalCluster`` (threads: each task's work is a process of its own), on the
    scheduler at ``scheduler`` (``tcp://HOST:PORT``), or on a SLURM cluster; :class:`InputError` when the
    scheduler cannot be reached or the SLURM extra is missing. Closed (its cluster stopped) on leaving."""
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
    try:
        local = own is not None and cluster != "slurm"
        threads = sum(w.get("nthreads", 1) for w in client.scheduler_info().get("workers", {}).values())
        yield Engine(client, max(threads, 1), local, None if local else _dashboard(client))
    finally:
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
