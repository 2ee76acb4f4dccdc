"""The `>>>` examples in lrdiff_helpers' docstrings are executed, so they cannot go stale."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["evidence", "data", "models", "param_groups", "inspector", "train", "experiment", "vit", "modern", "llrd", "resolve",
           "lazy"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(f"lrdiff_helpers.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"lrdiff_helpers.{name} has no examples"
    assert result.failed == 0
