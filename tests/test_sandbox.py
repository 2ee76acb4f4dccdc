"""The grading sandbox (autograder/sandbox.py): what student code can and cannot do inside it.

Every check runs real code in a sandboxed kernel through nbclient, as ``nbgrader autograde`` does. To keep the
file fast, one notebook ("the attack notebook", one kernel with torch) holds most attacks, cell by cell, and
each test below reads the outputs of its cell; a second, torch-free kernel checks what must hold after the
first one died and the CPU limit, a third the wall-clock limit. The kernel tests skip only when bubblewrap cannot
run here and env CI is unset; in CI that is a failure.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import importlib.util
import json
import logging
import os
import random
import signal
import socket
import subprocess
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

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "lrdiff"

try:
    from autograder import sandbox
except ImportError:  # the autograder package is someone else's; load the module by path if it is not there
    _spec = importlib.util.spec_from_file_location("autograder.sandbox", ROOT / "autograder" / "sandbox.py")
    assert _spec is not None and _spec.loader is not None
    sandbox = importlib.util.module_from_spec(_spec)
    sys.modules["autograder.sandbox"] = sandbox
    _spec.loader.exec_module(sandbox)

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
        if os.environ.get("CI"):
            pytest.fail(f"the grading sandbox cannot run in CI: {why}", pytrace=False)
        pytest.skip(f"bubblewrap cannot run on this machine: {why}")


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
            result["_host_uids"] = host_uids_of_tree(km.provisioner.pid)

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


def host_uids_of_tree(pid: int) -> dict[int, set[int]]:
    """``{pid: {real, effective, saved, fs uid}}`` for a host process and all its descendants."""
    children: dict[int, list[int]] = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat_ = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat_.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(p))
    uids, todo = {}, [pid]
    while todo:
        p = todo.pop()
        try:
            line = next(li for li in Path(f"/proc/{p}/status").read_text().splitlines() if li.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        uids[p] = {int(u) for u in line.split()[1:]}
        todo += children.get(p, [])
    return uids


def host_processes_with(token: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


# Files a student could drop beside the notebook, hoping they run instead of the real ones.
HIJACKERS = {
    "torch.py": "open('/submission/HIJACKED-torch', 'w').close()\nraise ImportError('the fake torch ran')\n",
    "sitecustomize.py": "open('/submission/HIJACKED-sitecustomize', 'w').close()\n",
    "usercustomize.py": "open('/submission/HIJACKED-usercustomize', 'w').close()\n",
    "ipykernel_launcher.py": "open('/submission/HIJACKED-launcher', 'w').close()\nraise SystemExit(3)\n",
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


def _attack_cells(course: dict[str, Path], listener: dict[str, Any], token: str) -> list[tuple[str, str, int]]:
    home = Path.home()
    secrets = [
        ROOT / "source",
        ROOT / ".git",
        ROOT / "autograder",
        course["base"] / "source" / "lrdiff" / "answers.txt",
        course["base"] / "gradebook.db",
        course["bob"],
        course["alice"],  # the original submission: only its copy is visible, at /submission
        home / ".bashrc",
        home / ".ssh",
        Path("/home"),
        Path("/work/shared"),
    ]
    venv_file = Path(KERNEL_PYTHON).parent.parent / "pyvenv.cfg"
    helpers = Path(importlib.util.find_spec("lrdiff_helpers").origin).parent
    must_fail = [venv_file.parent / "x", helpers / "x", Path("/usr/x"), Path("/etc/x"), Path("/x"), Path("/run/x")]
    must_work = [Path("/submission/out.txt"), Path("/tmp/x"), Path("/dev/shm/x")]
    prelude = "import json, os, sys\n"
    attempt = (
        "def attempt(fn):\n"
        "    try:\n"
        "        fn()\n"
        "        return 'ok'\n"
        "    except OSError as e:\n"
        "        return f'{type(e).__name__}: {e}'\n"
    )
    return [
        (
            "identity",
            prelude + "import socket\n"
            "status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n"
            "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups(),\n"
            "    'cwd': os.getcwd(), 'uid_map': open('/proc/self/uid_map').read().split(),\n"
            "    'no_new_privs': status['NoNewPrivs'].strip(), 'cap_eff': status['CapEff'].strip(),\n"
            "    'env': sorted(os.environ), 'fds': [os.readlink(f'/proc/1/fd/{i}') for i in (1, 2)]}))",
            60,
        ),
        (
            "imports",
            prelude + "import torch, lrdiff_helpers, helper\n"
            "print(json.dumps({'torch': torch.__file__, 'helpers': lrdiff_helpers.__file__,\n"
            "    'helper': helper.__file__, 'sitecustomize': getattr(sys.modules.get('sitecustomize'), '__file__', None),\n"
            "    'hijacked': sorted(f for f in os.listdir('/submission') if f.startswith('HIJACKED')),\n"
            "    'path': sys.path, 'sum': float(torch.ones(3).sum())}))",
            240,
        ),
        (
            "network",
            prelude + "import socket\n" + attempt + "def tcp(host, port):\n"
            "    socket.create_connection((host, port), timeout=3).close()\n"
            "def abstract(name):\n"
            "    s = socket.socket(socket.AF_UNIX)\n"
            "    s.settimeout(3)\n"
            "    s.connect(name)\n"
            "print(json.dumps({'public': attempt(lambda: tcp('1.1.1.1', 53)),\n"
            "    'public_https': attempt(lambda: tcp('140.82.112.3', 443)),\n"
            f"    'host_loopback': attempt(lambda: tcp('127.0.0.1', {listener['port']})),\n"
            "    'dns': attempt(lambda: socket.getaddrinfo('pypi.org', 443)),\n"
            f"    'abstract_unix': attempt(lambda: abstract({listener['abstract']!r})),\n"
            "    'interfaces': [n for _, n in socket.if_nameindex()]}))",
            60,
        ),
        (
            "reads",
            prelude + f"paths = {[str(p) for p in secrets]!r}\n"
            f"home = {str(home)!r}\n"
            "print(json.dumps({'visible': [p for p in paths if os.path.exists(p)],\n"
            "    'home': sorted(os.listdir(home)) if os.path.isdir(home) else None,\n"
            "    'root': sorted(os.listdir('/')), 'data': open('/submission/data.txt').read()}))",
            60,
        ),
        (
            "writes",
            prelude + attempt + "def write(path):\n"
            "    with open(path, 'w') as f:\n"
            "        f.write('student was here')\n"
            f"must_fail = {[str(p) for p in must_fail]!r}\n"
            f"must_work = {[str(p) for p in must_work]!r}\n"
            "result = {p: attempt(lambda: write(p)) for p in must_fail + must_work}\n"
            "result['/submission/data.txt'] = attempt(lambda: write('/submission/data.txt'))\n"
            "print(json.dumps(result))",
            60,
        ),
        (
            "big_file",
            prelude + "written, err = 0, None\n"
            "try:\n"
            "    with open('/submission/big.bin', 'wb') as f:\n"
            "        for _ in range(100):\n"
            "            f.write(bytes(1 << 20))\n"
            "            f.flush()\n"
            "            written += 1 << 20\n"
            "except OSError as e:\n"
            "    err = e.errno\n"
            "os.remove('/submission/big.bin')\n"
            "print(json.dumps({'written': written, 'errno': err}))",
            60,
        ),
        (
            "memory_bomb",
            prelude + "import mmap, time, torch\n"
            "t0, blocks, err = time.monotonic(), [], None\n"
            "try:\n"
            "    while True:\n"
            "        blocks.append(bytearray(32 << 20))\n"
            "except MemoryError:\n"
            "    err = 'MemoryError'\n"
            "grabbed = len(blocks) * 32\n"
            "del blocks\n"
            "def huge_tensor():\n"
            "    try:\n"
            "        torch.empty(1 << 36, dtype=torch.uint8)\n"
            "        return 'ok'\n"
            "    except (RuntimeError, MemoryError) as e:\n"
            "        return type(e).__name__\n"
            "def huge_shared_map():\n"
            "    try:\n"
            "        mmap.mmap(-1, 64 << 30)\n"
            "        return 'ok'\n"
            "    except OSError as e:\n"
            "        return type(e).__name__\n"
            "print(json.dumps({'error': err, 'grabbed_mb': grabbed, 'seconds': time.monotonic() - t0,\n"
            "    'tensor_64g': huge_tensor(), 'shared_map_64g': huge_shared_map()}))",
            120,
        ),
        ("infinite_loop", "while True:\n    pass", 3),
        ("after_loop", "print('{\"alive\": true}')", 60),
        (
            "fork_bomb",
            prelude + "import errno, signal, subprocess, time\n"
            "t0, kids, err = time.monotonic(), [], None\n"
            "while time.monotonic() - t0 < 20:\n"
            "    try:\n"
            "        pid = os.fork()\n"
            "    except OSError as e:\n"
            "        err = e.errno\n"
            "        break\n"
            "    if pid == 0:  # every child forks on too, forever: a fork bomb\n"
            "        try:\n"
            "            while True:\n"
            "                try:\n"
            "                    os.fork()\n"
            "                except OSError:\n"
            "                    time.sleep(0.05)\n"
            "        finally:\n"
            "            os._exit(0)\n"
            "    kids.append(pid)\n"
            "time.sleep(0.5)\n"
            "peak = len([p for p in os.listdir('/proc') if p.isdigit()])\n"
            "for p in os.listdir('/proc'):  # stop the bomb so that this kernel can go on\n"
            "    if p.isdigit() and int(p) not in (1, os.getpid()):\n"
            "        try:\n"
            "            os.kill(int(p), signal.SIGKILL)\n"
            "        except ProcessLookupError:\n"
            "            pass\n"
            "for pid in kids:\n"
            "    os.waitpid(pid, 0)\n"
            "time.sleep(0.5)  # let bwrap's init reap the orphans: a zombie still counts against RLIMIT_NPROC\n"
            "# processes that the kernel's death must take with it\n"
            f"sleepers = [subprocess.Popen(['sleep', {token!r}]) for _ in range(3)]\n"
            "print(json.dumps({'errno': err, 'forked': len(kids), 'peak': peak,\n"
            "    'nproc': __import__('resource').getrlimit(__import__('resource').RLIMIT_NPROC)[0]}))",
            120,
        ),
        ("exit", "import os\nos._exit(1)", 60),
        ("after_exit", "print('{\"alive\": true}')", 60),
    ]


@pytest.fixture(scope="module")
def attack(sandbox_works: None, course: dict[str, Path], listener: dict[str, Any]) -> dict[str, Any]:
    """The attack notebook, run once in one sandboxed kernel (with torch) on Alice's submission."""
    token = f"{300 + random.random():.9f}"
    before = tree_digest(course["alice"])
    result = run_notebook(_attack_cells(course, listener, token), course["alice"], memory_mb=MEMORY_MB)
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
        host_processes_with(attack["_token"]) or (km.bwrap_pid and Path(f"/proc/{km.bwrap_pid}").exists())
    ):
        time.sleep(0.2)
    assert host_processes_with(attack["_token"]) == [], "processes of the dead sandbox are still running"
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


