"""Starting a sandboxed kernel, without running one (autograder/sandbox/): the bwrap command line, a missing
bubblewrap, the opt-out, and the sandbox in nbgrader's autograde."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from traitlets.config import Config

from autograder import sandbox

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "lrdiff"



def test_bwrap_command_line(require_sandbox: None, tmp_path: Path) -> None:
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


def test_course_config_names_its_evidence_for_the_sandbox() -> None:
    """Does the course's nbgrader configuration tell the sandboxed Execute which outputs are its grading
    evidence (lrdiff_helpers.evidence.MIME), the sandbox itself knowing none?"""
    from lrdiff_helpers.evidence import MIME

    code = (
        "from traitlets.config.loader import PyFileConfigLoader\n"
        "c = PyFileConfigLoader('nbgrader_config.py', path='autograder').load_config()\n"
        "print(c.SandboxedExecute.evidence_mime)"
    )  # in a process of its own: the configuration pins the environment of the process that loads it
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [MIME]
