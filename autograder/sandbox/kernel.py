"""The kernel manager whose kernel runs inside a bubblewrap sandbox (see the package's docstring)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Float, Int, List, Unicode, default

from . import prelude
from .budget import MIB
from .command import (
    KERNEL_DIR,
    OPT_OUT_ENV,
    SUBMISSION,
    SandboxUnavailable,
    check_sandbox,
    minimal_paths,
    opted_out,
    package_dirs,
    pick_host_uid,
    python_layout,
    sandbox_command,
)
from .iopub import CappedKernelClient
from .scratch import force_rmtree, make_scratch, tail_lines

#: The program that starts the kernel inside the sandbox (see :mod:`autograder.sandbox.prelude`): its own text.
PRELUDE = Path(prelude.__file__).read_text()

#: Environment variables copied from the grader into the sandbox by default.
_ENV_PASSTHROUGH = ["PYTHONHASHSEED", "NBGRADER_EXECUTION", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "OMP_NUM_THREADS",
                    "MKL_NUM_THREADS"]  # fmt: skip


class SandboxedKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` whose kernel runs inside a bubblewrap sandbox (see the package docstring).

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
        default_value=_ENV_PASSTHROUGH,
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
        nproc = self.nproc or 64 + 4 * (os.cpu_count() or 1)
        limits = {
            "RLIMIT_DATA": (self.memory_mb * MIB,) * 2,
            "RLIMIT_AS": ((self.address_space_mb or self.memory_mb + 8192) * MIB,) * 2,
            "RLIMIT_NPROC": (nproc, nproc),
            "RLIMIT_FSIZE": (self.fsize_mb * MIB,) * 2,
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
        paths = list(python_layout(python))
        paths += package_dirs(list(self.readonly_packages))
        paths += list(self.readonly_paths)
        return minimal_paths(paths)

    def _binds(self, python: str) -> list[tuple[str, str, str]]:
        """What the sandbox sees of the host: the Python stack read-only, the scratch folder's parts."""
        scratch = self._scratch
        assert scratch is not None
        return [("ro", p, p) for p in self._python_paths(python)] + [
            ("ro", str(scratch / "etc" / "passwd"), "/etc/passwd"),
            ("ro", str(scratch / "etc" / "group"), "/etc/group"),
            ("rw", str(scratch / "kernel"), KERNEL_DIR),
            ("rw", str(scratch / "submission"), SUBMISSION),
        ]

    def _wrap(self, cmd: list[str], env: dict[str, str]) -> list[str]:
        """Turn ``python [flags] -m MODULE ARGS`` into the sandboxed command line."""
        if "-m" not in cmd:
            raise SandboxUnavailable(f"cannot sandbox kernel command {cmd}: expected `python ... -m MODULE ...`")
        m = cmd.index("-m")
        python, flags, module, args = cmd[0], cmd[1:m], cmd[m + 1], cmd[m + 2 :]
        spec = {
            "rlimits": self._rlimits(),
            "flush_chars": self.stream_flush_kb * 1024,
            "forget_output_history": self.forget_output_history,
            "module": module,
            "append_path": [SUBMISSION] if self.import_from_submission else [],
        }
        inner = [python, *flags, "-s", "-P", "-c", PRELUDE, json.dumps(spec), module, *args]
        return sandbox_command(
            inner,
            binds=self._binds(python),
            env=env,
            workdir=self._scratch,
            tmp_mb=self.tmp_mb,
            chdir=SUBMISSION,
            host_uid=self.sandbox_host_uid,
            bwrap=self.bwrap,
        )

    def _make_scratch(self, cwd: str | None) -> None:
        self.sandbox_host_uid = pick_host_uid(self.host_uid)
        self._scratch = scratch = make_scratch(cwd, self.scratch_root or None, self.sandbox_host_uid)
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

    def _write_inner_connection_file(self) -> None:
        """The kernel's connection file: same ports and key, sockets under /run/kernel."""
        assert self._scratch is not None
        info = json.loads(Path(self.connection_file).read_text())
        info["ip"] = f"{KERNEL_DIR}/ipc"
        inner_file = self._scratch / "kernel" / "connection.json"
        inner_file.write_text(json.dumps(info))
        os.chmod(inner_file, 0o600)
        if self.sandbox_host_uid is not None:
            os.chown(inner_file, self.sandbox_host_uid, self.sandbox_host_uid)

    async def _sandboxed_pre_start(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        assert self._scratch is not None
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        self._write_inner_connection_file()
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
        self._log_limits()
        self.log.debug("Sandboxed kernel command: %s", cmd)
        return cmd, kw

    def _log_limits(self) -> None:
        limits = self._rlimits()
        self.log.info(
            "Kernel sandboxed by bubblewrap: no network, writes only to a copy of %s; memory %d MiB, %d processes, "
            "files %d MiB, CPU %s",
            self._launch_args.get("cwd"), self.memory_mb, limits["RLIMIT_NPROC"][0],
            self.fsize_mb, f"{limits['RLIMIT_CPU'][0]} s" if "RLIMIT_CPU" in limits else "unlimited",
        )  # fmt: skip

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
        for line in tail_lines(self._scratch / "kernel.log"):
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