# ---------------------------------------------------------------------------------------------------------
# Output the grader keeps: budgets per cell and per notebook (SandboxedExecute, CappedIOPubChannel)

#: Runs in a fresh interpreter, so that its peak RSS is the grader's own: executes the flood notebook with
#: nbgrader's (sandboxed) Execute preprocessor, then prints what each cell kept and the peak RSS as JSON.
FLOOD_RUNNER = """\
import json, resource, sys, time
import nbformat
sys.path.insert(0, sys.argv[1])
from autograder import sandbox
from traitlets.config import Config
cells = json.loads(sys.argv[2])
nb = nbformat.v4.new_notebook(
    metadata={"kernelspec": {"name": "lrdiff", "display_name": "Python (lrdiff)", "language": "python"}})
nb.cells = [nbformat.v4.new_code_cell(code, metadata={"name": name}) for name, code in cells]
c = Config()
c.SandboxedKernelManager.unsafe_no_sandbox = False
c.Execute.timeout = int(sys.argv[3])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.monotonic()
failure = None
try:
    sandbox.SandboxedExecute(config=c).preprocess(nb, {"metadata": {"path": sys.argv[4]}})
except Exception as err:
    failure = f"{type(err).__name__}: {err}"[:2000]
print(json.dumps({
    "cells": {cell.metadata["name"]: cell.outputs for cell in nb.cells},
    "failure": failure,
    "seconds": time.monotonic() - t0,
    "rss_before_mb": before / 1024,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""
EVIDENCE = sandbox.EVIDENCE_MIME
FLOOD_CELLS = [
    ("hello", "print('hello')"),
    ("print_100mb", "print('x' * 10**8)"),
    ("print_loop", "while True:\n    print('x' * 10**6)"),  # stopped by the cell timeout
    ("after_loop", "print('alive')"),
    (
        "kernel_memory",
        "import gc, json\ngc.collect()\n"
        "status = dict(line.split(':', 1) for line in open('/proc/self/status') if ':' in line)\n"
        "print(json.dumps({'rss_mb': int(status['VmRSS'].split()[0]) // 1024}))",
    ),
    (
        "evidence",
        "import json\nfrom IPython.display import display\n"
        "print('y' * 3 * 10**6)\n"
        f"display({{{EVIDENCE!r}: json.dumps({{'probe': 'ok', 'pad': 'p' * 500_000}})}}, raw=True)\n"
        f"display({{{EVIDENCE!r}: json.dumps({{'probe': 'too big', 'pad': 'p' * 1_500_000}})}}, raw=True)\n"
        "print('not kept')",
    ),
    ("huge_display", "from IPython.display import display\ndisplay({'text/plain': 'd' * 10**7}, raw=True)"),
    (
        "updates",
        "from IPython.display import display, update_display\n"
        "display({'text/plain': 'a'}, raw=True, display_id='u')\n"
        "for _ in range(30):\n"
        "    update_display({'text/plain': 'b' * 10**6}, raw=True, display_id='u')\n"
        "update_display({'text/plain': 'c' * 3 * 10**6}, raw=True, display_id='u')  # over the cell budget",
    ),
    (
        "error_flood",
        "k = get_ipython().kernel\n"
        "for i in range(200):  # raw error messages, as a hostile kernel could send them\n"
        "    k.session.send(k.iopub_socket, 'error', {'ename': 'E', 'evalue': 'v' * 100_000, 'traceback': []},\n"
        "                   parent=k.get_parent(), ident=b'error')\n"
        "raise ValueError('w' * 10**7)",
    ),
    ("stderr", "import sys\nprint('e' * 3 * 10**6, file=sys.stderr)"),
    ("done", "print('done')"),
]


@pytest.fixture(scope="module")
def flood(sandbox_works: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The flood notebook, executed once by nbgrader's sandboxed Execute in a separate grader process."""
    folder = tmp_path_factory.mktemp("flood")
    proc = subprocess.run(
        [sys.executable, "-c", FLOOD_RUNNER, str(ROOT), json.dumps(FLOOD_CELLS), "8", str(folder)],
        capture_output=True, text=True, timeout=600, env=dict(os.environ),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\nflood notebook: {result['seconds']:.1f} s, grader peak RSS {result['peak_rss_mb']:.0f} MB "
          f"(after imports {result['rss_before_mb']:.0f} MB)")  # fmt: skip
    return result


