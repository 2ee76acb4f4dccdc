"""Layer-wise lr decay (LLRD) for transformers, built by hand from ``named_parameters()``.

The recipe of BERT, BEiT and MAE fine-tuning: number the layers from the input up (the embeddings are layer 0,
``blocks.i`` is layer ``i + 1``, the final norm and the head are the top layer) and give layer ``k`` the lr
``lr * decay ** (top - k)``, so each block learns ``decay`` times slower than the one above it. Biases,
normalization parameters, every parameter with fewer than 2 dimensions and the names the model lists in
``no_weight_decay()`` (class token, position embedding) get no weight decay.

The functions return the plain ``list[dict]`` that ``torch.optim`` accepts, like timm's
``timm/optim/_param_groups.py``, and :func:`finetune_vit` is the lesson's recipe for the tiny ViT
(:func:`lrdiff_helpers.vit.pretrained_tiny_vit`) on the noisy few-shot target digits. Introduced in
``notebooks/07_transformers.ipynb``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .data import target_splits
from .train import History, evaluate, fit
from .vit import pretrained_tiny_vit, tiny_vit

__all__ = [
    "VIT_RECIPE",
    "ViTRecipe",
    "apply_lr_scale",
    "finetune_vit",
    "llrd_param_groups",
    "llrd_scales",
    "no_weight_decay_names",
    "no_weight_decay_reasons",
    "vit_layer_ids",
    "warmup_cosine",
]

#: Name prefixes of the embeddings: layer 0.
_EMBEDDINGS = ("cls_token", "reg_token", "dist_token", "pos_embed", "patch_embed")


def _block_index(name: str) -> int | None:
    parts = name.split(".")
    if len(parts) > 1 and parts[0] == "blocks" and parts[1].isdigit():
        return int(parts[1])
    return None


def vit_layer_ids(model: nn.Module, norm_with_last_block: bool = False) -> dict[str, int]:
    """The layer of every parameter of a timm-style ViT, by name: 0 at the input, ``len(model.blocks) + 1`` at the top.

    Embeddings (``cls_token``, ``pos_embed``, ``patch_embed.*``) are layer 0, ``blocks.i.*`` is layer ``i + 1``,
    and everything else (the final ``norm``, the ``head``) is the top layer, as in MAE's and BEiT's
    ``get_layer_id_for_vit``. With ``norm_with_last_block``, the final ``norm`` shares the last block's layer,
    as in timm's ``param_groups_layer_decay`` (the convention of the graded exercise's Part F).

    >>> from lrdiff_helpers.vit import tiny_vit
    >>> names = ("pos_embed", "blocks.0.attn.qkv.weight", "blocks.3.mlp.fc2.bias", "norm.weight", "head.bias")
    >>> [vit_layer_ids(tiny_vit())[n] for n in names]
    [0, 1, 4, 5, 5]
    >>> [vit_layer_ids(tiny_vit(), norm_with_last_block=True)[n] for n in names]
    [0, 1, 4, 4, 5]
    """
    top = len(model.blocks) + 1
    ids = {}
    for name, _ in model.named_parameters():
        block = _block_index(name)
        if name.split(".")[0] in _EMBEDDINGS:
            ids[name] = 0
        elif block is not None:
            ids[name] = block + 1
        elif norm_with_last_block and name.split(".")[0] == "norm":
            ids[name] = top - 1
        else:
            ids[name] = top
    return ids


def llrd_scales(num_layers: int, decay: float) -> list[float]:
    """The lr scale of each layer, input first: ``decay ** (top - k)`` for layer ``k``, 1 at the top.

    >>> llrd_scales(3, 0.5)
    [0.25, 0.5, 1.0]
    """
    top = num_layers - 1
    return [decay ** (top - k) for k in range(num_layers)]


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Names of the parameters that get no weight decay.

    Every parameter with fewer than 2 dimensions (biases, LayerNorm weights and biases) and every name in the
    model's ``no_weight_decay()`` (timm's ViT lists ``cls_token`` and ``pos_embed``, which have 3).

    >>> from lrdiff_helpers.vit import tiny_vit
    >>> names = no_weight_decay_names(tiny_vit())
    >>> sorted(n for n in names if not n.startswith("blocks"))
    ['cls_token', 'head.bias', 'norm.bias', 'norm.weight', 'patch_embed.proj.bias', 'pos_embed']
    """
    return set(no_weight_decay_reasons(model))


def no_weight_decay_reasons(model: nn.Module) -> dict[str, str]:
    """Name -> why it gets no weight decay, for the parameters of :func:`no_weight_decay_names`.

    >>> from lrdiff_helpers.vit import tiny_vit
    >>> reasons = no_weight_decay_reasons(tiny_vit())
    >>> reasons["pos_embed"], reasons["head.bias"]
    ('in model.no_weight_decay()', 'fewer than 2 dimensions')
    """
    listed = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    out = {}
    for name, p in model.named_parameters():
        if name in listed:
            out[name] = "in model.no_weight_decay()"
        elif p.ndim < 2:
            out[name] = "fewer than 2 dimensions"
    return out


