"""Checks for the graded exercises (``source/lrdiff/``): what an optimizer really does to each parameter.

The test cells of ``exercises.ipynb`` call a student's function, then hand the result to these checks.
The checks look at *behaviour*, not spelling: param-group dicts are turned into a real optimizer
(``torch.optim.SGD(groups, lr=SENTINEL_LR, weight_decay=SENTINEL_WD)``), so a key torch ignores
(``"learning_rate"``) counts for nothing and a group without ``"lr"`` gets the optimizer's base lr, as it
would in a student's training script. Parameters are matched by identity, never by name or value.

Every failure is an ``AssertionError`` that says what was expected and what was found::

    bn1.weight is in no param group; every trainable parameter must be in exactly one

nbgrader scores a test cell 0 when it writes anything to stderr, and torch writes warnings there. So test
cells run students' code inside :func:`quiet`, and nothing here warns or writes to stderr.

Nothing in this module knows the answers of the quiz; the expected values of the exercises are computed
from the model and the arguments (:func:`expected_lrs_by_module`, :func:`expected_layerwise_lrs`,
:func:`expected_weight_decays`, :func:`reference_one_cycle_lrs`).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from . import param_groups as _param_groups

__all__ = [
    "EXPERIMENT_MIN_TEST_ACC",
    "EXPERIMENT_MIN_VAL_ACC",
    "EXPERIMENT_SEEDS",
    "ExperimentResult",
    "FORBIDDEN_BUILDERS",
    "GroupMap",
    "Placement",
    "RESNET_STAGES",
    "SENTINEL_LR",
    "SENTINEL_WD",
    "answer_digest",
    "assert_lrs",
    "call",
    "assert_weight_decays",
    "check_choice",
    "check_experiment_values",
    "check_exactly_one_group",
    "check_group_dicts",
    "check_no_empty_groups",
    "builders_used",
    "check_one_cycle_bound",
    "check_one_cycle_lrs",
    "check_one_cycle_peaks",
    "check_optimizer",
    "check_stage_groups",
    "effective_groups",
    "expected_finetune_lrs",
    "expected_layerwise_lrs",
    "expected_lrs_by_module",
    "expected_vit_llrd_lrs",
    "expected_vit_weight_decays",
    "expected_weight_decays",
    "experiment_results",
    "experiment_test_accuracy",
    "one_cycle_lrs",
    "quiet",
    "reference_one_cycle_lrs",
    "stage_of",
]

#: The base lr of the optimizer built from a student's group dicts. No test uses it as an expected
#: value, so a parameter found at this lr took the default: its group has no ``"lr"`` of its own.
SENTINEL_LR = 0.0123456789
#: The same for weight decay.
SENTINEL_WD = 0.000987654321

# The stages of a torchvision-style ResNet and the normalization module types: the same definitions the
# helpers use (lrdiff_helpers.param_groups), so the checks and the lessons cannot disagree.
RESNET_STAGES = _param_groups.RESNET_STAGES
NORM_TYPES = _param_groups.NORM_TYPES

#: The param-group builders of ``lrdiff_helpers`` that the exercises ask students to write themselves.
FORBIDDEN_BUILDERS = frozenset(
    {
        "apply_lr_scale",
        "backbone_head_groups",
        "layerwise_param_groups",
        "llrd_param_groups",
        "lr_range",
        "no_decay_ids",
        "param_groups_by_module",
        "slice_param_groups",
        "stage_param_groups",
        "ulmfit_lrs",
        "weight_decay_param_groups",
    }
)

#: Keys torch's optimizers and lr schedulers read, and labels it keeps; any other key is ignored.
_LABEL_KEYS = frozenset({"params", "name", "param_names"})
_SCHEDULER_KEYS = frozenset(
    {"initial_lr", "max_lr", "min_lr", "base_momentum", "max_momentum", "swa_lr", "initial_momentum"}
)
_MAX_LISTED = 6  # failures listed in one message before "... and N more"


# --------------------------------------------------------------------------------------------------
# Quiet: no warnings, nothing on stderr


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Run a block with warnings ignored and stderr captured (nbgrader scores a cell that writes there 0).

    Yields the buffer that received whatever the block wrote to ``sys.stderr``.

    >>> import warnings
    >>> with quiet() as err:
    ...     warnings.warn("lr too high")
    >>> err.getvalue()
    ''
    """
    buffer = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stderr(buffer):
            yield buffer


def call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``func(*args, **kwargs)`` inside :func:`quiet`: how test cells call a student's function."""
    with quiet():
        return func(*args, **kwargs)


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"