def stream_text(outputs: list[dict[str, Any]], name: str = "stdout") -> str:
    return "".join(o["text"] for o in outputs if o["output_type"] == "stream" and o["name"] == name)


def kept_bytes(outputs: list[dict[str, Any]]) -> int:
    return len(json.dumps(outputs))


NOTE = "[output truncated by the grader: more than 2 MB]"


@pytest.mark.slow
def test_flood_is_graded_with_bounded_memory(flood: dict[str, Any]) -> None:
    """Do a 100 MB print and an endless print loop leave the grader's memory bounded (peak RSS well under what
    one such print costs to keep), with the notebook executed to its last cell?"""
    assert flood["failure"] is None
    assert stream_text(flood["cells"]["done"]) == "done\n"
    assert flood["peak_rss_mb"] < flood["rss_before_mb"] + 250, f"grader peak RSS {flood['peak_rss_mb']:.0f} MB"


@pytest.mark.slow
def test_big_print_becomes_a_note(flood: dict[str, Any]) -> None:
    """Is a 100 MB print dropped, with one short note on stdout (not stderr: nbgrader scores stderr 0)?"""
    outs = flood["cells"]["print_100mb"]
    assert stream_text(outs) == NOTE + "\n"
    assert stream_text(outs, "stderr") == ""
    assert stream_text(flood["cells"]["hello"]) == "hello\n"


