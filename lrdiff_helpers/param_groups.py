"""Build param groups: plain ``list[dict]`` that any ``torch.optim`` optimizer accepts.

In the spirit of timm's ``timm/optim/_param_groups.py``: small functions that take a model and return
groups. Each group carries a ``"name"`` key, a label that torch keeps but does not use. Only trainable
parameters (``requires_grad=True``) are placed, each in exactly one group.

Lessons: ``notebooks/02_syntax.ipynb`` (groups by module), ``notebooks/05_schedules_and_decay.ipynb``
(layer-wise decay, no weight decay for biases and norms).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from torch import nn

__all__ = [
    "NORM_TYPES",
    "RESNET_STAGES",
    "module_prefix_of",
    "no_decay_ids",
    "no_decay_reason",
    "stage_of",
    "trainable_parameters",
    "layerwise_param_groups",
    "lr_range",
    "param_groups_by_module",
    "slice_param_groups",
    "stage_param_groups",
    "ulmfit_lrs",
    "weight_decay_param_groups",
]

#: A torchvision-style ResNet from input to output: (group name, module names in it).
RESNET_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("stem", ("conv1", "bn1")),
    ("layer1", ("layer1",)),
    ("layer2", ("layer2",)),
    ("layer3", ("layer3",)),
    ("layer4", ("layer4",)),
    ("fc", ("fc",)),
)

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm1d/2d/3d, SyncBatchNorm, InstanceNorm*
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)


def _matches(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def module_prefix_of(name: str, prefixes: Iterable[str]) -> str | None:
    """The longest of ``prefixes`` (module names) that parameter ``name`` is in; ``""`` matches every name.

    The rule of :func:`param_groups_by_module`. ``None`` when none matches.

    >>> module_prefix_of("layer1.0.conv1.weight", ["", "layer1", "layer1.0"])
    'layer1.0'
    >>> module_prefix_of("fc.bias", ["layer1"]) is None
    True
    """
    keys = [k for k in prefixes if _matches(name, k)]
    return max(keys, key=len) if keys else None


def stage_of(name: str, stages: Sequence[tuple[str, Sequence[str]]] = RESNET_STAGES) -> str | None:
    """The stage (``"stem"``, ``"layer1"`` .. ``"fc"``) of a parameter name of a torchvision-style ResNet.

    >>> stage_of("bn1.weight"), stage_of("layer2.0.downsample.1.bias"), stage_of("head.weight")
    ('stem', 'layer2', None)
    """
    for stage, modules in stages:
        if any(m != "" and _matches(name, m) for m in modules):
            return stage
    return None


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of every parameter with ``requires_grad=True``, in the model's order: what builders place.

    >>> from lrdiff_helpers import TwoPartModel
    >>> m = TwoPartModel()
    >>> _ = m.part1.requires_grad_(False)
    >>> [n for n, _ in trainable_parameters(m)]
    ['part2.weight', 'part2.bias']
    """
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def param_groups_by_module(
    model: nn.Module,
    lrs: Mapping[str, float | None],
    **options: Any,
) -> list[dict[str, Any]]:
    """One group per entry of ``lrs``, a mapping from module name to lr.

    Each trainable parameter goes to the entry whose module name is its longest prefix (``""`` matches
    everything, so ``{"": 1e-3, "fc": 1e-2}`` means "fc at 1e-2, the rest at 1e-3"). An lr of ``None``
    leaves ``"lr"`` out of the group, so it takes the optimizer's base lr.

    Args:
        model: the model whose parameters are grouped.
        lrs: module name -> lr, in the order the groups should have.
        **options: extra keys for every group (``momentum=0.9``, ``weight_decay=1e-4`` ...).

    Raises:
        ValueError: a name matches no trainable parameter (a typo such as ``"layer5"``), or a trainable
            parameter matches no name.

    >>> from lrdiff_helpers import TwoPartModel
    >>> groups = param_groups_by_module(TwoPartModel(), {"part1": 1e-3, "part2": 1e-2})
    >>> [(g["name"], g["lr"], len(g["params"])) for g in groups]
    [('part1', 0.001, 2), ('part2', 0.01, 2)]
    """
    groups: dict[str, list[nn.Parameter]] = {key: [] for key in lrs}
    unplaced = []
    for name, p in trainable_parameters(model):
        key = module_prefix_of(name, lrs)
        if key is None:
            unplaced.append(name)
            continue
        groups[key].append(p)
    if unplaced:
        raise ValueError(f"these trainable parameters match no module name in {list(lrs)}: {unplaced}")
    empty = [k for k, ps in groups.items() if not ps]
    if empty:
        raise ValueError(f"these module names match no trainable parameter: {empty}")
    out = []
    for key, params in groups.items():
        group: dict[str, Any] = {"params": params, "name": key or "(rest)", **options}
        if lrs[key] is not None:
            group["lr"] = lrs[key]
        out.append(group)
    return out


