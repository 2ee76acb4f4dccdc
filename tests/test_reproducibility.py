"""Do the reproducibility pins make torch's numbers the same on every x86-64 CPU with AVX2 or newer?

One machine stands in for several: torch, oneDNN and MKL can each be told to use no more than a given
instruction set (``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``, ``MKL_ENABLE_INSTRUCTIONS``), which is what
a CPU without the wider instructions would use on its own. Each simulated machine runs the deterministic core
of the course's experiment (three fine-tunes, one at a high lr, where last-bit differences grow) in a process
of its own, since the kernels are chosen once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lrdiff_helpers.reproducibility import PINNED_CAPABILITY, PINNED_ENV, pin_status
from tests.support import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]

#: What a CPU whose widest instructions are ISA computes with on its own: each library capped there.
MACHINES = {
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}

#: The core: SGD at one high lr (chaotic), the differential, Adam; the losses of every epoch, exactly.
CORE = """
import json, torch
from lrdiff_helpers import finetune
torch.set_num_threads(1)
runs = [finetune(1e-1, 1e-1, seed=0), finetune(1e-3, 1e-2, seed=1), finetune(1e-3, 1e-3, seed=0, optimizer="adam")]
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(),
                  "losses": [r.train_loss + r.val_loss for r in runs], "val": [r.val_acc[-1] for r in runs]}))
"""


def _cpu_has(isa: str) -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return {"avx512": " avx512f", "avx2": " avx2", "default": ""}[isa] in flags


def _run_core(machine: dict[str, str], pinned: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PINNED_ENV and k not in MACHINES["avx2"]}
    env.update(machine)
    env.update(PINNED_ENV if pinned else {"OMP_NUM_THREADS": "1"})
    proc = subprocess.run([sys.executable, "-c", CORE], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _differences(a: dict, b: dict) -> str:
    return ", ".join(f"run {i}: val {x:.4f} vs {y:.4f}" for i, (x, y) in enumerate(zip(a["val"], b["val"])))


@pytest.fixture(scope="module")
def x86_avx2() -> None:
    if not _cpu_has("avx2"):
        reason = "needs an x86-64 CPU with AVX2: the pins promise identical numbers only there"
        skip_or_fail(reason)


@pytest.mark.slow
def test_pinned_numbers_are_the_same_on_every_simulated_cpu(x86_avx2: None):
    """Do this CPU, an AVX2-only CPU and (where this one has it) an AVX-512 CPU give identical losses pinned,
    and the same as an AVX2-only CPU gives with no pins at all?"""
    cpus = [isa for isa in ("avx512", "avx2") if _cpu_has(isa)]
    pinned = {f"{isa}, pinned": _run_core(MACHINES[isa], pinned=True) for isa in cpus}
    pinned["this CPU, pinned"] = _run_core({}, pinned=True)
    reference = _run_core(MACHINES["avx2"], pinned=False)  # what a real AVX2 machine computes by itself
    for name, result in pinned.items():
        assert result["capability"] == PINNED_CAPABILITY, (name, result["capability"])
        assert result["losses"] == reference["losses"], f"{name} differs from an AVX2 CPU: {_differences(result, reference)}"


@pytest.mark.slow
def test_without_the_pins_the_numbers_can_differ(x86_avx2: None):
    """Can the core differ between CPUs without the pins (so that the test above can fail)?"""
    pinned = _run_core({}, pinned=True)
    others = {isa: _run_core(MACHINES[isa], pinned=False) for isa in ("avx512", "default") if _cpu_has(isa)}
    others["this CPU"] = _run_core({}, pinned=False)
    differ = [name for name, r in others.items() if r["losses"] != pinned["losses"]]
    assert differ, f"every CPU gave the pinned losses without the pins: {sorted(others)}"
    # the runs at a moderate lr agree to the image; the high-lr run is where machines part
    for name in differ:
        assert others[name]["val"][1:] == pinned["val"][1:], f"{name}: {_differences(others[name], pinned)}"


def test_the_test_process_is_pinned():
    """Does the suite itself (tests/conftest.py) run with one thread and the pinned kernels?"""
    status = pin_status()
    assert torch.get_num_threads() == 1
    assert status.missing == ()
    if _cpu_has("avx2"):
        assert status.reproducible, status.reason


def test_kernelspec_carries_the_pins():
    """Does the course's "Python (lrdiff)" kernel start with the pins (lessons, nbval, JupyterLab)?"""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("lrdiff")
    assert {k: spec.env.get(k) for k in PINNED_ENV} == PINNED_ENV


def _lessons_that_assert() -> list[str]:
    import nbformat

    return sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")
                  if any(c.cell_type == "code" and "assert " in c.source for c in nbformat.read(p, as_version=4).cells))


@pytest.mark.slow
@pytest.mark.parametrize("lesson", _lessons_that_assert())
def test_lesson_claims_hold_with_other_kernels(x86_avx2: None, lesson: str):
    """Does each lesson that asserts its claims still pass them when its numbers are not the pinned ones (the
    oldest x86 kernels stand in for another architecture), as lesson 4's text promises?"""
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / lesson, as_version=4)
    km = KernelManager(kernel_name="lrdiff")
    km.kernel_spec.env.update({**MACHINES["default"], "MKL_CBWR": "COMPATIBLE"})
    NotebookClient(nb, km=km, timeout=600, resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    shown = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    if "reproducibility.describe()" in "".join(c.source for c in nb.cells):  # the lesson says where it runs
        assert "torch CPU kernels DEFAULT" in shown and "not the course's pinned settings" in shown


def test_experiment_results_say_when_they_are_not_the_graders():
    """Does a result computed without the pins say that the graders' numbers may differ?"""
    from lrdiff_helpers.grading import ExperimentResult

    result = ExperimentResult(1e-4, 1e-3, 72.0, 9.5, (72.0,), (9.5,), unpinned="torch's CPU kernels are DEFAULT")
    assert "the graders' may differ" in str(result) and "DEFAULT" in str(result)
    assert "may differ" not in str(ExperimentResult(1e-4, 1e-3, 72.0, 9.5, (72.0,), (9.5,)))


def test_grader_refuses_a_machine_without_the_pinned_kernels(monkeypatch: pytest.MonkeyPatch):
    """Does autograde stop with a clear error, before grading anything, where the pins cannot apply?"""
    from autograder import autograde as grading_run
    from lrdiff_helpers.reproducibility import PinStatus

    monkeypatch.setattr(grading_run, "pin_status", lambda: PinStatus("DEFAULT", 1, ()))
    monkeypatch.delenv(grading_run.UNPINNED_OPT_OUT_ENV, raising=False)
    with pytest.raises(grading_run.InputError, match="torch's CPU kernels are DEFAULT, not AVX2"):
        grading_run.require_reproducible()
    monkeypatch.setenv(grading_run.UNPINNED_OPT_OUT_ENV, "1")
    grading_run.require_reproducible()  # the explicit opt-out
