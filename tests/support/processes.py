"""Processes on the host, found with ``psutil`` (never by reading ``/proc`` by hand).

The sandbox and grading tests ask who runs a kernel (and as which user), which processes grade a student, and
whether anything of a dead sandbox is still running.
"""

from __future__ import annotations

import psutil

__all__ = ["exists", "graders_of", "processes_with", "uids_of_tree"]

_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)


def uids_of_tree(pid: int) -> dict[int, set[int]]:
    """``{pid: {real, effective, saved uid}}`` of a process and all its descendants (those still there)."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except _GONE:
        return {}
    out = {}
    for proc in tree:
        try:
            out[proc.pid] = set(proc.uids())
        except _GONE:
            continue
    return out


def processes_with(token: str) -> list[int]:
    """Pids of the processes whose command line holds ``token``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if token in "\0".join(proc.cmdline()):
                found.append(proc.pid)
        except _GONE:
            continue
    return found


def graders_of(student: str) -> list[int]:
    """Pids of the processes grading ``student`` (``autograder.worker``, a fork of the grading forkserver or a
    fresh Python): their output goes to the ``worker.log`` of a task folder ``lrdiff-task-<student>-*``.

    >>> graders_of("alice")
    []
    """
    found = []
    for proc in psutil.process_iter():
        try:
            files = proc.open_files()
        except _GONE:
            continue
        if any(f.fd in (1, 2) and f.path.endswith("/worker.log") and f"/lrdiff-task-{student}-" in f.path
               for f in files):
            found.append(proc.pid)
    return found


def exists(pid: int | None) -> bool:
    """Is there a process ``pid`` (a zombie included)?"""
    return bool(pid) and psutil.pid_exists(pid)
