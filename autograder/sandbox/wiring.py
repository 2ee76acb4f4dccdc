"""Putting the sandbox into nbgrader's autograde (call :func:`use_sandbox` in ``nbgrader_config.py``)."""

from __future__ import annotations

from typing import Any

#: The configuration string naming the sandboxed kernel manager (its public home).
KERNEL_MANAGER = "autograder.sandbox.SandboxedKernelManager"


def autograde_preprocessors(c: Any = None) -> list[Any]:
    """``Autograde.autograde_preprocessors`` as configured in ``c`` (nbgrader's default when not configured)
    with ``Execute`` replaced by the sandboxed one."""
    from nbgrader.converters.autograde import Autograde
    from nbgrader.preprocessors import Execute

    from .execute import SandboxedExecute

    if c is not None and "autograde_preprocessors" in c.Autograde:
        current = list(c.Autograde.autograde_preprocessors)
    else:
        current = list(Autograde.class_traits()["autograde_preprocessors"].default())
    return [SandboxedExecute if p is Execute or p == "nbgrader.preprocessors.Execute" else p for p in current]


def use_sandbox(c: Any) -> None:
    """Make ``nbgrader autograde`` run every submission in the sandbox (call it in ``nbgrader_config.py``).

    Two belts: the autograde preprocessor list gets :class:`SandboxedExecute` (whose constructor names the
    sandboxed manager), and ``Execute.kernel_manager_class`` is configured too. The config key alone works
    today only because nbconvert's ``ExecutePreprocessor.preprocess`` re-runs ``NotebookClient.__init__``,
    which reloads config over nbgrader's constructor argument; should that change, it would silently stop
    working, and the preprocessor swap would not.
    """
    c.Autograde.autograde_preprocessors = autograde_preprocessors(c)
    c.Execute.kernel_manager_class = KERNEL_MANAGER
