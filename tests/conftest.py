"""Shared pytest set-up for the course's tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Notebooks under tests/ are fixtures (submissions to grade), not lessons for nbval to run.
collect_ignore_glob = ["**/*.ipynb"]

os.environ.setdefault("PYTHONHASHSEED", "0")


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository's root folder."""
    return ROOT