def _listing(lines: Sequence[str]) -> str:
    shown = list(lines[:_MAX_LISTED])
    if len(lines) > _MAX_LISTED:
        shown.append(f"... and {len(lines) - _MAX_LISTED} more")
    return "\n".join(shown)


def _fail(lines: Sequence[str]) -> None:
    if lines:
        raise AssertionError(_listing(lines))


# --------------------------------------------------------------------------------------------------
# What an optimizer (or group dicts) does to each parameter


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


def _as_param_list(group_index: int, params: Any, problems: list[str]) -> list[Any]:
    if isinstance(params, torch.Tensor):
        return [params]
    if isinstance(params, nn.Module):
        problems.append(
            f"group {group_index}'s 'params' is a {type(params).__name__} module, not its parameters; "
            "use module.parameters()"
        )
        return []
    if isinstance(params, (set, frozenset)):
        problems.append(
            f"group {group_index}'s 'params' is a set; torch needs an ordered collection (a list)"
        )
        return list(params)
    try:
        items = list(params)  # consumes a generator, exactly as torch does
    except TypeError:
        problems.append(
            f"group {group_index}'s 'params' is a {type(params).__name__}, not an iterable of parameters"
        )
        return []
    # torch also takes named parameters: (name, tensor) pairs, as model.named_parameters() yields them
    return [p[1] if isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) else p for p in items]


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
        optimizer = groups_or_optimizer
        raw = optimizer.param_groups
        valid = set(optimizer.defaults) | _LABEL_KEYS | _SCHEDULER_KEYS
        from_dicts = False
        lists = [list(g["params"]) for g in raw]
        problems: list[str] = []
    else:
        if isinstance(groups_or_optimizer, (dict, nn.Module, torch.Tensor, str)) or groups_or_optimizer is None:
            raise AssertionError(
                "expected a list of param-group dicts (each with a 'params' key); "
                f"found {_describe(groups_or_optimizer)}"
            )
        try:
            raw = list(groups_or_optimizer)
        except TypeError:
            raise AssertionError(
                f"expected a list of param-group dicts; found {_describe(groups_or_optimizer)}"
            ) from None
        if not raw:
            raise AssertionError("expected a list of param-group dicts; found an empty list")
        for i, g in enumerate(raw):
            if not isinstance(g, dict):
                raise AssertionError(
                    f"group {i} should be a dict with a 'params' key; found {_describe(g)}"
                )
            if "params" not in g:
                raise AssertionError(f"group {i} has no 'params' key; its keys are {sorted(g)}")
        problems = []
        lists = [_as_param_list(i, g["params"], problems) for i, g in enumerate(raw)]
        valid = set(_sgd_defaults()) | _LABEL_KEYS | _SCHEDULER_KEYS
        valid |= _common_optimizer_keys()
        from_dicts = True

    names = {id(p): n for n, p in model.named_parameters()}
    where: dict[int, list[int]] = {}
    for gi, params in enumerate(lists):
        seen: set[int] = set()
        for p in params:
            if not isinstance(p, torch.Tensor):
                problems.append(
                    f"group {gi} holds a {type(p).__name__}, not a tensor"
                    + ("; use module.parameters()" if isinstance(p, nn.Module) else "")
                )
                continue
            if id(p) not in names:
                problems.append(
                    f"group {gi} holds a tensor of shape {tuple(p.shape)} that is not a parameter of the model"
                )
                continue
            if id(p) in seen:
                problems.append(f"{names[id(p)]} is in group {gi} twice")
                continue
            seen.add(id(p))
            where.setdefault(id(p), []).append(gi)

    ignored = {
        i: [k for k in g if k not in valid] for i, g in enumerate(raw) if any(k not in valid for k in g)
    }

    if from_dicts:
        missing_lr = [("lr" not in g) for g in raw]
        missing_wd = [("weight_decay" not in g) for g in raw]
        duplicated = any(len(gs) > 1 for gs in where.values())
        if problems or duplicated:
            # torch would refuse these groups; fill in the defaults by hand to describe them anyway
            effective = [
                {**_sgd_defaults(), "lr": SENTINEL_LR, "weight_decay": SENTINEL_WD, **g, "params": ps}
                for g, ps in zip(raw, lists)
            ]
        else:
            dicts = [{**g, "params": ps} for g, ps in zip(raw, lists)]
            try:
                with quiet():
                    optimizer = torch.optim.SGD(dicts, lr=SENTINEL_LR, weight_decay=SENTINEL_WD)
            except (TypeError, ValueError) as err:
                raise AssertionError(f"torch.optim.SGD refuses these param groups: {err}") from None
            effective = optimizer.param_groups
    else:
        missing_lr = missing_wd = [False] * len(raw)
        effective = list(raw)

    placements = {}
    for name, p in model.named_parameters():
        gs = tuple(where.get(id(p), ()))
        if gs:
            g = effective[gs[0]]
            lr, wd = _number(g.get("lr")), _number(g.get("weight_decay"))
            lr_default, wd_default = missing_lr[gs[0]], missing_wd[gs[0]]
        else:
            lr = wd = None
            lr_default = wd_default = False
        placements[name] = Placement(name, gs, lr, wd, p.requires_grad, lr_default, wd_default)
    return GroupMap(placements, list(effective), problems, ignored, from_dicts)


