"""The sandbox tests' attack notebook (tests/test_sandbox.py): cells that try to get out, cell by cell.

Each cell prints one JSON object of what it found or managed (``last_json`` in the test reads it); the test of
each attack reads the outputs of its cell. The cells run in order in one kernel, the last one ending it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: Files a student could drop beside the notebook, hoping they run instead of the real ones.
HIJACKERS = {
    "torch.py": "open('/submission/HIJACKED-torch', 'w').close()\nraise ImportError('the fake torch ran')\n",
    "sitecustomize.py": "open('/submission/HIJACKED-sitecustomize', 'w').close()\n",
    "usercustomize.py": "open('/submission/HIJACKED-usercustomize', 'w').close()\n",
    "ipykernel_launcher.py": "open('/submission/HIJACKED-launcher', 'w').close()\nraise SystemExit(3)\n",
}


#: How every attack cell starts, and a helper for the cells that try things: 'ok' or the OSError it raised.
CELL_START = "import json, os, sys\n"
ATTEMPT = (
    "def attempt(fn):\n"
    "    try:\n"
    "        fn()\n"
    "        return 'ok'\n"
    "    except OSError as e:\n"
    "        return f'{type(e).__name__}: {e}'\n"
)


def identity_cells() -> list[tuple[str, str, int]]:
    """Who the kernel is (uid, capabilities, environment) and what it imports."""
    return [
        (
            "identity",
            CELL_START + "import socket\n"
            "status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n"
            "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups(),\n"
            "    'cwd': os.getcwd(), 'uid_map': open('/proc/self/uid_map').read().split(),\n"
            "    'no_new_privs': status['NoNewPrivs'].strip(), 'cap_eff': status['CapEff'].strip(),\n"
            "    'env': sorted(os.environ), 'fds': [os.readlink(f'/proc/1/fd/{i}') for i in (1, 2)]}))",
            60,
        ),
        (
            "imports",
            CELL_START + "import torch, lrdiff_helpers, helper\n"
            "print(json.dumps({'torch': torch.__file__, 'helpers': lrdiff_helpers.__file__,\n"
            "    'helper': helper.__file__, 'sitecustomize': getattr(sys.modules.get('sitecustomize'), '__file__', None),\n"
            "    'hijacked': sorted(f for f in os.listdir('/submission') if f.startswith('HIJACKED')),\n"
            "    'path': sys.path, 'sum': float(torch.ones(3).sum())}))",
            240,
        ),
    ]


def network_cells(listener: dict[str, Any]) -> list[tuple[str, str, int]]:
    """Connections out: a public address, the host's loopback and abstract sockets, DNS."""
    return [
        (
            "network",
            CELL_START + "import socket\n" + ATTEMPT + "def tcp(host, port):\n"
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
    ]


def file_cells(course: dict[str, Path], kernel_python: str) -> list[tuple[str, str, int]]:
    """What the kernel can read and write, and the file-size limit."""
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
    venv_file = Path(kernel_python).parent.parent / "pyvenv.cfg"
    helpers = Path(importlib.util.find_spec("lrdiff_helpers").origin).parent
    must_fail = [venv_file.parent / "x", helpers / "x", Path("/usr/x"), Path("/etc/x"), Path("/x"), Path("/run/x")]
    must_work = [Path("/submission/out.txt"), Path("/tmp/x"), Path("/dev/shm/x")]
    return [
        (
            "reads",
            CELL_START + f"paths = {[str(p) for p in secrets]!r}\n"
            f"home = {str(home)!r}\n"
            "print(json.dumps({'visible': [p for p in paths if os.path.exists(p)],\n"
            "    'home': sorted(os.listdir(home)) if os.path.isdir(home) else None,\n"
            "    'root': sorted(os.listdir('/')), 'data': open('/submission/data.txt').read()}))",
            60,
        ),
        (
            "writes",
            CELL_START + ATTEMPT + "def write(path):\n"
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
            CELL_START + "written, err = 0, None\n"
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
    ]


def limit_cells() -> list[tuple[str, str, int]]:
    """A memory bomb, then an endless loop (and the cell after it)."""
    return [
        (
            "memory_bomb",
            CELL_START + "import mmap, time, torch\n"
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
    ]


def process_cells(token: str) -> list[tuple[str, str, int]]:
    """A fork bomb (leaving sleepers whose argument is ``token``), then the kernel's own exit."""
    return [
        (
            "fork_bomb",
            CELL_START + "import errno, signal, subprocess, time\n"
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


def attack_cells(
    course: dict[str, Path], listener: dict[str, Any], token: str, kernel_python: str
) -> list[tuple[str, str, int]]:
    """The attack notebook's ``(name, code, timeout)`` cells, in the order they run.

    Args:
        course: the throwaway course's ``base``, ``bob`` and ``alice`` folders (the kernel starts in Alice's).
        listener: the host's TCP ``port`` and ``abstract`` unix socket name, which must be out of reach.
        token: the argument of the sleepers the fork-bomb cell leaves behind (found on the host afterwards).
        kernel_python: the kernel's interpreter (its environment must be read-only).
    """
    return (
        identity_cells() + network_cells(listener) + file_cells(course, kernel_python) + limit_cells()
        + process_cells(token)
    )