def ulmfit_lrs(head_lr: float, n: int, decay: float = 2.6) -> list[float]:
    """ULMFiT's layer-wise decay: ``n`` lrs from input to output, each the next one's divided by ``decay``.

    >>> [round(lr, 6) for lr in ulmfit_lrs(1e-2, 3)]
    [0.001479, 0.003846, 0.01]
    """
    return [head_lr / decay ** (n - 1 - i) for i in range(n)]


def lr_range(lo: float, hi: float, n: int) -> list[float]:
    """fastai's ``slice(lo, hi)``: ``n`` lrs spaced geometrically from ``lo`` (input) to ``hi`` (output).

    >>> lr_range(1e-4, 1e-2, 3)
    [0.0001, 0.001, 0.01]
    """
    if n == 1:
        return [hi]
    ratio = hi / lo
    return [float(f"{lo * ratio ** (i / (n - 1)):.12g}") for i in range(n)]


def stage_param_groups(
    model: nn.Module,
    lrs: Sequence[float],
    stages: Sequence[tuple[str, Sequence[str]]] = RESNET_STAGES,
    **options: Any,
) -> list[dict[str, Any]]:
    """One group per stage (input to output) with the given lrs; ``stages`` default to a ResNet's.

    >>> from lrdiff_helpers import SmallResNet
    >>> [g["name"] for g in stage_param_groups(SmallResNet(), [1.0] * 6)]
    ['stem', 'layer1', 'layer2', 'layer3', 'layer4', 'fc']
    """
    if len(lrs) != len(stages):
        raise ValueError(f"{len(stages)} stages need {len(stages)} lrs, got {len(lrs)}")
    groups = []
    placed: set[int] = set()
    for (stage, modules), lr in zip(stages, lrs):
        params = [p for n, p in trainable_parameters(model) if any(_matches(n, m) for m in modules)]
        placed.update(id(p) for p in params)
        groups.append({"params": params, "lr": lr, "name": stage, **options})
    left = [n for n, p in trainable_parameters(model) if id(p) not in placed]
    if left:
        raise ValueError(f"these trainable parameters are in no stage: {left}")
    return [g for g in groups if g["params"]]


def layerwise_param_groups(
    model: nn.Module,
    head_lr: float,
    decay: float = 2.6,
    stages: Sequence[tuple[str, Sequence[str]]] = RESNET_STAGES,
    **options: Any,
) -> list[dict[str, Any]]:
    """Layer-wise decay (ULMFiT): the head at ``head_lr``, each earlier stage ``decay`` times slower."""
    return stage_param_groups(model, ulmfit_lrs(head_lr, len(stages), decay), stages, **options)


def slice_param_groups(
    model: nn.Module,
    lo: float,
    hi: float,
    stages: Sequence[tuple[str, Sequence[str]]] = RESNET_STAGES,
    **options: Any,
) -> list[dict[str, Any]]:
    """fastai's ``slice(lo, hi)``: stage lrs spaced geometrically from ``lo`` to ``hi``."""
    return stage_param_groups(model, lr_range(lo, hi, len(stages)), stages, **options)


def no_decay_reason(module: nn.Module, pname: str) -> str | None:
    """Why ``module``'s own parameter ``pname`` gets no weight decay, or ``None`` when it keeps it.

    >>> no_decay_reason(nn.BatchNorm2d(3), "weight"), no_decay_reason(nn.Linear(2, 2), "bias")
    ('a BatchNorm2d parameter', 'a bias')
    >>> no_decay_reason(nn.Linear(2, 2), "weight") is None
    True
    """
    if isinstance(module, NORM_TYPES):
        return f"a {type(module).__name__} parameter"
    if pname == "bias":
        return "a bias"
    return None


def no_decay_ids(model: nn.Module) -> set[int]:
    """``id`` s of the parameters that should get no weight decay: biases and normalization parameters."""
    ids = set()
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if no_decay_reason(module, pname) is not None:
                ids.add(id(p))
    return ids


def weight_decay_param_groups(
    model: nn.Module,
    weight_decay: float,
    groups: Iterable[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Split each group in two: weight decay ``weight_decay``, and 0 for biases and norm parameters.

    Args:
        model: the model the groups' parameters belong to (to find biases and norm layers).
        weight_decay: the decay of the weights that keep it.
        groups: groups to split (each keeps its other keys); default: one group of all trainable parameters.

    >>> from lrdiff_helpers import SmallResNet
    >>> gs = weight_decay_param_groups(SmallResNet(), 5e-4)
    >>> [(g["name"], g["weight_decay"]) for g in gs]
    [('all', 0.0005), ('all/no_decay', 0.0)]
    """
    if groups is None:
        groups = [{"params": [p for _, p in trainable_parameters(model)], "name": "all"}]
    no_decay = no_decay_ids(model)
    out = []
    for group in groups:
        params = list(group["params"])
        base = {k: v for k, v in group.items() if k != "params"}
        name = base.pop("name", f"group{len(out)}")
        decay = [p for p in params if id(p) not in no_decay]
        keep = [p for p in params if id(p) in no_decay]
        if decay:
            out.append({**base, "params": decay, "name": name, "weight_decay": weight_decay})
        if keep:
            out.append({**base, "params": keep, "name": f"{name}/no_decay", "weight_decay": 0.0})
    return out
