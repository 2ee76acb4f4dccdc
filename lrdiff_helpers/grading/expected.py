"""Expected values of the exercises, computed from the model and the arguments by the builders' own rules.

Each helper answers "which lr (or weight decay) should this parameter get, and why" with the rule that the
matching builder of :mod:`lrdiff_helpers.param_groups` or :mod:`lrdiff_helpers.llrd` applies, so the checks
and the lessons cannot disagree. Values are ``name -> (value, label of where it comes from)``.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from ..llrd import llrd_scales, no_weight_decay_reasons, vit_layer_ids
from ..param_groups import (
    RESNET_STAGES,
    module_prefix_of,
    no_decay_reason,
    stage_of,
    trainable_parameters,
    ulmfit_lrs,
)

__all__ = [
    "expected_finetune_lrs",
    "expected_layerwise_lrs",
    "expected_lrs_by_module",
    "expected_vit_llrd_lrs",
    "expected_vit_weight_decays",
    "expected_weight_decays",
]


def expected_lrs_by_module(
    model: nn.Module, lrs: Mapping[str, float], labels: Mapping[str, str] | None = None
) -> dict[str, tuple[float, str]]:
    """Expected lr of each trainable parameter: that of the longest module name it starts with.

    ``""`` matches every parameter (the rule of ``param_groups_by_module``). Returns name -> (lr, label of where
    it comes from).

    >>> from lrdiff_helpers import SmallResNet
    >>> exp = expected_lrs_by_module(SmallResNet(), {"": 1e-4, "fc": 1e-2}, {"": "backbone_lr", "fc": "head_lr"})
    >>> exp["fc.bias"], exp["bn1.weight"]
    ((0.01, 'head_lr'), (0.0001, 'backbone_lr'))
    """
    labels = labels or {}
    out = {}
    for name, _ in trainable_parameters(model):
        key = module_prefix_of(name, lrs)
        if key is None:
            raise ValueError(f"{name} matches no module name in {list(lrs)}")
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
    """Expected lr of each trainable parameter under layer-wise decay (ULMFiT, ``layerwise_param_groups``).

    ``fc`` gets ``head_lr`` and each stage before it the next one's lr divided by ``decay``:
    stage ``i`` of the six (stem, layer1 .. layer4, fc) gets ``head_lr / decay ** (5 - i)``.

    >>> from lrdiff_helpers import SmallResNet
    >>> lr, label = expected_layerwise_lrs(SmallResNet(), 1e-2, 2.0)["layer3.0.conv1.weight"]
    >>> lr, label
    (0.0025, 'layer3 = head_lr / decay**2')
    """
    order = [s for s, _ in RESNET_STAGES]
    lrs = ulmfit_lrs(head_lr, len(order), decay)
    out = {}
    for name, _ in trainable_parameters(model):
        stage = stage_of(name)
        if stage is None:
            raise ValueError(f"{name} is in no stage of a torchvision-style ResNet")
        k = len(order) - 1 - order.index(stage)
        label = f"{stage} = head_lr" if k == 0 else f"{stage} = head_lr / decay**{k}"
        out[name] = (lrs[order.index(stage)], label)
    return out


def expected_weight_decays(model: nn.Module, weight_decay: float) -> dict[str, tuple[float, str]]:
    """Expected weight decay of each trainable parameter: 0 for biases and normalization parameters
    (the rule of ``no_decay_ids``).

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
            reason = no_decay_reason(module, pname)
            out[full] = (float(weight_decay), "a weight") if reason is None else (0.0, reason)
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
    ids = vit_layer_ids(model, norm_with_last_block=True)
    top = len(model.blocks) + 1
    scales = llrd_scales(top + 1, decay)
    out = {}
    for name, _ in trainable_parameters(model):
        k = ids[name]
        where = {0: "embeddings", top: "the head"}.get(k, "the final norm" if name.startswith("norm.") else f"blocks.{k - 1}")
        label = "the head = lr" if k == top else f"layer {k} ({where}) = lr * decay**{top - k}"
        out[name] = (lr * scales[k], label)
    return out


def expected_vit_weight_decays(model: nn.Module, weight_decay: float) -> dict[str, tuple[float, str]]:
    """Expected weight decay of each parameter of a timm ViT: 0 for parameters with fewer than 2 dimensions and
    for the names in ``model.no_weight_decay()`` (``cls_token``, ``pos_embed``), ``weight_decay`` for the rest
    (the rule of ``no_weight_decay_names``).

    >>> from lrdiff_helpers.vit import tiny_vit
    >>> exp = expected_vit_weight_decays(tiny_vit(), 0.05)
    >>> exp["pos_embed"], exp["blocks.0.norm1.weight"], exp["head.weight"]
    ((0.0, 'in model.no_weight_decay()'), (0.0, 'fewer than 2 dimensions'), (0.05, 'a weight matrix'))
    """
    reasons = no_weight_decay_reasons(model)
    out = {}
    for name, p in trainable_parameters(model):
        if name in reasons:
            out[name] = (0.0, reasons[name])
        else:
            out[name] = (float(weight_decay), "a weight matrix" if p.ndim == 2 else "a weight")
    return out
