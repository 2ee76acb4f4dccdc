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
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import logging
import os
import pwd
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.session import DELIM
from traitlets import Bool, Float, Int, List, Type, Unicode, default

__all__ = [
    "EVIDENCE_MIME",
    "OPT_OUT_ENV",
    "CappedIOPubChannel",
    "CappedKernelClient",
    "OutputBudget",
    "SandboxUnavailable",
    "SandboxedExecute",
    "SandboxedKernelManager",
    "autograde_preprocessors",
    "check_sandbox",
    "sandbox_available",
    "use_sandbox",
]

OPT_OUT_ENV = "LRDIFF_UNSAFE_NO_SANDBOX"
INSTALL_HINT = "install bubblewrap: `sudo apt-get install -y bubblewrap` (Debian/Ubuntu) or `dnf install bubblewrap`"

#: Fixed paths inside the sandbox.
SUBMISSION = "/submission"
KERNEL_DIR = "/run/kernel"
SANDBOX_UID = 65534  # "nobody" inside the sandbox's user namespace

#: Host uids used when the grader runs as root (see ``SandboxedKernelManager.host_uid``).
_ROOT_UID_RANGE = (1_500_000_000, 1_500_000_000 + (1 << 24))

#: /etc entries the Python stack needs (dynamic loader, Debian alternatives, time zone); bound when present.
_ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/fonts",  # without it fontconfig (matplotlib, PIL) prints an error on stderr, which fails grade cells
    "/etc/nsswitch.conf",
    "/etc/mime.types",
)
_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

#: Runs inside the sandbox (``python -s -P -c PRELUDE SPEC MODULE ARGS...``): set the resource limits, make the
#: submission importable *after* the real packages, then run the kernel's module as ``python -m`` would.
PRELUDE = """\
import json, resource, runpy, sys
def flush_streams_every(limit):
    # ipykernel sends stdout/stderr every 0.2 s, however much is buffered: a print loop makes messages of
    # hundreds of MB. Send once `limit` characters are pending instead (the writer waits for the send).
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
def forget_output_history():
    # IPython >= 9 keeps a copy of everything a cell prints or displays (HistoryManager.outputs, for
    # %notebook): a print loop would fill the kernel's memory. Keep none of it.
    try:
        from IPython.core.history import HistoryManager
    except ImportError:
        return
    if not isinstance(getattr(HistoryManager, "outputs", None), dict):
        return
    class Forget(dict):
        def __missing__(self, key):
            return []
        def __setitem__(self, key, value):
            pass
    HistoryManager.outputs = Forget()
def setup(spec):
    for name, (soft, hard) in spec["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    sys.path.extend(spec["append_path"])
    sys.argv = [spec["module"], *sys.argv[3:]]
    if spec["flush_chars"] > 0:
        flush_streams_every(spec["flush_chars"])
    if spec["forget_output_history"]:
        forget_output_history()
    return spec["module"]
runpy.run_module(setup(json.loads(sys.argv[1])), run_name="__main__", alter_sys=True)
"""


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create a sandbox on this machine."""


# ----------------------------------------------------------------------------------------------------------
# Host-side helpers


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    logging.getLogger(__name__).warning("lrdiff sandbox: %s", message)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def opted_out() -> bool:
    """Whether the environment opts out of the sandbox (``LRDIFF_UNSAFE_NO_SANDBOX=1``)."""
    return _truthy(os.environ.get(OPT_OUT_ENV))


def _find_bwrap(path: str = "bwrap") -> str:
    found = shutil.which(path)
    if found is None:
        raise SandboxUnavailable(
            f"bubblewrap (`{path}`) is not installed, so student code cannot be sandboxed; {INSTALL_HINT}. "
            f"To grade without a sandbox anyway (unsafe: student code runs as you), set {OPT_OUT_ENV}=1."
        )
    return found


@functools.lru_cache(maxsize=8)
def _python_layout(python: str) -> tuple[str, ...]:
    """The folders an interpreter needs: its prefix (the venv), base prefix and the real executable's home."""
    code = (
        "import json, os, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, "
        "sys.base_exec_prefix, os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))]))"
    )
    out = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return tuple(json.loads(out.stdout))


def _package_dirs(names: list[str]) -> list[str]:
    """Where packages live, found without importing them (editable installs point outside the venv)."""
    dirs = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise SandboxUnavailable(f"package {name!r} (to be visible read-only in the sandbox) is not installed")
        if spec.submodule_search_locations:
            dirs.extend(spec.submodule_search_locations)
        elif spec.origin:
            dirs.append(spec.origin)
    return dirs


def _minimal(paths: list[str]) -> list[str]:
    """Existing real paths, without those already inside another one."""
    real = sorted({os.path.realpath(p) for p in paths if p and os.path.exists(p)})
    kept: list[str] = []
    for p in real:
        if not any(p == k or p.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(p)
    return kept


def _copy_submission(src: str | None, dst: Path) -> None:
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


def _chown_tree(root: Path, uid: int, gid: int) -> None:
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


def _reachable(path: str, uid: int, *, read: bool = True) -> bool:
    """Could ``uid`` (with no groups) reach ``path`` by name: every folder on the way searchable, the end
    readable (when ``read``)?"""
    real = os.path.realpath(path)
    parts = Path(real).parts
    for i in range(1, len(parts) + 1):
        p = os.path.join(*parts[:i])
        try:
            st = os.stat(p)
        except OSError:
            return False
        bits = (st.st_mode >> 6) & 7 if st.st_uid == uid else st.st_mode & 7
        last = i == len(parts)
        if stat.S_ISDIR(st.st_mode) and not bits & 1:
            return False
        if last and read and not bits & 4:
            return False
    return True


#: Run as root before bwrap (root only): in a private mount namespace, bind the host paths the sandbox's
#: unprivileged host uid cannot reach by name (e.g. a Python installed under /root) onto reachable mount
#: points, then drop to that uid and exec bwrap. Nothing changes in the host's own mount namespace.
STAGE = """\
import ctypes, json, os, sys
spec = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
def check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        sys.exit(f"lrdiff sandbox: {what} failed: {os.strerror(err)}")
if spec["stage"]:
    check(libc.unshare(0x00020000), "unshare(CLONE_NEWNS)")
    check(libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None), "making / a private mount")
    for src, dst in spec["stage"]:
        check(libc.mount(src.encode(), dst.encode(), None, 0x1000 | 0x4000, None), f"binding {src}")
os.setgroups([])
os.setresgid(spec["gid"], spec["gid"], spec["gid"])
os.setresuid(spec["uid"], spec["uid"], spec["uid"])
os.execv(sys.argv[2], sys.argv[2:])
"""


@functools.lru_cache(maxsize=8)
def _bwrap_options(bwrap: str) -> frozenset[str]:
    """The options this bwrap knows (``--disable-userns`` came in 0.8.0, ``--size`` in 0.7.0)."""
    out = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=30)
    return frozenset(w for w in (out.stdout + out.stderr).split() if w.startswith("--"))