def _number(value: Any) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return None


@lru_cache(maxsize=1)
def _sgd_defaults() -> dict[str, Any]:
    return dict(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=SENTINEL_LR).defaults)


@lru_cache(maxsize=1)
def _common_optimizer_keys() -> frozenset[str]:
    """Keys read by torch's common optimizers (a dict meant for Adam may carry 'betas')."""
    keys: set[str] = set()
    p = [nn.Parameter(torch.zeros(1))]
    for cls in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop,
                torch.optim.Adagrad):
        keys |= set(cls(p, lr=1e-3).defaults)
    return frozenset(keys)


def _describe(obj: Any) -> str:
    if obj is None:
        return "None"
    if isinstance(obj, nn.Module):
        return f"a {type(obj).__name__} module"
    if isinstance(obj, torch.Tensor):
        return f"a tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, (list, tuple)):
        inner = f" of {type(obj[0]).__name__}" if obj else ""
        return f"a {type(obj).__name__}{inner}"
    return f"a {type(obj).__name__}"


def _groups(model: nn.Module, groups: Any) -> GroupMap:
    return groups if isinstance(groups, GroupMap) else effective_groups(model, groups)


# --------------------------------------------------------------------------------------------------
# Structure checks


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
        return GroupShape(_describe(groups), False)
    items = tuple(None if isinstance(g, dict) and "params" in g else _describe(g) for g in groups)
    return GroupShape(_describe(groups), True, items)


def check_group_dicts(groups: Any, n: int | None = None, what: str = "the function") -> None:
    """Check that ``groups`` (or its :class:`GroupShape`) is a list of param-group dicts (``n`` of them, when given).

    >>> check_group_dicts([{"params": []}, {"params": []}], n=2)
    """
    shape = groups if isinstance(groups, GroupShape) else group_shape(groups)
    if not shape.is_sequence:
        raise AssertionError(f"{what} should return a list of param-group dicts; found {shape.describe}")
    bad = [f"item {i} is {d}, not a dict with a 'params' key" for i, d in enumerate(shape.items) if d is not None]
    _fail(bad)
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
    gm = _groups(model, groups)
    lines = list(gm.problems)
    unplaced = any(not pl.groups and pl.requires_grad for pl in gm.values())
    if unplaced:  # an empty group is the usual reason: say so first
        lines += _empty_group_lines(gm)
    for name, pl in gm.items():
        if len(pl.groups) > 1:
            lines.append(
                f"{name} is in {len(pl.groups)} param groups ({', '.join(map(str, pl.groups))}); every "
                "trainable parameter must be in exactly one (torch raises ValueError when it is in two)"
            )
        elif not pl.groups and pl.requires_grad:
            lines.append(f"{name} is in no param group; every trainable parameter must be in exactly one")
    _fail(lines)


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
    _fail(_empty_group_lines(_groups(model, groups)))


def _empty_group_lines(gm: GroupMap) -> list[str]:
    return [
        f"group {i} is empty; a generator such as model.parameters() can be used only once (make a list)"
        for i, g in enumerate(gm.groups)
        if len(list(g["params"])) == 0
    ]