@pytest.mark.slow
def test_print_loop_is_cut_at_the_cell_budget(flood: dict[str, Any]) -> None:
    """Does a print loop keep its first 2 MB and one note, get interrupted by the timeout, and the next cell
    run?"""
    outs = flood["cells"]["print_loop"]
    text = stream_text(outs)
    assert text.endswith(NOTE + "\n") and text.count(NOTE) == 1
    assert 1 << 20 < len(text) <= (2 << 20) + 100
    assert set(text[: -len(NOTE) - 2].replace("\n", "")) == {"x"}
    assert "KeyboardInterrupt" in [o.get("ename") for o in outs]  # interrupted by the cell timeout
    assert stream_text(flood["cells"]["after_loop"]) == "alive\n"


@pytest.mark.slow
def test_kernel_keeps_no_copy_of_its_output(flood: dict[str, Any]) -> None:
    """After printing 100 MB and looping on prints for 8 s, is the kernel's own memory small (IPython 9 would
    keep a copy of every printed string: gigabytes, then MemoryError in every later cell)?"""
    assert json.loads(stream_text(flood["cells"]["kernel_memory"]))["rss_mb"] < 500


@pytest.mark.slow
def test_evidence_is_exempt_from_the_cell_budget(flood: dict[str, Any]) -> None:
    """Is a grading-evidence output of up to 1 MB kept after the cell's prints used up its budget, while a
    larger one, and further prints, are dropped?"""
    outs = flood["cells"]["evidence"]
    evidence = [json.loads(o["data"][EVIDENCE]) for o in outs if EVIDENCE in o.get("data", {})]
    assert [e["probe"] for e in evidence] == ["ok"]
    text = stream_text(outs)
    assert text.count(NOTE) == 1 and "not kept" not in text


