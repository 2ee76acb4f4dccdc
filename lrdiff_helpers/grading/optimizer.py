"""Optimizer facts (the optimizer's classes and each group's options, as plain data) and :func:`check_optimizer`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .messages import describe, fail, fmt_any, number, same

__all__ = ["OptimizerFacts", "check_optimizer", "json_scalar", "optimizer_facts", "qualified_name"]


def qualified_name(cls: type) -> str:
    """``torch.optim.sgd.SGD`` for ``torch.optim.SGD``: how a class is named in facts sent to the grader."""
    return f"{cls.__module__}.{cls.__qualname__}"


def json_scalar(value: Any) -> Any:
    """A JSON-able copy of a hyperparameter (numbers, strings, None, bools, tuples of them), else its repr."""
    if value is None or isinstance(value, (bool, str)):
        return value
    n = number(value)
    if n is not None:
        return n
    if isinstance(value, (tuple, list)):
        return [json_scalar(v) for v in value]
    return {"repr": repr(value)[:200]}


@dataclass(frozen=True)
class OptimizerFacts:
    """What :func:`check_optimizer` looks at, as plain data: the classes of the object (its type's MRO, by
    :func:`qualified_name`), a description, and each group's options (``"params"`` left out)."""

    classes: tuple[str, ...]
    describe: str
    groups: tuple[dict[str, Any], ...] = ()


def optimizer_facts(optimizer: Any) -> OptimizerFacts:
    """The :class:`OptimizerFacts` of ``optimizer``."""
    groups: tuple[dict[str, Any], ...] = ()
    if isinstance(optimizer, torch.optim.Optimizer):
        groups = tuple({k: json_scalar(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups)
    return OptimizerFacts(tuple(qualified_name(c) for c in type(optimizer).__mro__), describe(optimizer), groups)


def check_optimizer(optimizer: Any, cls: type[torch.optim.Optimizer], **options: Any) -> None:
    """Check that ``optimizer`` (or its :class:`OptimizerFacts`) is a ``cls`` and that every group has the
    given options (``momentum=0.9``).

    >>> from lrdiff_helpers import TwoPartModel
    >>> check_optimizer(torch.optim.SGD(TwoPartModel().parameters(), lr=0.1), torch.optim.SGD, momentum=0.9)
    Traceback (most recent call last):
    ...
    AssertionError: group 0 has momentum 0, expected 0.9
    """
    facts = optimizer if isinstance(optimizer, OptimizerFacts) else optimizer_facts(optimizer)
    if qualified_name(cls) not in facts.classes:
        raise AssertionError(f"expected a torch.optim.{cls.__name__}; found {facts.describe}")
    lines = []
    for i, g in enumerate(facts.groups):
        for key, want in options.items():
            have = g.get(key)
            if not same(have, want):
                lines.append(f"group {i} has {key} {fmt_any(have)}, expected {fmt_any(want)}")
    fail(lines)
