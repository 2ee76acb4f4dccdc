"""The quiz: a choice among capital letters, and answers checked by digest (the test cells do not spell them)."""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["answer_digest", "check_choice"]


def check_choice(question: str, answer: Any, letters: str) -> None:
    """Check that ``answer`` is one of the offered capital ``letters``.

    >>> check_choice("q1", "E", "ABCD")
    Traceback (most recent call last):
    ...
    AssertionError: q1 should be one of 'A', 'B', 'C', 'D' (a capital letter in quotes); found 'E'
    """
    if not (isinstance(answer, str) and len(answer) == 1 and answer in letters):
        offered = ", ".join(repr(c) for c in letters)
        raise AssertionError(f"{question} should be one of {offered} (a capital letter in quotes); found {answer!r}")


def answer_digest(question: str, answer: Any) -> str:
    """A short digest of an answer, so that a test cell can check it without spelling it out.

    >>> len(answer_digest("q1", "A"))
    16
    """
    return hashlib.sha256(f"lrdiff-quiz/{question}/{answer!s}".encode()).hexdigest()[:16]
