"""Param groups for three modern recipes: LoRA+, Muon next to AdamW, and muP's width-scaled lrs.

Each function takes a model and returns the plain ``list[dict]`` that ``torch.optim`` accepts (one dict per
param group, with a ``name``), so :func:`lrdiff_helpers.inspector.inspect_param_groups` can show it.
Introduced in ``notebooks/08_lora_muon_mup.ipynb``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .param_groups import trainable_parameters

__all__ = ["loraplus_param_groups", "muon_adamw_split", "mup_param_groups"]

_LORA_B = ("lora_B", "lora_embedding_B")  # the modules (or parameter dicts) where peft keeps the B factors


def _groups(named: dict[str, tuple[list[nn.Parameter], dict[str, Any]]]) -> list[dict[str, Any]]:
    """One group per name, in order, leaving out the empty ones (an empty group is a mistake to torch's users)."""
    return [{"name": name, "params": params, **opts} for name, (params, opts) in named.items() if params]


def loraplus_param_groups(model: nn.Module, lr: float, ratio: float = 16.0) -> list[dict[str, Any]]:
    """LoRA+ groups: every LoRA ``B`` factor at ``ratio * lr``; the ``A`` factors and the rest at ``lr``.

    LoRA+ (Hayou, Ghosh and Yu, 2024) gives ``B`` a larger lr than ``A``; the paper suggests a ratio of about
    16. Only trainable parameters are grouped (peft freezes the pretrained weights), so a trainable new head
    (peft's ``modules_to_save``) sits with ``A`` at ``lr``, biases included. Unlike peft's
    ``create_loraplus_optimizer``, no empty group is returned.

    Args:
        model: a model with LoRA adapters (peft's names: ``...lora_A...`` and ``...lora_B...``).
        lr: the lr of the ``A`` factors and of every other trainable parameter.
        ratio: ``lr_B / lr_A``; 1 is plain LoRA.

    >>> from peft import LoraConfig, get_peft_model
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> lora = get_peft_model(net, LoraConfig(r=2, target_modules=["0"], modules_to_save=["2"]))
    >>> [(g["name"], len(g["params"]), g["lr"]) for g in loraplus_param_groups(lora, 1e-3, 16)]
    [('lora_A', 1, 0.001), ('lora_B', 1, 0.016), ('other', 2, 0.001)]
    """
    a: list[nn.Parameter] = []
    b: list[nn.Parameter] = []
    other: list[nn.Parameter] = []
    for name, p in trainable_parameters(model):
        parts = name.split(".")
        if any(part in _LORA_B for part in parts):
            b.append(p)
        elif any(part in ("lora_A", "lora_embedding_A") for part in parts):
            a.append(p)
        else:
            other.append(p)
    return _groups({"lora_A": (a, {"lr": lr}), "lora_B": (b, {"lr": lr * ratio}), "other": (other, {"lr": lr})})


def muon_adamw_split(model: nn.Module, head: str = "head") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split a model for two optimizers: hidden weight matrices for Muon, everything else for AdamW.

    Muon orthogonalizes each update matrix, which makes sense for the weight matrix of a hidden ``nn.Linear``;
    ``torch.optim.Muon`` raises on any parameter that is not 2-D. Embeddings (convolutions, ``nn.Embedding``,
    timm's ``cls_token`` and ``pos_embed``), the classifier ``head``, biases and norms go to AdamW, as in
    Keller Jordan's recipe. No lr is set: each optimizer's base lr applies.

    Args:
        model: the model.
        head: the name of the classifier module (timm's ``head``; ``"2"`` for the last layer of a
            3-module ``nn.Sequential``), whose weight stays with AdamW although it is a 2-D matrix.

    Returns:
        ``(muon_groups, adamw_groups)``: one named group each, to pass to ``torch.optim.Muon`` and
        ``torch.optim.AdamW``.

    >>> net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    >>> muon, adamw = muon_adamw_split(net, head="2")
    >>> [tuple(p.shape) for p in muon[0]["params"]], len(adamw[0]["params"])
    ([(8, 4)], 5)
    """
    matrices: set[int] = set()
    for name, module in model.named_modules():
        in_head = name == head or name.startswith(head + ".")
        if isinstance(module, nn.Linear) and not in_head and module.weight.requires_grad:
            matrices.add(id(module.weight))
    muon = [p for _, p in trainable_parameters(model) if id(p) in matrices]
    adamw = [p for _, p in trainable_parameters(model) if id(p) not in matrices]
    return (_groups({"muon: hidden matrices": (muon, {})}),
            _groups({"adamw: embeddings, head, biases, norms": (adamw, {})}))


def _fan_in(weight: torch.Tensor) -> int:
    return weight.shape[1:].numel()  # in_features (Linear) or in_channels * kernel size (ConvNd)


def mup_param_groups(model: nn.Module, base_lr: float, base_model: nn.Module) -> list[dict[str, Any]]:
    """muP's lrs for Adam: a weight whose fan-in is ``m`` times its base model's gets ``base_lr / m``.

    The published rule (Yang et al., Tensor Programs V, 2022, Table 3, and Table 8 in terms of a base
    width): with Adam, the weights of hidden and output layers, whose fan-in is the width, get an lr
    proportional to 1 / width; input weights (fan-in fixed by the data) and every vector-like parameter
    (biases, norms, embeddings, ``cls_token`` and ``pos_embed``) keep ``base_lr``. Which fan-ins grew is read
    from ``base_model``, the same architecture at the base width (muP's "base shapes"), so at the base width
    every group has ``base_lr``. muP also scales the initialization (the output layer's variance by
    1 / width², or zero); that is up to the caller.

    Args:
        model: the model to train.
        base_lr: the lr found (or to be found) at the base width.
        base_model: the same architecture at the base width; its parameters must have the same names.

    >>> def mlp(width):
    ...     return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
    ...                          nn.Linear(width, 10))
    >>> [(g["name"], len(g["params"]), g["lr"]) for g in mup_param_groups(mlp(256), 1e-2, mlp(64))]
    [('lr x 1', 4, 0.01), ('lr / 4', 2, 0.0025)]
    """
    base = dict(base_model.named_modules())
    mult: dict[int, float] = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            if name not in base:
                raise ValueError(f"the base model has no module {name!r}; build it with the same architecture")
            mult[id(module.weight)] = _fan_in(module.weight) / _fan_in(base[name].weight)
    by_mult: dict[float, list[nn.Parameter]] = {}
    for _, p in trainable_parameters(model):
        by_mult.setdefault(mult.get(id(p), 1.0), []).append(p)
    return _groups({
        ("lr x 1" if m == 1 else f"lr / {m:g}" if m > 1 else f"lr x {1 / m:g}"): (params, {"lr": base_lr / m})
        for m, params in sorted(by_mult.items())
    })