def _bwrap_args(
    *, binds: list[tuple[str, str, str]], env: dict[str, str], tmp_mb: int, chdir: str, bwrap: str
) -> list[str]:
    """bwrap's options: namespaces, identity, environment, then the file system, built from an empty root."""
    known = _bwrap_options(bwrap)
    args = [
        "--unshare-all",  # pid, ipc, uts, cgroup, net and (if it can) user namespaces
        "--unshare-user",  # required, not "if it can": the uid mapping and --disable-userns need it
        "--unshare-net",  # implied by --unshare-all; spelled out: no network, not even the host's loopback
        "--disable-userns",  # no nested user namespaces inside
        "--die-with-parent",
        "--new-session",
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_UID),
        "--hostname", "sandbox",
        "--clearenv",
    ]  # fmt: skip
    if "--disable-userns" not in known:
        args.remove("--disable-userns")
        _warn_once(f"{bwrap} is older than 0.8.0: student code may create nested user namespaces")
    for key, value in env.items():
        args += ["--setenv", key, value]
    args += ["--ro-bind", "/usr", "/usr"]
    for top in _TOP_LEVEL:
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for etc in _ETC_FILES:
        if os.path.exists(etc):
            args += ["--ro-bind", etc, etc]
    args += ["--proc", "/proc", "--dev", "/dev"]
    if "--size" in known:
        args += ["--size", str(tmp_mb << 20), "--tmpfs", "/tmp"]
        args += ["--size", str(max(tmp_mb // 4, 16) << 20), "--tmpfs", "/dev/shm"]
    else:
        args += ["--tmpfs", "/tmp", "--tmpfs", "/dev/shm"]
        _warn_once(f"{bwrap} is older than 0.7.0: the sandbox's /tmp is not size-capped (it is RAM)")
    for kind, src, dest in binds:
        args += ["--ro-bind" if kind == "ro" else "--bind", src, dest]
    # The root and /dev are small tmpfs's bwrap builds; read-only, so that only /tmp, /dev/shm (both capped)
    # and the rw binds take writes.
    args += ["--remount-ro", "/", "--remount-ro", "/dev", "--chdir", chdir]
    return args


def sandbox_command(
    inner: list[str],
    *,
    binds: list[tuple[str, str, str]],
    env: dict[str, str],
    workdir: Path,
    tmp_mb: int = 512,
    chdir: str = "/tmp",
    host_uid: int | None = None,
    bwrap: str = "bwrap",
) -> list[str]:
    """The command line that runs ``inner`` in the sandbox.

    Args:
        inner: the command to run inside.
        binds: ``(kind, host path, sandbox path)`` with kind ``"ro"`` or ``"rw"``, on top of /usr and friends.
        env: the sandbox's whole environment.
        workdir: a host folder of this sandbox's own (for mount points when running as root).
        host_uid: the host uid to run as when this process is root (required then).
    """
    found = _find_bwrap(bwrap)
    if os.geteuid() != 0:
        return [found, *_bwrap_args(binds=binds, env=env, tmp_mb=tmp_mb, chdir=chdir, bwrap=found), "--", *inner]
    # Root: the kernel would not count the sandbox's processes against RLIMIT_NPROC (root's processes are
    # exempt, user namespace or not), so run bwrap as an unprivileged host uid instead.
    assert host_uid is not None and host_uid > 0
    os.chmod(workdir, 0o711)
    if not _reachable(str(workdir), host_uid, read=False):
        raise SandboxUnavailable(
            f"grading as root needs a scratch folder that other users can reach; {workdir} is not "
            "(set SandboxedKernelManager.scratch_root to a folder under /tmp)"
        )
    stage_dir = workdir / "stage"
    staged, final = [], []
    for i, (kind, src, dest) in enumerate(binds):
        if _reachable(src, host_uid):
            final.append((kind, src, dest))
            continue
        stage_dir.mkdir(mode=0o755, exist_ok=True)
        point = stage_dir / str(i)
        if os.path.isdir(src):
            point.mkdir(mode=0o755)
        else:
            point.touch(mode=0o644)
        staged.append((os.path.realpath(src), str(point)))
        final.append((kind, str(point), dest))
    spec = {"stage": staged, "uid": host_uid, "gid": host_uid}
    args = _bwrap_args(binds=final, env=env, tmp_mb=tmp_mb, chdir=chdir, bwrap=found)
    return [sys.executable, "-I", "-S", "-c", STAGE, json.dumps(spec), found, *args, "--", *inner]


def _host_uid(requested: int = 0) -> int | None:
    """The host uid to run a sandbox as: None (this process's own) unless this process is root; then the
    requested one, or a random uid that no account uses."""
    if os.geteuid() != 0:
        return None
    if requested > 0:
        return requested
    while True:
        uid = random.randrange(*_ROOT_UID_RANGE)
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid


@functools.lru_cache(maxsize=8)
def _probe(bwrap: str, python: str, python_paths: tuple[str, ...]) -> None:
    """Start one trivial sandbox; raise SandboxUnavailable with bwrap's own message when that fails."""
    with tempfile.TemporaryDirectory(prefix="lrdiff-sandbox-probe-") as tmp:
        workdir = Path(tmp)
        cmd = sandbox_command(
            [python, "-s", "-P", "-c", "import os; print(os.getuid())"],
            binds=[("ro", p, p) for p in python_paths],
            env={"PATH": "/usr/bin:/bin"},
            workdir=workdir,
            tmp_mb=16,
            host_uid=_host_uid(),
            bwrap=bwrap,
        )
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/", env={"PATH": "/usr/bin:/bin"})
    if out.returncode != 0 or out.stdout.strip() != str(SANDBOX_UID):
        msg = (out.stderr or out.stdout).strip()
        hint = ""
        if "uid map" in msg or "Permission denied" in msg or "Operation not permitted" in msg:
            hint = (
                " Unprivileged user namespaces look disabled: on Ubuntu >= 23.10 run "
                "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (or install an AppArmor profile "
                "for bwrap); on older Debian `sudo sysctl -w kernel.unprivileged_userns_clone=1`; in Docker, run "
                "the container with `--security-opt seccomp=unconfined --security-opt apparmor=unconfined`."
            )
        raise SandboxUnavailable(f"bubblewrap cannot create a sandbox here (exit {out.returncode}): {msg}.{hint}")


def check_sandbox(python: str | None = None, bwrap: str = "bwrap") -> None:
    """Raise :class:`SandboxUnavailable` unless a bubblewrap sandbox can start ``python`` on this machine."""
    found = _find_bwrap(bwrap)
    python = python or sys.executable
    _probe(found, python, tuple(_minimal(list(_python_layout(python)))))


def sandbox_available(python: str | None = None) -> tuple[bool, str]:
    """``(True, "")`` when sandboxed kernels can run here, else ``(False, why)``."""
    try:
        check_sandbox(python)
    except (SandboxUnavailable, OSError, subprocess.SubprocessError) as err:
        return False, str(err)
    return True, ""


# ----------------------------------------------------------------------------------------------------------
# What the kernel sends back: capped
#
# A kernel can send unbounded output (``while True: print("x" * 10**6)``, one 100 MB print, a huge
# display_data), and nbclient keeps all of it in the grader's memory, then nbgrader writes it to disk. Two
# layers bound it: CappedIOPubChannel never decodes a message larger than a few MB (it reads its header only),
# and SandboxedExecute keeps at most a budget of output per cell and per notebook (OutputBudget).

MIB = 1 << 20
#: MIME type of the coordinator's grading evidence (one JSON string per output): exempt from the cell budget.
EVIDENCE_MIME = "application/vnd.lrdiff.evidence"
#: Key of a message dict that CappedIOPubChannel made up for a message it dropped unread: that message's size
#: in bytes. A key of the dict itself, not of its content, so nothing the kernel sends can set it.
DROPPED = "lrdiff_dropped_bytes"
#: Message type of such a stand-in (except for errors, which keep their type: a cell that failed still fails).
DROPPED_TYPE = "lrdiff_dropped"
_MAX_HEADER_BYTES = 64 << 10
#: Message types whose content nbclient keeps as a cell's output (an error is kept whatever the budget).
_OUTPUT_TYPES = frozenset({"stream", "display_data", "execute_result", "update_display_data"})
_EVIDENCE_KEY = re.compile(re.escape(json.dumps(EVIDENCE_MIME)).encode())
_ENAME = re.compile(rb'"ename"\s*:\s*"([A-Za-z_][A-Za-z0-9_.]{0,99})"')


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
        evalue = evalue[: limit // 4] + f" [... {len(evalue) - limit // 4} characters cut by the grader]"
    room = max(limit - len(ename) - len(evalue), 1024)
    kept: list[str] = []
    used = 0
    for line in reversed(lines):
        if len(line) > room // 2:
            line = line[: room // 2] + f" [... {len(line) - room // 2} characters cut by the grader]"
        if used + len(line) > room:
            break
        kept.append(line)
        used += len(line)
    kept.reverse()
    if len(kept) < len(lines):
        kept.insert(0, f"[... {len(lines) - len(kept)} traceback entries cut by the grader]")
    err["ename"], err["evalue"], err["traceback"] = ename, evalue, kept


def _stand_in(session: Any, parts: list[Any], size: int, why: str) -> dict[str, Any]:
    """A small message in place of one dropped unread (``parts``: its frames after the delimiter).

    Its parent header is read when small, so that nbclient files it under the right cell. An error stays an
    error (its name read from the first 4 KB when it can be); anything else becomes :data:`DROPPED_TYPE`.
    """
    header: Any = {}
    parent: Any = {}
    if len(parts) >= 3 and len(parts[1]) <= _MAX_HEADER_BYTES and len(parts[2]) <= _MAX_HEADER_BYTES:
        try:
            header, parent = session.unpack(parts[1].bytes), session.unpack(parts[2].bytes)
        except Exception:  # noqa: BLE001 (any undecodable header: the message is dropped, parentless)
            header, parent = {}, {}
    header = header if isinstance(header, dict) else {}
    parent = parent if isinstance(parent, dict) else {}
    if header.get("msg_type") == "error":
        # ipykernel writes the traceback first: the name may be far in (searched without copying the frame)
        found = _ENAME.search(parts[4].buffer) if len(parts) > 4 else None
        ename = found.group(1).decode() if found else "Error"
        text = f"(an error message of {size / MIB:.1f} MB, {why}: dropped unread by the grader)"
        msg_type, content = "error", {"ename": ename, "evalue": text, "traceback": [f"{ename}: {text}"]}
    else:
        msg_type, content = DROPPED_TYPE, {}
    msg_id = header.get("msg_id") if isinstance(header.get("msg_id"), str) else ""
    return {
        "header": {"msg_id": msg_id[:100], "msg_type": msg_type},
        "parent_header": parent,
        "msg_id": msg_id[:100],
        "msg_type": msg_type,
        "metadata": {},
        "content": content,
        "buffers": [],
        DROPPED: size,
    }


class CappedIOPubChannel(AsyncZMQSocketChannel):
    """The IOPub channel (outputs), which never decodes a message larger than ``max_bytes``.

    Such a message is read as far as its size (ZeroMQ has already received it: that memory is freed as soon as
    it is dropped) and replaced by a small stand-in (see :func:`_stand_in`), which SandboxedExecute counts
    against the cell's budget. So is a message that cannot be decoded. ``max_bytes = 0``: no cap.
    """

    max_bytes = 0
    #: Message ids of requests (cells) whose outputs are dropped anyway (over budget): their outputs are dropped
    #: here, from the header alone, so that a flood costs the grader almost nothing (SandboxedExecute adds them).
    skip_parents: set[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skip_parents = set()

    def _skipped(self, parts: list[Any]) -> bool:
        if not self.skip_parents or len(parts) < 3 or any(len(f) > _MAX_HEADER_BYTES for f in parts[1:3]):
            return False
        try:
            header, parent = self.session.unpack(parts[1].bytes), self.session.unpack(parts[2].bytes)
            if parent.get("msg_id") not in self.skip_parents or header.get("msg_type") not in _OUTPUT_TYPES:
                return False
        except Exception:  # noqa: BLE001 (deserialize decides what to do with it)
            return False
        # grading evidence is exempt from the cell budget: read a display that may hold some
        return not (header["msg_type"] != "stream" and len(parts) > 4 and _EVIDENCE_KEY.search(parts[4].buffer))

    async def _recv(self, **kwargs: Any) -> dict[str, Any]:
        assert self.socket is not None
        kwargs["copy"] = False  # zmq Frames: their size is known without copying them into Python
        frames = await self.socket.recv_multipart(**kwargs)
        delim = next((i for i, f in enumerate(frames) if len(f) == len(DELIM) and f.bytes == DELIM), None)
        if delim is None:
            return _stand_in(self.session, [], sum(len(f) for f in frames), "malformed")
        parts = frames[delim + 1 :]
        size = sum(len(f) for f in parts)
        if self.max_bytes and (size > self.max_bytes or any(len(f) > _MAX_HEADER_BYTES for f in parts[1:4])):
            return _stand_in(self.session, parts, size, f"more than {self.max_bytes / MIB:g} MB")
        if self._skipped(parts):
            return _stand_in(self.session, parts, size, "over the output budget")
        try:
            msg = self.session.deserialize([f.bytes for f in parts])
        except Exception:  # noqa: BLE001 (bad signature, bad JSON, nesting too deep: whatever the kernel sent)
            return _stand_in(self.session, parts, size, "not a valid message")
        if (
            not isinstance(msg.get("msg_type"), str)
            or len(msg["msg_type"]) > 64
            or not isinstance(msg.get("content"), dict)
            or not isinstance(msg.get("parent_header"), dict)
        ):
            return _stand_in(self.session, parts, size, "not a valid message")
        return msg


class CappedKernelClient(AsyncKernelClient):
    """nbclient's kernel client with a :class:`CappedIOPubChannel` (``max_message_bytes``, 0 = no cap)."""

    iopub_channel_class = Type(CappedIOPubChannel)  # type: ignore[assignment]
    max_message_bytes = Int(0, help="IOPub messages larger than this are dropped unread; 0 = no cap.").tag(
        config=True
    )

    @property
    def iopub_channel(self) -> Any:
        channel = super().iopub_channel
        if isinstance(channel, CappedIOPubChannel):
            channel.max_bytes = self.max_message_bytes
        return channel


class _CellUse:
    __slots__ = ("used", "truncated", "late_errors")

    def __init__(self) -> None:
        self.used = 0
        self.truncated = False
        self.late_errors = 0


class OutputBudget:
    """How much output of a notebook's cells the grader keeps (see :class:`SandboxedExecute`).

    Sizes are :func:`output_size`'s; a limit of 0 or less means none. Per cell, outputs are kept until
    ``cell_bytes``, then dropped (a stream is cut at the limit) and the caller adds :meth:`admit`'s note, once.
    The whole notebook keeps at most ``notebook_bytes`` the same way. Evidence outputs (:data:`EVIDENCE_MIME`)
    of up to ``evidence_bytes`` each are exempt from the cell budget; they count against the notebook's, and
    are themselves kept up to ``notebook_bytes`` in all (a student's prints cannot push them out). An error
    is always kept (the caller cuts it to ``error_bytes``), past the budget one per cell. Widget (comm)
    messages, which nbclient keeps as widget state, have a budget of ``notebook_bytes`` of their own.
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


# ----------------------------------------------------------------------------------------------------------
# The kernel manager


class SandboxedKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` whose kernel runs inside a bubblewrap sandbox (see the module docstring).

    The folder the kernel would have started in (nbclient passes the notebook's folder as ``cwd``) is copied
    to a private scratch folder, mounted read-write at ``/submission``, which is the kernel's working folder.
    The kernel runs as ``python -s -P`` so that a ``torch.py``, ``sitecustomize.py`` or ``ipykernel_launcher.py``
    in the submission cannot stand in for the real one; ``/submission`` is appended to the *end* of
    ``sys.path`` so a student's own helper module still imports.
    """

    memory_mb = Int(
        4096,
        help="Memory (heap and private mappings, RLIMIT_DATA) each sandboxed process may allocate, in MiB; "
        "past it allocations fail (MemoryError).",
    ).tag(config=True)
    address_space_mb = Int(
        0,
        help="Address-space limit of each sandboxed process (RLIMIT_AS), in MiB; 0 = memory_mb + 8192. It also "
        "caps shared mappings, which RLIMIT_DATA does not count; torch reserves GiBs it never uses, hence the slack.",
    ).tag(config=True)
    nproc = Int(
        0,
        help="Most processes and threads inside one sandbox (RLIMIT_NPROC, counted per sandbox); "
        "0 = 64 + 4 per CPU (torch starts a thread per core).",
    ).tag(config=True)
    fsize_mb = Int(64, help="Largest file the kernel may write (RLIMIT_FSIZE), in MiB.").tag(config=True)
    cpu_seconds = Int(
        0,
        help="CPU time a sandboxed process may use over its life (RLIMIT_CPU, all its threads together), in "
        "seconds; 0 = 900 + 300 per CPU (torch keeps one thread per core busy); -1 = no limit.",
    ).tag(config=True)
    wall_seconds = Int(
        3600,
        help="Kill the kernel this long after it started, whatever it is doing: a bound on the whole notebook "
        "(nbgrader's timeout is per cell, and code that swallows the interrupt outlives it); 0 = never.",
    ).tag(config=True)
    nofile = Int(1024, help="Most open files per process (RLIMIT_NOFILE).").tag(config=True)
    tmp_mb = Int(512, help="Size of the sandbox's private /tmp (a tmpfs, so it is RAM), in MiB.").tag(config=True)
    scratch_root = Unicode(
        "", help="Folder for the per-kernel scratch folders (submission copy, sockets); '' = the system temp."
    ).tag(config=True)
    keep_scratch = Bool(False, help="Keep the scratch folder after the kernel shuts down (for debugging).").tag(
        config=True
    )
    readonly_packages = List(
        Unicode(),
        default_value=["lrdiff_helpers"],
        help="Packages to make visible read-only at their host path (needed for editable installs, which live "
        "outside the environment).",
    ).tag(config=True)
    readonly_paths = List(Unicode(), help="More host paths to make visible read-only at the same path.").tag(
        config=True
    )
    env_passthrough = List(
        Unicode(),
        default_value=[
            "PYTHONHASHSEED",
            "NBGRADER_EXECUTION",
            "LANG",
            "LC_ALL",
            "LC_CTYPE",
            "TZ",
            "OMP_NUM_THREADS",
            "MKL_NUM_THREADS",
        ],
        help="Environment variables copied from the grader into the sandbox (everything else is dropped).",
    ).tag(config=True)
    import_from_submission = Bool(
        True, help="Append /submission to the end of sys.path so a student's own modules import."
    ).tag(config=True)
    host_uid = Int(
        0,
        help="Host uid for the sandbox when the grader runs as root (root's processes are exempt from "
        "RLIMIT_NPROC); 0 = a random unused uid per kernel. Ignored when not root (your uid is used).",
    ).tag(config=True)
    bwrap = Unicode("bwrap", help="The bubblewrap executable.").tag(config=True)
    stream_flush_kb = Int(
        1024,
        help="Inside the sandbox, the kernel sends its stdout/stderr on once this much is pending (and the "
        "writer waits for the send), not only every 0.2 s, so that a print loop makes small messages, not "
        "ones of hundreds of MB; 0 = ipykernel's own way.",
    ).tag(config=True)
    forget_output_history = Bool(
        True,
        help="Inside the sandbox, IPython keeps no copy of what cells print or display (IPython >= 9 keeps all "
        "of it in memory, for %notebook): a print loop would fill the kernel's memory.",
    ).tag(config=True)
    max_message_mb = Float(
        4.25,
        help="IOPub (output) messages larger than this are dropped unread (CappedIOPubChannel); 0 = no cap. "
        "SandboxedExecute sets it from its output budgets.",
    ).tag(config=True)
    unsafe_no_sandbox = Bool(
        help=f"Run kernels WITHOUT a sandbox (student code runs as you). Default: env {OPT_OUT_ENV}."
    ).tag(config=True)

    @default("unsafe_no_sandbox")
    def _unsafe_default(self) -> bool:
        return opted_out()

    @default("transport")
    def _transport_default(self) -> str:
        return "tcp" if self.unsafe_no_sandbox else "ipc"

    @default("client_factory")
    def _client_factory_default(self) -> type:
        return CappedKernelClient

    def client(self, **kwargs: Any) -> Any:
        if issubclass(self.client_factory, CappedKernelClient):
            kwargs.setdefault("max_message_bytes", int(self.max_message_mb * MIB))
        return super().client(**kwargs)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._scratch: Path | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._kernel_log: Any = None
        self.wall_clock_killed = False
        self.sandbox_host_uid: int | None = None

    # ---- what the sandbox looks like

    @property
    def sandboxed(self) -> bool:
        return not self.unsafe_no_sandbox

    @property
    def scratch_dir(self) -> Path | None:
        """This kernel's scratch folder on the host (``submission/`` in it is ``/submission`` inside)."""
        return self._scratch

    @property
    def kernel_spec(self) -> Any:
        spec = super().kernel_spec
        if spec is not None and self.sandboxed:
            # A signal would reach bwrap, not the kernel (it runs in a session of its own): interrupt by message.
            spec.interrupt_mode = "message"
        return spec

    def _rlimits(self) -> dict[str, tuple[int, int]]:
        mib = 1 << 20
        nproc = self.nproc or 64 + 4 * (os.cpu_count() or 1)
        limits = {
            "RLIMIT_DATA": (self.memory_mb * mib,) * 2,
            "RLIMIT_AS": ((self.address_space_mb or self.memory_mb + 8192) * mib,) * 2,
            "RLIMIT_NPROC": (nproc, nproc),
            "RLIMIT_FSIZE": (self.fsize_mb * mib,) * 2,
            "RLIMIT_NOFILE": (self.nofile, self.nofile),
            "RLIMIT_CORE": (0, 0),
        }
        cpu = self.cpu_seconds or 900 + 300 * (os.cpu_count() or 1)
        if cpu > 0:
            # SIGXCPU at the soft limit (Python dies of it), SIGKILL 5 s later.
            limits["RLIMIT_CPU"] = (cpu, cpu + 5)
        return limits

    def _sandbox_env(self, python: str, launch_env: dict[str, str]) -> dict[str, str]:
        env = {
            "PATH": f"{os.path.dirname(python)}:/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "USER": "student",
            "LOGNAME": "student",
            "LANG": "C.UTF-8",
            "PYTHONSAFEPATH": "1",
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "MPLCONFIGDIR": "/tmp/matplotlib",
            # The grader is not in the sandbox's pid namespace: bwrap's init (pid 1) is the kernel's parent,
            # and --die-with-parent ends the sandbox with the grader. 1 also tells ipykernel it is not standalone.
            "JPY_PARENT_PID": "1",
        }
        for key in self.env_passthrough:
            if key in launch_env:
                env[key] = launch_env[key]
        return env

    def _python_paths(self, python: str) -> list[str]:
        paths = list(_python_layout(python))
        paths += _package_dirs(list(self.readonly_packages))
        paths += list(self.readonly_paths)
        return _minimal(paths)

    def _wrap(self, cmd: list[str], env: dict[str, str]) -> list[str]:
        """Turn ``python [flags] -m MODULE ARGS`` into the sandboxed command line."""
        if "-m" not in cmd:
            raise SandboxUnavailable(f"cannot sandbox kernel command {cmd}: expected `python ... -m MODULE ...`")
        m = cmd.index("-m")
        python, flags, module, args = cmd[0], cmd[1:m], cmd[m + 1], cmd[m + 2 :]
        scratch = self._scratch
        assert scratch is not None
        spec = {
            "rlimits": self._rlimits(),
            "flush_chars": self.stream_flush_kb * 1024,
            "forget_output_history": self.forget_output_history,
            "module": module,
            "append_path": [SUBMISSION] if self.import_from_submission else [],
        }
        binds = [("ro", p, p) for p in self._python_paths(python)]
        binds += [
            ("ro", str(scratch / "etc" / "passwd"), "/etc/passwd"),
            ("ro", str(scratch / "etc" / "group"), "/etc/group"),
            ("rw", str(scratch / "kernel"), KERNEL_DIR),
            ("rw", str(scratch / "submission"), SUBMISSION),
        ]
        inner = [python, *flags, "-s", "-P", "-c", PRELUDE, json.dumps(spec), module, *args]
        return sandbox_command(
            inner,
            binds=binds,
            env=env,
            workdir=scratch,
            tmp_mb=self.tmp_mb,
            chdir=SUBMISSION,
            host_uid=self.sandbox_host_uid,
            bwrap=self.bwrap,
        )

    def _make_scratch(self, cwd: str | None) -> None:
        root = self.scratch_root or None
        if root:
            os.makedirs(root, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="lrdiff-sandbox-", dir=root))
        self._scratch = scratch
        _copy_submission(cwd, scratch / "submission")
        (scratch / "kernel").mkdir(mode=0o700)
        (scratch / "etc").mkdir(mode=0o755)
        (scratch / "etc" / "passwd").write_text(
            f"student:x:{SANDBOX_UID}:{SANDBOX_UID}:student:/tmp:/usr/sbin/nologin\n"
        )
        (scratch / "etc" / "group").write_text(f"student:x:{SANDBOX_UID}:\n")
        for f in ("passwd", "group"):
            os.chmod(scratch / "etc" / f, 0o644)  # whatever the umask
        self.sandbox_host_uid = _host_uid(self.host_uid)
        if self.sandbox_host_uid is not None:
            _chown_tree(scratch / "submission", self.sandbox_host_uid, self.sandbox_host_uid)
            os.chown(scratch / "kernel", self.sandbox_host_uid, self.sandbox_host_uid)
        # Only the grader's side uses this file; the kernel gets its own copy in kernel/ (see below).
        self.connection_file = str(scratch / "connection.json")
        self.ip = str(scratch / "kernel" / "ipc")

    # ---- jupyter_client hooks

    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        if not self.sandboxed:
            self.log.warning(
                "\n" + "!" * 100 + "\n!!! %s: student code runs WITHOUT a sandbox, as this user, with its files, "
                "network and memory !!!\n" + "!" * 100,
                OPT_OUT_ENV if opted_out() else "unsafe_no_sandbox=True",
            )
            return await super()._async_pre_start_kernel(**kw)

        spec = self.kernel_spec
        python = spec.argv[0] if spec is not None else sys.executable
        check_sandbox(python, self.bwrap)
        fresh = self._scratch is None  # on a restart the kernel keeps its scratch folder
        try:
            if fresh:
                self.transport = "ipc"
                self.cache_ports = False
                self._make_scratch(kw.get("cwd"))
            return await self._sandboxed_pre_start(**kw)
        except BaseException:
            self._close_kernel_log()
            if fresh and self._scratch is not None:
                force_rmtree(self._scratch)
                self._scratch = None
            raise

    async def _sandboxed_pre_start(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        assert self._scratch is not None
        cmd, kw = await super()._async_pre_start_kernel(**kw)

        # The kernel's connection file: same ports and key, sockets under /run/kernel.
        info = json.loads(Path(self.connection_file).read_text())
        info["ip"] = f"{KERNEL_DIR}/ipc"
        inner_file = self._scratch / "kernel" / "connection.json"
        inner_file.write_text(json.dumps(info))
        os.chmod(inner_file, 0o600)
        if self.sandbox_host_uid is not None:
            os.chown(inner_file, self.sandbox_host_uid, self.sandbox_host_uid)
        host_file = os.path.realpath(self.connection_file)
        cmd = [f"{KERNEL_DIR}/connection.json" if a == host_file else a for a in cmd]

        launch_env = kw.get("env") or dict(os.environ)
        cmd = self._wrap(cmd, self._sandbox_env(cmd[0], launch_env))
        kw["env"] = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        kw["cwd"] = "/"
        # The kernel's own stdout/stderr (not the notebook's outputs) go to a file, not to the grader's terminal:
        # student code could write anything there (fake "all tests passed", terminal escapes). It is capped by
        # RLIMIT_FSIZE; bwrap's own errors in it are logged when the kernel is cleaned up.
        self._close_kernel_log()
        self._kernel_log = open(self._scratch / "kernel.log", "ab")  # noqa: SIM115 (closed after the launch)
        kw["stdout"] = kw["stderr"] = self._kernel_log
        limits = self._rlimits()
        self.log.info(
            "Kernel sandboxed by bubblewrap: no network, writes only to a copy of %s; memory %d MiB, %d processes, "
            "files %d MiB, CPU %s",
            self._launch_args.get("cwd"), self.memory_mb, limits["RLIMIT_NPROC"][0],
            self.fsize_mb, f"{limits['RLIMIT_CPU'][0]} s" if "RLIMIT_CPU" in limits else "unlimited",
        )  # fmt: skip
        self.log.debug("Sandboxed kernel command: %s", cmd)
        return cmd, kw

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        try:
            await super()._async_launch_kernel(kernel_cmd, **kw)
        finally:
            self._close_kernel_log()  # the kernel has its own copy of the file descriptor

    def _close_kernel_log(self) -> None:
        if self._kernel_log is not None:
            self._kernel_log.close()
            self._kernel_log = None

    def _report_kernel_log(self) -> None:
        """Log what the kernel process printed outside the notebook: bwrap's errors as warnings, the rest (the
        student's, possibly hostile) as debug, escaped."""
        assert self._scratch is not None
        try:
            with open(self._scratch / "kernel.log", "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 8192))
                tail = f.read().decode("utf-8", "replace").splitlines()[-40:]
        except OSError:
            return
        for line in tail:
            if line.startswith(("bwrap:", "lrdiff sandbox:")):
                self.log.warning("Sandbox: %r", line)
            elif line.strip():
                self.log.debug("Kernel output: %r", line)

    async def _async_post_start_kernel(self, **kw: Any) -> None:
        await super()._async_post_start_kernel(**kw)
        if self.sandboxed and self.wall_seconds > 0:
            self._cancel_watchdog()
            self._watchdog = asyncio.get_running_loop().call_later(self.wall_seconds, self._wall_clock_expired)

    def _wall_clock_expired(self) -> None:
        process = getattr(self.provisioner, "process", None)
        if process is not None and process.poll() is None:
            self.log.warning("Kernel still running after %d s (wall_seconds): killing it", self.wall_seconds)
            self.wall_clock_killed = True
            process.kill()  # bwrap; --die-with-parent takes the whole sandbox with it

    def exit_description(self) -> str | None:
        """How the kernel ended ("exit status 1", "killed by SIGSEGV", ...), or ``None`` while it runs."""
        process = getattr(self.provisioner, "process", None)
        code = process.poll() if process is not None else None
        if code is None:
            return None
        if self.wall_clock_killed:
            return f"killed after running {self.wall_seconds} s (SandboxedKernelManager.wall_seconds)"
        signum = -code if code < 0 else code - 128 if self.sandboxed and code > 128 else 0  # bwrap: 128 + signal
        if signum > 0:
            try:
                return f"killed by {signal.Signals(signum).name}"
            except ValueError:
                return f"killed by signal {signum}"
        return f"exit status {code}"

    def _cancel_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        self._cancel_watchdog()
        await super()._async_cleanup_resources(restart=restart)
        if not restart and self._scratch is not None:
            self._report_kernel_log()
            if not self.keep_scratch and not force_rmtree(self._scratch):
                self.log.warning("Could not remove the sandbox's scratch folder %s", self._scratch)
            self._scratch = None

    # the sync KernelManager API names, bound to the async versions (as AsyncKernelManager does)
    post_start_kernel = _async_post_start_kernel  # type: ignore[assignment]
    cleanup_resources = _async_cleanup_resources  # type: ignore[assignment]


# ----------------------------------------------------------------------------------------------------------
# nbgrader


def _sandboxed_execute_class() -> type:
    from nbclient.exceptions import DeadKernelError
    from nbclient.util import run_sync
    from nbformat.v4 import new_output
    from nbgrader.preprocessors import Execute

    from .time_limits import NOT_RUN, NotebookTimeLimits

    class SandboxedExecute(NotebookTimeLimits, Execute):
        """nbgrader's ``Execute`` preprocessor with its kernel in the sandbox, keeping a bounded amount of output.

        Per cell, outputs are kept up to ``output_mb_per_cell``; past it the cell's further outputs are dropped
        (a stream is cut at the limit), never held in memory, and one note is added as a stdout stream
        (stderr would score a test cell 0): ``[output truncated by the grader: more than 2 MB]``. The cell keeps
        running. The notebook as a whole keeps up to ``output_mb_per_notebook`` the same way. Errors are always
        kept, cut to ``error_kb_each``. Evidence outputs (:data:`EVIDENCE_MIME`) of up to ``evidence_mb_each``
        are exempt from the cell budget (see :class:`OutputBudget`). A single message larger than twice the
        larger of the cell budget and the evidence limit is not even decoded (:class:`CappedIOPubChannel`).
        """

        output_mb_per_cell = Float(2.0, help="Output kept per cell, in MB (MiB); 0 = no limit.").tag(config=True)
        output_mb_per_notebook = Float(20.0, help="Output kept per notebook, in MB (MiB); 0 = no limit.").tag(
            config=True
        )
        evidence_mb_each = Float(
            1.0, help=f"Largest {EVIDENCE_MIME} output exempt from the cell budget, in MB (MiB)."
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
                                           traceback=[f"\x1b[0;31m{NOT_RUN}\x1b[0m: {reason}"])]
                return cell
            try:
                result = await super().async_execute_cell(cell, cell_index, *args, **kwargs)
                self.note_cell_result(cell, cell_index)
                return result
            except DeadKernelError:
                km = self.km
                how = km.exit_description() if isinstance(km, SandboxedKernelManager) else None
                if how is None:
                    raise
                # (the exception is made on a line of its own: a grader that reports the first line naming the
                # exception class then reports its message, not this source line)
                if km.wall_clock_killed:  # a timeout, not a crash: say so
                    err: Exception = KernelTimeoutError(f"Timeout: the notebook's kernel was {how}")
                else:
                    err = DeadKernelError(f"Kernel died ({how})")
                raise err from None

        async def _async_check_alive(self) -> None:
            km = self.km
            if isinstance(km, SandboxedKernelManager) and km.wall_clock_killed:
                # no "Kernel died" log line: it is a timeout, reported when the cell ends (above)
                raise DeadKernelError("Kernel died")
            await super()._async_check_alive()

        execute_cell = run_sync(async_execute_cell)  # nbclient binds the sync name to its own coroutine

        def _hooked(self, msg: dict[str, Any]) -> bool:
            """Does an Output widget capture this message's outputs (nbclient routes them to it)?"""
            return bool(self.output_hook_stack.get(msg["parent_header"].get("msg_id")))

        def _add_note(self, outs: list[Any], note: str) -> None:
            from nbformat.v4 import new_output

            last = outs[-1] if outs else None
            if last is not None and last.get("output_type") == "stream" and not str(last.get("text")).endswith("\n"):
                note = "\n" + note
            outs.append(new_output("stream", name="stdout", text=note))

        def output(self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int) -> Any:
            budget = self.output_budget
            if self.clear_before_next_output and not self._hooked(msg):
                # the delayed clear_output(wait=True) nbclient would do now: first, so the budget starts afresh
                outs[:] = []
                self.clear_display_id_mapping(cell_index)
                self.clear_before_next_output = False
                budget.cleared(cell_index)
            msg_type = msg["msg_type"]
            content = msg["content"]
            if msg_type == "error":
                truncate_error(content, budget.error_bytes)
                if not budget.admit_error(cell_index, output_size(content)):
                    return None
                return super().output(outs, msg, display_id, cell_index)
            if DROPPED not in msg and msg_type not in ("stream", "display_data", "execute_result"):
                return None  # nbclient would keep nothing (and log the kernel's message type as an error)
            size = msg.get(DROPPED) or output_size(content) + output_size(msg.get("buffers") or [])
            data = content.get("data")
            evidence = isinstance(data, dict) and EVIDENCE_MIME in data
            keep, note = budget.admit(cell_index, size, evidence=evidence)
            if note:  # the cell is over budget from now on: drop its outputs unread
                channel = self.kc.iopub_channel if self.kc is not None else None
                if isinstance(channel, CappedIOPubChannel):
                    channel.skip_parents.add(msg["parent_header"].get("msg_id"))
            out = None
            if DROPPED not in msg:
                if keep >= size:
                    out = super().output(outs, msg, display_id, cell_index)
                elif keep > 0 and msg_type == "stream" and isinstance(content.get("text"), str):
                    text = content["text"]
                    cut = text[: max(0, keep - (size - len(text)))]
                    if cut:
                        content["text"] = cut if cut.endswith("\n") else cut + "\n"
                        out = super().output(outs, msg, display_id, cell_index)
            if note:
                self._add_note(outs, note)
            return out

        def clear_output(self, outs: list[Any], msg: dict[str, Any], cell_index: int) -> None:
            super().clear_output(outs, msg, cell_index)
            if self._hooked(msg):
                return
            channel = self.kc.iopub_channel if self.kc is not None else None
            if isinstance(channel, CappedIOPubChannel):  # outputs after the clear are read again
                channel.skip_parents.discard(msg["parent_header"].get("msg_id"))
            if not msg["content"].get("wait"):
                self.output_budget.cleared(cell_index)

        def handle_comm_msg(self, outs: list[Any], msg: dict[str, Any], cell_index: int) -> None:
            size = output_size(msg["content"]) + output_size(msg.get("buffers") or [])
            if self.output_budget.admit_widget(size):
                super().handle_comm_msg(outs, msg, cell_index)

        def _update_display_id(self, display_id: str, msg: dict[str, Any]) -> None:
            if DROPPED in msg:
                return  # an update dropped unread: the displays keep what they show
            places = self._display_id_map.get(display_id)
            if not places:
                return super()._update_display_id(display_id, msg)
            content = msg["content"]
            new = output_size(content.get("data")) + output_size(content.get("metadata"))
            old, count = 0, 0
            for cell_idx, indices in places.items():
                outputs = self.nb["cells"][cell_idx].get("outputs", [])
                for i in indices:
                    if i < len(outputs):
                        old += output_size(outputs[i].get("data")) + output_size(outputs[i].get("metadata"))
                        count += 1
            if self.output_budget.admit_update(new, new * count - old):
                super()._update_display_id(display_id, msg)
            else:
                self.log.warning("A display update of %d bytes was dropped (output budget)", new)

        def on_cell_executed(self, **kwargs: Any) -> None:
            super().on_cell_executed(**kwargs)  # nbgrader adds the reply's error when no output recorded it
            for out in kwargs["cell"].get("outputs", []):
                if out.get("output_type") == "error":
                    truncate_error(out, self.output_budget.error_bytes)

    class KernelTimeoutError(DeadKernelError):
        """The kernel was killed for running longer than ``SandboxedKernelManager.wall_seconds``."""

    for cls in (SandboxedExecute, KernelTimeoutError):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    globals()["KernelTimeoutError"] = KernelTimeoutError
    return SandboxedExecute


def __getattr__(name: str) -> Any:
    # SandboxedExecute is built lazily so that importing this module does not import nbgrader.
    if name in ("SandboxedExecute", "KernelTimeoutError"):
        globals()["SandboxedExecute"] = _sandboxed_execute_class()  # defines KernelTimeoutError too
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def autograde_preprocessors(c: Any = None) -> list[Any]:
    """``Autograde.autograde_preprocessors`` as configured in ``c`` (nbgrader's default when not configured)
    with ``Execute`` replaced by the sandboxed one."""
    from nbgrader.converters.autograde import Autograde
    from nbgrader.preprocessors import Execute

    sandboxed = __getattr__("SandboxedExecute")
    if c is not None and "autograde_preprocessors" in c.Autograde:
        current = list(c.Autograde.autograde_preprocessors)
    else:
        current = list(Autograde.class_traits()["autograde_preprocessors"].default())
    return [sandboxed if p is Execute or p == "nbgrader.preprocessors.Execute" else p for p in current]


def use_sandbox(c: Any) -> None:
    """Make ``nbgrader autograde`` run every submission in the sandbox (call it in ``nbgrader_config.py``).

    Two belts: the autograde preprocessor list gets :class:`SandboxedExecute` (whose constructor names the
    sandboxed manager), and ``Execute.kernel_manager_class`` is configured too. The config key alone works
    today only because nbconvert's ``ExecutePreprocessor.preprocess`` re-runs ``NotebookClient.__init__``,
    which reloads config over nbgrader's constructor argument; should that change, it would silently stop
    working, and the preprocessor swap would not.
    """
    c.Autograde.autograde_preprocessors = autograde_preprocessors(c)
    c.Execute.kernel_manager_class = f"{__name__}.SandboxedKernelManager"
