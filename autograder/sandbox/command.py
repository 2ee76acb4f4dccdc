"""The bubblewrap command line: finding bwrap, the folders a Python needs, the options, and the probe.

Nothing here knows about Jupyter: :func:`sandbox_command` turns any command into a confined one, and
:func:`check_sandbox` starts one trivial sandbox to prove this machine can run them.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import pwd
import random
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from . import stage

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

#: The program run as root before bwrap (see :mod:`autograder.sandbox.stage`): that module's own text.
STAGE = Path(stage.__file__).read_text()


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create a sandbox on this machine."""


SandboxUnavailable.__module__ = "autograder.sandbox"  # its name in error messages, as before the package


@functools.lru_cache(maxsize=None)
def warn_once(message: str) -> None:
    logging.getLogger("autograder.sandbox").warning("lrdiff sandbox: %s", message)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def opted_out() -> bool:
    """Whether the environment opts out of the sandbox (``LRDIFF_UNSAFE_NO_SANDBOX=1``)."""
    return _truthy(os.environ.get(OPT_OUT_ENV))


def find_bwrap(path: str = "bwrap") -> str:
    """The bwrap executable's path; raises :class:`SandboxUnavailable` with how to install it."""
    found = shutil.which(path)
    if found is None:
        raise SandboxUnavailable(
            f"bubblewrap (`{path}`) is not installed, so student code cannot be sandboxed; {INSTALL_HINT}. "
            f"To grade without a sandbox anyway (unsafe: student code runs as you), set {OPT_OUT_ENV}=1."
        )
    return found


@functools.lru_cache(maxsize=8)
def python_layout(python: str) -> tuple[str, ...]:
    """The folders an interpreter needs: its prefix (the venv), base prefix and the real executable's home."""
    code = (
        "import json, os, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, "
        "sys.base_exec_prefix, os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))]))"
    )
    out = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return tuple(json.loads(out.stdout))


def package_dirs(names: list[str]) -> list[str]:
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


def minimal_paths(paths: list[str]) -> list[str]:
    """Existing real paths, without those already inside another one."""
    real = sorted({os.path.realpath(p) for p in paths if p and os.path.exists(p)})
    kept: list[str] = []
    for p in real:
        if not any(p == k or p.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(p)
    return kept


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


@functools.lru_cache(maxsize=8)
def _bwrap_options(bwrap: str) -> frozenset[str]:
    """The options this bwrap knows (``--disable-userns`` came in 0.8.0, ``--size`` in 0.7.0)."""
    out = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=30)
    return frozenset(w for w in (out.stdout + out.stderr).split() if w.startswith("--"))


def _identity_args(known: frozenset[str], bwrap: str) -> list[str]:
    """Namespaces and identity: everything unshared, uid and gid 65534, an empty environment."""
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
        warn_once(f"{bwrap} is older than 0.8.0: student code may create nested user namespaces")
    return args


def _system_args() -> list[str]:
    """The host's system folders, read-only: /usr, the top-level links or folders, the /etc files."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in _TOP_LEVEL:
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for etc in _ETC_FILES:
        if os.path.exists(etc):
            args += ["--ro-bind", etc, etc]
    return args + ["--proc", "/proc", "--dev", "/dev"]


def _tmpfs_args(known: frozenset[str], tmp_mb: int, bwrap: str) -> list[str]:
    """A private /tmp and /dev/shm, size-capped where bwrap can."""
    if "--size" in known:
        return [
            "--size", str(tmp_mb << 20), "--tmpfs", "/tmp",
            "--size", str(max(tmp_mb // 4, 16) << 20), "--tmpfs", "/dev/shm",
        ]  # fmt: skip
    warn_once(f"{bwrap} is older than 0.7.0: the sandbox's /tmp is not size-capped (it is RAM)")
    return ["--tmpfs", "/tmp", "--tmpfs", "/dev/shm"]


def _bwrap_args(
    *, binds: list[tuple[str, str, str]], env: dict[str, str], tmp_mb: int, chdir: str, bwrap: str
) -> list[str]:
    """bwrap's options: namespaces, identity, environment, then the file system, built from an empty root."""
    known = _bwrap_options(bwrap)
    args = _identity_args(known, bwrap)
    for key, value in env.items():
        args += ["--setenv", key, value]
    args += _system_args() + _tmpfs_args(known, tmp_mb, bwrap)
    for kind, src, dest in binds:
        args += ["--ro-bind" if kind == "ro" else "--bind", src, dest]
    # The root and /dev are small tmpfs's bwrap builds; read-only, so that only /tmp, /dev/shm (both capped)
    # and the rw binds take writes.
    args += ["--remount-ro", "/", "--remount-ro", "/dev", "--chdir", chdir]
    return args


