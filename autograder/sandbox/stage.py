"""Runs as root before bwrap (root only): ``python -I -S -c <this file's text> SPEC BWRAP ARGS...``.

In a private mount namespace, binds the host paths that the sandbox's unprivileged host uid cannot reach by name
(e.g. a Python installed under /root) onto reachable mount points, then drops to that uid and execs bwrap.
Nothing changes in the host's own mount namespace. :func:`autograder.sandbox.command.sandbox_command` passes
this file's own text to ``-c``; imported, it runs nothing. SPEC is a JSON object: ``stage`` (``[[host path,
mount point], ...]``), ``uid`` and ``gid``.
"""

import ctypes
import json
import os
import sys

CLONE_NEWNS = 0x00020000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000


def check(ret, what):
    """Exit with the C library's error message when a call returned non-zero."""
    if ret != 0:
        err = ctypes.get_errno()
        sys.exit(f"lrdiff sandbox: {what} failed: {os.strerror(err)}")


def bind_staged(libc, stage):
    """In a mount namespace of this process's own, bind each ``(host path, mount point)``."""
    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "making / a private mount")
    for src, dst in stage:
        check(libc.mount(src.encode(), dst.encode(), None, MS_BIND | MS_REC, None), f"binding {src}")


def drop_to(uid, gid):
    """Become ``uid``/``gid`` (real, effective and saved), with no supplementary groups."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def main(argv):
    spec = json.loads(argv[1])
    if spec["stage"]:
        bind_staged(ctypes.CDLL(None, use_errno=True), spec["stage"])
    drop_to(spec["uid"], spec["gid"])
    os.execv(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv)
