"""The grading sandbox (autograder/sandbox/): what student code can and cannot do inside it.

Every check runs real code in a sandboxed kernel through nbclient, as ``nbgrader autograde`` does. To keep the
file fast, one notebook ("the attack notebook", one kernel with torch) holds most attacks, cell by cell, and
each test below reads the outputs of its cell; a second, torch-free kernel checks what must hold after the
first one died and the CPU limit, a third the wall-clock limit. The kernel tests skip only when bubblewrap cannot
run here and env CI is unset; in CI that is a failure. (Output budgets: tests/test_sandbox_output.py and
test_sandbox_budget.py; the command line and nbgrader's wiring: test_sandbox_config.py; the two programs that
run inside: test_sandbox_programs.py.)
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import os
import random
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from traitlets.config import Config

from autograder import sandbox
from tests.support.ci import skip_or_fail
from tests.support.processes import exists, processes_with, uids_of_tree
from tests.support.sandbox_attacks import HIJACKERS, attack_cells

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "lrdiff"

try:
    KERNEL_PYTHON = KernelSpecManager().get_kernel_spec(KERNEL).argv[0]
except Exception:  # no "lrdiff" kernel yet (`./course setup` makes it): the kernel tests then fail, loudly
    KERNEL_PYTHON = sys.executable
MEMORY_MB = 2048  # the attack kernel's RLIMIT_DATA: small enough that the bomb is quick
CANARY = "LRDIFF_SANDBOX_TEST_CANARY"  # set in the grader's environment while kernels start


@pytest.fixture(scope="module")
def sandbox_works() -> None:
    """Skip (or, in CI, fail) when this machine cannot run bubblewrap at all."""
    ok, why = sandbox.sandbox_available(KERNEL_PYTHON)
    if not ok:
        skip_or_fail(f"bubblewrap cannot run on this machine: {why}", f"the grading sandbox cannot run in CI: {why}")


class RecordingKernelManager(sandbox.SandboxedKernelManager):
    """The sandboxed manager, remembering each instance and its bwrap process (nbclient drops both)."""

    instances: list[RecordingKernelManager] = []

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bwrap_pid: int | None = None
        self.scratch_seen: Path | None = None
        RecordingKernelManager.instances.append(self)

    async def _async_post_start_kernel(self, **kw: Any) -> None:
        await super()._async_post_start_kernel(**kw)
        self.bwrap_pid = self.provisioner.pid if self.provisioner else None
        self.scratch_seen = self.scratch_dir


def run_notebook(cells: list[tuple[str, str, int]], folder: Path, **limits: Any) -> dict[str, Any]:
    """Run ``(name, code, timeout)`` cells in a sandboxed kernel started in ``folder``.

    Returns ``{name: outputs}`` plus ``"_dead"`` (the DeadKernelError, if the kernel died), ``"_seconds"`` per
    cell and ``"_km"`` (the kernel manager).
    """
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": KERNEL, "display_name": "Python (lrdiff)", "language": "python"}}
    )
    nb.cells = [nbformat.v4.new_code_cell(code, metadata={"name": name, "timeout": t}) for name, code, t in cells]
    c = Config()
    c.SandboxedKernelManager.unsafe_no_sandbox = False  # whatever LRDIFF_UNSAFE_NO_SANDBOX says
    for key, value in limits.items():
        setattr(c.SandboxedKernelManager, key, value)
    before = len(RecordingKernelManager.instances)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        kernel_manager_class=RecordingKernelManager,
        config=c,
        timeout_func=lambda cell: cell.metadata.get("timeout", 120),
        interrupt_on_timeout=True,
        allow_errors=True,
        resources={"metadata": {"path": str(folder)}},
    )
    starts: dict[str, float] = {}
    result: dict[str, Any] = {"_dead": None, "_seconds": {}, "_host_uids": {}}

    def on_cell_start(cell: Any, **_: Any) -> None:
        starts[cell.metadata["name"]] = time.monotonic()
        if not result["_host_uids"]:  # the kernel is up: who are its processes on the host?
            km = RecordingKernelManager.instances[before]
            result["_host_uids"] = uids_of_tree(km.provisioner.pid)

    client.on_cell_start = on_cell_start
    os.environ[CANARY] = "the grader's secret"
    try:
        client.execute()
    except DeadKernelError as err:
        result["_dead"] = err
    finally:
        del os.environ[CANARY]
    now = time.monotonic()
    for cell in nb.cells:
        result[cell.metadata["name"]] = cell.outputs
    order = sorted(starts, key=starts.get)
    for name, nxt in zip(order, order[1:] + [None]):
        result["_seconds"][name] = (starts[nxt] if nxt else now) - starts[name]
    result["_km"] = RecordingKernelManager.instances[before]
    return result


def last_json(outputs: list[Any]) -> dict[str, Any]:
    """The JSON object a cell printed last (fails with the cell's errors if there is none)."""
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stdout")
    lines = [line for line in text.splitlines() if line.startswith("{")]
    errors = [f"{o.ename}: {o.evalue}" for o in outputs if o.output_type == "error"]
    assert lines, f"the cell printed no JSON; errors: {errors}; stdout: {text!r}"
    return json.loads(lines[-1])


def errors_of(outputs: list[Any]) -> list[str]:
    return [o.ename for o in outputs if o.output_type == "error"]


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway course: instructor files, a gradebook, another student's submission and Alice's."""
    base = tmp_path_factory.mktemp("course")
    (base / "source" / "lrdiff").mkdir(parents=True)
    (base / "source" / "lrdiff" / "answers.txt").write_text("the instructor's solutions\n")
    (base / "gradebook.db").write_text("not really sqlite\n")
    bob = base / "submitted" / "bob" / "lrdiff"
    bob.mkdir(parents=True)
    (bob / "lrdiff.ipynb").write_text("{}")
    alice = base / "submitted" / "alice" / "lrdiff"
    alice.mkdir(parents=True)
    (alice / "data.txt").write_text("alice's data\n")
    (alice / "helper.py").write_text("VALUE = 42\n")
    for name, code in HIJACKERS.items():
        (alice / name).write_text(code)
    return {"base": base, "bob": bob, "alice": alice}


@pytest.fixture(scope="module")
def listener() -> Any:
    """A TCP port and an abstract unix socket that the test process listens on (the host's loopback)."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    name = f"\0lrdiff-sandbox-test-{os.getpid()}"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(name)
    unix.listen()
    yield {"port": tcp.getsockname()[1], "abstract": name}
    tcp.close()
    unix.close()


@pytest.fixture(scope="module")
def attack(sandbox_works: None, course: dict[str, Path], listener: dict[str, Any]) -> dict[str, Any]:
    """The attack notebook, run once in one sandboxed kernel (with torch) on Alice's submission."""
    token = f"{300 + random.random():.9f}"
    before = tree_digest(course["alice"])
    result = run_notebook(attack_cells(course, listener, token, KERNEL_PYTHON), course["alice"], memory_mb=MEMORY_MB)
    result["_token"] = token
    result["_alice_before"] = before
    return result


@pytest.fixture(scope="module")
def after(attack: dict[str, Any], course: dict[str, Path]) -> dict[str, Any]:
    """A second sandboxed kernel, started after the first one died, with a 3 s CPU limit."""
    cells = [
        ("alive", "print('{\"alive\": true}')", 60),
        (
            "cpu_child",
            "import json, subprocess, sys, time\n"
            "t0 = time.monotonic()\n"
            "r = subprocess.run([sys.executable, '-c', 'while True: pass'])\n"
            "print(json.dumps({'returncode': r.returncode, 'seconds': time.monotonic() - t0}))",
            120,
        ),
        ("cpu_self", "while True:\n    pass", 120),
    ]
    return run_notebook(cells, course["alice"], cpu_seconds=3)


@pytest.fixture(scope="module")
def sleeper(after: dict[str, Any], course: dict[str, Path]) -> dict[str, Any]:
    """A third kernel that just sleeps, with a 5 s wall-clock limit."""
    return run_notebook([("sleep", "import time\ntime.sleep(300)", 120)], course["alice"], wall_seconds=5)


# ---------------------------------------------------------------------------------------------------------
# Inside the sandbox


@pytest.mark.slow
def test_runs_as_an_unprivileged_user(attack: dict[str, Any]) -> None:
    """Does student code run as uid 65534 without capabilities, and are the sandbox's processes (bwrap and the
    kernel) owned by a non-root uid on the host, the grader's own when it is not root?"""
    info = last_json(attack["identity"])
    assert (info["uid"], info["gid"], info["groups"]) == (65534, 65534, [])
    assert info["uid_map"][0] == "65534" and info["uid_map"][2] == "1"
    host = attack["_host_uids"]
    assert len(host) >= 3, f"expected bwrap, its init and the kernel on the host, found {host}"
    owners = set().union(*host.values())
    assert 0 not in owners, f"sandbox processes run as root on the host: {host}"
    if os.geteuid() != 0:
        assert owners == {os.geteuid()}
    assert info["cap_eff"] == "0000000000000000" and info["no_new_privs"] == "1"
    assert info["cwd"] == "/submission"


@pytest.mark.slow
def test_environment_is_not_the_graders(attack: dict[str, Any]) -> None:
    """Does the kernel get a fresh environment, without the grader's variables (tokens, paths)?"""
    env = set(last_json(attack["identity"])["env"])
    assert CANARY not in env
    km = sandbox.SandboxedKernelManager()
    ours = set(km._sandbox_env(KERNEL_PYTHON, {})) | set(km.env_passthrough)
    # ipykernel sets these itself
    ipykernel_own = {"TERM", "PAGER", "GIT_PAGER", "CLICOLOR", "CLICOLOR_FORCE", "FORCE_COLOR", "MPLBACKEND",
                     "PYDEVD_USE_FRAME_EVAL", "PWD"}  # fmt: skip
    assert env <= ours | ipykernel_own, f"unexpected variables in the sandbox: {sorted(env - ours - ipykernel_own)}"


@pytest.mark.slow
def test_kernel_cannot_write_to_the_graders_terminal(attack: dict[str, Any]) -> None:
    """Do the kernel process's own stdout and stderr go to a log file, not to the grader's terminal or log?
    (Read from the sandbox's pid 1, bwrap's init: ipykernel itself swaps its fds 1 and 2 for pipes.)"""
    assert all(fd.endswith("/kernel.log") for fd in last_json(attack["identity"])["fds"])


@pytest.mark.slow
def test_real_packages_import_and_dropped_files_do_not_run(attack: dict[str, Any]) -> None:
    """Do torch and lrdiff_helpers import from the environment, while a torch.py, sitecustomize.py,
    usercustomize.py or ipykernel_launcher.py beside the notebook never runs?"""
    info = last_json(attack["imports"])
    venv = str(Path(KERNEL_PYTHON).parent.parent)
    assert info["torch"].startswith(venv + "/"), f"torch came from {info['torch']}"
    assert Path(info["helpers"]).parent == Path(importlib.util.find_spec("lrdiff_helpers").origin).parent
    assert info["sum"] == 3.0
    assert info["hijacked"] == [], f"dropped files ran: {info['hijacked']}"
    assert info["sitecustomize"] is None or not info["sitecustomize"].startswith("/submission")
    # a student's own module still imports, from the end of sys.path
    assert info["helper"] == "/submission/helper.py"
    assert info["path"][-1] == "/submission" and "" not in info["path"]


@pytest.mark.slow
def test_no_network(attack: dict[str, Any], listener: dict[str, Any]) -> None:
    """Do connections to a public address, to the host's loopback and to the host's abstract sockets fail,
    and DNS with them?"""
    with socket.create_connection(("127.0.0.1", listener["port"]), timeout=3):
        pass  # the host's listener does accept connections: the sandbox's failure below is the sandbox's
    info = last_json(attack["network"])
    for what in ("public", "public_https", "host_loopback", "dns", "abstract_unix"):
        assert info[what] != "ok", f"{what}: the sandbox reached the network"
    assert info["interfaces"] == ["lo"]


@pytest.mark.slow
def test_cannot_read_instructor_files(attack: dict[str, Any]) -> None:
    """Are source/, the repository, the gradebook, other students, the original submission and the
    instructor's home all absent, while the submission's copy is there?"""
    info = last_json(attack["reads"])
    assert info["visible"] == [], f"visible in the sandbox: {info['visible']}"
    if info["home"] is not None:  # only as a parent of a bound path (e.g. a Python under /root/.pyenv)
        needed = {
            Path(p).relative_to(Path.home()).parts[0]
            for p in (sys.base_prefix, sys.prefix, KERNEL_PYTHON, str(ROOT))
            if Path(p).is_relative_to(Path.home())
        }
        assert set(info["home"]) <= needed, f"home folder entries visible: {set(info['home']) - needed}"
    assert "home" not in info["root"]
    assert info["data"] == "alice's data\n"


@pytest.mark.slow
def test_writes_only_to_scratch(attack: dict[str, Any], course: dict[str, Path]) -> None:
    """Do writes to the environment, the helpers and the system fail, while /submission and /tmp take them,
    and is the original submission folder left untouched?"""
    info = last_json(attack["writes"])
    oks = {p for p, r in info.items() if r == "ok"}
    assert oks == {"/submission/out.txt", "/tmp/x", "/dev/shm/x", "/submission/data.txt"}, info
    assert tree_digest(course["alice"]) == attack["_alice_before"], "the original submission folder changed"
    assert not (course["alice"] / "out.txt").exists()


@pytest.mark.slow
def test_big_file_write_fails(attack: dict[str, Any]) -> None:
    """Does writing a 100 MB file stop at the file-size limit (RLIMIT_FSIZE) with EFBIG?"""
    info = last_json(attack["big_file"])
    limit = sandbox.SandboxedKernelManager().fsize_mb << 20
    assert info["errno"] == errno.EFBIG
    assert info["written"] == limit < 100 << 20


@pytest.mark.slow
def test_memory_bomb_is_stopped(attack: dict[str, Any]) -> None:
    """Does a growing allocation end in MemoryError near the limit, quickly, with the kernel alive, and do a
    64 GiB tensor and a 64 GiB shared mapping fail outright?"""
    info = last_json(attack["memory_bomb"])
    assert info["error"] == "MemoryError"
    assert info["grabbed_mb"] < MEMORY_MB
    assert info["seconds"] < 60
    assert info["tensor_64g"] != "ok" and info["shared_map_64g"] != "ok"


@pytest.mark.slow
def test_infinite_loop_is_interrupted(attack: dict[str, Any]) -> None:
    """Does the cell timeout interrupt an endless loop (by message: a signal would not reach the kernel),
    and does the kernel then run the next cell?"""
    assert errors_of(attack["infinite_loop"]) == ["KeyboardInterrupt"]
    assert attack["_seconds"]["infinite_loop"] < 30
    assert last_json(attack["after_loop"]) == {"alive": True}


@pytest.mark.slow
def test_fork_bomb_is_contained(attack: dict[str, Any]) -> None:
    """Does a fork bomb hit the process limit (EAGAIN) with the number of processes bounded?"""
    info = last_json(attack["fork_bomb"])
    assert info["errno"] == errno.EAGAIN
    assert info["peak"] <= info["nproc"]


@pytest.mark.slow
def test_os_exit_kills_only_its_kernel(attack: dict[str, Any], after: dict[str, Any]) -> None:
    """Does os._exit(1) end the kernel (nbclient sees it die) and take all its processes with it, while a
    kernel started afterwards works?"""
    assert attack["_dead"] is not None, "the kernel survived os._exit(1)"
    assert attack["after_exit"] == []
    km = attack["_km"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        processes_with(attack["_token"]) or exists(km.bwrap_pid)
    ):
        time.sleep(0.2)
    assert processes_with(attack["_token"]) == [], "processes of the dead sandbox are still running"
    assert last_json(after["alive"]) == {"alive": True}


@pytest.mark.slow
def test_scratch_folder_is_removed(attack: dict[str, Any]) -> None:
    """Is the kernel's scratch copy deleted once the kernel is gone?"""
    scratch = attack["_km"].scratch_seen
    assert scratch is not None and not scratch.exists()


@pytest.mark.slow
def test_cpu_limit(after: dict[str, Any]) -> None:
    """Does RLIMIT_CPU kill a spinning child process, and the kernel itself when it spins, in bounded time?"""
    child = last_json(after["cpu_child"])
    assert child["returncode"] in (-signal.SIGXCPU, -signal.SIGKILL)
    assert child["seconds"] < 60
    assert after["_dead"] is not None, "the spinning kernel outlived its CPU limit"
    assert after["_seconds"]["cpu_self"] < 60


@pytest.mark.slow
def test_wall_clock_limit(sleeper: dict[str, Any]) -> None:
    """Is a kernel that outlives wall_seconds killed, even while it sleeps (no CPU used, no cell timeout yet)?"""
    assert sleeper["_dead"] is not None
    assert sleeper["_seconds"]["sleep"] < 30  # counted from the cell's start, after the kernel's