def _staged_binds(
    binds: list[tuple[str, str, str]], workdir: Path, host_uid: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """For a sandbox run as ``host_uid``: ``(what stage.py binds, the binds bwrap then makes)``; a source
    ``host_uid`` cannot reach by name is bound onto a mount point under ``workdir/stage`` first."""
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
    return staged, final


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
    found = find_bwrap(bwrap)
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
    staged, final = _staged_binds(binds, workdir, host_uid)
    spec = {"stage": staged, "uid": host_uid, "gid": host_uid}
    args = _bwrap_args(binds=final, env=env, tmp_mb=tmp_mb, chdir=chdir, bwrap=found)
    return [sys.executable, "-I", "-S", "-c", STAGE, json.dumps(spec), found, *args, "--", *inner]


def pick_host_uid(requested: int = 0) -> int | None:
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


_USERNS_HINT = (
    " Unprivileged user namespaces look disabled: on Ubuntu >= 23.10 run "
    "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (or install an AppArmor profile "
    "for bwrap); on older Debian `sudo sysctl -w kernel.unprivileged_userns_clone=1`; in Docker, run "
    "the container with `--security-opt seccomp=unconfined --security-opt apparmor=unconfined`."
)


@functools.lru_cache(maxsize=8)
def _probe(bwrap: str, python: str, python_paths: tuple[str, ...]) -> None:
    """Start one trivial sandbox; raise SandboxUnavailable with bwrap's own message when that fails."""
    with tempfile.TemporaryDirectory(prefix="lrdiff-sandbox-probe-") as tmp:
        cmd = sandbox_command(
            [python, "-s", "-P", "-c", "import os; print(os.getuid())"],
            binds=[("ro", p, p) for p in python_paths],
            env={"PATH": "/usr/bin:/bin"},
            workdir=Path(tmp),
            tmp_mb=16,
            host_uid=pick_host_uid(),
            bwrap=bwrap,
        )
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/", env={"PATH": "/usr/bin:/bin"})
    if out.returncode != 0 or out.stdout.strip() != str(SANDBOX_UID):
        msg = (out.stderr or out.stdout).strip()
        hint = ""
        if "uid map" in msg or "Permission denied" in msg or "Operation not permitted" in msg:
            hint = _USERNS_HINT
        raise SandboxUnavailable(f"bubblewrap cannot create a sandbox here (exit {out.returncode}): {msg}.{hint}")


def check_sandbox(python: str | None = None, bwrap: str = "bwrap") -> None:
    """Raise :class:`SandboxUnavailable` unless a bubblewrap sandbox can start ``python`` on this machine."""
    found = find_bwrap(bwrap)
    python = python or sys.executable
    _probe(found, python, tuple(minimal_paths(list(python_layout(python)))))


def sandbox_available(python: str | None = None) -> tuple[bool, str]:
    """``(True, "")`` when sandboxed kernels can run here, else ``(False, why)``."""
    try:
        check_sandbox(python)
    except (SandboxUnavailable, OSError, subprocess.SubprocessError) as err:
        return False, str(err)
    return True, ""