def qualified_name(cls: type) -> str:
    """``torch.optim.sgd.SGD`` for ``torch.optim.SGD``: how a class is named in facts sent to the grader."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _scalar(value: Any) -> Any:
    """A JSON-able copy of a hyperparameter (numbers, strings, None, bools, tuples of them), else its repr."""
    if value is None or isinstance(value, (bool, str)):
        return value
    n = _number(value)
    if n is not None:
        return n
    if isinstance(value, (tuple, list)):
        return [_scalar(v) for v in value]
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
        groups = tuple({k: _scalar(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups)
    return OptimizerFacts(tuple(qualified_name(c) for c in type(optimizer).__mro__), _describe(optimizer), groups)


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
            if not _same(have, want):
                lines.append(f"group {i} has {key} {_fmt_any(have)}, expected {_fmt_any(want)}")
    _fail(lines)


def _same(have: Any, want: Any) -> bool:
    if isinstance(want, (tuple, list)):
        return isinstance(have, (tuple, list)) and len(have) == len(want) and all(
            _same(h, w) for h, w in zip(have, want))
    h, w = _number(have), _number(want)
    if h is None or w is None:
        return have == want
    return math.isclose(h, w, rel_tol=1e-6, abs_tol=1e-12)


def _fmt_any(v: Any) -> str:
    n = _number(v)
    return _fmt(n) if n is not None else repr(v)


# --------------------------------------------------------------------------------------------------
# Expected values


def stage_of(name: str, stages: Sequence[tuple[str, Sequence[str]]] = RESNET_STAGES) -> str | None:
    """The stage (``"stem"``, ``"layer1"`` .. ``"fc"``) of a parameter name of a torchvision-style ResNet.

    >>> stage_of("bn1.weight"), stage_of("layer2.0.downsample.1.bias"), stage_of("head.weight")
    ('stem', 'layer2', None)
    """
    for stage, modules in stages:
        if any(name == m or name.startswith(m + ".") for m in modules):
            return stage
    return None


def expected_lrs_by_module(
    model: nn.Module, lrs: Mapping[str, float], labels: Mapping[str, str] | None = None
) -> dict[str, tuple[float, str]]:
    """Expected lr of each trainable parameter: that of the longest module name it starts with.

    ``""`` matches every parameter. Returns name -> (lr, label of where it comes from).

    >>> from lrdiff_helpers import SmallResNet
    >>> exp = expected_lrs_by_module(SmallResNet(), {"": 1e-4, "fc": 1e-2}, {"": "backbone_lr", "fc": "head_lr"})
    >>> exp["fc.bias"], exp["bn1.weight"]
    ((0.01, 'head_lr'), (0.0001, 'backbone_lr'))
    """
    labels = labels or {}
    out = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        keys = [k for k in lrs if k == "" or name == k or name.startswith(k + ".")]
        if not keys:
            raise ValueError(f"{name} matches no module name in {list(lrs)}")
        key = max(keys, key=len)
        out[name] = (float(lrs[key]), labels.get(key, key or "the rest"))
    return out


def expected_finetune_lrs(model: nn.Module, backbone_lr: float, head_lr: float) -> dict[str, tuple[float, str]]:
    """Expected lrs of fine-tuning: ``model.fc`` at ``head_lr``, every other parameter at ``backbone_lr``.

    >>> from lrdiff_helpers import SmallResNet
    >>> expected_finetune_lrs(SmallResNet(), 1e-4, 1e-2)["fc.weight"]
    (0.01, 'head_lr')
    """
    return expected_lrs_by_module(model, {"": backbone_lr, "fc": head_lr}, {"": "backbone_lr", "fc": "head_lr"})


def expected_layerwise_lrs(
    model: nn.Module, head_lr: float, decay: float
) -> dict[str, tuple[float, str]]:
    """Expected lr of each trainable parameter under layer-wise decay (ULMFiT).

    ``fc`` gets ``head_lr`` and each stage before it the next one's lr divided by ``decay``:
    stage ``i`` of the six (stem, layer1 .. layer4, fc) gets ``head_lr / decay ** (5 - i)``.

    >>> from lrdiff_helpers import SmallResNet
    >>> lr, label = expected_layerwise_lrs(SmallResNet(), 1e-2, 2.0)["layer3.0.conv1.weight"]
    >>> lr, label
    (0.0025, 'layer3 = head_lr / decay**2')
    """
    order = [s for s, _ in RESNET_STAGES]
    last = len(order) - 1
    out = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        stage = stage_of(name)
        if stage is None:
            raise ValueError(f"{name} is in no stage of a torchvision-style ResNet")
        k = last - order.index(stage)
        label = f"{stage} = head_lr" if k == 0 else f"{stage} = head_lr / decay**{k}"
        out[name] = (head_lr / decay**k, label)
    return out


def expected_weight_decays(model: nn.Module, weight_decay: float) -> dict[str, tuple[float, str]]:
    """Expected weight decay of each trainable parameter: 0 for biases and normalization parameters.

    >>> from lrdiff_helpers import SmallResNet
    >>> exp = expected_weight_decays(SmallResNet(), 5e-4)
    >>> exp["conv1.weight"], exp["layer2.0.downsample.1.weight"], exp["fc.bias"]
    ((0.0005, 'a weight'), (0.0, 'a BatchNorm2d parameter'), (0.0, 'a bias'))
    """
    out = {}
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            full = f"{mname}.{pname}" if mname else pname
            if isinstance(module, NORM_TYPES):
                out[full] = (0.0, f"a {type(module).__name__} parameter")
            elif pname == "bias":
                out[full] = (0.0, "a bias")
            else:
                out[full] = (float(weight_decay), "a weight")
    return out


def expected_vit_llrd_lrs(model: nn.Module, lr: float, decay: float) -> dict[str, tuple[float, str]]:
    """Expected lr of each parameter of a timm ViT under layer-wise lr decay, as timm's
    ``param_groups_layer_decay`` scales it: layer ``k`` (embeddings 0, ``blocks.i`` ``i + 1``, the final norm
    with the last block, the head at the top) gets ``lr * decay ** (top - k)``.

    >>> from lrdiff_helpers.vit import tiny_vit
    >>> exp = expected_vit_llrd_lrs(tiny_vit(), 1e-3, 0.5)
    >>> exp["head.weight"], exp["norm.bias"], exp["cls_token"]
    ((0.001, 'the head = lr'), (0.0005, 'layer 4 (the final norm) = lr * decay**1'), (3.125e-05, 'layer 0 (embeddings) = lr * decay**5'))
    """
    from .llrd import vit_layer_ids

    ids = vit_layer_ids(model, norm_with_last_block=True)
    top = len(model.blocks) + 1
    out = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        k = ids[name]
        where = {0: "embeddings", top: "the head"}.get(k, "the final norm" if name.startswith("norm.") else f"blocks.{k - 1}")
        label = "the head = lr" if k == top else f"layer {k} ({where}) = lr * decay**{top - k}"
        out[name] = (lr * decay ** (top - k), label)
    return out


def expected_vit_weight_decays(model: nn.Module, weight_decay: float) -> dict[str, tuple[float, str]]:
    """Expected weight decay of each parameter of a timm ViT: 0 for parameters with fewer than 2 dimensions and
    for the names in ``model.no_weight_decay()`` (``cls_token``, ``pos_embed``), ``weight_decay`` for the rest.

    >>> from lrdiff_helpers.vit import tiny_vit
    >>> exp = expected_vit_weight_decays(tiny_vit(), 0.05)
    >>> exp["pos_embed"], exp["blocks.0.norm1.weight"], exp["head.weight"]
    ((0.0, 'in model.no_weight_decay()'), (0.0, 'fewer than 2 dimensions'), (0.05, 'a weight matrix'))
    """
    listed = set(model.no_weight_decay())
    out = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name in listed:
            out[name] = (0.0, "in model.no_weight_decay()")
        elif p.ndim < 2:
            out[name] = (0.0, "fewer than 2 dimensions")
        else:
            out[name] = (float(weight_decay), "a weight matrix" if p.ndim == 2 else "a weight")
    return out


# --------------------------------------------------------------------------------------------------
# lr and weight decay checks


def _expected_pairs(expected: Mapping[str, Any]) -> dict[str, tuple[float, str]]:
    out = {}
    for name, v in expected.items():
        if isinstance(v, tuple):
            out[name] = (float(v[0]), str(v[1]))
        else:
            out[name] = (float(v), "")
    return out


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-15)


def assert_lrs(model: nn.Module, groups: Any, expected: Mapping[str, Any]) -> None:
    """Check each parameter's effective lr against ``expected`` (name -> lr, or name -> (lr, label)).

    >>> from lrdiff_helpers import TwoPartModel
    >>> m = TwoPartModel()
    >>> groups = [{"params": m.part1.parameters(), "lr": 1e-2}, {"params": m.part2.parameters(), "lr": 1e-3}]
    >>> assert_lrs(m, groups, {"part1.weight": (1e-3, "part1_lr")})
    Traceback (most recent call last):
    ...
    AssertionError: part1.weight has lr 0.01, expected 0.001 (part1_lr)
    """
    _assert_values(model, groups, expected, "lr")


def assert_weight_decays(model: nn.Module, groups: Any, expected: Mapping[str, Any]) -> None:
    """Check each parameter's effective weight decay against ``expected`` (like :func:`assert_lrs`)."""
    _assert_values(model, groups, expected, "weight_decay")


