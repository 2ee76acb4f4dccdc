"""The graded cases of the ``lrdiff`` assignment, as data: what each graded test cell runs and expects.

Every graded test cell of ``source/lrdiff/*.ipynb`` has an entry in :data:`CHECKS`: the *cases* to run (a
function called on a model built from a spec, or a variable read) and the *check* to apply to what came back
(``autograder/comparisons.py``). The visible test cells students run stay as they are in the notebooks
(in-kernel, for their feedback); the cases marked ``hidden`` exist only here. ``autograder/verdict.py`` turns a
cell's cases into the probe the kernel runs, and judges the evidence the probe displays.

This file holds the hidden tests (and, through ``quiz_key.py``, the answer key): it is never shown to a
sandboxed kernel (``autograder/`` is not mounted there) and never in the student bundle (``autograder/bundle.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .comparisons import (
    dict_structure,
    experiment_test_acc,
    experiment_val_acc,
    experiment_values,
    finetune_lrs,
    layerwise_lrs,
    optimizer_lrs,
    optimizer_options,
    optimizer_structure,
    quiz_answer,
    schedule_bound,
    schedule_lrs,
    schedule_peaks,
    vit_llrd,
    weight_decays,
)
from .quiz_key import EXPLANATIONS, QUIZ_KEY

__all__ = ["CHECKS", "Case", "Check"]


@dataclass(frozen=True)
class Case:
    """One thing to run in the kernel, and what the grader expects of it.

    ``kind``: ``optimizer`` / ``groups`` (``fn(model, *args, **kwargs)``), ``schedule``
    (``fn(build_optimizer(model, optimizer), *args, **kwargs)``, recorded over ``steps`` steps), ``value`` (the
    variable ``name``). ``expect``: the values the checks need (never sent to the kernel). ``hidden``: not in the
    notebook's visible test (its label in messages is then generic).
    """

    kind: str
    fn: str = ""
    model: str = ""
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    optimizer: Mapping[str, Any] | None = None
    steps: int = 0
    name: str = ""
    expect: Mapping[str, Any] = field(default_factory=dict)
    hidden: bool = False

    def for_kernel(self) -> dict[str, Any]:
        """What the probe needs, and nothing else (no expected values)."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "value":
            out["name"] = self.name
            return out
        out.update(fn=self.fn, model=self.model, args=list(self.args), kwargs=dict(self.kwargs))
        if self.kind == "schedule":
            out.update(optimizer=self.optimizer, steps=self.steps)
        return out

    def label(self, index: int) -> str:
        if self.kind == "value":
            return self.name
        if self.hidden:
            return f"hidden case {index + 1}"
        first = f"{self.optimizer['class']} over {self.model}" if self.kind == "schedule" and self.optimizer else self.model
        call = ", ".join([first, *map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        return f"{self.fn}({call})"


@dataclass(frozen=True)
class Check:
    """The cases of one graded test cell, the check applied to each case's evidence, and the answer functions
    whose source must not call the helpers' builders."""

    cases: tuple[Case, ...]
    check: Callable[[Case, dict], None]
    no_builders: tuple[str, ...] = ()
    combined: Callable[[list[tuple[Case, dict]]], None] | None = None
    #: Shown with the verdict, passed or failed (the quiz's explanation of the right answer).
    explain: str = ""


# ------------------------------------------------------------------------------------------------------------
# The cases


def _call(kind: str, fn: str, model: str, *args: Any, hidden: bool = False, expect: Mapping | None = None,
          **kwargs: Any) -> Case:
    return Case(kind, fn=fn, model=model, args=tuple(args), kwargs=kwargs, expect=dict(expect or {}), hidden=hidden)


def _two(model: str, lr1: float, lr2: float, *rest: Any, hidden: bool = False, **kwargs: Any) -> Case:
    return _call("optimizer", "two_group_sgd", model, lr1, lr2, *rest, hidden=hidden,
                 expect={"lrs": {"part1": lr1, "part2": lr2}}, **kwargs)


def _sched(model: str, opt: Mapping, steps: int, peaks: Sequence[float], *, hidden: bool = False,
           by_keyword: bool = False) -> Case:
    args, kwargs = ((), {"total_steps": steps}) if by_keyword else ((steps,), {})
    return Case("schedule", fn="one_cycle_for_groups", model=model, args=args, kwargs=kwargs, optimizer=opt,
                steps=steps, expect={"peaks": list(peaks)}, hidden=hidden)


def _sgd_two(lr1: float, lr2: float) -> dict:
    return {"class": "SGD", "groups": [{"modules": ["part1"], "lr": lr1}, {"modules": ["part2"], "lr": lr2}],
            "options": {"momentum": 0.9}}


WIDE = "SmallResNet(num_classes=4, widths=(8, 16, 24, 32))"
DEEP_VIT = "tiny_vit(depth=6, embed_dim=8, num_heads=1, num_classes=4)"

CHECKS: dict[str, Check] = {
    # ---------------------------------------------------------------- Part A: two_group_sgd
    "two_group_sgd_groups": Check(
        (
            _two("TwoPartModel()", 1e-3, 1e-2),
            _two("TwoPartModel(3, 7, 4)", 0.5, 0.05, hidden=True, momentum=0.5),
            _two("TwoPartModel(32, 16, 1)", 0.5, 0.05, hidden=True, momentum=0.5),
        ),
        optimizer_structure,
        no_builders=("two_group_sgd",),
    ),
    "two_group_sgd_lrs": Check(
        (
            _two("TwoPartModel()", 1e-3, 1e-2),
            _two("TwoPartModel(3, 7, 4)", 0.5, 0.05, hidden=True),
            _two("TwoPartModel(32, 16, 1)", 2e-4, 3e-2, hidden=True),
            _two("TwoPartModel(10, 5, 2)", 0.1, 0.1, hidden=True),
            _call("optimizer", "two_group_sgd", "TwoPartModel()", hidden=True, part2_lr=7e-3, part1_lr=3e-4,
                  expect={"lrs": {"part1": 3e-4, "part2": 7e-3}}),
        ),
        optimizer_lrs,
    ),
    "two_group_sgd_momentum": Check(
        (
            _call("optimizer", "two_group_sgd", "TwoPartModel()", 1e-3, 1e-2, expect={"options": {"momentum": 0.9}}),
            _call("optimizer", "two_group_sgd", "TwoPartModel(4, 3, 2)", 1e-3, 1e-2, hidden=True, momentum=0.5,
                  expect={"options": {"momentum": 0.5}}),
            _call("optimizer", "two_group_sgd", "TwoPartModel()", 1e-3, 1e-2, 0.0, hidden=True,
                  expect={"options": {"momentum": 0.0}}),
        ),
        optimizer_options,
    ),
    # ---------------------------------------------------------------- Part B: finetune_param_groups
    "finetune_groups": Check(
        tuple(
            _call("groups", "finetune_param_groups", m, b, h, hidden=hid, expect={"n": 2})
            for m, b, h, hid in [("SmallResNet()", 1e-4, 1e-2, False), ("resnet18(num_classes=3)", 1e-3, 1e-1, True),
                                 (WIDE, 1e-3, 1e-1, True)]
        ),
        dict_structure,
        no_builders=("finetune_param_groups",),
    ),
    "finetune_lrs": Check(
        (_call("groups", "finetune_param_groups", "SmallResNet()", 1e-4, 1e-2,
               expect={"lrs": {"backbone_lr": 1e-4, "head_lr": 1e-2}}),),
        finetune_lrs,
    ),
    "finetune_lrs_other_models": Check(
        tuple(
            _call("groups", "finetune_param_groups", m, b, h, hidden=hid,
                  expect={"lrs": {"backbone_lr": b, "head_lr": h}})
            for m, b, h, hid in [
                ("resnet18(num_classes=3)", 1e-3, 1e-1, False),
                ("SmallResNet(num_classes=7, widths=(8, 16, 24, 32))", 3e-5, 3e-3, True),
                ("SmallResNet(num_classes=7, widths=(4, 4, 4, 4))", 0.02, 0.02, True),
            ]
        ),
        finetune_lrs,
    ),
    # ---------------------------------------------------------------- Part C: layerwise_param_groups
    "layerwise_groups": Check(
        (
            _call("groups", "layerwise_param_groups", "SmallResNet()", 1e-2, expect={"stages": True}),
            _call("groups", "layerwise_param_groups", "resnet18(num_classes=2)", 1e-3, 3.0, hidden=True,
                  expect={"stages": True}),
            _call("groups", "layerwise_param_groups", "SmallResNet(num_classes=3, widths=(8, 8, 16, 16))", 1e-3, 3.0,
                  hidden=True, expect={"stages": True}),
        ),
        dict_structure,
        no_builders=("layerwise_param_groups",),
    ),
    "layerwise_lrs": Check(
        (_call("groups", "layerwise_param_groups", "SmallResNet()", 1e-2,
               expect={"lrs": {"head_lr": 1e-2, "decay": 2.6}}),),
        layerwise_lrs,
    ),
    "layerwise_lrs_other_models": Check(
        (
            _call("groups", "layerwise_param_groups", "resnet18(num_classes=5)", 3e-3, decay=3.0,
                  expect={"lrs": {"head_lr": 3e-3, "decay": 3.0}}),
            _call("groups", "layerwise_param_groups", WIDE, 0.1, 1.0, hidden=True,
                  expect={"lrs": {"head_lr": 0.1, "decay": 1.0}}),
            _call("groups", "layerwise_param_groups", "SmallResNet(num_classes=4, widths=(16, 32, 64, 128))", 1e-3,
                  10.0, hidden=True, expect={"lrs": {"head_lr": 1e-3, "decay": 10.0}}),
            _call("groups", "layerwise_param_groups", "SmallResNet()", hidden=True, head_lr=5e-2,
                  expect={"lrs": {"head_lr": 5e-2, "decay": 2.6}}),
        ),
        layerwise_lrs,
    ),
    # ---------------------------------------------------------------- Part D: no_decay_param_groups
    "no_decay_groups": Check(
        (
            _call("groups", "no_decay_param_groups", "SmallResNet()", 1e-4, 1e-2, 5e-4),
            _call("groups", "no_decay_param_groups", "resnet18(num_classes=4)", 1e-3, 1e-1, 1e-2, hidden=True),
        ),
        dict_structure,
        no_builders=("no_decay_param_groups",),
    ),
    "no_decay_lrs": Check(
        (
            _call("groups", "no_decay_param_groups", "SmallResNet()", 1e-4, 1e-2, 5e-4,
                  expect={"lrs": {"backbone_lr": 1e-4, "head_lr": 1e-2}}),
            _call("groups", "no_decay_param_groups", "resnet18(num_classes=4)", 1e-3, 1e-1, 1e-2, hidden=True,
                  expect={"lrs": {"backbone_lr": 1e-3, "head_lr": 1e-1}}),
        ),
        finetune_lrs,
    ),
    "no_decay_weight_decays": Check(
        (_call("groups", "no_decay_param_groups", "SmallResNet()", 1e-4, 1e-2, 5e-4, expect={"weight_decay": 5e-4}),),
        weight_decays,
    ),
    "no_decay_other_models": Check(
        (
            _call("groups", "no_decay_param_groups", "resnet18(num_classes=4)", 1e-3, 1e-1, 1e-2,
                  expect={"weight_decay": 1e-2}),
            _call("groups", "no_decay_param_groups", "SmallResNet(num_classes=3, widths=(8, 16, 24, 32))", 3e-5,
                  3e-3, 0.05, hidden=True,
                  expect={"weight_decay": 0.05, "lrs": {"backbone_lr": 3e-5, "head_lr": 3e-3}}),
        ),
        weight_decays,
    ),
    "no_decay_other_norms": Check(
        (_call("groups", "no_decay_param_groups", "resnet18_groupnorm(num_classes=3)", 1e-4, 1e-2, 5e-4,
               expect={"weight_decay": 5e-4, "one_group": True}),),
        weight_decays,
    ),
    # ---------------------------------------------------------------- Part E: one_cycle_for_groups
    "one_cycle_bound": Check(
        (
            _sched("TwoPartModel()", _sgd_two(1e-3, 1e-2), 100, [1e-3, 1e-2]),
            _sched("SmallResNet()", {"class": "Adam", "groups": [{"modules": ["fc"], "lr": 3e-3},
                                                                 {"modules": ["layer4"], "lr": 1e-4}]},
                   20, [3e-3, 1e-4], hidden=True),
        ),
        schedule_bound,
        no_builders=("one_cycle_for_groups",),
    ),
    "one_cycle_peaks": Check((_sched("TwoPartModel()", _sgd_two(1e-3, 1e-2), 100, [1e-3, 1e-2]),), schedule_peaks),
    "one_cycle_schedule": Check(
        (
            _sched("SmallResNet()", {"class": "Adam", "groups": [
                {"modules": ["conv1", "bn1", "layer1", "layer2"], "lr": 1e-5}, {"modules": ["layer3"], "lr": 1e-4},
                {"modules": ["layer4"], "lr": 3e-4}, {"modules": ["fc"], "lr": 1e-2}]}, 50, [1e-5, 1e-4, 3e-4, 1e-2]),
            _sched("TwoPartModel()", {"class": "SGD", "groups": [{"modules": ["part2"], "lr": 0.5},
                                                                 {"modules": ["part1"], "lr": 0.02}],
                                      "options": {"lr": 0.1, "momentum": 0.9}}, 20, [0.5, 0.02], hidden=True,
                   by_keyword=True),
            _sched("TwoPartModel()", {"class": "AdamW", "groups": [{"modules": ["part1"], "lr": 2e-3, "weight_decay": 0.0},
                                                                   {"modules": ["part2"]}],
                                      "options": {"lr": 6e-3}}, 37, [2e-3, 6e-3], hidden=True),
        ),
        schedule_lrs,
    ),
    # ---------------------------------------------------------------- Part F: vit_llrd_param_groups
    "vit_llrd_groups": Check(
        (
            _call("groups", "vit_llrd_param_groups", "tiny_vit()", 1e-3),
            _call("groups", "vit_llrd_param_groups", DEEP_VIT, 1e-2, 0.9, 0.1, hidden=True),
            _call("groups", "vit_llrd_param_groups", "tiny_vit(depth=1, embed_dim=16, num_classes=2)", 1e-3,
                  hidden=True),
        ),
        dict_structure,
        no_builders=("vit_llrd_param_groups",),
    ),
    "vit_llrd_lrs": Check(
        (_call("groups", "vit_llrd_param_groups", "tiny_vit()", 1e-3, expect={"lrs": {"lr": 1e-3, "decay": 0.75}}),),
        vit_llrd,
    ),
    "vit_llrd_weight_decays": Check(
        (_call("groups", "vit_llrd_param_groups", "tiny_vit()", 1e-3, expect={"weight_decay": 0.05}),),
        vit_llrd,
    ),
    "vit_llrd_other_models": Check(
        (
            _call("groups", "vit_llrd_param_groups", "tiny_vit(depth=2, embed_dim=16, num_classes=3)", 3e-3,
                  decay=0.5, weight_decay=1e-2, expect={"lrs": {"lr": 3e-3, "decay": 0.5}, "weight_decay": 1e-2}),
            _call("groups", "vit_llrd_param_groups", DEEP_VIT, 1e-2, 0.9, 0.1, hidden=True,
                  expect={"lrs": {"lr": 1e-2, "decay": 0.9}, "weight_decay": 0.1}),
            _call("groups", "vit_llrd_param_groups", "tiny_vit(depth=1, embed_dim=16, num_classes=2)", hidden=True,
                  weight_decay=0.0, decay=0.65, lr=2e-4, expect={"lrs": {"lr": 2e-4, "decay": 0.65}, "weight_decay": 0.0}),
            _call("groups", "vit_llrd_param_groups", "tiny_vit()", 5e-4, 1.0, hidden=True,
                  expect={"lrs": {"lr": 5e-4, "decay": 1.0}, "weight_decay": 0.05}),
        ),
        vit_llrd,
    ),
}

for _q in QUIZ_KEY:
    CHECKS[f"{_q}_test"] = Check((Case("value", name=_q),), quiz_answer, explain=EXPLANATIONS[_q])

_LRS = (Case("value", name="BACKBONE_LR"), Case("value", name="HEAD_LR"))
CHECKS["experiment_values"] = Check(_LRS, lambda *a: None, combined=experiment_values)
CHECKS["experiment_val_acc"] = Check(_LRS, lambda *a: None, combined=experiment_val_acc)
CHECKS["experiment_test_acc"] = Check(_LRS, lambda *a: None, combined=experiment_test_acc)