def llrd_param_groups(model: nn.Module, lr: float, decay: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """Param groups for layer-wise lr decay: one group per layer and per kind of weight decay.

    Layer ``k`` (see :func:`vit_layer_ids`) gets ``lr * decay ** (top - k)``; the parameters of
    :func:`no_weight_decay_names` get weight decay 0, the others ``weight_decay``. Groups are named
    ``layer{k}`` and ``layer{k}/no_decay``, input first; parameters with ``requires_grad=False`` are left out,
    and so are layers whose lr is 0. ``decay=1`` is one lr for all.

    Args:
        model: a timm-style ViT (``blocks``, ``no_weight_decay()``).
        lr: the lr of the top layer (final norm and head): the base lr.
        decay: the factor between the lrs of neighbouring layers, typically 0.65 to 0.95.
        weight_decay: the decay of the weights that keep it.

    >>> from lrdiff_helpers.vit import tiny_vit
    >>> groups = llrd_param_groups(tiny_vit(), lr=1e-3, decay=0.5, weight_decay=0.05)
    >>> [(g["name"], g["lr"], g["weight_decay"]) for g in groups[:3]]
    [('layer0', 3.125e-05, 0.05), ('layer0/no_decay', 3.125e-05, 0.0), ('layer1', 6.25e-05, 0.05)]
    """
    ids = vit_layer_ids(model)
    no_decay = no_weight_decay_names(model)
    scales = llrd_scales(max(ids.values()) + 1, decay)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        layer = ids[name]
        if not p.requires_grad or scales[layer] == 0:
            continue
        skip = name in no_decay
        key = (layer, skip)
        if key not in groups:
            groups[key] = {"params": [], "name": f"layer{layer}" + ("/no_decay" if skip else ""),
                           "lr": lr * scales[layer], "weight_decay": 0.0 if skip else weight_decay}
        groups[key]["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def apply_lr_scale(groups: Iterable[dict[str, Any]], lr: float) -> list[dict[str, Any]]:
    """The fix for timm's groups outside timm's schedulers: ``lr = lr * lr_scale``, and the key removed.

    timm's ``param_groups_layer_decay`` puts the decay in a key ``lr_scale`` that only timm's own schedulers
    read; torch's optimizers and schedulers ignore it, so every group would run at the base lr.

    >>> apply_lr_scale([{"params": [], "lr_scale": 0.5}], lr=1e-3)
    [{'params': [], 'lr': 0.0005}]
    """
    out = []
    for g in groups:
        g = dict(g)
        g["lr"] = lr * g.pop("lr_scale", 1.0)
        out.append(g)
    return out


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """A multiplier for ``torch.optim.lr_scheduler.LambdaLR``: linear warm-up to 1, then cosine to 0.

    ``LambdaLR`` multiplies each group's own initial lr by it, so the ratios between the groups (the layer-wise
    decay) hold at every step.

    >>> f = warmup_cosine(2, 10)
    >>> [round(f(s), 2) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


@dataclass(frozen=True)
class ViTRecipe:
    """Everything about a ViT fine-tuning run except the lr, the decay and the seed."""

    shots: int = 20  # labelled target images per class
    noise: float = 0.1  # the target's shift: additive pixel noise (the ViT is more fragile to it than the ResNet)
    epochs: int = 5
    batch_size: int = 25  # 200 images / 25 = 8 steps per epoch, 40 steps in all
    weight_decay: float = 0.05  # AdamW's, on the weights that keep it
    warmup_steps: int = 4  # linear warm-up, then cosine to 0 (LambdaLR)
    num_classes: int = 10


VIT_RECIPE = ViTRecipe()


def finetune_vit(
    lr: float,
    decay: float = 1.0,
    seed: int = 0,
    from_scratch: bool = False,
    recipe: ViTRecipe = VIT_RECIPE,
    progress: bool = False,
    curves: bool = True,
) -> History:
    """Fine-tune the pretrained tiny ViT with a new head on the target task, AdamW with layer-wise lr decay.

    ``decay=1`` is one lr for all; ``decay=0`` freezes every layer below the top (only the final norm and the
    head train). The history's curves are on the train and validation splits; ``test_acc`` is the final
    accuracy on the held-out test split, to report, never to choose on.

    Args:
        lr: the top layer's lr (the base lr).
        decay: the factor between neighbouring layers' lrs (:func:`llrd_param_groups`).
        seed: chooses the labelled target images, the head's initialization and the batch order.
        from_scratch: start from a randomly initialized ViT instead of the pretrained one (same head).
        recipe: everything else.
        progress: show a progress bar.
        curves: evaluate after every epoch; ``False``: after the last one only (same final numbers, faster).

    >>> h = finetune_vit(1e-3, decay=0.75, seed=0, curves=False)
    >>> h.val_acc[-1] > 0.5, h.test_acc > 0.5
    (True, True)
    """
    train, val, test = target_splits(shots=recipe.shots, noise=recipe.noise, seed=seed)
    model = pretrained_tiny_vit(num_classes=recipe.num_classes, seed=seed)
    if from_scratch:
        head = model.head
        torch.manual_seed(seed)
        model = tiny_vit(num_classes=recipe.num_classes)
        model.head = head
    if decay == 0:  # frozen blocks: only the top layer trains
        ids = vit_layer_ids(model)
        top = max(ids.values())
        for name, layer in ids.items():
            model.get_parameter(name).requires_grad_(layer == top)
    opt = torch.optim.AdamW(llrd_param_groups(model, lr, decay, recipe.weight_decay))
    steps = recipe.epochs * (len(train) // min(recipe.batch_size, len(train)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(recipe.warmup_steps, steps))
    history = fit(model, opt, train, val, epochs=recipe.epochs, batch_size=recipe.batch_size, scheduler=scheduler,
                  seed=seed, progress=progress, desc=f"lr {lr:g}, decay {decay:g}", every_epoch=curves)
    history.test_acc = evaluate(model, test)[1]
    return history