def _assert_values(model: nn.Module, groups: Any, expected: Mapping[str, Any], key: str) -> None:
    gm = _groups(model, groups)
    word = "lr" if key == "lr" else "weight decay"
    lines = []
    for name, (want, label) in _expected_pairs(expected).items():
        why = f" ({label})" if label else ""
        pl = gm.placements.get(name)
        if pl is None:
            lines.append(f"{name} is not a parameter of the model")
            continue
        if not pl.groups:
            lines.append(f"{name} is in no param group, so it is never trained; expected {word} {_fmt(want)}{why}")
            continue
        have = pl.lr if key == "lr" else pl.weight_decay
        is_default = pl.lr_is_default if key == "lr" else pl.weight_decay_is_default
        if is_default:
            lines.append(
                f"{name}: its group {pl.groups[0]} has no {key!r} key, so it would take the optimizer's "
                f"default {word}{gm.key_hint(pl.groups[0])}; expected {word} {_fmt(want)}{why}"
            )
        elif have is None:
            lines.append(f"{name}: its group {pl.groups[0]} has no numeric {key!r}; expected {_fmt(want)}{why}")
        elif not _close(have, want):
            lines.append(f"{name} has {word} {_fmt(have)}, expected {_fmt(want)}{why}")
    _fail(lines)


