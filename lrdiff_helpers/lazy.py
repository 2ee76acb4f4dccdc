"""Lazy re-exports for a package's ``__init__`` (PEP 562), the pattern of scientific-python's ``lazy_loader``.

A package lists which of its names come from which module; ``import package`` then imports none of them, and
a name is imported the first time it is used (``package.name`` or ``from package import name``), as the same
object as before. So ``from lrdiff_helpers import grading`` does not import torch, which the quiz's grading
kernel never needs (``lrdiff_helpers.grading.quiz`` is plain Python), while ``from lrdiff_helpers import
finetune`` imports what it did before, in the same statement.

Used by ``lrdiff_helpers/__init__.py`` and ``lrdiff_helpers/grading/__init__.py``::

    __getattr__, __dir__, __all__ = attach(__name__, {".data": ["load_digits"]}, submodules=["data"])
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["attach"]


def attach(
    package: str, exports: Mapping[str, Iterable[str]], submodules: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """The module ``__getattr__``, ``__dir__`` and ``__all__`` of a package whose names are imported on first use.

    Args:
        package: the package's ``__name__``.
        exports: a module, relative to the package as in an import (``".data"``, ``"..param_groups"``) ->
            the names the package takes from it. ``__all__`` is these names, sorted.
        submodules: the package's modules that are also its attributes (``package.data``), imported on first use.

    A name is looked up once: the package keeps it as an ordinary attribute afterwards.

    >>> getattr_, dir_, all_ = attach("lrdiff_helpers.grading", {".quiz": ["check_choice"]}, ["quiz"])
    >>> all_, getattr_("check_choice").__module__, getattr_("quiz").__name__
    (['check_choice'], 'lrdiff_helpers.grading.quiz', 'lrdiff_helpers.grading.quiz')
    """
    origin = {name: module for module, names in exports.items() for name in names}
    modules = frozenset(submodules)

    def __getattr__(name: str) -> Any:
        if name in origin:
            value = getattr(importlib.import_module(origin[name], package), name)
        elif name in modules:
            value = importlib.import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | origin.keys() | modules)

    return __getattr__, __dir__, sorted(origin)
