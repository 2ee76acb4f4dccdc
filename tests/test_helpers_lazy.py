"""lrdiff_helpers imports a name on first use (``lrdiff_helpers/lazy.py``): is grading the quiz free of torch, and
is every name still what it was?"""

from __future__ import annotations

import importlib
import subprocess
import sys

import nbformat
import pytest

from autograder.verdict import probe_source
from tests import support


def _quiz_as_graded() -> str:
    """The release quiz with the source's answers, as one script: each grade cell's visible code and then its
    probe (what the grader runs in its place), as the grading kernel runs them."""
    code = []
    for cell in support.submission("quiz").cells:
        if cell.cell_type != "code":
            continue
        code.append(cell.source)
        if cell.metadata.get("nbgrader", {}).get("grade"):
            code.append(probe_source(support.grade_id(cell)))
    return "\n".join(code)


def test_grading_the_quiz_never_imports_torch():
    """Does running the quiz as the grader does (setup, answers, visible checks, probes) leave torch unimported?"""
    script = _quiz_as_graded() + (
        "\nimport sys\n"
        "found = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'numpy'))\n"
        "print(len(found), found[:5])\n"
    )
    assert "probe('q17_test'" in script and "check_choice" in script  # the whole quiz, probes included
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("0 "), f"expected no torch, torchvision or numpy module; found {proc.stdout}"


@pytest.mark.parametrize("package", ["lrdiff_helpers", "lrdiff_helpers.grading"])
def test_every_public_name_is_the_object_its_module_defines(package):
    """Does ``from PACKAGE import *`` give every name of ``__all__``, listed by ``dir()``, as the very object
    of the module that defines it, and an unknown name an AttributeError?"""
    module = importlib.import_module(package)
    namespace: dict = {}
    exec(f"from {package} import *", namespace)
    missing = sorted(set(module.__all__) - set(namespace) - set(dir(module)))
    assert not missing, f"expected every name of {package}.__all__ to import; missing {missing}"
    for name in module.__all__:
        obj = namespace[name]
        assert obj is getattr(module, name)
        home = getattr(obj, "__module__", None)
        if home and home.startswith("lrdiff_helpers") and hasattr(obj, "__qualname__"):
            assert getattr(sys.modules[home], obj.__qualname__) is obj, f"{package}.{name} is not {home}.{name}"
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'no_such_name'"):
        getattr(module, "no_such_name")