def check_stage_groups(model: nn.Module, groups: Any) -> None:
    """Check that the groups are the six ResNet stages in order: stem, layer1 .. layer4, fc.

    Group ``i`` must hold every trainable parameter of stage ``i`` and nothing else.
    """
    gm = _groups(model, groups)
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
    _fail(lines)


# --------------------------------------------------------------------------------------------------
# Students must write the builders themselves


def builders_used(sources: Iterable[str], fn: str) -> list[str]:
    """The helpers' param-group builders that the last ``def fn`` in ``sources`` refers to (by name, by an
    attribute, or through an alias imported in the notebook), read from the code, not from the kernel."""
    aliases: dict[str, str] = {}
    target = None
    for src in sources:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue  # IPython magics and the like: not Python; the kernel reported them
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lrdiff_helpers"):
                for a in node.names:
                    if a.name in FORBIDDEN_BUILDERS:
                        aliases[a.asname or a.name] = a.name
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == fn:
                target = node
    if target is None:
        return []
    used = set()
    for node in ast.walk(target):
        if isinstance(node, ast.Name) and node.id in aliases:
            used.add(aliases[node.id])
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_BUILDERS and node.id != fn:
            used.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_BUILDERS:
            used.add(node.attr)
    return sorted(used)


# --------------------------------------------------------------------------------------------------
# One-cycle schedules


def one_cycle_lrs(scheduler: Any, optimizer: torch.optim.Optimizer, steps: int) -> list[list[float]]:
    """The lr of every group at steps ``0 .. steps - 1`` (step 0: right after the scheduler is built).

    Steps the optimizer (no gradients, so no parameter moves) and then the scheduler, in torch's order.
    """
    out = []
    with quiet():
        for step in range(steps):
            out.append([float(g["lr"]) for g in optimizer.param_groups])
            if step < steps - 1:
                optimizer.step()
                scheduler.step()
    return out


def reference_one_cycle_lrs(peaks: Sequence[float], total_steps: int) -> list[list[float]]:
    """Per-group lrs of ``OneCycleLR(max_lr=peaks, total_steps=total_steps)`` (defaults otherwise)."""
    params = [nn.Parameter(torch.zeros(1)) for _ in peaks]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, peaks)], lr=1.0, momentum=0.9)
    with quiet():
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=list(peaks), total_steps=total_steps)
    return one_cycle_lrs(sched, opt, total_steps)


_ONE_CYCLE = "torch.optim.lr_scheduler.OneCycleLR"


@dataclass(frozen=True)
class ScheduleFacts:
    """What :func:`check_one_cycle_bound` looks at, as plain data.

    ``lrs[step][group]`` over ``total_steps`` steps (empty when the scheduler is not a ``OneCycleLR`` bound to
    the optimizer); ``runs_past_end``: two more steps did not raise; ``error``: what stepping it raised.
    """

    classes: tuple[str, ...]
    describe: str
    bound: bool
    total_steps: int
    lrs: tuple[tuple[float, ...], ...] = ()
    runs_past_end: bool = False
    error: str | None = None


def schedule_facts(scheduler: Any, optimizer: torch.optim.Optimizer, total_steps: int) -> ScheduleFacts:
    """Record a scheduler's behaviour over ``total_steps`` steps (this steps it, and its optimizer, to the end)."""
    classes = tuple(qualified_name(c) for c in type(scheduler).__mro__)
    bound = getattr(scheduler, "optimizer", None) is optimizer
    facts = ScheduleFacts(classes, _describe(scheduler), bound, total_steps)
    if _ONE_CYCLE not in classes or not bound:
        return facts
    try:
        lrs = tuple(tuple(step) for step in one_cycle_lrs(scheduler, optimizer, total_steps))
        with quiet():
            optimizer.step()
            try:
                scheduler.step()  # the total_steps-th step is still allowed; one more is not
                scheduler.step()
                past = True
            except ValueError:
                past = False
    except Exception as err:  # noqa: BLE001 (a student's scheduler may raise anything)
        return ScheduleFacts(classes, facts.describe, bound, total_steps, error=f"{type(err).__name__}: {err}")
    return ScheduleFacts(classes, facts.describe, bound, total_steps, lrs, past)


