"""The two programs that run elsewhere (autograder/sandbox/prelude.py, stage.py), as Python modules.

The sandbox passes each file's own text to ``python -c``; here they are imported (importing runs nothing) and
run the way the sandbox runs them, without bubblewrap.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.sandbox import command, kernel, prelude, stage

#: A module for the prelude to run: prints what the kernel would find.
PROBE = """\
import json, resource, sys
from IPython.core.history import HistoryManager
from ipykernel.iostream import OutStream
print(json.dumps({"name": __name__, "argv": sys.argv, "path_end": sys.path[-1],
    "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
    "history": type(HistoryManager.outputs).__name__, "write": OutStream.write.__name__}))
"""


def run_prelude(folder: Path, **spec_changes: object) -> subprocess.CompletedProcess:
    """Run the prelude's text as the sandbox does (``python -s -P -c PRELUDE SPEC MODULE ARGS``) on PROBE."""
    (folder / "lrdiff_probe.py").write_text(PROBE)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    spec = {
        "rlimits": {"RLIMIT_NOFILE": [min(soft, 256), min(hard, 256)]},
        "append_path": [str(folder)],
        "module": "lrdiff_probe",
        "flush_chars": 1024,
        "forget_output_history": True,
    } | spec_changes
    cmd = [sys.executable, "-s", "-P", "-c", kernel.PRELUDE, json.dumps(spec), "lrdiff_probe", "-f", "x.json"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")


def test_the_sandbox_runs_the_modules_own_text() -> None:
    """Is what the sandbox passes to ``python -c`` exactly the prelude's and the stage's source files?"""
    assert kernel.PRELUDE == Path(prelude.__file__).read_text()
    assert command.STAGE == Path(stage.__file__).read_text()
    assert 'if __name__ == "__main__":' in kernel.PRELUDE and 'if __name__ == "__main__":' in command.STAGE


def test_prelude_runs_the_kernel_module_with_limits_and_patches(tmp_path: Path) -> None:
    """Does the prelude set the rlimits, append the submission to the end of sys.path, patch IPython's output
    history and ipykernel's stream writer, then run the module as ``python -m`` would, with its arguments?"""
    out = run_prelude(tmp_path)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.splitlines()[-1])
    assert info["name"] == "__main__"
    assert info["argv"][1:] == ["-f", "x.json"] and info["argv"][0].endswith("lrdiff_probe.py")
    assert info["path_end"] == str(tmp_path)
    assert info["nofile"][0] <= 256
    assert info["history"] == "Forget" and info["write"] == "capped_write"


def test_prelude_leaves_ipython_alone_when_told(tmp_path: Path) -> None:
    """With ``flush_chars`` 0 and ``forget_output_history`` false, are ipykernel and IPython left as they are?"""
    out = run_prelude(tmp_path, flush_chars=0, forget_output_history=False)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.splitlines()[-1])
    assert info["history"] != "Forget" and info["write"] != "capped_write"


def test_forget_keeps_nothing() -> None:
    """Does the prelude's stand-in for IPython's output history keep nothing and read as empty?"""
    history = prelude.Forget()
    history[1] = ["a large output"]
    assert history == {} and history[1] == []


def test_stage_check_exits_with_the_reason() -> None:
    """Does the stage stop with the C library's reason when a call fails, and go on when it succeeds?"""
    stage.check(0, "mount")
    with pytest.raises(SystemExit, match="lrdiff sandbox: mount failed: "):
        stage.check(-1, "mount")


@pytest.mark.skipif(os.geteuid() != 0, reason="the stage runs only when the grader is root")
def test_stage_drops_to_the_sandbox_uid_and_execs() -> None:
    """Run as root, does the stage bind nothing when nothing needs it, drop to the given uid and gid with no
    groups, and exec the next program?"""
    uid = command.pick_host_uid()
    spec = {"stage": [], "uid": uid, "gid": uid}
    cmd = [sys.executable, "-I", "-S", "-c", command.STAGE, json.dumps(spec), "/bin/sh", "-c", "id -u; id -g; id -G"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(uid)] * 3  # uid, gid, and the groups: the gid alone
