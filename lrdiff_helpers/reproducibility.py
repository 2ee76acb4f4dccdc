"""The same numbers on every machine: the settings that pin torch's CPU arithmetic, in one place.

One thread is not enough for identical results: torch picks its CPU kernels by instruction set
(``ATEN_CPU_CAPABILITY``: default / avx2 / avx512), and so do oneDNN (convolutions) and MKL (matrix
products). A high learning rate turns a difference in the last bit into several misclassified images. The
course therefore caps all three at AVX2 and runs one thread. Measured on an AVX-512 machine: a fine-tune
with these pins gives bit for bit the losses of the same machine told to act as an AVX2-only CPU, and
``finetune(1e-1, 1e-1, seed=0)`` ends at 62.62% validation accuracy both ways, 59.06% without AVX2
(``default``) and 60.20% with torch's kernels capped but not oneDNN's. Results are identical on x86-64
CPUs with AVX2 or newer; elsewhere (an ARM laptop, a GPU, an x86 CPU without AVX2) they can differ, and the
lessons assert their claims with margins instead.

Where the pins are applied (each place calls this module):

- the lessons' kernel: ``./course setup`` writes :data:`PINNED_ENV` into the "Python (lrdiff)" kernelspec
  (``python -m lrdiff_helpers.reproducibility kernel-args``), so JupyterLab, nbval and the browser tests
  run pinned;
- the tests: ``tests/conftest.py`` calls :func:`pin`;
- the grader: ``python -m autograder`` and ``autograder/nbgrader_config.py`` call :func:`pin` before
  anything is computed, and the sandboxed kernels receive the same variables;
- the benchmarks call :func:`pin`.

Introduced in ``notebooks/04_experiment.ipynb``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

__all__ = ["PINNED_CAPABILITY", "PINNED_ENV", "PinStatus", "describe", "pin", "pin_status"]

#: The environment that makes torch's CPU results identical across x86-64 machines with AVX2 or newer.
PINNED_ENV: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own vectorized kernels (elementwise ops, reductions, ...)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (mkldnn): convolutions
    "MKL_CBWR": "AVX2",  # MKL's conditional numerical reproducibility: matrix products
    "OMP_NUM_THREADS": "1",  # one thread: the order of every sum is fixed
    "MKL_NUM_THREADS": "1",
}

#: What ``torch.backends.cpu.get_cpu_capability()`` reports when the pins are in force.
PINNED_CAPABILITY = "AVX2"


@dataclass(frozen=True)
class PinStatus:
    """Whether this process computes the course's reference numbers, and if not, why."""

    capability: str  # torch's CPU kernels in use
    threads: int  # torch's intra-op threads
    missing: tuple[str, ...]  # pinned library variables not set (or set otherwise) in this process

    @property
    def reproducible(self) -> bool:
        return self.capability == PINNED_CAPABILITY and self.threads == 1 and not self.missing

    @property
    def reason(self) -> str:
        """Why the numbers may differ from the course's; ``""`` when they do not."""
        why = []
        if self.missing:
            why.append("not set: " + ", ".join(f"{k}={PINNED_ENV[k]}" for k in self.missing))
        if self.capability != PINNED_CAPABILITY:
            why.append(f"torch's CPU kernels are {self.capability}, not {PINNED_CAPABILITY}")
        if self.threads != 1:
            why.append(f"torch uses {self.threads} threads, not 1")
        return "; ".join(why)


def pin() -> PinStatus:
    """Apply :data:`PINNED_ENV` to this process; call it before torch computes anything.

    The variables are read when each library first computes, not when torch is imported, so importing
    torch first is fine; computing first is not (the capability is then fixed for the process's life).

    Returns:
        :func:`pin_status` afterwards.

    Raises:
        RuntimeError: torch had already chosen wider kernels on a CPU that could run the pinned ones.
    """
    os.environ.update(PINNED_ENV)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    status = pin_status()
    if status.capability.startswith("AVX512"):
        raise RuntimeError(
            f"torch already computes with {status.capability} kernels in this process: call "
            "lrdiff_helpers.reproducibility.pin() before anything runs, or start Python with these variables: "
            + " ".join(f"{k}={v}" for k, v in PINNED_ENV.items())
        )
    return status


def pin_status() -> PinStatus:
    """Which kernels and how many threads this process's torch uses, and which pins are missing.

    >>> s = pin_status()
    >>> s.reproducible == (s.reason == "")
    True
    """
    import torch

    # The thread variables are checked by what torch does (``threads``), the others by their value.
    missing = tuple(k for k, v in PINNED_ENV.items() if "THREADS" not in k and os.environ.get(k) != v)
    return PinStatus(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(), missing)


def describe() -> str:
    """One line for a lesson: the kernels and threads in use, and what that means for its numbers."""
    s = pin_status()
    if s.reproducible:
        return (f"torch CPU kernels {s.capability}, {s.threads} thread: the numbers below are the course's, "
                "the same on every x86-64 CPU with AVX2 or newer")
    return (f"torch CPU kernels {s.capability}, {s.threads} thread(s): not the course's pinned settings "
            f"({s.reason}); numbers below may differ a little from the committed ones")


def _main(argv: list[str]) -> int:
    if argv == ["kernel-args"]:  # for `ipykernel install`
        print(" ".join(f"--env {k} {v}" for k, v in PINNED_ENV.items()))
        return 0
    if argv == ["shell"]:
        print("\n".join(f"export {k}={v}" for k, v in PINNED_ENV.items()))
        return 0
    if argv in ([], ["status"]):
        pin()
        print(describe())
        return 0
    print("usage: python -m lrdiff_helpers.reproducibility [status|kernel-args|shell]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
