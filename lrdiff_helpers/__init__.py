"""lrdiff_helpers: data, models, param-group tools, training loop and plots for the lrdiff course.

Importing it has no side effects: nothing is downloaded, read or seeded until a function is called.
"""

from .data import Split, TargetSplits, load_digits, source_task, target_splits, target_task
from .experiment import COUNTEREXAMPLE, RECIPE, Recipe, backbone_head_groups, finetune
from .hub import CHECKPOINTS, ChecksumError, load_state_dict
from .inspector import GroupReport, Problem, inspect_param_groups
from .models import SmallResNet, TwoPartModel, pretrained_small_resnet
from .param_groups import (
    RESNET_STAGES,
    layerwise_param_groups,
    lr_range,
    no_decay_ids,
    param_groups_by_module,
    slice_param_groups,
    stage_param_groups,
    ulmfit_lrs,
    weight_decay_param_groups,
)
from .plots import plot_history, plot_lr_per_layer, plot_lr_schedule, plot_sweep
from .train import History, default_device, evaluate, fit, seed_everything
from .vit import pretrained_tiny_vit, tiny_vit

__all__ = [
    "CHECKPOINTS",
    "COUNTEREXAMPLE",
    "ChecksumError",
    "GroupReport",
    "History",
    "RECIPE",
    "Recipe",
    "Problem",
    "RESNET_STAGES",
    "SmallResNet",
    "Split",
    "TwoPartModel",
    "backbone_head_groups",
    "default_device",
    "evaluate",
    "finetune",
    "fit",
    "inspect_param_groups",
    "layerwise_param_groups",
    "load_digits",
    "load_state_dict",
    "lr_range",
    "no_decay_ids",
    "param_groups_by_module",
    "plot_history",
    "plot_lr_per_layer",
    "plot_lr_schedule",
    "plot_sweep",
    "pretrained_tiny_vit",
    "pretrained_small_resnet",
    "seed_everything",
    "slice_param_groups",
    "source_task",
    "stage_param_groups",
    "TargetSplits",
    "target_splits",
    "target_task",
    "tiny_vit",
    "ulmfit_lrs",
    "weight_decay_param_groups",
]
