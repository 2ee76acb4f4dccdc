"""What an optimizer (or a list of group dicts) does to each parameter, as the checks see it: a :class:`GroupMap`.

The walk itself is :func:`lrdiff_helpers.resolve.resolve` (the one the inspector uses too); this module
turns group dicts into the optimizer a student's training script would build
(``torch.optim.SGD(groups, lr=SENTINEL_LR, weight_decay=SENTINEL_WD)``) and words what the walk found.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..resolve import Finding, Resolution, common_optimizer_keys, optimizer_defaults, resolve
from .messages import describe, number, quiet

__all__ = ["SENTINEL_LR", "SENTINEL_WD", "GroupMap", "Placement", "as_groupmap", "effective_groups"]

#: The base lr of the optimizer built from a student's group dicts. No test uses it as an expected
#: value, so a parameter found at this lr took the default: its group has no ``"lr"`` of its own.
SENTINEL_LR = 0.0123456789
#: The same for weight decay.
SENTINEL_WD = 0.000987654321


@dataclass(frozen=True)
class Placement:
    """Where one model parameter is: the groups holding it, and its effective lr and weight decay.

    ``lr`` and ``weight_decay`` are those of its first group (``None`` when it is in no group).
    ``lr_is_default`` is true when that group has no ``"lr"`` key and so takes the optimizer's base lr
    (the same for ``weight_decay_is_default``).
    """

    name: str
    groups: tuple[int, ...]
    lr: float | None
    weight_decay: float | None
    requires_grad: bool
    lr_is_default: bool = False
    weight_decay_is_default: bool = False

    @property
    def group(self) -> int | None:
        """The index of its group when it is in exactly one, else ``None``."""
        return self.groups[0] if len(self.groups) == 1 else None


@dataclass
class GroupMap(Mapping[str, Placement]):
    """Parameter name -> :class:`Placement`, for every parameter of a model, plus group-level findings.

    Built by :func:`effective_groups`. ``groups`` are the groups as the optimizer holds them (defaults
    filled in); ``problems`` lists what makes the groups unusable (a module instead of its parameters,
    a tensor that is not the model's, a parameter twice in one group); ``ignored_keys[i]`` the keys of
    group ``i`` that torch does not read.
    """

    placements: dict[str, Placement]
    groups: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)
    ignored_keys: dict[int, list[str]] = field(default_factory=dict)
    from_dicts: bool = True

    def __getitem__(self, name: str) -> Placement:
        return self.placements[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.placements)

    def __len__(self) -> int:
        return len(self.placements)

    def group_members(self, index: int) -> list[str]:
        """Names of the model parameters in group ``index``."""
        return [n for n, p in self.placements.items() if index in p.groups]

    def key_hint(self, index: int | None) -> str:
        """`` (torch ignores its key 'learning_rate')`` for a group with ignored keys, else ``""``."""
        if index is None or not self.ignored_keys.get(index):
            return ""
        keys = ", ".join(repr(k) for k in self.ignored_keys[index])
        return f" (torch ignores its key {keys})"


def effective_groups(model: nn.Module, groups_or_optimizer: Any) -> GroupMap:
    """What an optimizer built from ``groups_or_optimizer`` does to each parameter of ``model``.

    Args:
        model: the model whose parameters should be in the groups.
        groups_or_optimizer: a ``torch.optim.Optimizer``, or an iterable of param-group dicts. Dicts are
            turned into ``torch.optim.SGD(groups, lr=SENTINEL_LR, weight_decay=SENTINEL_WD)``: a group
            without ``"lr"`` takes that base lr, and keys torch ignores count for nothing.

    Returns:
        A :class:`GroupMap`: parameter name -> :class:`Placement` (group indices, lr, weight decay).

    Raises:
        AssertionError: the argument is neither an optimizer nor an iterable of dicts with ``"params"``.

    >>> from lrdiff_helpers import TwoPartModel
    >>> m = TwoPartModel()
    >>> g = effective_groups(m, [{"params": m.part1.parameters(), "lr": 0.1}, {"params": m.part2.parameters()}])
    >>> g["part1.weight"].lr, g["part2.bias"].group, g["part2.bias"].lr_is_default
    (0.1, 1, True)
    """
    if isinstance(groups_or_optimizer, torch.optim.Optimizer):
        res = resolve(model, groups_or_optimizer)
        effective = list(groups_or_optimizer.param_groups)
        missing_lr = missing_wd = [False] * len(effective)
    else:
        raw = _group_dicts(groups_or_optimizer)
        read = set(optimizer_defaults(torch.optim.SGD, lr=SENTINEL_LR)) | common_optimizer_keys()
        res = resolve(model, raw, torch.optim.SGD, {"lr": SENTINEL_LR, "weight_decay": SENTINEL_WD}, read)
        effective = _dict_groups_effective(res)
        missing_lr = [("lr" not in g) for g in raw]
        missing_wd = [("weight_decay" not in g) for g in raw]
    placements = {}
    for slot in res.slots.values():
        gs = slot.groups
        if gs:
            g = effective[gs[0]]
            lr, wd = number(g.get("lr")), number(g.get("weight_decay"))
            lr_default, wd_default = missing_lr[gs[0]], missing_wd[gs[0]]
        else:
            lr = wd = None
            lr_default = wd_default = False
        placements[slot.name] = Placement(slot.name, gs, lr, wd, slot.requires_grad, lr_default, wd_default)
    from_dicts = not isinstance(groups_or_optimizer, torch.optim.Optimizer)
    return GroupMap(placements, list(effective), _problems(res), res.ignored_keys(), from_dicts)


def as_groupmap(model: nn.Module, groups: Any) -> GroupMap:
    """``groups`` itself when it is a :class:`GroupMap` already, else :func:`effective_groups`."""
    return groups if isinstance(groups, GroupMap) else effective_groups(model, groups)


def _group_dicts(groups: Any) -> list[Any]:
    """``groups`` as a list of dicts with a ``"params"`` key, or an ``AssertionError`` saying what it is."""
    if isinstance(groups, (dict, nn.Module, torch.Tensor, str)) or groups is None:
        raise AssertionError(
            f"expected a list of param-group dicts (each with a 'params' key); found {describe(groups)}"
        )
    try:
        raw = list(groups)
    except TypeError:
        raise AssertionError(f"expected a list of param-group dicts; found {describe(groups)}") from None
    if not raw:
        raise AssertionError("expected a list of param-group dicts; found an empty list")
    for i, g in enumerate(raw):
        if not isinstance(g, dict):
            raise AssertionError(f"group {i} should be a dict with a 'params' key; found {describe(g)}")
        if "params" not in g:
            raise AssertionError(f"group {i} has no 'params' key; its keys are {sorted(g)}")
    return raw


def _dict_groups_effective(res: Resolution) -> list[dict[str, Any]]:
    """The groups as ``torch.optim.SGD`` holds them; filled in by hand when torch would refuse them."""
    if res.findings or any(len(s.groups) > 1 for s in res.slots.values()):
        return res.effective
    try:
        with quiet():
            optimizer = torch.optim.SGD(res.groups, lr=SENTINEL_LR, weight_decay=SENTINEL_WD)
    except (TypeError, ValueError) as err:
        raise AssertionError(f"torch.optim.SGD refuses these param groups: {err}") from None
    return optimizer.param_groups


_WORDING = {
    "params_module": "group {group}'s 'params' is a {detail} module, not its parameters; use module.parameters()",
    "params_set": "group {group}'s 'params' is a set; torch needs an ordered collection (a list)",
    "params_not_iterable": "group {group}'s 'params' is a {detail}, not an iterable of parameters",
    "not_a_tensor": "group {group} holds a {detail}, not a tensor",
    "foreign": "group {group} holds a tensor of shape {shape} that is not a parameter of the model",
    "repeated": "{detail} is in group {group} twice",
}


def _problems(res: Resolution) -> list[str]:
    return [_word(f) for f in res.findings]


def _word(f: Finding) -> str:
    text = _WORDING[f.kind].format(group=f.group, detail=f.detail, shape=f.shape)
    return text + ("; use module.parameters()" if f.kind == "not_a_tensor" and f.module else "")
