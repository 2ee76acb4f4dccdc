"""What an optimizer really does to each parameter: the one walk over param groups that the course uses.

``resolve(model, groups_or_optimizer)`` matches the groups' parameters to the model's *by identity*, fills in
the optimizer's defaults as torch does (a group without ``"lr"`` takes the base lr) and records every
problem as structured data (:class:`Finding`). It words nothing: :func:`lrdiff_helpers.inspect_param_groups`
(the lessons' report) and :mod:`lrdiff_helpers.grading` (the exercises' checks) each turn the same findings
into their own messages.

Finding kinds:

* ``params_module`` / ``params_set`` / ``params_not_iterable``: a group's ``"params"`` is a module, a set, or
  not a collection at all;
* ``not_a_tensor``: an item of ``"params"`` is not a tensor (``detail``: its type; ``module``: it is a module);
* ``foreign``: a tensor that is not a parameter of the model (``shape``);
* ``repeated``: a parameter twice in one group (``detail``: its name);
* ``empty_group``, ``duplicate`` (in two groups), ``unassigned`` (trainable, in no group) and ignored keys
  (``"learning_rate"``, or a scheduler-only key such as timm's ``"lr_scale"``) are answered by
  :class:`Resolution`'s methods.

Lessons: ``notebooks/02_syntax.ipynb``; the exercises' checks: ``source/lrdiff/exercises.ipynb``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
from torch import nn

__all__ = [
    "FOREIGN_SCHEDULER_KEYS",
    "LABEL_KEYS",
    "SCHEDULER_KEYS",
    "Finding",
    "Resolution",
    "Slot",
    "common_optimizer_keys",
    "optimizer_defaults",
    "param_list",
    "resolve",
    "valid_keys",
]

#: Keys that torch keeps in a group for reference (labels); it reads none of them.
LABEL_KEYS = frozenset({"params", "name", "param_names"})
#: Keys that torch's lr schedulers add to param groups and read; not ignored.
SCHEDULER_KEYS = frozenset(
    {"initial_lr", "max_lr", "min_lr", "base_momentum", "max_momentum", "swa_lr", "initial_momentum"}
)
#: Keys read only by other libraries' schedulers: torch ignores them (timm's layer decay puts it in ``lr_scale``).
FOREIGN_SCHEDULER_KEYS = frozenset({"lr_scale", "weight_decay_scale"})

_COMMON_OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad")


@lru_cache(maxsize=32)
def _defaults(cls: type[torch.optim.Optimizer], kwargs: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return dict(cls([nn.Parameter(torch.zeros(1))], **dict(kwargs)).defaults)


def optimizer_defaults(cls: type[torch.optim.Optimizer], **kwargs: Any) -> dict[str, Any]:
    """The options torch fills into a group that leaves them out: ``cls(params, **kwargs).defaults``.

    >>> optimizer_defaults(torch.optim.SGD, lr=0.5)["lr"], optimizer_defaults(torch.optim.SGD)["momentum"]
    (0.5, 0)
    """
    return dict(_defaults(cls, tuple(sorted(kwargs.items()))))


@lru_cache(maxsize=1)
def common_optimizer_keys() -> frozenset[str]:
    """Keys read by torch's common optimizers (a dict meant for Adam may carry ``"betas"``)."""
    keys: set[str] = set()
    for cls_name in _COMMON_OPTIMIZERS:
        keys |= set(optimizer_defaults(getattr(torch.optim, cls_name), lr=1e-3))
    return frozenset(keys)


def valid_keys(read: Iterable[str]) -> frozenset[str]:
    """The keys of a group that are not ignored: those the optimizer reads, the labels and the schedulers' keys."""
    return frozenset(read) | LABEL_KEYS | SCHEDULER_KEYS


@dataclass(frozen=True)
class Finding:
    """One problem found in group ``group`` (see the module's docstring for the kinds)."""

    kind: str
    group: int
    detail: str = ""
    shape: tuple[int, ...] = ()
    module: bool = False


@dataclass(frozen=True)
class Slot:
    """One model parameter: ``occurrences`` are the groups holding it, in order, once per time it is listed."""

    name: str
    shape: tuple[int, ...]
    requires_grad: bool
    occurrences: tuple[int, ...]

    @property
    def groups(self) -> tuple[int, ...]:
        """The groups holding it, each once."""
        return tuple(dict.fromkeys(self.occurrences))