def check_one_cycle_bound(scheduler: Any, optimizer: Any = None, total_steps: int = 0) -> None:
    """Check that ``scheduler`` is a ``OneCycleLR`` driving ``optimizer`` over ``total_steps`` steps.

    The lr of every group must rise, then fall to its lowest value at the last step, ``total_steps - 1``.
    ``scheduler`` may also be its :class:`ScheduleFacts` (then ``optimizer`` is not needed).
    """
    facts = scheduler if isinstance(scheduler, ScheduleFacts) else schedule_facts(scheduler, optimizer, total_steps)
    total_steps = facts.total_steps
    if _ONE_CYCLE not in facts.classes:
        raise AssertionError(f"expected a torch.optim.lr_scheduler.OneCycleLR; found {facts.describe}")
    if not facts.bound:
        raise AssertionError("the OneCycleLR drives another optimizer, not the one passed in")
    if facts.error is not None or len(facts.lrs) != total_steps:
        raise AssertionError(f"stepping the schedule {total_steps} times failed: {facts.error}")
    lines = []
    for gi in range(len(facts.lrs[0]) if facts.lrs else 0):
        series = [step[gi] for step in facts.lrs]
        low = min(range(total_steps), key=lambda s: (series[s], -s))
        top = max(range(total_steps), key=lambda s: series[s])
        if low != total_steps - 1 or not series[-1] < series[0] < series[top]:
            lines.append(
                f"group {gi}: the lr should rise from step 0, peak, and reach its lowest value at the last "
                f"step ({total_steps - 1}) of {total_steps}; it is lowest at step {low} and highest at step {top}"
            )
    if facts.runs_past_end:
        lines.append(f"the schedule runs past total_steps={total_steps}")
    _fail(lines)


def check_one_cycle_peaks(lrs: Sequence[Sequence[float]], peaks: Sequence[float]) -> None:
    """Check that group ``i`` of a recorded schedule peaks at ``peaks[i]`` (its lr before the schedule)."""
    lines = []
    for gi, want in enumerate(peaks):
        have = max(step[gi] for step in lrs)
        if not _close(have, want):
            lines.append(f"group {gi} peaks at lr {_fmt(have)}, expected {_fmt(want)} (its lr before the schedule)")
    _fail(lines)


def check_one_cycle_lrs(
    lrs: Sequence[Sequence[float]], peaks: Sequence[float], total_steps: int, at: Sequence[int] | None = None
) -> None:
    """Check a recorded schedule against ``OneCycleLR(max_lr=peaks, total_steps)``, step by step.

    Also checks that the ratio between any two groups' lrs stays that of their peaks.
    """
    ref = reference_one_cycle_lrs(peaks, total_steps)
    steps = range(total_steps) if at is None else at
    lines = []
    for s in steps:
        for gi, want in enumerate(ref[s]):
            have = lrs[s][gi]
            if not _close(have, want):
                lines.append(f"step {s}: group {gi} has lr {_fmt(have)}, expected {_fmt(want)} "
                             f"(OneCycleLR peaking at {_fmt(peaks[gi])})")
        for gi in range(1, len(peaks)):
            if lrs[s][0] and not _close(lrs[s][gi] / lrs[s][0], peaks[gi] / peaks[0]):
                lines.append(f"step {s}: the ratio of group {gi}'s lr to group 0's is "
                             f"{_fmt(lrs[s][gi] / lrs[s][0])}, expected {_fmt(peaks[gi] / peaks[0])}")
    _fail(lines)


# --------------------------------------------------------------------------------------------------
# Quiz


def check_choice(question: str, answer: Any, letters: str) -> None:
    """Check that ``answer`` is one of the offered capital ``letters``.

    >>> check_choice("q1", "E", "ABCD")
    Traceback (most recent call last):
    ...
    AssertionError: q1 should be one of 'A', 'B', 'C', 'D' (a capital letter in quotes); found 'E'
    """
    if not (isinstance(answer, str) and len(answer) == 1 and answer in letters):
        offered = ", ".join(repr(c) for c in letters)
        raise AssertionError(f"{question} should be one of {offered} (a capital letter in quotes); found {answer!r}")


