"""lrdiff_helpers: data, models, param-group tools, training loop and plots for the lrdiff course.

Importing it has no side effects: nothing is downloaded, read or seeded until a function is called, and
nothing is imported until a name is used (``lrdiff_helpers/lazy.py``): ``from lrdiff_helpers import grading``
does not import torch, ``from lrdiff_helpers import finetune`` imports what it needs, in that statement.
"""

from .lazy import attach

#: Where each public name lives (``from lrdiff_helpers import NAME`` is ``from lrdiff_helpers.MODULE import NAME``).
_EXPORTS = {
    ".data": ["Split", "TargetSplits", "load_digits", "source_task", "target_splits", "target_task"],
    ".experiment": ["COUNTEREXAMPLE", "RECIPE", "Recipe", "backbone_head_groups", "finetune"],
    ".hub": ["CHECKPOINTS", "ChecksumError", "load_state_dict"],
    ".inspector": ["GroupReport", "Problem", "inspect_param_groups"],
    ".llrd": [
        "VIT_RECIPE",
        "ViTRecipe",
        "apply_lr_scale",
        "finetune_vit",
        "llrd_param_groups",
        "llrd_scales",
        "no_weight_decay_names",
        "vit_layer_ids",
        "warmup_cosine",
    ],
    ".models": ["SmallResNet", "TwoPartModel", "pretrained_small_resnet"],
    ".modern": ["loraplus_param_groups", "muon_adamw_split", "mup_param_groups"],
    ".param_groups": [
        "RESNET_STAGES",
        "layerwise_param_groups",
        "lr_range",
        "no_decay_ids",
        "param_groups_by_module",
        "slice_param_groups",
        "stage_param_groups",
        "ulmfit_lrs",
        "weight_decay_param_groups",
    ],
    ".plots": ["plot_history", "plot_lr_per_layer", "plot_lr_schedule", "plot_sweep"],
    ".train": ["History", "default_device", "evaluate", "fit", "seed_everything"],
    ".vit": ["pretrained_tiny_vit", "tiny_vit"],
}

_SUBMODULES = [
    "data", "evidence", "experiment", "grading", "hub", "inspector", "llrd", "models", "modern", "param_groups",
    "plots", "reproducibility", "resolve", "train", "vit",
]

__getattr__, __dir__, __all__ = attach(__name__, _EXPORTS, _SUBMODULES)