@pytest.mark.slow
def test_huge_display_and_display_updates_are_bounded(flood: dict[str, Any]) -> None:
    """Is a 10 MB display dropped with a note, and a display update larger than the cell budget ignored
    (the display keeps its last update that fitted)?"""
    assert stream_text(flood["cells"]["huge_display"]) == NOTE + "\n"
    outs = flood["cells"]["updates"]
    (display,) = [o for o in outs if o["output_type"] == "display_data"]
    assert display["data"]["text/plain"] == "b" * 10**6


@pytest.mark.slow
def test_errors_are_kept_cut_and_bounded(flood: dict[str, Any]) -> None:
    """Is the cell's own error kept (its name, so nbgrader scores the cell as failing) and cut to about
    64 KB, while a flood of raw error messages keeps no more than the cell budget?"""
    outs = flood["cells"]["error_flood"]
    errors = [o for o in outs if o["output_type"] == "error"]
    assert "ValueError" in [e["ename"] for e in errors]
    assert all(len(json.dumps(e)) < 80_000 for e in errors)
    assert kept_bytes(outs) < (2 << 20) + 200_000


@pytest.mark.slow
def test_stderr_past_the_budget_is_cut_with_a_stdout_note(flood: dict[str, Any]) -> None:
    """Is a 3 MB write to stderr cut at 2 MB, with the note on stdout?"""
    outs = flood["cells"]["stderr"]
    assert stream_text(outs) == NOTE + "\n"
    assert (1 << 20) < len(stream_text(outs, "stderr")) <= (2 << 20) + 100


