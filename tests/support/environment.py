"""The environment of a grader the tests start as a subprocess (``python -m autograder``, ``nbgrader``)."""

from __future__ import annotations

__all__ = ["GRADEBOOK_URL_ENV", "grader_env"]

#: Where the shell may point the grader at another gradebook (``autograder/nbgrader_config.py``); a test's
#: grader always uses its scratch course's.
GRADEBOOK_URL_ENV = "LRDIFF_GRADEBOOK_URL"


def grader_env(*, sandboxed: bool = False) -> dict[str, str]:
    """This process's environment, for a grader: this Python's tools first on ``PATH`` (``venv_path_env``), no
    gradebook URL.

    Args:
        sandboxed: also drop the sandbox's opt-out, whatever the shell says: hostile code never runs unconfined.

    >>> "LRDIFF_GRADEBOOK_URL" in grader_env()
    False
    """
    from autograder.course import venv_path_env

    env = venv_path_env()
    env.pop(GRADEBOOK_URL_ENV, None)
    if sandboxed:
        from autograder.sandbox import OPT_OUT_ENV

        env.pop(OPT_OUT_ENV, None)
    return env