@dataclass
class Resolution:
    """The outcome of :func:`resolve`: one :class:`Slot` per model parameter, in the model's order.

    ``groups[i]`` is group ``i`` as given, its ``"params"`` made a list; ``effective[i]`` the same with the
    optimizer's defaults filled in; ``findings`` the problems met while walking, in walk order.
    """

    slots: dict[str, Slot]
    groups: list[dict[str, Any]]
    effective: list[dict[str, Any]]
    findings: list[Finding] = field(default_factory=list)
    valid: frozenset[str] = frozenset()

    def setting(self, name: str, key: str) -> Any:
        """The value of ``key`` (``"lr"``, ``"betas"`` ...) for parameter ``name``: its first group's, or ``None``."""
        groups = self.slots[name].occurrences
        return self.effective[groups[0]].get(key) if groups else None

    def ignored_keys(self) -> dict[int, list[str]]:
        """Group index -> the keys of that group torch does not read (only groups that have some)."""
        out = {i: [k for k in g if k not in self.valid] for i, g in enumerate(self.groups)}
        return {i: keys for i, keys in out.items() if keys}

    def scheduler_only_keys(self) -> dict[int, list[str]]:
        """The ignored keys that another library's scheduler reads (timm's ``lr_scale``): torch's never will."""
        out = {i: [k for k in keys if k in FOREIGN_SCHEDULER_KEYS] for i, keys in self.ignored_keys().items()}
        return {i: keys for i, keys in out.items() if keys}

    def empty_groups(self) -> list[int]:
        """Indices of the groups holding no parameter at all."""
        return [i for i, g in enumerate(self.groups) if not g["params"]]

    def duplicates(self) -> list[Slot]:
        """Parameters listed more than once (in two groups, or twice in one)."""
        return [s for s in self.slots.values() if len(s.occurrences) > 1]

    def unassigned(self) -> list[Slot]:
        """Trainable parameters in no group: they are silently never trained."""
        return [s for s in self.slots.values() if s.requires_grad and not s.occurrences]


def param_list(index: int, params: Any, findings: list[Finding], named: bool = True) -> list[Any]:
    """Group ``index``'s ``"params"`` as a list, as torch reads it (a generator is consumed).

    A module or a non-iterable gives ``[]`` and a finding; a set a finding; with ``named``, ``(name, tensor)``
    pairs (``model.named_parameters()``) give their tensors.
    """
    if isinstance(params, torch.Tensor):
        return [params]
    if isinstance(params, nn.Module):
        findings.append(Finding("params_module", index, type(params).__name__, module=True))
        return []
    if isinstance(params, (set, frozenset)):
        findings.append(Finding("params_set", index))
        return list(params)
    try:
        items = list(params)
    except TypeError:
        findings.append(Finding("params_not_iterable", index, type(params).__name__))
        return []
    if not named:
        return items
    return [p[1] if isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) else p for p in items]


def _walk(model: nn.Module, lists: Sequence[list[Any]], findings: list[Finding]) -> dict[int, list[int]]:
    """Parameter id -> the groups listing it; records items that are not the model's parameters."""
    names = {id(p): n for n, p in model.named_parameters()}
    where: dict[int, list[int]] = {}
    for gi, params in enumerate(lists):
        for p in params:
            if not isinstance(p, torch.Tensor):
                findings.append(Finding("not_a_tensor", gi, type(p).__name__, module=isinstance(p, nn.Module)))
            elif id(p) not in names:
                findings.append(Finding("foreign", gi, shape=tuple(p.shape)))
            else:
                if gi in where.get(id(p), ()):
                    findings.append(Finding("repeated", gi, names[id(p)]))
                where.setdefault(id(p), []).append(gi)
    return where


def resolve(
    model: nn.Module,
    groups_or_optimizer: torch.optim.Optimizer | Iterable[Mapping[str, Any]],
    optimizer_cls: type[torch.optim.Optimizer] = torch.optim.SGD,
    defaults: Mapping[str, Any] | None = None,
    read_keys: Iterable[str] | None = None,
    named: bool = True,
) -> Resolution:
    """What an optimizer built from ``groups_or_optimizer`` would do to each parameter of ``model``.

    Args:
        model: the model whose parameters should be in the groups.
        groups_or_optimizer: a built optimizer, or the group dicts about to be passed to one.
        optimizer_cls: for dicts, the optimizer they are meant for: its defaults fill in missing keys.
        defaults: for dicts, the optimizer's keyword arguments (``{"lr": 0.1}``).
        read_keys: for dicts, the keys counted as read (default: those of ``optimizer_cls``).
        named: accept ``(name, tensor)`` pairs in ``"params"``, as torch does.

    >>> from lrdiff_helpers import TwoPartModel
    >>> m = TwoPartModel()
    >>> r = resolve(m, [{"params": m.part1.parameters(), "lr": 0.1, "learning_rate": 1}], torch.optim.Adam)
    >>> r.setting("part1.weight", "lr"), r.setting("part1.weight", "betas"), r.ignored_keys()
    (0.1, (0.9, 0.999), {0: ['learning_rate']})
    >>> [s.name for s in r.unassigned()]
    ['part2.weight', 'part2.bias']
    """
    findings: list[Finding] = []
    if isinstance(groups_or_optimizer, torch.optim.Optimizer):
        groups = [{**g, "params": list(g["params"])} for g in groups_or_optimizer.param_groups]
        fill: dict[str, Any] = {}
        read = set(groups_or_optimizer.defaults)
    else:
        groups = [{**g, "params": param_list(i, g.get("params", []), findings, named)}
                  for i, g in enumerate(groups_or_optimizer)]
        fill = {**optimizer_defaults(optimizer_cls), **(defaults or {})}
        read = set(optimizer_defaults(optimizer_cls) if read_keys is None else read_keys)
    where = _walk(model, [g["params"] for g in groups], findings)
    slots = {
        n: Slot(n, tuple(p.shape), p.requires_grad, tuple(where.get(id(p), ()))) for n, p in model.named_parameters()
    }
    effective = [{**fill, **g} for g in groups]
    return Resolution(slots, groups, effective, findings, valid_keys(read))