# ---------------------------------------------------------------------------------------------------------
# Without starting a kernel


def test_bwrap_command_line(sandbox_works: None, tmp_path: Path) -> None:
    """Does the kernel command confine the kernel as designed: every namespace, one writable folder, no repo?"""
    (tmp_path / "notebook.ipynb").write_text("{}")
    km = sandbox.SandboxedKernelManager(kernel_name=KERNEL, unsafe_no_sandbox=False)
    cmd, kw = asyncio.run(km._async_pre_start_kernel(cwd=str(tmp_path)))
    try:
        args = cmd[cmd.index("--unshare-all") :]
        for flag in ("--unshare-all", "--unshare-net", "--unshare-user", "--disable-userns", "--die-with-parent",
                     "--new-session", "--clearenv"):  # fmt: skip
            assert flag in args
        binds = [(args[i], args[i + 1], args[i + 2]) for i, a in enumerate(args) if a in ("--bind", "--ro-bind")]
        writable = sorted(dest for kind, _, dest in binds if kind == "--bind")
        assert writable == ["/run/kernel", "/submission"]
        for _, src, dest in binds:
            for forbidden in (ROOT / "source", ROOT, Path.home(), Path("/home")):
                assert dest != str(forbidden), f"{forbidden} is mounted in the sandbox"
        assert kw["cwd"] == "/" and set(kw["env"]) <= {"PATH", "LANG"}
        assert (km.scratch_dir / "submission" / "notebook.ipynb").exists()
        assert "-P" in cmd and "-s" in cmd
    finally:
        asyncio.run(km._async_cleanup_resources())
    assert km.scratch_dir is None


def test_missing_bubblewrap_is_a_clear_error(tmp_path: Path) -> None:
    """Without bubblewrap, does starting a kernel fail with SandboxUnavailable naming the install command?"""
    km = sandbox.SandboxedKernelManager(kernel_name=KERNEL, unsafe_no_sandbox=False, bwrap=str(tmp_path / "no-bwrap"))
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install -y bubblewrap"):
        asyncio.run(km.start_kernel(cwd=str(tmp_path)))
    assert km.scratch_dir is None and not km.has_kernel


