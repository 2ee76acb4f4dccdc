"""Shared pytest set-up for the course's tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lrdiff_helpers import reproducibility

ROOT = Path(__file__).resolve().parents[1]

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
        if os.environ.get("CI"):
            pytest.fail(f"the grading sandbox cannot run in CI: {why}", pytrace=False)
        pytest.skip(f"bubblewrap cannot run here, and hostile code must never run unconfined: {why}")
