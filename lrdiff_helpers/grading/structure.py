"""Structure checks: a list of group dicts, every trainable parameter in exactly one group, no empty group,
the six ResNet stages in order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..param_groups import RESNET_STAGES, stage_of
from .groupmap import GroupMap, as_groupmap
from .messages import describe, fail

__all__ = [
    "GroupShape",
    "check_exactly_one_group",
    "check_group_dicts",
    "check_no_empty_groups",
    "check_stage_groups",
    "empty_group_lines",
    "group_shape",
]


@dataclass(frozen=True)
class GroupShape:
    """What a function returned, as :func:`check_group_dicts` sees it (plain data: it can be sent to the grader).

    ``items[i]`` is ``None`` for a dict with a ``"params"`` key, else a description of item ``i``.
    """

    describe: str
    is_sequence: bool
    items: tuple[str | None, ...] = ()


def group_shape(groups: Any) -> GroupShape:
    """The :class:`GroupShape` of ``groups``."""
    if not isinstance(groups, (list, tuple)):
        return GroupShape(describe(groups), False)
    items = tuple(None if isinstance(g, dict) and "params" in g else describe(g) for g in groups)
    return GroupShape(describe(groups), True, items)


def check_group_dicts(groups: Any, n: int | None = None, what: str = "the function") -> None:
    """Check that ``groups`` (or its :class:`GroupShape`) is a list of param-group dicts (``n`` of them, when given).

    >>> check_group_dicts([{"params": []}, {"params": []}], n=2)
    """
    shape = groups if isinstance(groups, GroupShape) else group_shape(groups)
    if not shape.is_sequence:
        raise AssertionError(f"{what} should return a list of param-group dicts; found {shape.describe}")
    bad = [f"item {i} is {d}, not a dict with a 'params' key" for i, d in enumerate(shape.items) if d is not None]
    fail(bad)
    if n is not None and len(shape.items) != n:
        raise AssertionError(f"{what} should return {n} param groups; found {len(shape.items)}")


def check_exactly_one_group(model: nn.Module, groups: Any) -> None:
    """Check that every trainable parameter of ``model`` is in exactly one group, and nothing else is.

    Args:
        model: the model.
        groups: an optimizer, a list of group dicts, or a :class:`GroupMap`.

    >>> from lrdiff_helpers import TwoPartModel
    >>> m = TwoPartModel()
    >>> check_exactly_one_group(m, [{"params": m.part1.parameters()}])
    Traceback (most recent call last):
    ...
    AssertionError: part2.weight is in no param group; every trainable parameter must be in exactly one
    part2.bias is in no param group; every trainable parameter must be in exactly one
    """
    gm = as_groupmap(model, groups)
    lines = list(gm.problems)
    unplaced = any(not pl.groups and pl.requires_grad for pl in gm.values())
    if unplaced:  # an empty group is the usual reason: say so first
        lines += empty_group_lines(gm)
    for name, pl in gm.items():
        if len(pl.groups) > 1:
            lines.append(
                f"{name} is in {len(pl.groups)} param groups ({', '.join(map(str, pl.groups))}); every "
                "trainable parameter must be in exactly one (torch raises ValueError when it is in two)"
            )
        elif not pl.groups and pl.requires_grad:
            lines.append(f"{name} is in no param group; every trainable parameter must be in exactly one")
    fail(lines)


def check_no_empty_groups(model: nn.Module, groups: Any) -> None:
    """Check that no group is empty (an exhausted generator leaves a silently empty group).

    >>> from lrdiff_helpers import TwoPartModel
    >>> m = TwoPartModel()
    >>> ps = m.parameters()
    >>> check_no_empty_groups(m, [{"params": ps}, {"params": ps}])
    Traceback (most recent call last):
    ...
    AssertionError: group 1 is empty; a generator such as model.parameters() can be used only once (make a list)
    """
    fail(empty_group_lines(as_groupmap(model, groups)))


def empty_group_lines(gm: GroupMap) -> list[str]:
    """One line per empty group of ``gm``."""
    return [
        f"group {i} is empty; a generator such as model.parameters() can be used only once (make a list)"
        for i, g in enumerate(gm.groups)
        if len(list(g["params"])) == 0
    ]


def check_stage_groups(model: nn.Module, groups: Any) -> None:
    """Check that the groups are the six ResNet stages in order: stem, layer1 .. layer4, fc.

    Group ``i`` must hold every trainable parameter of stage ``i`` and nothing else.
    """
    gm = as_groupmap(model, groups)
    order = [s for s, _ in RESNET_STAGES]
    if len(gm.groups) != len(order):
        raise AssertionError(
            f"expected {len(order)} param groups, one per stage from input to output "
            f"({', '.join(order)}); found {len(gm.groups)}"
        )
    lines = []
    for i, stage in enumerate(order):
        members = gm.group_members(i)
        wrong = [n for n in members if stage_of(n) != stage]
        if wrong:
            found = sorted({stage_of(n) or n for n in wrong})
            lines.append(f"group {i} should hold {stage} only; it also holds parameters of {', '.join(found)} "
                         f"(e.g. {wrong[0]})")
        for name, p in model.named_parameters():
            if p.requires_grad and stage_of(name) == stage and name not in members:
                lines.append(f"{name} belongs to {stage} and should be in group {i}; found in "
                             + (f"group {gm[name].groups[0]}" if gm[name].groups else "no group"))
    fail(lines)
