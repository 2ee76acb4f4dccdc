"""A sandbox's scratch folder on the host: the submission's private copy, the socket folder, passwd and group.

Layout of one scratch folder (``submission/`` is ``/submission`` inside, ``kernel/`` is ``/run/kernel``)::

    submission/   a copy of the folder the kernel would have started in (symlinks kept, never followed)
    kernel/       the kernel's ZeroMQ ipc sockets and its connection file
    etc/passwd, etc/group   one account, "student", uid 65534
    connection.json, kernel.log   the grader's side only
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from .command import SANDBOX_UID


def copy_submission(src: str | None, dst: Path) -> None:
    """Copy a submission folder without following symlinks; skip fifos, sockets and devices."""

    def ignore(folder: str, names: list[str]) -> list[str]:
        skipped = []
        for n in names:
            mode = os.lstat(os.path.join(folder, n)).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                skipped.append(n)
        return skipped

    if src and os.path.isdir(src):
        shutil.copytree(src, dst, symlinks=True, ignore=ignore)
    else:
        dst.mkdir()


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give a tree (not following symlinks) to ``uid``/``gid``."""
    os.lchown(root, uid, gid)
    for folder, dirs, files in os.walk(root):
        for n in dirs + files:
            os.lchown(os.path.join(folder, n), uid, gid)


def force_rmtree(path: Path) -> bool:
    """Remove a scratch tree, even folders the student made unreadable (chmod 000); never follows symlinks.
    Returns whether it is gone."""
    if path.is_dir() and not path.is_symlink():
        todo = [str(path)]
        while todo:  # make every folder listable and writable first (a no-op for root)
            folder = todo.pop()
            try:
                os.chmod(folder, 0o700)
                with os.scandir(folder) as entries:
                    todo += [e.path for e in entries if e.is_dir(follow_symlinks=False)]
            except OSError:
                pass
        shutil.rmtree(path, ignore_errors=True)
    return not os.path.lexists(path)


def _write_accounts(etc: Path) -> None:
    """passwd and group with the one account the sandbox knows."""
    etc.mkdir(mode=0o755)
    (etc / "passwd").write_text(f"student:x:{SANDBOX_UID}:{SANDBOX_UID}:student:/tmp:/usr/sbin/nologin\n")
    (etc / "group").write_text(f"student:x:{SANDBOX_UID}:\n")
    for f in ("passwd", "group"):
        os.chmod(etc / f, 0o644)  # whatever the umask


def make_scratch(cwd: str | None, root: str | None, host_uid: int | None) -> Path:
    """A new scratch folder under ``root`` (``None``: the system temp) holding a copy of ``cwd``; its
    ``submission/`` and ``kernel/`` belong to ``host_uid`` when given (the grader runs as root)."""
    if root:
        os.makedirs(root, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="lrdiff-sandbox-", dir=root))
    try:
        copy_submission(cwd, scratch / "submission")
        (scratch / "kernel").mkdir(mode=0o700)
        _write_accounts(scratch / "etc")
        if host_uid is not None:
            chown_tree(scratch / "submission", host_uid, host_uid)
            os.chown(scratch / "kernel", host_uid, host_uid)
    except BaseException:
        force_rmtree(scratch)
        raise
    return scratch


def tail_lines(path: Path, max_bytes: int = 8192, max_lines: int = 40) -> list[str]:
    """The last lines of a log file, from its last ``max_bytes`` at most; none when it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read().decode("utf-8", "replace").splitlines()[-max_lines:]
    except OSError:
        return []
