"""lrdiff_helpers: data, models, param-group tools, training loop and plots for the lrdiff course.

Importing it has no side effects: nothing is downloaded, read or seeded until a function is called.
"""

from .data import Split, TargetSplits, load_digits, source_task, target_splits, target_task
from .experiment import COUNTEREXAMPLE, RECIPE, Recipe, backbone_head_groups, finetune
from .hub import CHECKPOINTS, ChecksumError, load_state_dict
from .inspector import GroupReport, Problem, inspect_param_groups
from .llrd import (
    VIT_RECIPE,
    ViTRecipe,
    apply_lr_scale,
    finetune_vit,
    llrd_param_groups,
    llrd_scales,
    no_weight_decay_names,
    vit_layer_ids,
    warmup_cosine,
)
from .models import SmallResNet, TwoPartModel, pretrained_small_resnet
from .modern import loraplus_param_groups, muon_adamw_split, mup_param_groups
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
    "Problem",
    "RECIPE",
    "RESNET_STAGES",
    "Recipe",
    "SmallResNet",
    "Split",
    "TargetSplits",
    "TwoPartModel",
    "VIT_RECIPE",
    "ViTRecipe",
    "apply_lr_scale",
    "backbone_head_groups",
    "default_device",
    "evaluate",
    "finetune",
    "finetune_vit",
    "fit",
    "inspect_param_groups",
    "layerwise_param_groups",
    "llrd_param_groups",
    "llrd_scales",
    "load_digits",
    "load_state_dict",
    "loraplus_param_groups",
    "lr_range",
    "muon_adamw_split",
    "mup_param_groups",
    "no_decay_ids",
    "no_weight_decay_names",
    "param_groups_by_module",
    "plot_history",
    "plot_lr_per_layer",
    "plot_lr_schedule",
    "plot_sweep",
    "pretrained_small_resnet",
    "pretrained_tiny_vit",
    "seed_everything",
    "slice_param_groups",
    "source_task",
    "stage_param_groups",
    "target_splits",
    "target_task",
    "tiny_vit",
    "ulmfit_lrs",
    "vit_layer_ids",
    "warmup_cosine",
    "weight_decay_param_groups",
]