def answer_digest(question: str, answer: Any) -> str:
    """A short digest of an answer, so that a test cell can check it without spelling it out.

    >>> len(answer_digest("q1", "A"))
    16
    """
    return hashlib.sha256(f"lrdiff-quiz/{question}/{answer!s}".encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# The experiment

#: Seeds the experiment is averaged over.
EXPERIMENT_SEEDS: tuple[int, ...] = (0, 1, 2)
#: Target: mean final validation accuracy, in percent, at least this (the best single lr for all reaches 59).
EXPERIMENT_MIN_VAL_ACC = 63.0
#: Target: mean final accuracy on the held-out test split, in percent, at least this (graders only).
EXPERIMENT_MIN_TEST_ACC = 63.0


@dataclass(frozen=True)
class ExperimentResult:
    """Means over seeds, in percent: final validation accuracy and train - validation gap (a diagnostic)."""

    backbone_lr: float
    head_lr: float
    val_acc: float
    gap: float
    val_accs: tuple[float, ...]
    gaps: tuple[float, ...]
    #: Why these numbers may differ from the graders' (``reproducibility.PinStatus.reason``); "" when not.
    unpinned: str = ""

    def __str__(self) -> str:
        text = (f"backbone lr {self.backbone_lr:g}, head lr {self.head_lr:g}: validation accuracy "
                f"{self.val_acc:.1f}%, gap {self.gap:.1f} points (mean of {len(self.val_accs)} seeds)")
        if self.unpinned:
            text += f" [not computed under the course's pinned settings ({self.unpinned}): the graders' may differ]"
        return text


def check_experiment_values(backbone_lr: Any, head_lr: Any) -> None:
    """Check that both lrs are positive, finite floats.

    >>> check_experiment_values(1e-4, "1e-3")
    Traceback (most recent call last):
    ...
    AssertionError: HEAD_LR should be a positive float such as 1e-3; found '1e-3'
    """
    for label, v in (("BACKBONE_LR", backbone_lr), ("HEAD_LR", head_lr)):
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        if not ok:
            raise AssertionError(f"{label} should be a positive float such as 1e-3; found {v!r}")


@lru_cache(maxsize=16)
def _experiment_runs(backbone_lr: float, head_lr: float, seeds: tuple[int, ...]) -> tuple[tuple, str]:
    """The recipe's runs, one per seed (cached: the test cells of one notebook share them), and why they
    may not be the graders' ("" when pinned). One thread, on the CPU: the numbers then do not depend on the
    machine's core count, and a grader shared by several jobs is not slowed down by threads waiting for each
    other (on 2 busy cores, 1 thread was 5-30 times faster)."""
    from .experiment import finetune
    from .reproducibility import pin_status

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        unpinned = pin_status().reason
        with quiet():
            runs = tuple(finetune(backbone_lr, head_lr, seed=s, optimizer="adam", progress=False, device="cpu",
                                  curves=False) for s in seeds)
    finally:
        torch.set_num_threads(threads)
    return runs, unpinned


def experiment_results(
    backbone_lr: float, head_lr: float, seeds: tuple[int, ...] = EXPERIMENT_SEEDS
) -> ExperimentResult:
    """Run the course's recipe (``finetune(..., optimizer="adam")``) once per seed; return the validation means.

    Under the course's pinned settings (:mod:`lrdiff_helpers.reproducibility`: the kernel "Python (lrdiff)"
    and the grader) the result is exactly the graders'; otherwise it says so. The test split is not in it:
    choose on validation (:func:`experiment_test_accuracy` is the graders' report).
    """
    runs, unpinned = _experiment_runs(float(backbone_lr), float(head_lr), tuple(seeds))
    vals = tuple(100 * h.val_acc[-1] for h in runs)
    gaps = tuple(100 * h.gap for h in runs)
    return ExperimentResult(float(backbone_lr), float(head_lr), sum(vals) / len(vals), sum(gaps) / len(gaps),
                            vals, gaps, unpinned)


def experiment_test_accuracy(backbone_lr: float, head_lr: float, seeds: tuple[int, ...] = EXPERIMENT_SEEDS) -> float:
    """The mean final accuracy on the held-out test split, in percent: what the graders score, never shown
    while choosing (the experiment notebook does not call it; ``autograder/checks.py`` does)."""
    runs, _ = _experiment_runs(float(backbone_lr), float(head_lr), tuple(seeds))
    return sum(100 * h.test_acc for h in runs) / len(runs)
