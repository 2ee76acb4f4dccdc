"""The one rule for a test that cannot run on this machine: skip it here, fail it under CI.

A student's or a contributor's machine may lack what a test needs (bubblewrap, a git checkout, an AVX2 CPU);
the test then skips and says why. CI (``CI`` set, as every CI service does) promises all of it, so there the
same test fails instead of passing silently.
"""

from __future__ import annotations

import os

import pytest

__all__ = ["skip_or_fail"]


def skip_or_fail(reason: str, in_ci: str | None = None) -> None:
    """Skip the running test with ``reason``; under CI (env ``CI`` set and not empty), fail it instead.

    Args:
        reason: why the test cannot run here.
        in_ci: the failure's message under CI (default: ``reason``).

    >>> skip_or_fail("bubblewrap cannot run here")  # doctest: +SKIP
    """
    if os.environ.get("CI"):
        pytest.fail(in_ci or reason, pytrace=False)
    pytest.skip(reason)
