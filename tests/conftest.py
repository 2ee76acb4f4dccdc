"""Shared pytest set-up for the course's tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # ``tests.support`` and ``autograder`` import from the root, however pytest started
    sys.path.append(str(ROOT))

from lrdiff_helpers import reproducibility  # noqa: E402
from tests.support import skip_or_fail  # noqa: E402

# Notebooks under tests/ are fixtures (submissions to grade), not lessons for nbval to run.
collect_ignore_glob = ["**/*.ipynb"]

os.environ.setdefault("PYTHONHASHSEED", "0")
# One torch thread and CPU kernels capped at AVX2, for this process and every process and kernel it starts: the
# numbers the tests compare are then the same on every x86-64 CPU with AVX2 or newer. On 2 cores one thread is
# also the fast choice: the suite runs several kernels at once (two threads each were ~10x slower).
reproducibility.pin()


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository's root folder."""
    return ROOT


@pytest.fixture(scope="session")
def require_sandbox() -> None:
    """Skip where bubblewrap cannot run (a student's machine), fail under CI: student code never runs unconfined."""
    from autograder.sandbox import sandbox_available

    ok, why = sandbox_available()
    if not ok:
        skip_or_fail(f"bubblewrap cannot run here, and hostile code must never run unconfined: {why}",
                     in_ci=f"the grading sandbox cannot run in CI: {why}")