def test_opt_out_is_explicit_and_loud(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Is running without a sandbox off by default, on with LRDIFF_UNSAFE_NO_SANDBOX=1, and logged as a warning?"""
    monkeypatch.delenv(sandbox.OPT_OUT_ENV, raising=False)
    assert sandbox.SandboxedKernelManager(kernel_name=KERNEL).sandboxed
    monkeypatch.setenv(sandbox.OPT_OUT_ENV, "1")
    km = sandbox.SandboxedKernelManager(kernel_name=KERNEL)
    assert not km.sandboxed and km.transport == "tcp"
    km.log = logging.getLogger("test_sandbox.optout")
    with caplog.at_level(logging.WARNING, logger="test_sandbox.optout"):
        cmd, _ = asyncio.run(km._async_pre_start_kernel())
    asyncio.run(km._async_cleanup_resources())
    assert "bwrap" not in " ".join(cmd)
    assert any("WITHOUT a sandbox" in r.getMessage() for r in caplog.records)


def test_nbgrader_config_swaps_execute() -> None:
    """Does use_sandbox(c) give nbgrader's autograde the sandboxed Execute, keeping the other preprocessors?"""
    from nbgrader.converters.autograde import Autograde
    from nbgrader.preprocessors import Execute

    c = Config()
    sandbox.use_sandbox(c)
    pps = c.Autograde.autograde_preprocessors
    defaults = Autograde.class_traits()["autograde_preprocessors"].default()
    assert len(pps) == len(defaults) and Execute not in pps
    assert pps[defaults.index(Execute)] is sandbox.SandboxedExecute
    assert sandbox.SandboxedExecute().kernel_manager_class is sandbox.SandboxedKernelManager


# ---------------------------------------------------------------------------------------------------------
# Output budgets, without a kernel

MIB = 1 << 20


def test_cell_budget_cuts_once_with_a_note() -> None:
    """Does a cell keep outputs up to its budget, cut the one that crosses it, note it once and keep
    nothing more, while the next cell starts afresh?"""
    b = sandbox.OutputBudget(2 * MIB, 20 * MIB)
    assert b.admit(0, MIB) == (MIB, None)
    keep, note = b.admit(0, 3 * MIB)
    assert keep == MIB and note == "[output truncated by the grader: more than 2 MB]\n"
    assert b.admit(0, 10) == (0, None)
    assert b.admit(1, MIB) == (MIB, None)


def test_notebook_budget() -> None:
    """Does the notebook stop keeping outputs past its budget, saying so, in every later cell?"""
    b = sandbox.OutputBudget(2 * MIB, 5 * MIB)
    for cell in range(2):
        assert b.admit(cell, 2 * MIB) == (2 * MIB, None)
    keep, note = b.admit(2, 2 * MIB)
    assert keep == MIB and "more than 5 MB in this notebook" in note
    assert b.admit(3, 10) == (0, b._note(False))


def test_evidence_exempt_from_cell_budget_only() -> None:
    """Is an evidence output of up to 1 MB kept in a cell over budget, counted against the notebook, and not
    pushed out by prints? Is a larger one treated as an ordinary output?"""
    b = sandbox.OutputBudget(2 * MIB, 6 * MIB)
    b.admit(0, 3 * MIB)  # the cell is over budget
    assert b.admit(0, MIB // 2, evidence=True) == (MIB // 2, None)
    assert b.admit(0, 2 * MIB, evidence=True) == (0, None)
    for cell in range(1, 4):
        b.admit(cell, 2 * MIB)  # prints fill the notebook
    assert b.admit(9, MIB, evidence=True) == (MIB, None)
    assert b.notebook_used >= 6 * MIB


def test_errors_always_kept_but_bounded() -> None:
    """Is an error kept past the budget (a failing cell must still fail), but only one per cell?"""
    b = sandbox.OutputBudget(2 * MIB, 20 * MIB)
    b.admit(0, 3 * MIB)
    assert b.admit_error(0, 60_000) and not b.admit_error(0, 60_000)
    assert b.admit_error(1, 60_000) and b.admit_error(1, 60_000)  # within budget: all kept


def test_clear_output_frees_the_budget() -> None:
    """Does clear_output give a cell (and the notebook) its budget back, so a progress display that
    redraws itself is never cut?"""
    b = sandbox.OutputBudget(2 * MIB, 3 * MIB)
    for _ in range(10):
        assert b.admit(0, MIB) == (MIB, None)
        b.cleared(0)
    assert b.notebook_used == 0


def test_truncate_error_keeps_name_and_last_frames() -> None:
    """Is a huge error cut to about the limit, keeping its name, the start of its value and the traceback's
    last entries (where the error is), while a normal one is untouched?"""
    small = {"ename": "ValueError", "evalue": "bad", "traceback": ["a", "b"]}
    sandbox.truncate_error(small, 64 << 10)
    assert small == {"ename": "ValueError", "evalue": "bad", "traceback": ["a", "b"]}
    big = {"ename": "ValueError", "evalue": "v" * 10**6, "traceback": [f"frame {i} " + "t" * 1000 for i in range(1000)]}
    sandbox.truncate_error(big, 64 << 10)
    assert big["ename"] == "ValueError" and big["evalue"].startswith("vvv")
    assert len(json.dumps(big)) < 80_000
    assert big["traceback"][-1].startswith("frame 999 ") and "cut by the grader" in big["traceback"][0]


def test_output_size_handles_deep_nesting() -> None:
    """Does measuring a deeply nested JSON output work (no recursion error)?"""
    deep: Any = "x"
    for _ in range(100_000):
        deep = [deep]
    assert sandbox.output_size(deep) == 8 * 100_000 + 1


def test_execute_caps_messages_from_its_budgets() -> None:
    """Does the sandboxed Execute hand its kernel manager a message cap of twice its largest output, and its
    kernel client the capped IOPub channel?"""
    ex = sandbox.SandboxedExecute(kernel_name=KERNEL)
    km = ex.create_kernel_manager()
    assert km.max_message_mb == 2 * 2 + 0.25
    kc = km.client()
    assert isinstance(kc, sandbox.CappedKernelClient) and kc.max_message_bytes == int(4.25 * MIB)


def test_capped_channel_drops_big_messages_unread() -> None:
    """Does the capped IOPub channel decode a small message, replace one over its cap by a stand-in (an error
    keeping its name and its cell), and drop the outputs of a cell over budget from the header alone?"""
    import zmq
    import zmq.asyncio
    from jupyter_client.session import Session

    async def exchange() -> list[dict[str, Any]]:
        ctx = zmq.asyncio.Context()
        pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
        port = pub.bind_to_random_port("tcp://127.0.0.1")
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(f"tcp://127.0.0.1:{port}")
        await asyncio.sleep(0.3)  # the subscription reaches the publisher
        session = Session(key=b"secret")
        channel = sandbox.CappedIOPubChannel(sub, session)
        channel.max_bytes = MIB
        parent = {"msg_id": "cell-1"}
        sent = [
            ("stream", {"name": "stdout", "text": "hello"}, parent),
            ("stream", {"name": "stdout", "text": "x" * (3 * MIB)}, parent),
            ("error", {"traceback": ["t" * (2 * MIB)], "ename": "ValueError", "evalue": "v"}, parent),
            ("stream", {"name": "stdout", "text": "skipped"}, {"msg_id": "cell-over"}),
            ("status", {"execution_state": "idle"}, {"msg_id": "cell-over"}),
        ]
        channel.skip_parents.add("cell-over")
        for msg_type, content, par in sent:
            session.send(pub, msg_type, content, parent=par)
        got = [await channel.get_msg(timeout=10) for _ in sent]
        for s in (pub, sub):
            s.close(linger=0)
        ctx.term()
        return got

    small, big, error, skipped, status = asyncio.run(exchange())
    assert small["content"]["text"] == "hello" and sandbox.DROPPED not in small
    assert big["msg_type"] == sandbox.DROPPED_TYPE and big[sandbox.DROPPED] > 3 * MIB
    assert big["parent_header"]["msg_id"] == "cell-1" and big["content"] == {}
    assert error["msg_type"] == "error" and error["content"]["ename"] == "ValueError"
    assert error["parent_header"]["msg_id"] == "cell-1"
    assert skipped["msg_type"] == sandbox.DROPPED_TYPE
    assert status["content"] == {"execution_state": "idle"}  # not an output: read whatever the budget
